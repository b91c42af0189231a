#!/usr/bin/env bash
# On the GPU machine, in one call of the device tool (about 8 minutes): build against PyTorch's
# CUDA LibTorch (scripts/gpu-build.sh), run the test suite there, and the GPU benchmarks.
#  - Tests: every test but those labelled `debian` (they need OpenBLAS as LibTorch's BLAS,
#    gnuplot, Chromium, mpirun or Fashion-MNIST, which only the Debian set-up provides), the
#    `cuda` tests included; 7 at a time on 14 cores, 2 intra-op threads each (16 threads per
#    test on 16 cores oversubscribes the machine).
#  - Benchmarks, on the 2 remaining cores while the tests run: bench ensemble --device cuda at
#    setup A (K = 1, 10, 100, 1000) and one network at h = 1000, against the device's float64
#    matrix rate measured in the same call; bench ntk --device cuda, both methods. Then setup B's
#    CNN on cuda (one network at h = 32; 50 members), and, on all cores, bench train-step: the CPU
#    trainer on this LibTorch (MKL inside).
# Logs (each benchmark's ends with its JSON line) in one file, ${OUT:-/tmp/gpu-check}/gpu-check.tgz (the device
# tool brings back only about 8 files). Data: data/mnist (carried gzipped in .gpu/).
# Usage: scripts/gpu-check.sh [build-dir]
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${OUT:-/tmp/gpu-check}
out=$dest/gpu-check; mkdir -p "$out"  # tarred into $dest/gpu-check.tgz at the exit (left as files if killed)
trap 'tar czf "$dest/gpu-check.tgz" -C "$out" . && rm -rf "$out"' EXIT
build=${1:-/tmp/lazyfeat-gpu}
mkdir -p "$root/data/mnist"
for f in "$root"/.gpu/mnist/*.gz; do
  [ -e "$f" ] && gunzip -c "$f" > "$root/data/mnist/$(basename "$f" .gz)"
done
SECONDS=0
"$root/scripts/gpu-build.sh" "$build" > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
echo "build: ${SECONDS} s"
export LD_LIBRARY_PATH=$root/.gpu/lib:${LD_LIBRARY_PATH:-}
lf=$build/lazyfeat
$lf --version
(cd "$build" && OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 taskset -c 0-13 \
   ctest -LE debian -j 7 --output-on-failure --timeout 400 > "$out/ctest.log" 2>&1; echo "ctest exit $?" >> "$out/ctest.log") &
tests=$!
bench() { local name=$1; shift; OMP_NUM_THREADS=2 timeout 150 taskset -c 14,15 $lf bench "$@" --json > "$out/$name.log" 2>&1;
          echo "$name (${SECONDS} s): $(grep -v '^{' "$out/$name.log" | grep -v repeat | tail -6)"; }
bench ntk-structured ntk --device cuda --h 1000 --L 5 --n 1000 --method structured --repeats 5
bench ntk-jacobian ntk --device cuda --h 1000 --L 5 --n 1000 --method jacobian --repeats 3 --memory-budget 100
bench ensemble-setup-a ensemble --device cuda --K 1,10,100,1000 --h 100 --L 5 --ptr 5000 --steps 200 --repeats 1 --alone-max 10
bench ensemble-steady ensemble --device cuda --K 100 --h 100 --L 5 --ptr 5000 --steps 2000 --repeats 1 --alone-max 0
bench ensemble-h1000 ensemble --device cuda --K 1 --h 1000 --L 5 --ptr 5000 --steps 300 --repeats 3 --alone-max 0
wait $tests
tail -25 "$out/ctest.log"
# Setup B on cuda (docs/benchmarks.md "setup B on the GPU"), after the tests: the CNN step at h = 32
# and an ensemble of 5 alphas x 10 seeds against its runs alone.
bench cnn-h32 train-step --arch cnn --device cuda --h 32 --steps 500 --ref-steps 200 --repeats 3
bench cnn-ensemble50 ensemble --arch cnn --device cuda --h 32 --steps 50 --repeats 1 --alone-max 50
# The CPU trainer on this LibTorch (MKL inside libtorch_cpu.so, its dgemm_ exported but its threads
# not settable: the fused kernels' two threads run as an ATen parallel region), all 16 cores.
$lf bench train-step --h 100 --L 5 --ptr 5000 --steps 30 --ref-steps 10 --repeats 3 2>&1 | tail -4
echo "total: ${SECONDS} s"
