// One run, or an ensemble of runs trained together: a network trained as alpha (f(w,x) - f(w0,x))
// under the paper's dynamics until every training point is fitted (protocol sections 3-5),
// recording the observables of the figures. The caller (CLI, store, sweep) gets checkpoints as
// they happen, resumable states every few minutes of wall time, and the final RunResult.
// The parts: experiment/member.h (one run's step rule, fit, checkpoints, stops), engine.h (the
// tensor work of all members), run_state.h (the saved state), observables.h, model.h.
// Deliberately not: storage (store/), the choice of runs (sweep/).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "experiment/config.h"
#include "models/fc.h"

namespace lf {

struct Dataset;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One log-spaced checkpoint (protocol section 4), every observable of Figs. 1, 3, 6, 7.
struct Checkpoint {
  int64_t step = 0;          // accepted steps so far
  double t = 0, dt = 0;
  double train_loss = kNaN;  // alpha^2 L
  double train_err = kNaN;   // fraction with F y <= 0
  double test_err = kNaN;
  int64_t unsatisfied = 0;   // training points with alpha F y < 1
  double weight_change = kNaN;  // ||w - w0|| / ||w0||, all parameters
  double w0_norm = kNaN;        // ||w0||
  std::vector<double> layer_change;  // per layer l = 0..L: ||theta_l - theta_l(0)|| / ||theta_l(0)||,
                                     // theta_l = (W_l, b_l) (protocol section 5)
  double output_norm = kNaN;    // rms over the test set of f - f0 (unscaled by alpha)
  double f_norm = kNaN;         // rms over the test set of f
  double wall_s = 0;
  nlohmann::json to_json() const;
};

struct RunResult {
  std::string status;        // "converged" | "stopped" | "diverged"
  std::string message;       // why it stopped / diverged
  int64_t steps = 0, rejected = 0;
  // Backward passes (gradients of the loss at a point of the trajectory), the first one at w0
  // included; a rejected trial costs a forward and no backward under both --integrator rules.
  int64_t gradient_evaluations = 0;
  double t = 0;
  double t1 = kNaN;          // first t with alpha^2 L < 0.5
  double t2 = kNaN;          // t at zero loss (converged runs)
  double train_loss = kNaN, train_err = kNaN, test_err = kNaN;
  double weight_change = kNaN, output_norm = kNaN, f_norm = kNaN;
  double kernel_change = kNaN;   // when measured (--delta-kernel)
  double wall_s = 0, steps_per_s = 0;
  std::vector<Checkpoint> checkpoints;  // those emitted by this process (after a resume: the new ones)
  at::Tensor test_f_delta;   // [pte] f - f0 on the test set at the end (float64, CPU)
  at::Tensor test_f0;        // [pte] f0 on the test set
  std::vector<double> zdot;  // per-layer |dz/dt| at t = 0 (with --zdot): preactivations 1..L, then f,
                             // over the first step that moves the outputs by more than df_min
  int64_t unsatisfied = 0;   // training points with alpha F y < 1 at the end
  std::string trainer;       // "fused" (CPU float64 FC or CNN kernels) or "reference" (plain LibTorch ops)
  nlohmann::json kernel;     // kernel statistics and frozen-kernel runs (experiment/kernels.h), or null

  // The summary of `lazyfeat train --json` (cli-contract.md): status, steps, t, t1, t2,
  // train_loss, train_err, test_err, weight_change, output_norm, kernel_change, wall_s,
  // steps_per_s, ... (NaN as null).
  nlohmann::json summary() const;
};

struct TrainHooks {
  std::function<void(const Checkpoint&)> on_checkpoint;     // each checkpoint, in order
  std::function<void(const std::string&)> on_state;         // a resumable state (opaque bytes)
  double state_every_s = 300;                               // wall seconds between states
  std::string resume_state;                                 // non-empty: continue from this state
  std::function<bool()> should_stop;                        // polled; true ends the run as "stopped"
  bool progress = true;                                     // progress on stderr
  bool reference = false;  // use the plain LibTorch trainer even where the fused one applies
  // The stochastic dynamics: each batch drawn, with the step dt it was drawn for, its size b from
  // the temperature rule (protocol section 4) and the points it holds (b, or fewer when fewer are
  // unsatisfied).
  std::function<void(double dt, int64_t b, int64_t points)> on_batch;
};

// Trains the run of a finalized config on its dataset: an ensemble of one. Never throws for a
// diverging run (status "diverged"); throws UsageError for an unusable config (e.g. an arch
// not built yet).
RunResult train_run(const RunConfig& cfg, const Dataset& data, const TrainHooks& hooks = {});

// An ensemble: K runs that share everything but seed_init and alpha (lockstep_key), trained in
// lockstep, one trial step of every live member a round. Each member keeps its own t, dt,
// velocity, accept/reject decisions, checkpoints, states and stop; a member that converges,
// stops or diverges leaves the ensemble at once (its hooks see the same calls as a run alone).
// On the CPU the members step through the fused float64 kernels one after another (the
// sequential engine), which gives each member exactly the numbers of its run alone; on cuda
// through one batched forward and backward (the batched engines). Results in the order of cfgs.
// Engines (experiment/engine.h): Auto is Batched on cuda for full-batch fc ensembles (the
// batched FC engine) and for cnn ensembles of 2 or more under either dynamics (the grouped CNN engine),
// Sequential elsewhere (the wrn, fc under the stochastic dynamics, the CPU); Batched for the wrn
// or stochastic fc members is a UsageError.
enum class EngineKind { Auto, Sequential, Batched };
std::vector<RunResult> train_ensemble(const std::vector<RunConfig>& cfgs, const Dataset& data,
                                      const std::vector<TrainHooks>& hooks, EngineKind kind = EngineKind::Auto);
// The part of a config that ensemble members share: its canonical JSON without seed_init,
// alpha and what only budgets or locates a run. UsageError from validate_ensemble otherwise.
std::string lockstep_key(const RunConfig& cfg);
void validate_ensemble(const std::vector<RunConfig>& cfgs);

// The checks train_run makes on the config alone (arch, options an arch does not support,
// non-finite numbers, device): UsageError naming the problem. Cheap; call it before loading data.
void validate_train_config(const RunConfig& cfg);

// The weights stored in a resumable state (TrainHooks::on_state) of an fc run, as CPU float64
// FCParams (any arch: net_from_state, experiment/run_state.h). Throws UsageError for bytes that
// are not such a state.
FCParams fc_params_from_state(const std::string& state);

}  // namespace lf
