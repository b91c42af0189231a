#!/usr/bin/env python3
# The float64 rate of the batched engine's products (src/experiment/engine.cpp, K FC members of
# width h on n points) in each layout cuBLAS can be asked for them: activations [K, n, h]
# (today's) or [K, h, n], the weights transposed or not, bmm against baddbmm, and the
# weight-gradient product (a reduction over n) as bmm or as one einsum; next to the single product
# [K n, h] x [h, h] (one weight for all: what the card does on this much work) in the same call.
# What it is for: choosing the engine's layout before writing kernels (docs/benchmarks.md
# "ensemble"). Deliberately not: the engine itself (scripts/gpu-replica.py replicates it).
# Usage (on the GPU machine): python3 scripts/gpu-bmm-layouts.py [K n h ...]
import sys, torch
torch.backends.cuda.matmul.allow_tf32 = False
dev, dt = 'cuda', torch.float64

def rate(fn, flops, iters=20):
    for _ in range(3): fn()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        torch.cuda.synchronize(); a.record()
        for _ in range(iters): fn()
        b.record(); torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / 1e3 / iters)
    s = sorted(times)[len(times) // 2]  # median of 5
    return s, flops / s / 1e12

def main(K, n, h):
    X = torch.randn(K, n, h, dtype=dt, device=dev)       # activations, today's layout
    XT = X.transpose(1, 2).contiguous()                   # [K, h, n]
    W = torch.randn(K, h, h, dtype=dt, device=dev)
    WT = W.transpose(1, 2).contiguous()
    G = torch.randn(K, n, h, dtype=dt, device=dev)        # dL/d(preactivation)
    GT = G.transpose(1, 2).contiguous()
    b = torch.zeros(K, 1, h, dtype=dt, device=dev)
    bT = torch.zeros(K, h, 1, dtype=dt, device=dev)
    X1, W1 = X.reshape(K * n, h), W[0]
    # The weights as the engine held them before 2026-12-07 (LAZYFEAT_ALIGNED_WEIGHTS=0): views of
    # the members' parameter rows [K, P], P odd (41,601 at h = 100, L = 5), so every other matrix
    # starts 8 bytes off a 16-byte boundary.
    P = max(41601, (1100 + h * h) | 1)
    Wrows = torch.randn(K, P, dtype=dt, device=dev)
    Wv = Wrows[:, 1100:1100 + h * h].view(K, h, h)
    f = 2.0 * K * n * h * h
    cases = [
        ("single [Kn,h]x[h,h] (the card on this work)", lambda: X1 @ W1),
        ("fwd  bmm X[K,n,h] W^T (view)", lambda: torch.bmm(X, W.transpose(1, 2))),
        ("fwd  baddbmm b + X W^T (LibTorch composition)", lambda: torch.baddbmm(b, X, W.transpose(1, 2))),
        ("fwd  bmm X WT (contiguous)", lambda: torch.bmm(X, WT)),
        ("fwd  bmm X Wv^T, Wv rows P (odd) apart", lambda: torch.bmm(X, Wv.transpose(1, 2))),
        ("fwd  bmm X Wv^T, Wv copied (contiguous)", lambda: torch.bmm(X, Wv.contiguous().transpose(1, 2))),
        ("bwd  dX = G Wv, Wv rows P (odd) apart", lambda: torch.bmm(G, Wv)),
        ("fwd  bmm W XT -> [K,h,n]", lambda: torch.bmm(W, XT)),
        ("fwd  baddbmm bT + W XT -> [K,h,n]", lambda: torch.baddbmm(bT, W, XT)),
        ("bwd  dX = G W [K,n,h]", lambda: torch.bmm(G, W)),
        ("bwd  dX = baddbmm(beta 0, alpha m) G W (engine's)",
         lambda: torch.baddbmm(G, G, W, beta=0.0, alpha=0.1)),
        ("bwd  dXT = W^T GT [K,h,n]", lambda: torch.bmm(W.transpose(1, 2), GT)),
        ("bwd  dW = G^T X (reduce n) [K,n,h] views", lambda: torch.bmm(G.transpose(1, 2), X)),
        ("bwd  dW = GT XT^T (reduce n) [K,h,n]", lambda: torch.bmm(GT, XT.transpose(1, 2))),
        ("bwd  dW einsum", lambda: torch.einsum('kni,knj->kij', G, X)),
    ]
    print(f"K={K} n={n} h={h} float64: {f / 1e9:.1f} GFLOP a product", flush=True)
    for name, fn in cases:
        s, r = rate(fn, f)
        print(f"  {name:48s} {s * 1e3:8.3f} ms {r:6.1f} TFLOP/s", flush=True)

if __name__ == '__main__':  # (scripts/gpu-passes.py imports rate)
    args = [int(a) for a in sys.argv[1:]] or [100, 5000, 100, 10, 5000, 100, 1, 5000, 1000]
    for i in range(0, len(args), 3):
        main(*args[i:i + 3])
