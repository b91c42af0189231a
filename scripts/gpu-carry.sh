#!/usr/bin/env bash
# On a Debian machine: gathers into .gpu/ what scripts/gpu-build.sh needs on the GPU machine
# (which has PyTorch, CMake and nvcc but no Debian packages): header-only libraries, SQLite,
# GoogleTest's sources.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
c=$root/.gpu
rm -rf "$c"; mkdir -p "$c/include" "$c/lib"
cp -r /usr/include/nlohmann /usr/include/toml /usr/include/toml.hpp /usr/include/sqlite3.h \
  /usr/include/sqlite3ext.h "$c/include/"
for l in libsqlite3.so.0; do
  cp -L /usr/lib/x86_64-linux-gnu/$l "$c/lib/$l"
  cp -L /usr/lib/x86_64-linux-gnu/$l "$c/lib/${l%.*}"
done
cp -r /usr/src/googletest "$c/googletest"
du -sh "$c"
