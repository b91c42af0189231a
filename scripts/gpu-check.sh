#!/usr/bin/env bash
# On the GPU machine: build against PyTorch's CUDA LibTorch (scripts/gpu-build.sh), run the test
# suite, one training run on the GPU (--device cuda, the generic LibTorch trainer), and the
# issue checks that need long CPU runs, in parallel on the host's cores (each pinned to 2 cores).
# Writes logs and JSON lines under ${OUT:-/tmp/gpu-check}. Data: carried data/mnist.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
build=/tmp/lazyfeat-gpu
"$root/scripts/gpu-build.sh" "$build" > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
export LD_LIBRARY_PATH=$root/.gpu/lib:${LD_LIBRARY_PATH:-}
lf=$build/lazyfeat
$lf --version
# Long CPU runs of the issues, started first, 2 cores each.
run() { local name=$1 cores=$2; shift 2; (taskset -c "$cores" env OPENBLAS_NUM_THREADS=2 OMP_NUM_THREADS=2 \
  $lf train "$@" --json --quiet > "$out/$name.json" 2> "$out/$name.err" &) ; }
run lazy1e4 0,1 --h 64 --L 3 --ptr 1000 --pte 5000 --sqrt-h-alpha 1e4 --delta-kernel
run feat1e-2 2,3 --h 64 --L 3 --ptr 1000 --pte 5000 --sqrt-h-alpha 1e-2 --delta-kernel
run accept1e3 4,5 --h 64 --L 3 --ptr 1000 --pte 5000 --sqrt-h-alpha 1e3
# The GPU: the generic trainer in float64 on CUDA against the same run on the CPU.
taskset -c 8-15 $lf train --device cuda --h 64 --L 3 --ptr 500 --pte 2000 --sqrt-h-alpha 10 --max-steps 3000 --json --quiet | tail -1 | tee "$out/cuda.json"
taskset -c 8-15 $lf train --h 64 --L 3 --ptr 500 --pte 2000 --sqrt-h-alpha 10 --max-steps 3000 --json --quiet | tail -1 | tee "$out/cpu.json"
(cd "$build" && taskset -c 8-15 ctest -j 8 --output-on-failure > "$out/ctest.log" 2>&1; tail -15 "$out/ctest.log")
wait_for() { while [ ! -s "$out/$1.json" ] && [ $SECONDS -lt ${BUDGET:-540} ]; do sleep 5; done; echo "$1: $(tail -1 "$out/$1.json" 2>/dev/null)"; }
for r in accept1e3 feat1e-2 lazy1e4; do wait_for $r; done
