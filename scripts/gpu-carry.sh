#!/usr/bin/env bash
# On a Debian machine: gathers into .gpu/ what scripts/gpu-build.sh needs on the GPU machine
# (which has PyTorch, CMake and nvcc but no Debian packages): header-only libraries, SQLite,
# GoogleTest's sources, and MNIST gzipped (the device's working tree travels up to 64 MiB).
# Keeps .gpu/study/ (scripts/gpu-study.sh's databases) when it exists.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
c=$root/.gpu
rm -rf "$c/include" "$c/lib" "$c/googletest" "$c/mnist"; mkdir -p "$c/include" "$c/lib" "$c/mnist"
cp -r /usr/include/nlohmann /usr/include/toml /usr/include/toml.hpp /usr/include/sqlite3.h \
  /usr/include/sqlite3ext.h "$c/include/"
for l in libsqlite3.so.0; do
  cp -L /usr/lib/x86_64-linux-gnu/$l "$c/lib/$l"
  cp -L /usr/lib/x86_64-linux-gnu/$l "$c/lib/${l%.*}"
done
cp -r /usr/src/googletest "$c/googletest"
for f in "$root"/data/mnist/*-ubyte; do gzip -9c "$f" > "$c/mnist/$(basename "$f").gz"; done
du -sh "$c"
