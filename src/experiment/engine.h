// The tensor work of the dynamics for K members (protocol section 4), one trial step at a time:
// the momentum update of the members' weights, one forward on the training set, the restore of
// rejected trials, one backward. The members' scalar state (t, dt, decisions, checkpoints) lives
// in experiment/member.h; this is everything that touches weights. Two implementations:
//  - SequentialEngine: one Model per member (experiment/model.h: the fused CPU float64 kernels,
//    the plain LibTorch reference, or the CNN), one member after another. Each member gets
//    exactly the numbers of its run alone. Cost: K times one run's. The only engine of CNN
//    ensembles and of the stochastic dynamics (forward_rows, gradient_rows).
//  - BatchedEngine: the members' weights as [K, P] tensors on one device, one batched forward
//    (batched matrix products over [K, n, h]) and one autograd backward for all the members
//    that take the step; the per-member scalars x and dt travel as [K] tensors. Members that
//    left (converged, stopped, diverged) are not computed. The GPU path of full-batch FC
//    ensembles; it refuses batch work (forward_rows, gradient_rows) and other networks.
// Deliberately not: the step rule, stop rules, observables (experiment/member.h).
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "experiment/model.h"

namespace lf {

struct Fit;

class Engine {
 public:
  virtual ~Engine() = default;
  // Member k's weights, velocity and gradient at its weights, as [P] tensors (views that stay
  // valid for the engine's life); prev_w(k): its weights before its last trial step.
  virtual at::Tensor w(int64_t k) = 0;
  virtual at::Tensor v(int64_t k) = 0;
  virtual at::Tensor g(int64_t k) = 0;
  virtual at::Tensor prev_w(int64_t k) = 0;
  // The trial step of members ks with their decay factors x and steps dt (momentum on: v <- x v -
  // (1 - x) g, w <- w + dt v; off: w <- w - dt g), keeping their previous w and v.
  virtual void trial(const std::vector<int64_t>& ks, const std::vector<double>& x, const std::vector<double>& dt,
                     bool momentum) = 0;
  // f[i] <- the training outputs of member ks[i] at its current weights (CPU float64, n each).
  virtual void forward(const std::vector<int64_t>& ks, std::vector<std::vector<double>>& f) = 0;
  // Members ks go back to their weights and velocity before the trial step.
  virtual void restore(const std::vector<int64_t>& ks) = 0;
  // g(ks[i]) <- sum_r fits[i]->c[r] d f(w, x_{fits[i]->rows[r]}) / dw at the weights of the last
  // forward of member ks[i] (every ks[i] was in that forward).
  virtual void gradient(const std::vector<int64_t>& ks, const std::vector<const Fit*>& fits) = 0;
  // The stochastic dynamics (protocol section 4), member by member at its current weights:
  // f[i] <- f(w_k, x_train[rows[i]]); and g(k) <- sum_i c[i] d f(w_k, x_train[rows[i]]) / dw.
  virtual void forward_rows(int64_t k, const std::vector<int64_t>& rows, std::vector<double>& f) = 0;
  virtual void gradient_rows(int64_t k, const std::vector<int64_t>& rows, const std::vector<double>& c) = 0;
  // f of member k on a CPU float64 [N, d] set: [N] CPU float64.
  virtual at::Tensor evaluate(int64_t k, const at::Tensor& x) = 0;
  virtual std::string name() const = 0;  // "fused" | "reference" | "batched"
};

// fused: the CPU float64 FC kernels; else plain LibTorch (models of make_model), on opts' dtype
// and device.
std::unique_ptr<Engine> make_sequential_engine(int64_t K, bool fused, const Activation& act, const NetLayout& lay,
                                               const at::Tensor& x_train, at::TensorOptions opts);
std::unique_ptr<Engine> make_sequential_engine(int64_t K, bool fused, const Activation& act, const FCLayout& lay,
                                               const at::Tensor& x_train, at::TensorOptions opts);
std::unique_ptr<Engine> make_batched_engine(int64_t K, const Activation& act, const FCLayout& lay,
                                            const at::Tensor& x_train, at::TensorOptions opts);

}  // namespace lf
