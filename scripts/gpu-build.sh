#!/usr/bin/env bash
# Build lazyfeat on the GPU machine against PyTorch's CUDA LibTorch (no Debian packages there):
# header-only libraries, SQLite and GoogleTest's sources travel in .gpu/ (made by
# scripts/gpu-carry.sh on a Debian machine). Usage: [TARGET="lazyfeat cuda_kernels ..."] scripts/gpu-build.sh [build-dir]
# It leaves BUILD/lazyfeat.srchash, the hash of the sources it built from (src/ and CMakeLists.txt:
# `scripts/gpu-build.sh --hash` prints it), so that scripts/gpu-study.sh on a warm machine builds
# again when the sources changed since.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
srchash=$(cd "$root" && find src CMakeLists.txt -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
[ "${1:-}" = --hash ] && { echo "$srchash"; exit 0; }
build=${1:-$root/build-gpu}
carry=$root/.gpu
prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export LD_LIBRARY_PATH=$carry/lib:${LD_LIBRARY_PATH:-}
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DLAZYFEAT_EXTRA_INCLUDE="$carry/include" -DLAZYFEAT_EXTRA_LIB="$carry/lib" \
  -DLAZYFEAT_GTEST_SOURCE="$carry/googletest" -DLAZYFEAT_MPI=OFF \
  -DCMAKE_BUILD_RPATH="$carry/lib"
cmake --build "$build" -j "$(nproc)" ${TARGET:+--target $TARGET}
echo "$srchash" > "$build/lazyfeat.srchash"
