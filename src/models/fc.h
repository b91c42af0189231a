// Fully connected network in the NTK parametrisation (protocol section 2):
//   z_1     = phi( W_0 x / sqrt(d) + b_0 )            W_0: [h, d]
//   z_{l+1} = phi( W_l z_l / sqrt(h) + b_l )          W_l: [h, h], l = 1 .. L-1
//   f(w,x)  = W_L z_L / sqrt(h) + b_L                 W_L: [1, h], a scalar per point
// Weights N(0,1), biases 0 (trained); the 1/sqrt(fan_in) stays in the forward pass.
// This header: the parameters, their seed-compatible initialisation (protocol section 8) and the
// plain autograd reference forward. The fused training kernels are declared in models/fc_fused.h.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "models/activation.h"
#include "models/params.h"

namespace lf {

// L+1 matrices W[l]: [fan_out, fan_in] and vectors b[l]: [fan_out].
struct FCParams : LayeredParams<FCParams> {
  int64_t L() const { return int64_t(W.size()) - 1; }
  int64_t h() const { return W[0].size(0); }
  int64_t d() const { return W[0].size(1); }
};

// Protocol section 8: manual_seed(seed); randn(h, d) for W_0, randn(h, h) for W_1..W_{L-1},
// randn(1, h) for W_L, float64 on the CPU generator; biases zero. Then cast/move to opts.
FCParams fc_init(int64_t d, int64_t h, int64_t L, uint64_t seed,
                 at::TensorOptions opts = at::TensorOptions().dtype(at::kDouble));

// Reference forward, differentiable by autograd: x [n, d] -> f [n].
at::Tensor fc_forward_reference(const FCParams& p, const at::Tensor& x, const Activation& act);
// The same with weights of each point's own: W[l] [n, h, fan_in], b[l] [n, h] (e.g. expanded
// views of one network's, whose gradients are then the per-sample gradients), x [n, d] -> f [n].
at::Tensor fc_forward_per_sample(const FCParams& p, const at::Tensor& x, const Activation& act);

}  // namespace lf
