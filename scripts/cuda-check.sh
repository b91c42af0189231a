#!/usr/bin/env bash
# The CUDA code compiled here, before a call of the device tool pays for finding its errors: the
# kernels (src/models/cuda/*.cu) by nvcc for sm_90, and the C++ files whose CUDA branches the CPU
# build leaves out (LAZYFEAT_WITH_CUDA, LAZYFEAT_WITH_CUDA_KERNELS; tests/cuda_*.cpp) checked for
# syntax and types (-fsyntax-only) against Debian's LibTorch headers, with each file's flags taken
# from the CPU build's compile_commands.json. Needs nvcc (this development machine has CUDA 13 in
# /usr/local/cuda) and a CPU build (scripts/setup.sh). Debian's LibTorch lacks one generated
# header of c10's CUDA part (c10/cuda/impl/cuda_cmake_macros.h): an empty one stands in for it.
# Deliberately not: linking or running anything (no GPU here: scripts/gpu-check.sh on the device).
# Usage: scripts/cuda-check.sh [cpu build dir, default build]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
[ -x "$nvcc" ] || { echo "cuda-check.sh: no nvcc (PATH or /usr/local/cuda/bin)" >&2; exit 2; }
cuda_inc=$(dirname "$(dirname "$(readlink -f "$nvcc")")")/include
[ -f "$build/compile_commands.json" ] || { echo "cuda-check.sh: no $build/compile_commands.json (build first)" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/stub/c10/cuda/impl" && echo '#pragma once' > "$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
fail=0
for cu in "$root"/src/models/cuda/*.cu; do
  if "$nvcc" -std=c++17 -arch=sm_90 -Xcompiler -Wall -c "$cu" -o "$tmp/k.o"; then echo "ok    ${cu#$root/}"
  else echo "FAIL  ${cu#$root/}"; fail=1; fi
done
# A file's compile command, or its library's neighbour's (tests/cuda_*.cpp are not in the CPU
# build: they take test_fc.cpp's), with the file put in its place and -fsyntax-only.
command_for() {
  python3 - "$build/compile_commands.json" "$root" "$1" <<'PY'
import json, shlex, sys
db, root, f = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
alike = 'tests/test_fc.cpp' if f.startswith('tests/') else f
for e in db:
    if e['file'] == root + '/' + alike:
        args = e.get('arguments') or shlex.split(e['command'])
        out = [a for i, a in enumerate(args) if a != '-o' and (i == 0 or args[i - 1] != '-o') and a != '-c'
               and a != e['file']]
        print(shlex.join(out + ['-fsyntax-only', root + '/' + f]))
        break
PY
}
cd "$build"
for f in $(cd "$root" && grep -l "LAZYFEAT_WITH_CUDA" src/*/*.cpp) $(cd "$root" && ls tests/cuda_*.cpp); do
  cmd=$(command_for "$f")
  [ -n "$cmd" ] || { echo "FAIL  $f: no compile command in the CPU build"; fail=1; continue; }
  if eval "$cmd -DLAZYFEAT_WITH_CUDA=1 -DLAZYFEAT_WITH_CUDA_KERNELS=1 -I$cuda_inc -I$tmp/stub"; then echo "ok    $f"
  else echo "FAIL  $f"; fail=1; fi
done
exit $fail
