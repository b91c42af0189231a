#!/usr/bin/env python3
# Where a step of the batched engine spends its GPU time, kernel by kernel: Nsight Compute (ncu)
# times every kernel of a window of the training loop (one metric, gpu__time_duration: one pass
# each, no replay of the kernel's sections), and this script sums them by kernel and by kind
# (products, the hand-written epilogues, LibTorch's elementwise and reduction kernels, the rest).
# What it is for: issue 23's "say why from measurements" (docs/benchmarks.md "ensemble").
# Status: written 2026-12-07 and not yet run on the device (that day's call ran out of time in an
# earlier version that timed every kernel; ncu's per-kernel cost made it far too slow); its CSV
# parsing was checked on a sample of ncu's raw page only. SKIP = 30,000 in gpu-check.sh (1,000 steps) assumes
# 40 to 100 kernels a step (a window past step 300): check the first line of its output.
# Deliberately not: the host's time between kernels (compare the kernels' sum for a step, from the
# launches of a kernel the step makes a known number of times, with the bench's ms a step),
# the kernels' own counters (ncu --set full on one kernel for that).
# Usage (on the GPU machine):
#   python3 scripts/gpu-kernel-times.py SKIP COUNT -- lazyfeat bench ensemble --device cuda --K 100 ...
#   (times COUNT kernels after the first SKIP, which the set-up and the early steps must exceed:
#   ncu slows every kernel it times by ~ms, so a window of a few steps, not the whole run; ncu
#   runs the command with LAZYFEAT_CUDA_GRAPHS=0: a graph's kernels are not timed one by one)
import collections, csv, glob, io, os, shutil, subprocess, sys

def kind(name):
    n = name.lower()
    if 'gemm' in n or 'sm90_' in n or 'cutlass' in n or 'dgemm' in n or 'gemv' in n:
        return 'products (cuBLAS)'
    if 'softplus_backward_bias' in n or 'chunk_sums' in n or 'bias_softplus' in n:
        return 'epilogues (lazyfeat)'
    if 'reduce' in n:
        return 'reductions (LibTorch)'
    if 'elementwise' in n or 'vectorized' in n or 'unrolled' in n:
        return 'elementwise (LibTorch)'
    return 'other'

def ncu():
    found = shutil.which('ncu') or sorted(glob.glob('/opt/nvidia/nsight-compute/*/ncu') +
                                          glob.glob('/usr/local/cuda*/bin/ncu'))
    if not found:
        sys.exit('gpu-kernel-times: no ncu (Nsight Compute) on this machine')
    return found if isinstance(found, str) else found[-1]

def run_ncu(cmd, skip, count):
    env = dict(os.environ, LAZYFEAT_CUDA_GRAPHS='0')
    args = [ncu(), '--clock-control', 'none', '--metrics', 'gpu__time_duration.sum', '--csv', '--page', 'raw',
            '--print-kernel-base', 'function', '--print-units', 'base', '--launch-skip', str(skip),
            '--launch-count', str(count)] + cmd
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    return out.stdout, out.stderr

def parse(text):
    lines = [l for l in text.splitlines() if l.startswith('"')]
    rows = list(csv.reader(io.StringIO('\n'.join(lines))))
    if not rows:
        return []
    head = rows[0]
    ki, ti = head.index('Kernel Name'), head.index('gpu__time_duration.sum')
    out = []
    for r in rows[1:]:
        try:
            out.append((r[ki], float(r[ti].replace(',', ''))))
        except (ValueError, IndexError):
            continue  # the units row
    return out

def main():
    skip, count = int(sys.argv[1]), int(sys.argv[2])
    cmd = sys.argv[sys.argv.index('--') + 1:]
    text, err = run_ncu(cmd, skip, count)
    window = parse(text)
    if not window:
        sys.exit('gpu-kernel-times: ncu timed no kernel (fewer than SKIP?):\n' + err[-2000:])
    by_name, by_kind = collections.defaultdict(lambda: [0, 0.0]), collections.defaultdict(float)
    for name, ns in window:
        by_name[name][0] += 1
        by_name[name][1] += ns
        by_kind[kind(name)] += ns
    all_ns = sum(by_kind.values())
    print(f'{len(window)} kernels timed after the first {skip}: {all_ns / 1e6:.3f} ms of kernels')
    for k, ns in sorted(by_kind.items(), key=lambda x: -x[1]):
        print(f'  {k:28s} {ns / 1e6:8.3f} ms  {100 * ns / all_ns:5.1f}%')
    print('kernels (ms in all, launches, us a launch, name):')
    for name, (c, ns) in sorted(by_name.items(), key=lambda x: -x[1][1])[:30]:
        print(f'  {ns / 1e6:8.3f}  {c:5d}  {ns / c / 1e3:8.1f}  {name[:100]}')

if __name__ == '__main__':
    main()
