// The structured empirical NTK of the wide ResNet (ntk.h; protocol sections 2, 5).
// Convolution i has patches U_i(x) [K_i, P_i] (its padded input at each kernel offset, divided
// by sqrt(K_i)) and deltas D_i(x) [C_i, P_i] (df/da_i at each output position, a_i the convolution's output), so
// its per-sample weight gradient is G_i(x) = D_i(x) U_i(x)^T [C_i, K_i] and its bias gradient
// sum_p D_i(x). The head adds pooled / sqrt(64k) and 1. These rows, in the order of Net::flat(),
// are the per-sample gradients J(x) [P_total]; Theta = J1 J2^T.
// The deltas come from one batched autograd backward pass of sum_x f(x) (the points do not
// interact: no batch norm), not one pass per point as in the Jacobian method.
// Cost for N distinct points, P_total parameters (about 370k at k = 1, 36.5M at k = 10):
//   features: one forward and one backward pass per point, plus 2 C_i P_i K_i flops per
//             convolution per point for G_i (the cost of a weight gradient);
//   Gram:     2 n1 n2 P_total flops (halved for a symmetric Gram: lower blocks only);
//   memory:   two blocks of rows of J within memory_budget; features recomputed per block when
//             J of all points does not fit (as the Jacobian method does).
// Measured (lazyfeat ntk --arch wrn --h 1, 100 MNIST points, 2 loaded CPU cores): ~0.6 s per
// 32 points for the batched forward and backward (~10 GFLOP/s), ~0.4 s for their per-sample
// gradients, 0.42 s for the 7.4 GFLOP Gram; in all about the Jacobian method's time, since the
// per-sample weight gradients (2 n C P K flops), which both must form, dominate at this width.
// Deliberately not: contraction over positions (the CNN's other plan, ntk.cpp). For the WRN its
// per-pair cost 2 P^2 (C + K) exceeds the materialised 2 C K for every width below about 40 at
// 28x28, and its tiles of P^2 entries per pair are large.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"
#include "ntk/structured.h"

namespace lf {
namespace {

int64_t wrn_num_params(const WRNParams& p) {
  int64_t n = 0;
  for (auto& t : p.flat()) n += t.numel();
  return n;
}

// Rows of per-sample gradients J(x) [n, P_total] for the points x, in the order W_0, b_0, ...
at::Tensor wrn_gradients_chunk(const WRNParams& p, const Activation& act, const WRNLayout& L, const at::Tensor& x,
                         double* flops) {
  const int64_t n = x.size(0);
  std::vector<at::Tensor> D;
  WRNForward fw;
  {
    at::AutoGradMode grad_on(true);
    WRNParams pd;
    for (size_t i = 0; i < p.W.size(); ++i) {
      pd.W.push_back(p.W[i].detach());
      pd.b.push_back(p.b[i].detach());
    }
    fw = wrn_forward_layers(pd, x.detach().requires_grad_(true), act);  // the graph hangs on x
    D = torch::autograd::grad({fw.f.sum()}, fw.a);  // D[i] = df/da_i per point  [n, C_i, H_i, W_i]
  }
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < L.convs.size(); ++i) {
    const WRNConv& c = L.convs[i];
    const int64_t Ho = D[i].size(2), Wo = D[i].size(3), P = Ho * Wo, K = c.fan_in(), s2 = c.size * c.size;
    at::Tensor Di = D[i].reshape({n, c.out, P});  // [n, C, P]
    // G_i = D_i U_i^T, one kernel offset (u, v) at a time: the patch entries of offset (u, v) are
    // the padded input sliced with the stride, so U_i is never built (ATen's im2col in float64
    // was 7x slower than these slices and products, measured at 16 channels on 28x28).
    at::Tensor zp = c.padding > 0 ? at::constant_pad_nd(fw.z[i].detach(), {c.padding, c.padding, c.padding, c.padding})
                                  : fw.z[i].detach();  // [n, C_in, H + 2 pad, W + 2 pad]
    at::Tensor G = at::empty({n, s2, c.out, c.in}, x.options());
    for (int64_t u = 0; u < c.size; ++u)
      for (int64_t v = 0; v < c.size; ++v) {
        at::Tensor zs = zp.slice(2, u, u + c.stride * (Ho - 1) + 1, c.stride)
                            .slice(3, v, v + c.stride * (Wo - 1) + 1, c.stride)
                            .reshape({n, c.in, P});                               // [n, C_in, P]
        G.select(1, u * c.size + v).copy_(at::bmm(Di, zs.transpose(1, 2)));      // [n, C, C_in]
      }
    // [n, s^2, C, C_in] -> [n, C, C_in, s^2], the order of W_i [C, C_in, s, s]; divided by sqrt(K).
    rows.push_back(G.permute({0, 2, 3, 1}).reshape({n, c.out * K}).mul_(1.0 / std::sqrt(double(K))));
    rows.push_back(Di.sum(2));  // bias [n, C]
    if (flops) *flops += 2.0 * double(n) * double(c.out) * double(P) * double(K);
  }
  rows.push_back(fw.pooled.detach() * (1.0 / std::sqrt(double(L.head_in))));  // head weights [n, 64k]
  rows.push_back(at::ones({n, 1}, x.options()));                                // head bias
  return at::cat(rows, 1);
}

// The same in chunks of at most kChunk points, bounding the forward pass's memory (at k = 1 on
// 28x28 images about 3 MB per point).
constexpr int64_t kChunk = 32;
at::Tensor wrn_gradients(const WRNParams& p, const Activation& act, const WRNLayout& L, const at::Tensor& x,
                         double* flops) {
  const int64_t n = x.size(0);
  if (n <= kChunk) return wrn_gradients_chunk(p, act, L, x, flops);
  std::vector<at::Tensor> parts;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk)
    parts.push_back(wrn_gradients_chunk(p, act, L, x.narrow(0, i0, std::min(kChunk, n - i0)), flops));
  return at::cat(parts, 0);
}

}  // namespace

at::Tensor wrn_structured(const WRNParams& p, const Activation& act, const at::Tensor& x1, const at::Tensor* x2,
                          const NtkOptions& opt) {
  require(x1.dim() == 4, "the wide ResNet takes images [n, C, H, W]");
  const WRNLayout L = p.layout();
  const bool sym = (x2 == nullptr);
  const at::Tensor& xb = sym ? x1 : *x2;
  const int64_t n1 = x1.size(0), n2 = xb.size(0);
  const double Ptot = double(wrn_num_params(p));
  // Rows of J per block: two blocks within the budget (at least one row).
  const int64_t B = opt.tile > 0 ? opt.tile
                                 : std::max<int64_t>(1, int64_t(opt.memory_budget / (2.0 * 8.0 * Ptot)));
  double flops = 0;
  at::Tensor out = at::empty({n1, n2}, x1.options());
  for (int64_t i0 = 0; i0 < n1; i0 += B) {
    const int64_t ti = std::min(B, n1 - i0);
    at::Tensor Ji = wrn_gradients(p, act, L, x1.narrow(0, i0, ti), &flops);
    const int64_t j_end = sym ? i0 + 1 : n2;
    for (int64_t j0 = 0; j0 < j_end; j0 += B) {
      const int64_t tj = std::min(B, n2 - j0);
      const bool diag = sym && i0 == j0;
      at::Tensor Jj = diag ? Ji : wrn_gradients(p, act, L, xb.narrow(0, j0, tj), &flops);
      at::Tensor t = at::mm(Ji, Jj.t());  // [ti, tj]
      flops += 2.0 * double(ti) * double(tj) * Ptot;
      if (diag) t = (t + t.t()) * 0.5;
      out.narrow(0, i0, ti).narrow(1, j0, tj).copy_(t);
      if (sym && !diag) out.narrow(0, j0, tj).narrow(1, i0, ti).copy_(t.t());
    }
  }
  if (opt.flops) *opt.flops = flops;
  if (opt.plan) {
    std::ostringstream s;
    s << "wrn structured: per-sample gradients in blocks of " << std::min(B, std::max(n1, n2)) << " points"
      << (sym ? ", symmetric (lower blocks)" : "");
    *opt.plan = s.str();
  }
  return out;
}

}  // namespace lf
