// The resumable state of one run, with named fields: everything the dynamics and the
// observables need to continue a run so that it equals the uninterrupted one bit for bit.
// Its bytes (TrainHooks::on_state) are a TrainState (experiment/state.h), format version 3.
// Version 2 was version 1 plus the network's shape under "arch", gradient_evaluations, the lte
// integrator's history (f_prev, dt_prev), the eab2 integrator's (tensors g_prev and eab2:
// crossed_last) and, for the stochastic dynamics, the state of the batch generator (tensor
// "batch_rng", header "walked"). Version 3 is version 2 without w0, which the run's seed makes
// again (protocol section 8; a quarter less to store and carry: study/README.md). Version-1 and
// -2 states still read (their w0 is used); version 1 (fc, full batch) has no history, and
// gradient_evaluations = step + 1, exact for a run in progress.
// Deliberately not: where states are kept (store/), when they are saved (experiment/member.h).
#pragma once
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "experiment/config.h"
#include "experiment/train.h"
#include "experiment/model.h"

namespace lf {

struct RunState {
  // The dynamics (protocol section 4).
  at::Tensor w, v, g;              // [P] weights, velocity, gradient at w (the run's device)
  double t = 0, dt = 0;            // time, current step size
  int64_t step = 0, rejected = 0;  // accepted steps, rejected trial steps
  // Reference points.
  at::Tensor w0;                   // [P] initial weights (not encoded; decode: undefined unless the bytes had it)
  std::vector<double> f, f0;       // [n] training outputs now and at w0
  at::Tensor f0_test;              // [pte] CPU float64 test outputs at w0
  // Observables so far (protocol section 5).
  double t1 = kNaN, t2 = kNaN;
  double wall = 0;                 // wall seconds of the run before this process
  int64_t next_ckpt = 0, last_ckpt = -1;  // checkpoint schedule: the next step due, the last made
  nlohmann::json kernel_init;      // kernel measurements at w0 (experiment/kernels.h)
  std::vector<double> zdot;        // once measured
  std::string trainer;             // "fused" | "reference"
  // Cost and the integrator's history (dynamics/integrator.h).
  int64_t gradient_evaluations = 0;  // backward passes so far (the first gradient at w0 included)
  std::vector<double> f_prev;        // lte: [n] outputs before the last accepted step (empty: none)
  double dt_prev = 0;                // lte, eab2: the last accepted step's length
  at::Tensor g_prev;                 // eab2: [P] the gradient at the previous accepted point (undefined otherwise)
  bool crossed_last = false;         // eab2: the last accepted step carried a point across the kink
  // The stochastic dynamics (protocol sections 4, 8): the batch generator's state (uint8, as
  // at::Generator::get_state gives it) after the last accepted step; undefined in full batch.
  at::Tensor batch_rng;
  int64_t walked = 0;  // the points the last draw walked to find its batch (on cuda: the next walk's first chunk)

  std::string encode(const RunConfig& cfg, const NetLayout& lay) const;
  // Checks that bytes are a state of cfg's run on n training and pte test points; tensors
  // w, v, g (and w0 where the bytes hold it) are put on opts. UsageError otherwise.
  static RunState decode(const std::string& bytes, const RunConfig& cfg, int64_t n, int64_t pte,
                         at::TensorOptions opts);
};

// The network stored in a resumable state (TrainHooks::on_state), any arch, with the activation
// given: CPU float64 weights, a copy. Throws UsageError for bytes that are not such a state.
Net net_from_state(const std::string& state, const Activation& act);

}  // namespace lf
