#!/usr/bin/env python3
# The plain PyTorch reference of `lazyfeat bench ensemble --device cuda`: K FC softplus networks
# (NTK parametrisation, protocol section 2) trained together under the paper's dynamics
# (protocol section 4: momentum with tau = t/mu, the adaptive step with df in [df_min, df_max],
# the hinge loss scaled by 1/alpha^2), written as a researcher would write it in PyTorch: the
# members' weights as [K, ...] tensors, the forward by baddbmm, the backward by autograd, the step
# rule as [K] tensor operations on the device (no host synchronisation between the timed steps).
# Same shapes and data as the bench (x ~ N(0, 1) [ptr, d], labels the sign of x_0 x_1 + 0.3 x_2,
# float64, seeds 0..K-1, sqrt(h) alpha = 1), so that each row of docs/benchmarks.md "ensemble"
# is a ratio of lazyfeat's member-steps/s to this script's on the same card in the same call.
#
#   python3 scripts/gpu-reference.py --K 100 --h 100 --L 5 --ptr 5000 --steps 300
#
# Prints a JSON line last: member_steps_per_s counts trial steps (accepted or not) of every member.
# Deliberately not: checkpoints, the test set, resuming; not lazyfeat's numbers (its own seeds).
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--K", type=int, default=100)
p.add_argument("--h", type=int, default=100)
p.add_argument("--L", type=int, default=5)
p.add_argument("--ptr", type=int, default=5000)
p.add_argument("--d", type=int, default=10)
p.add_argument("--steps", type=int, default=300)
p.add_argument("--warmup", type=int, default=20)
p.add_argument("--sqrt-h-alpha", type=float, default=1.0)
p.add_argument("--device", default="cuda")
args = p.parse_args()

torch.backends.cuda.matmul.allow_tf32 = False
dev, f64 = torch.device(args.device), torch.float64
K, h, L, n, d = args.K, args.h, args.L, args.ptr, args.d
beta, a = 5.0, 1.40438  # softplus_beta and its normalising prefactor (protocol section 2)
mu, df_min, df_max = 1000.0, 1e-4, 1e-2
alpha = args.sqrt_h_alpha / math.sqrt(h)

g = torch.Generator(device="cpu").manual_seed(0)
x = torch.randn(n, d, generator=g, dtype=f64).to(dev)
y = torch.sign(x[:, 0] * x[:, 1] + 0.3 * x[:, 2])
fan_in = [d] + [h] * L
fan_out = [h] * L + [1]
W = [torch.randn(K, fo, fi, generator=g, dtype=f64).to(dev).requires_grad_() for fo, fi in zip(fan_out, fan_in)]
B = [torch.randn(K, fo, generator=g, dtype=f64).to(dev).requires_grad_() for fo in fan_out]
params = W + B


def forward():  # f [K, n]
    z = x.unsqueeze(0).expand(K, n, d)
    for l in range(L + 1):
        pre = torch.baddbmm(B[l].unsqueeze(1), z, W[l].transpose(1, 2), alpha=1.0 / math.sqrt(fan_in[l]))
        if l == L:
            return pre.squeeze(2)
        z = a * F.softplus(pre, beta)


with torch.no_grad():
    f0 = forward()
f = f0.clone()
v = [torch.zeros_like(q) for q in params]
grad = [torch.zeros_like(q) for q in params]
t = torch.zeros(K, dtype=f64, device=dev)
dt = torch.full((K,), 1e-50, dtype=f64, device=dev)
done = torch.zeros(K, dtype=torch.bool, device=dev)


def loss_grad(fk):
    """dL/df of the hinge scaled by 1/alpha^2 (mean over the points), and whether the loss is 0."""
    margin = alpha * (fk - f0) * y
    C = -(margin < 1).to(f64) * y / (alpha * n)
    return C, (margin >= 1).all(1)


def gradient(fk_graph, keep):
    """grad <- dL/dw at the weights of the forward fk_graph for the members in keep."""
    C, zero = loss_grad(fk_graph.detach())
    gs = torch.autograd.grad((fk_graph * (C * keep.unsqueeze(1))).sum(), params)
    for q, gq in zip(grad, gs):
        q.copy_(torch.where(keep.view(-1, *[1] * (q.dim() - 1)), gq, q))
    return zero


fk = forward()
gradient(fk, torch.ones(K, dtype=torch.bool, device=dev))


def step():
    global f
    live = ~done
    x_ = torch.where(t > 0, (t / (t + dt)) ** mu, torch.zeros_like(t))  # momentum decay, tau = t/mu
    saved = [(q.detach().clone(), vq.clone()) for q, vq in zip(params, v)]
    with torch.no_grad():
        for q, vq, gq in zip(params, v, grad):
            sh = (-1,) + (1,) * (q.dim() - 1)
            vq.mul_(x_.view(sh)).sub_((1 - x_).view(sh) * gq)
            q.add_(torch.where(live.view(sh), dt.view(sh) * vq, torch.zeros_like(vq)))
    fk = forward()
    df = alpha * (fk.detach() - f).abs().amax(1)
    accept = live & (df < df_max)
    zero = gradient(fk, accept)  # at the trial weights, which the accepted members keep
    with torch.no_grad():  # rejected members back to their weights and velocity
        for (q0, v0), q, vq in zip(saved, params, v):
            sh = (-1,) + (1,) * (q.dim() - 1)
            q.copy_(torch.where(accept.view(sh) | ~live.view(sh), q, q0))
            vq.copy_(torch.where(accept.view(sh) | ~live.view(sh), vq, v0))
    t.add_(torch.where(accept, dt, torch.zeros_like(dt)))
    f = torch.where(accept.unsqueeze(1), fk.detach(), f)
    grow = torch.where(df == 0, 10.0, torch.where(df < df_min, 1.1, 1.0))
    dt.copy_(torch.where(accept, dt * grow, torch.where(live, dt / 10, dt)))
    done.logical_or_(accept & zero)
    return accept


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


for _ in range(args.warmup):
    step()
sync()
accepted = torch.zeros(K, dtype=torch.long, device=dev)
t0 = time.time()
for _ in range(args.steps):
    accepted += step().long()
sync()
wall = time.time() - t0
out = {"script": "gpu-reference.py", "K": K, "h": h, "L": L, "ptr": n, "steps": args.steps,
       "ms_per_step": 1e3 * wall / args.steps, "member_steps_per_s": K * args.steps / wall,
       "accepted_fraction": accepted.sum().item() / (K * args.steps),
       "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__}
print(json.dumps(out), flush=True)
