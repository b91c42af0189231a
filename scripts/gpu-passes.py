#!/usr/bin/env python3
# What a pass over the batched engine's [K, n, h] float64 activations costs on the GPU, and with it
# the least time an ensemble step can take whatever its kernels: each pass of the step (a product
# reading its input and writing its output, softplus, softplus_backward, the bias-gradient sum) is
# timed next to a plain copy (the card's achievable bandwidth), in the same call.
# What it is for: issue 9's K = 100 target (4 ms an ensemble step at h = 100, L = 5, n = 5000)
# against the memory traffic of a step (docs/benchmarks.md "ensemble"). Deliberately not: the
# engine (scripts/gpu-replica.py replicates it) nor the products' layouts (gpu-bmm-layouts.py).
# Usage (on the GPU machine): python3 scripts/gpu-passes.py [K n h]
import importlib, sys, torch
rate = importlib.import_module('gpu-bmm-layouts').rate  # median of 5 x 20 calls: (seconds, TFLOP/s)
dev, dt = 'cuda', torch.float64

def ms(fn):
    return rate(fn, 1.0)[0] * 1e3

def main(K, n, h):
    X = torch.randn(K, n, h, dtype=dt, device=dev)   # [K, n, h]: one activation tensor
    Z = torch.randn(K, n, h, dtype=dt, device=dev)
    G = torch.randn(K, n, h, dtype=dt, device=dev)
    Y = torch.empty(K, n, h, dtype=dt, device=dev)
    W = torch.randn(K, h, h, dtype=dt, device=dev)
    b = torch.zeros(K, 1, h, dtype=dt, device=dev)
    B = X.numel() * 8  # bytes of one tensor
    sp = torch.ops.aten.softplus_backward
    cases = [  # name, fn, tensors moved (reads + writes of [K, n, h])
        ("copy (1 read, 1 write)", lambda: Y.copy_(X), 2),
        ("softplus (1 + 1)", lambda: torch.nn.functional.softplus(X, 5.0, 20.0), 2),
        ("softplus_backward (2 + 1)", lambda: sp(G, Z, 5.0, 20.0), 3),
        ("bias gradient G.sum(1) (1 + 0)", lambda: G.sum(1), 1),
        ("bmm X W^T (1 + 1)", lambda: torch.bmm(X, W.transpose(1, 2)), 2),
        ("baddbmm b + X W^T (1 + 1, bias expanded)", lambda: torch.baddbmm(b, X, W.transpose(1, 2)), 2),
        ("bmm G^T X, the weight gradient (2 + 0)", lambda: torch.bmm(G.transpose(1, 2), X), 2),
    ]
    print(f"K={K} n={n} h={h}: one [K, n, h] float64 tensor is {B / 1e6:.0f} MB")
    copy_ms = None
    for name, fn, moved in cases:
        t = ms(fn)
        copy_ms = copy_ms or t
        print(f"  {name:45s} {t:7.3f} ms  {moved * B / (t * 1e-3) / 1e9:7.0f} GB/s  {t / (copy_ms / 2):5.2f} tensor-passes of the copy's")

if __name__ == '__main__':
    a = [int(v) for v in sys.argv[1:]] or [100, 5000, 100]
    main(*a[:3])
