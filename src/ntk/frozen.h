// Frozen-kernel (linearised) training (protocol section 4 "Frozen-kernel"): the network replaced
// by its first-order expansion at w1, trained in function space on the training outputs
// u = f - f(w1) (u starts at 0) with the NTK Theta of w1:
//   l'_mu = (dl/dm)(m_mu) y_mu / alpha,  m_mu = alpha u_mu y_mu  (the loss of dynamics/loss.h;
//           the hinge's l'_mu = -y_mu [m_mu <= 1] / alpha, nonzero also at m = 1),
//   B = the points with l'_mu != 0 (hinge, qhinge: the unsatisfied points; softhinge: nearly all),
//   g = Theta[:, B] l'_B / |B|,   the momentum rule of dynamics/momentum.h on (u, v),
//   u <- u + dt v,   df = alpha dt max|v|,   the same accept/reject/grow and stop rules; or,
//   with lte or eab2, the step rules of dynamics/integrator.h on u (the network's, with f0 = 0).
// Test predictions: Theta_train,train c = u_train (least squares), u_test = Theta_test,train c.
// The run stops when no point is unsatisfied (m < 1 for all), whatever the loss, as the network
// trainer does.
// Deliberately not: computing Theta (ntk/ntk.h).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "dynamics/loss.h"
#include "dynamics/integrator.h"
#include "dynamics/momentum.h"

namespace lf {

struct FrozenOptions {
  double alpha = 1.0;
  Loss loss;               // hinge by default
  Momentum momentum;       // tau convention of momentum.h
  StepControl control;     // dt0, df bounds, max_dt
  bool lte = false;        // --integrator lte: lte_control judges the trials (dt starts at control.dt)
  LteControl lte_control;
  bool eab2 = false;       // --integrator eab2: exponential steps (exp_step) judged by eab2_control
  Eab2Control eab2_control;
  int64_t max_steps = 0;   // 0 = none
  double max_wall = 0.0;   // seconds, 0 = none
};

struct FrozenResult {
  std::string status;          // "converged" | "stopped" | "diverged"
  std::string message;         // why it ended (the network trainer's words for the same cases)
  int64_t steps = 0, rejected = 0;
  // Function-space gradients g = Theta[:, B] l'_B / |B| the dynamics used: one at u = 0 and one at
  // the end of each accepted step that does not end the run (the code recomputes g only when B
  // changes; this counts what a network trainer computes: one backward each).
  int64_t gradient_evaluations = 0;
  double t = 0, t2 = 0;        // t2: t at zero loss (NaN unless converged)
  double train_err = 0;        // fraction with alpha u y <= 0
  double test_err = 0;         // NaN without test points
  at::Tensor u_train;          // [n]
  at::Tensor c;                // [n]: Theta_train,train c = u_train (least squares)
  double wall_s = 0;
  nlohmann::json to_json() const;  // status, message, steps, rejected, gradient_evaluations, t, t2, ...
};

// Runs the dynamics on K_train [n, n] (any device: its products run there) with labels y_train [n]
// (+-1). u_train and c come back on the CPU, float64.
FrozenResult frozen_kernel_train(const at::Tensor& K_train, const at::Tensor& y_train, const FrozenOptions& opt);

// u_test = Theta_test,train c, and the test error of sign(u_test) against y_test.
double frozen_test_error(const at::Tensor& u_test, const at::Tensor& y_test);

}  // namespace lf
