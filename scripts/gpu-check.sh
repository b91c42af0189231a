#!/usr/bin/env bash
# On the GPU machine, in one call of the device tool (about 8 minutes): build against PyTorch's
# CUDA LibTorch (scripts/gpu-build.sh; the CUDA kernels of src/models/cuda with nvcc), run the
# test suite there, then the GPU benchmarks on a quiet card.
#  - Tests: CTEST_ARGS (default: every test but those labelled `debian`, which need OpenBLAS as
#    LibTorch's BLAS, gnuplot, Chromium, mpirun or Fashion-MNIST, only the Debian set-up provides
#    them), the `cuda` tests included (CTEST_ARGS="-L cuda": those alone); 7 at a time on 14
#    cores, 2 intra-op threads each (16 threads per test on 16 cores oversubscribes the machine).
#  - Benchmarks, after the tests (the card to themselves): bench ensemble --device cuda at setup A
#    (K = 100, 10, 1, or BENCH_K) as built, without CUDA graphs (LAZYFEAT_CUDA_GRAPHS=0) and as
#    before the CUDA kernels and the rule on the device (LAZYFEAT_CUDA_KERNELS=0
#    LAZYFEAT_DEVICE_RULE=0), each next to the
#    plain PyTorch reference (scripts/gpu-reference.py: same shapes, same dynamics) in the same
#    call, and one network at h = 1000 against the device's float64 matrix rate measured in the
#    same call; setup B's CNN, 10 members as one network against the same runs alone. With FULL=1 also: bench ntk --device cuda, both methods; setup B's CNN on cuda
#    (one network at h = 32; 50 members); bench train-step on all cores (the CPU trainer on this
#    LibTorch, MKL inside). With PROFILE=1 also: a K = 100 step's kernels timed by Nsight Compute
#    (scripts/gpu-kernel-times.py), with the CUDA kernels and without.
# Logs (each benchmark's ends with its JSON line) in one file, ${OUT:-/tmp/gpu-check}/gpu-check.tgz (the device
# tool brings back only about 8 files), and the table's lines on stdout. Data: data/mnist
# (carried gzipped in .gpu/). Usage: [CTEST_ARGS=...] [BENCH_K="100 1"] [SHORT=1: as built,
#   the phases and the script only] [CNN=0 | short] [H1000_STEPS=1500 (0: no h = 1000 rows)]
#   [PROFILE=1 [PROFILE_KERNELS=1] [DEADLINE=s]] [FULL=1] scripts/gpu-check.sh [build-dir]
# Exit status: 1 when the build fails, else ctest's (so that a study after it in the same call,
# `gpu-check.sh && gpu-study.sh`, runs only on an engine whose tests passed there).
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
"$root/scripts/gpu-build.sh" "$build" > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }  # TARGET: a part
echo "build: ${SECONDS} s"
export LD_LIBRARY_PATH=$root/.gpu/lib:${LD_LIBRARY_PATH:-}
lf=$build/lazyfeat
$lf --version
(cd "$build" && OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 taskset -c 0-13 \
   ctest ${CTEST_ARGS:--LE debian} -j 7 --output-on-failure --timeout 400 > "$out/ctest.log" 2>&1)
tests_rc=$?; echo "ctest exit $tests_rc" >> "$out/ctest.log"
tail -12 "$out/ctest.log"
echo "tests: ${SECONDS} s"
bench() { local name=$1; shift; OMP_NUM_THREADS=4 timeout 150 $lf bench "$@" --json > "$out/$name.log" 2>&1;
          echo "$name (${SECONDS} s): $(grep '^{' "$out/$name.log" | tail -1 | head -c 1500)"; }
reference() { local name=$1; shift; timeout 150 python3 "$root/scripts/gpu-reference.py" "$@" > "$out/$name.log" 2>&1;
              echo "$name (${SECONDS} s): $(tail -1 "$out/$name.log")"; }
# Setup A: lazyfeat as built (the CUDA kernels, the rule on the device, its rounds as a CUDA
# graph, the products' weights copied to aligned matrices), on the weights' odd-stride views
# instead (LAZYFEAT_ALIGNED_WEIGHTS=0, the engine before 2026-12-07), its phases timed
# (--phases), without the graphs (LAZYFEAT_CUDA_GRAPHS=0), the engine before all three
# (LAZYFEAT_CUDA_KERNELS=0 LAZYFEAT_DEVICE_RULE=0), and the plain PyTorch script, same shapes.
for K in ${BENCH_K:-100 10 1}; do
  steps=$(( K == 1 ? 3000 : 1000 ))
  bench ensemble-K$K ensemble --device cuda --K $K --h 100 --L 5 --ptr 5000 --steps $steps --repeats 1 --alone-max 0
  [ -n "${SHORT:-}" ] || LAZYFEAT_ALIGNED_WEIGHTS=0 bench ensemble-K$K-views ensemble --device cuda --K $K --h 100 --L 5 --ptr 5000 --steps $steps --repeats 1 --alone-max 0
  # Where a round's time goes, phase by phase (bench ensemble --phases: CUDA events, graphs off).
  bench ensemble-K$K-phases ensemble --device cuda --K $K --h 100 --L 5 --ptr 5000 --steps $steps --repeats 1 --alone-max 0 --phases
  sed -n '/^phases of/,/^[^ p]/p' "$out/ensemble-K$K-phases.log" | grep -v '^{'
  [ -n "${SHORT:-}" ] || LAZYFEAT_CUDA_GRAPHS=0 bench ensemble-K$K-nographs ensemble --device cuda --K $K --h 100 --L 5 --ptr 5000 --steps $steps --repeats 1 --alone-max 0
  [ -n "${SHORT:-}" ] || LAZYFEAT_CUDA_KERNELS=0 LAZYFEAT_DEVICE_RULE=0 bench ensemble-K$K-before ensemble --device cuda --K $K --h 100 --L 5 --ptr 5000 --steps $steps --repeats 1 --alone-max 0
  reference reference-K$K --K $K --h 100 --L 5 --ptr 5000 --steps $steps
done
h1000_steps=${H1000_STEPS:-300}  # a longer run weighs the first ~100 steps (host rule, dense checkpoints) less; 0: none
[ "$h1000_steps" = 0 ] || bench ensemble-h1000 ensemble --device cuda --K 1 --h 1000 --L 5 --ptr 5000 --steps $h1000_steps --repeats 3 --alone-max 0
if [ "${CNN:-1}" != 0 ]; then  # CNN=0 leaves setup B's benchmarks out (~4 minutes; CNN=short: the first three)
# Setup B: K = 10 CNN members (2 alphas x 5 seeds, h = 32, batches of 64) as one network (the
# grouped CNN engine) against the same 10 runs alone, one after another (issue 23's last row):
# its convolutions by cuDNN (groups = K), with cuDNN's algorithms as its heuristics choose them
# and as its benchmark mode times them (LAZYFEAT_CNN_CONV=cudnn-benchmark), then as im2col and
# cuBLAS's batched products.
bench cnn-K10 ensemble --arch cnn --device cuda --h 32 --alphas 1e-2,100 --seeds 5 --steps 200 --repeats 1 --alone-max 10
# Where its steps go (the walks, the batch gradients' forward and backward, the trial, ...).
bench cnn-K10-phases ensemble --arch cnn --device cuda --h 32 --alphas 1e-2,100 --seeds 5 --steps 200 --repeats 1 --alone-max 0 --phases
sed -n '/^phases of/,/^[^ p]/p' "$out/cnn-K10-phases.log" | grep -v '^{'
LAZYFEAT_CNN_CONV=cudnn-benchmark bench cnn-K10-cudnn-benchmark ensemble --arch cnn --device cuda --h 32 --alphas 1e-2,100 --seeds 5 --steps 200 --repeats 1 --alone-max 10
if [ "${CNN:-1}" != short ]; then
LAZYFEAT_CNN_CONV=im2col bench cnn-K10-im2col ensemble --arch cnn --device cuda --h 32 --alphas 1e-2,100 --seeds 5 --steps 200 --repeats 1 --alone-max 10
# One CNN run (the reference forward, ConvModel) with either convolution.
bench cnn-h32-steps train-step --arch cnn --device cuda --h 32 --steps 300 --ref-steps 100 --repeats 1
LAZYFEAT_CNN_CONV=im2col bench cnn-h32-steps-im2col train-step --arch cnn --device cuda --h 32 --steps 300 --ref-steps 100 --repeats 1
fi
fi
# The products alone, in each layout (scripts/gpu-bmm-layouts.py), the weights also as views of
# [K, P] rows with P odd (the engine's with LAZYFEAT_ALIGNED_WEIGHTS=0).
timeout 120 python3 "$root/scripts/gpu-bmm-layouts.py" 100 5000 100 > "$out/bmm-layouts.log" 2>&1
echo "bmm layouts (${SECONDS} s):"; cat "$out/bmm-layouts.log"
[ "$h1000_steps" = 0 ] || reference reference-h1000 --K 1 --h 1000 --L 5 --ptr 5000 --steps $h1000_steps
# PROFILE=1: where a K = 100 step's GPU time goes, kernel by kernel (Nsight Compute; graphs off),
# with the CUDA kernels and without (scripts/gpu-kernel-times.py).
if [ -n "${PROFILE:-}" ]; then
  for kernels in ${PROFILE_KERNELS:-1 0}; do  # PROFILE_KERNELS=1: with the kernels only
    # DEADLINE (seconds since the start): the profile only in the time left before it, so that a
    # call's limit does not cut the logs off.
    left=$(( ${DEADLINE:-100000} - SECONDS )); [ "$left" -gt 150 ] && left=150
    [ "$left" -lt 40 ] && { echo "kernel times: skipped, ${left} s left before DEADLINE"; continue; }
    LAZYFEAT_CUDA_KERNELS=$kernels timeout $left python3 "$root/scripts/gpu-kernel-times.py" 30000 800 -- \
      $lf bench ensemble --device cuda --K 100 --h 100 --L 5 --ptr 5000 --steps 1000 --repeats 1 --alone-max 0 \
      > "$out/kernel-times-$kernels.log" 2>&1
    echo "kernel times, LAZYFEAT_CUDA_KERNELS=$kernels (${SECONDS} s):"; head -40 "$out/kernel-times-$kernels.log"
  done
fi
if [ -n "${FULL:-}" ]; then
bench ntk-structured ntk --device cuda --h 1000 --L 5 --n 1000 --method structured --repeats 5
bench ntk-jacobian ntk --device cuda --h 1000 --L 5 --n 1000 --method jacobian --repeats 3 --memory-budget 100
# Setup B on cuda (docs/benchmarks.md "setup B on the GPU"): the CNN step at h = 32 and an
# ensemble of 5 alphas x 10 seeds against its runs alone.
bench cnn-h32 train-step --arch cnn --device cuda --h 32 --steps 500 --ref-steps 200 --repeats 3
bench cnn-ensemble50 ensemble --arch cnn --device cuda --h 32 --steps 50 --repeats 1 --alone-max 50
# The CPU trainer on this LibTorch (MKL inside libtorch_cpu.so, its dgemm_ exported but its threads
# not settable: the fused kernels' two threads run as an ATen parallel region), all 16 cores.
$lf bench train-step --h 100 --L 5 --ptr 5000 --steps 30 --ref-steps 10 --repeats 3 2>&1 | tail -4
fi
echo "total: ${SECONDS} s"
exit $tests_rc  # the tests' verdict (the benchmarks' own failures show in their lines): `gpu-check.sh && ...`
