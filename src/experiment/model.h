// A network as the dynamics see it (protocol sections 2-4): parameters w and gradient g as flat
// vectors [P], the training outputs of the last forward, the gradient of a weighted sum of them,
// and the outputs on any CPU float64 set. Two implementations behind one name, same numbers:
//  - FusedModel: CPU float64 FC kernels (models/fc_fused.h); forward ~ 2 n P flops, the backward
//    runs on the points with a non-zero loss derivative only (~ 4 |rows| P flops).
//  - ReferenceModel: plain LibTorch autograd through fc_forward_reference, any dtype and device;
//    the backward always runs over the whole training set.
// Deliberately not: the dynamics (experiment/member.h), the loss (dynamics/loss.h).
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <vector>

#include "models/activation.h"
#include "models/fc_fused.h"

namespace lf {

class Model {
 public:
  virtual ~Model() = default;
  // f (n doubles) <- f(w, x_train); remembers what gradient() needs.
  virtual void forward_train(double* f) = 0;
  // g <- sum_k c[k] d f(w, x_rows[k]) / dw at the w of the last forward_train().
  virtual void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) = 0;
  // f(w, x) on a CPU float64 [N, d] set: [N] CPU float64.
  virtual at::Tensor evaluate(const at::Tensor& x) = 0;
  // True when w, v, g are contiguous CPU float64 (the dynamics then run on raw arrays).
  virtual bool raw() const = 0;
  at::Tensor w, g;  // [P]
};

// fused: the CPU float64 kernels (opts must then be CPU float64); otherwise the reference.
std::unique_ptr<Model> make_model(bool fused, const Activation& act, const FCLayout& lay, const at::Tensor& x_train,
                                  at::TensorOptions opts);

}  // namespace lf
