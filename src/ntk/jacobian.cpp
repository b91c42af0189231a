// The Jacobian method of the empirical NTK (ntk.h): one autograd backward pass per point gives a
// row of per-sample gradients; Theta = J1 J2^T. Works for any differentiable model; it is the
// reference the structured method is tested against and the fallback for other architectures.
// Cost: n1 + n2 forward/backward passes (n1 for a symmetric Gram whose J fits the memory budget;
// recomputed per block when J does not fit), 2 n1 n2 P flops for the products, blocks of J of at
// most memory_budget / 2 bytes.
// Deliberately not fast: the published implementation worked this way (protocol section 7).
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

#include "ntk/ntk.h"

namespace lf {

at::Tensor jacobian(const ForwardFn& f, const std::vector<at::Tensor>& params, const at::Tensor& x) {
  std::vector<at::Tensor> ps;
  int64_t P = 0;
  for (auto& p : params) {
    ps.push_back(p.detach().clone().requires_grad_(true));
    P += p.numel();
  }
  const int64_t n = x.size(0);
  at::Tensor J = at::empty({n, P}, params[0].options());
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor out = f(ps, x.narrow(0, i, 1)).sum();
    auto grads = torch::autograd::grad({out}, ps, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    std::vector<at::Tensor> row;  // the row in one copy (one kernel, not one a parameter)
    for (size_t k = 0; k < ps.size(); ++k)
      row.push_back(grads[k].defined() ? grads[k].reshape(-1) : at::zeros({ps[k].numel()}, ps[k].options()));
    at::Tensor Ji = J[i];
    at::cat_out(Ji, row);
  }
  return J;
}

at::Tensor ntk_jacobian(const ForwardFn& f, const std::vector<at::Tensor>& params, const at::Tensor& x1,
                        const at::Tensor& x2, const NtkOptions& opt) {
  int64_t P = 0;
  for (auto& p : params) P += p.numel();
  const bool sym = !x2.defined();
  const at::Tensor& xb = sym ? x1 : x2;
  const int64_t n1 = x1.size(0), n2 = xb.size(0);
  double flops = 0;
  // A symmetric Gram whose whole J fits the budget: J once, J J^T as one product.
  if (sym && 8.0 * double(n1) * double(P) <= opt.memory_budget) {
    at::Tensor J = jacobian(f, params, x1);
    at::Tensor out = at::mm(J, J.t());
    out = (out + out.t()) * 0.5;
    if (opt.flops) *opt.flops = 6.0 * double(n1) * double(P) + 2.0 * double(n1) * double(n1) * double(P);
    if (opt.plan) *opt.plan = "jacobian: J of " + std::to_string(n1) + " rows once";
    return out;
  }
  // Rows of J per block: two blocks within the budget.
  const int64_t B = std::max<int64_t>(1, int64_t(opt.memory_budget / (2.0 * 8.0 * double(P))));
  at::Tensor out = at::empty({n1, n2}, params[0].options());
  for (int64_t i0 = 0; i0 < n1; i0 += B) {
    const int64_t ti = std::min(B, n1 - i0);
    at::Tensor Ji = jacobian(f, params, x1.narrow(0, i0, ti));
    flops += 6.0 * double(ti) * double(P);  // forward + backward, about three passes of 2P flops
    for (int64_t j0 = 0; j0 < n2; j0 += B) {
      const int64_t tj = std::min(B, n2 - j0);
      at::Tensor Jj = (sym && i0 == j0) ? Ji : jacobian(f, params, xb.narrow(0, j0, tj));
      if (!(sym && i0 == j0)) flops += 6.0 * double(tj) * double(P);
      out.narrow(0, i0, ti).narrow(1, j0, tj).copy_(at::mm(Ji, Jj.t()));
      flops += 2.0 * double(ti) * double(tj) * double(P);
    }
  }
  if (sym) out = (out + out.t()) * 0.5;
  if (opt.flops) *opt.flops = flops;
  if (opt.plan) *opt.plan = "jacobian: blocks of " + std::to_string(std::min(B, std::max(n1, n2))) + " rows";
  return out;
}

}  // namespace lf
