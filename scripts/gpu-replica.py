#!/usr/bin/env python3
# A plain PyTorch replica of the batched engine's forward and hand-written backward
# (src/experiment/engine.cpp) for K FC softplus networks, float64 on cuda: its time a step and a
# CUDA profile, the yardstick of docs/benchmarks.md "ensemble". No step rule, no fit, no
# checkpoints: only the tensor work. Usage (on the GPU machine): python3 scripts/gpu-replica.py
import torch, time, math, sys
import torch.nn.functional as F
torch.backends.cuda.matmul.allow_tf32 = False
dev = 'cuda'
def run(K, h, L=5, n=5000, d=10, iters=10):
    dt = torch.float64
    x = torch.randn(n, d, dtype=dt, device=dev)
    Ws = [torch.randn(K, h, d, dtype=dt, device=dev)] + [torch.randn(K, h, h, dtype=dt, device=dev) for _ in range(L-1)] + [torch.randn(K, 1, h, dtype=dt, device=dev)]
    bs = [torch.zeros(K, 1, h, dtype=dt, device=dev) for _ in range(L)] + [torch.zeros(K, 1, 1, dtype=dt, device=dev)]
    C = torch.randn(K, n, dtype=dt, device=dev)
    def step():
        z = x.unsqueeze(0).expand(K, n, d); zs=[]; pres=[]
        for l in range(L+1):
            fi = Ws[l].shape[2]
            pre = torch.baddbmm(bs[l], z, Ws[l].transpose(1, 2), beta=1.0, alpha=1.0/math.sqrt(fi))
            if l == L: f = pre.squeeze(2); break
            z = F.softplus(pre, 5.0, 600.0); pres.append(pre); zs.append(z)
        gpre = C.unsqueeze(2)
        for l in range(L, -1, -1):
            fi = Ws[l].shape[2]
            gW = torch.matmul(gpre.transpose(1, 2), x) if l == 0 else torch.bmm(gpre.transpose(1, 2), zs[l-1])
            gb = gpre.sum(1)
            if l == 0: break
            gz = torch.bmm(gpre, Ws[l]).mul_(1.0/math.sqrt(fi))
            gpre = torch.ops.aten.softplus_backward(gz, pres[l-1], 5.0, 600.0)
        return f
    for _ in range(3): step()
    torch.cuda.synchronize(); t0 = time.time()
    for _ in range(iters): step()
    torch.cuda.synchronize(); s = (time.time() - t0) / iters
    print(f"K={K} h={h}: {s*1e3:.2f} ms a step, {K/s:.0f} member-steps/s", flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA, torch.profiler.ProfilerActivity.CPU]) as p:
        step(); torch.cuda.synchronize()
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=14), flush=True)
run(100, 100)
run(1, 1000)
