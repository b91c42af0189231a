// The Jacobian method of the empirical NTK (ntk.h): rows of per-sample gradients through
// autograd; Theta = J1 J2^T. Works for any differentiable model; it is the reference the
// structured method is tested against and the fallback for other architectures.
// Rows: one backward pass per point, or, where the model has a per-sample forward (FC), B rows
// per backward pass: the gradients with respect to the parameters expanded to [B, ...] views
// (what torch.func's vmap of a per-sample gradient computes).
// Cost: n1 + n2 rows (n1 for a symmetric Gram whose J fits the memory budget; recomputed per
// block when J does not fit), 2 n1 n2 P flops for the products (3/4 of 2 n1^2 P for a symmetric
// Gram whose J fits: its lower tiles), blocks of J of at most
// memory_budget / 2 bytes, and the rows of one pass (B P doubles) on top.
// Deliberately not: per-architecture formulas (that is the structured method).
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

#include "ntk/ntk.h"

namespace lf {

at::Tensor jacobian(const ForwardFn& f, const std::vector<at::Tensor>& params, const at::Tensor& x,
                    const ForwardFn& per_sample, int64_t rows_per_pass) {
  std::vector<at::Tensor> ps;
  int64_t P = 0;
  for (auto& p : params) {
    ps.push_back(p.detach().clone().requires_grad_(true));
    P += p.numel();
  }
  const int64_t n = x.size(0);
  const int64_t B = per_sample ? (rows_per_pass > 0 ? std::min(rows_per_pass, n) : n) : 1;
  at::Tensor J = at::empty({n, P}, params[0].options());
  for (int64_t i0 = 0; i0 < n; i0 += B) {
    const int64_t b = std::min(B, n - i0);
    std::vector<at::Tensor> inputs;  // what the rows are gradients with respect to
    at::Tensor out;
    if (per_sample) {
      for (auto& p : ps) {
        std::vector<int64_t> sizes = {b};
        sizes.insert(sizes.end(), p.sizes().begin(), p.sizes().end());
        inputs.push_back(p.unsqueeze(0).expand(sizes));  // [b, ...], no copy
      }
      out = per_sample(inputs, x.narrow(0, i0, b)).sum();
    } else {
      inputs = ps;
      out = f(ps, x.narrow(0, i0, 1)).sum();
    }
    auto grads = torch::autograd::grad({out}, inputs, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    std::vector<at::Tensor> rows;  // [b, numel] each, the block in one copy
    for (size_t k = 0; k < ps.size(); ++k)
      rows.push_back(grads[k].defined() ? grads[k].reshape({b, -1}) : at::zeros({b, ps[k].numel()}, ps[k].options()));
    at::Tensor Jb = J.narrow(0, i0, b);
    at::cat_out(Jb, rows, 1);
  }
  return J;
}

at::Tensor ntk_jacobian(const ForwardFn& f, const std::vector<at::Tensor>& params, const at::Tensor& x1,
                        const at::Tensor& x2, const NtkOptions& opt, const ForwardFn& per_sample) {
  int64_t P = 0;
  for (auto& p : params) P += p.numel();
  const bool sym = !x2.defined();
  const at::Tensor& xb = sym ? x1 : x2;
  const int64_t n1 = x1.size(0), n2 = xb.size(0);
  double flops = 0;
  // Rows per backward pass (per-sample forward): a quarter of the budget.
  const int64_t R = std::max<int64_t>(1, int64_t(opt.memory_budget / (4.0 * 8.0 * double(P))));
  auto rows = [&](const at::Tensor& x) { return jacobian(f, params, x, per_sample, R); };
  // A symmetric Gram whose whole J fits the budget: J once, and J J^T from its lower tiles of
  // `tile` rows (default half of the points): T tiles cost (T + 1) / 2T of the whole product's
  // 2 n1^2 P flops (3/4 for two), the upper tiles being the lower ones transposed. Measured on
  // the H200 (2,000 points, P = 4.0 M, docs/benchmarks.md "ntk"): two tiles 0.76 s, one product
  // 0.99 s, four tiles 0.88 s (products of 500 rows run at a lower rate).
  if (sym && 8.0 * double(n1) * double(P) <= opt.memory_budget) {
    at::Tensor J = rows(x1);  // [n1, P]
    const int64_t tb = opt.tile > 0 ? std::min(opt.tile, n1) : (n1 + 1) / 2;
    at::Tensor out = at::empty({n1, n1}, J.options());
    double product_flops = 0;
    for (int64_t i0 = 0; i0 < n1; i0 += tb) {
      const int64_t ti = std::min(tb, n1 - i0);
      const at::Tensor Ji = J.narrow(0, i0, ti);
      for (int64_t j0 = 0; j0 <= i0; j0 += tb) {
        const int64_t tj = std::min(tb, n1 - j0);
        const at::Tensor blk = at::mm(Ji, J.narrow(0, j0, tj).t());  // [ti, tj]
        out.narrow(0, i0, ti).narrow(1, j0, tj).copy_(blk);
        if (j0 != i0) out.narrow(0, j0, tj).narrow(1, i0, ti).copy_(blk.t());
        product_flops += 2.0 * double(ti) * double(tj) * double(P);
      }
    }
    out = (out + out.t()) * 0.5;  // the diagonal tiles exactly symmetric
    if (opt.flops) *opt.flops = 6.0 * double(n1) * double(P) + product_flops;
    if (opt.plan)
      *opt.plan = "jacobian: J of " + std::to_string(n1) + " rows once, lower tiles of " + std::to_string(tb) +
                  " rows, " + (per_sample ? std::to_string(std::min(R, n1)) + " rows a backward pass" : "a backward pass a row");
    return out;
  }
  // Rows of J per block: two blocks within the budget.
  const int64_t B = std::max<int64_t>(1, int64_t(opt.memory_budget / (2.0 * 8.0 * double(P))));
  at::Tensor out = at::empty({n1, n2}, params[0].options());
  for (int64_t i0 = 0; i0 < n1; i0 += B) {
    const int64_t ti = std::min(B, n1 - i0);
    at::Tensor Ji = rows(x1.narrow(0, i0, ti));
    flops += 6.0 * double(ti) * double(P);  // forward + backward, about three passes of 2P flops
    for (int64_t j0 = 0; j0 < n2; j0 += B) {
      const int64_t tj = std::min(B, n2 - j0);
      at::Tensor Jj = (sym && i0 == j0) ? Ji : rows(xb.narrow(0, j0, tj));
      if (!(sym && i0 == j0)) flops += 6.0 * double(tj) * double(P);
      out.narrow(0, i0, ti).narrow(1, j0, tj).copy_(at::mm(Ji, Jj.t()));
      flops += 2.0 * double(ti) * double(tj) * double(P);
    }
  }
  if (sym) out = (out + out.t()) * 0.5;
  if (opt.flops) *opt.flops = flops;
  if (opt.plan)
    *opt.plan = "jacobian: blocks of " + std::to_string(std::min(B, std::max(n1, n2))) + " rows, " +
                (per_sample ? std::to_string(std::min(R, B)) + " rows a backward pass" : "a backward pass a row");
  return out;
}

}  // namespace lf
