// One run under the paper's dynamics (protocol sections 3-5), full batch or stochastic, as a state machine of
// scalars: t, dt, the step rule's decisions, the fit of the training outputs, the checkpoint
// schedule, the stop rules. Its weights live in an Engine (experiment/engine.h) at index k,
// which does the tensor work of a whole ensemble at once; a single run is an ensemble of one.
// One trial step of the ensemble (experiment/train.cpp, run_members):
//   proceed()            stop checks; whether the member takes a trial step now
//   engine.trial         v <- x v - (1 - x) g; w <- w + dt v   (x = decay(), dt = dt())
//   engine.forward       the trial's training outputs f_new, df = alpha max |f_new - f|, their fit
//   judge(trial)         accept, reject (engine.restore; dt /= 10), or stop on NaN
//   accept()             t += dt, the fit of f_new (engine.accept: f <- f_new), t1; zdot over the
//                        first step with df > df_min
//   engine.gradient      g at the new weights (points with a non-zero loss derivative only)
//   after_step()         checkpoint on the log-spaced schedule, resumable state, progress
// One forward and one backward per accepted step. judge() applies the --integrator's step rule
// (dynamics/integrator.h): the paper's, lte (which keeps the outputs of the previous step) or
// eab2, whose trial is engine.trial_exp with exp_step()'s coefficients (the previous gradient
// kept by the engine) and whose after_gradient() follows engine.gradient.
// The stochastic variant (temperature T > 0, protocol section 4), one trial step:
//   proceed()            the budgets and a request (no full-set check)
//   begin_batch()        b from dt and T; a fresh randperm(n) of the batch generator, walked in
//   walk_chunk()         chunks (b_max points each on the CPU, growing on cuda) whose outputs at
//   walk_outputs()       the current weights (engine.forward_batches, the members' chunks together)
//                        keep the unsatisfied points until b are found
//   end_batch()          the batch, or none at all: converged (the whole training set was walked,
//                        so the check is exact, and walks all n points only when fewer than b are
//                        unsatisfied)
//   engine.gradient_batches g on the batch: sum over it of l'(m) y / (alpha b) df/dw (b, not its size)
//   engine.trial, engine.forward_batches on the batch, judge_batch (df on the batch), accept or restore
// A rejected trial draws a new batch at the next one. Checkpoints measure the training fit and
// the test set on their first min(n, 10 b_max) and min(pte, 10 b_max) points (the published
// code's diagnostic size), the last checkpoint on all of them; t1 is resolved at checkpoints.
// Deliberately not: WRN networks; storage.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "common/progress.h"
#include "data/dataset.h"
#include "dynamics/momentum.h"
#include "experiment/engine.h"
#include "dynamics/loss.h"
#include "experiment/observables.h"
#include "experiment/run_state.h"
#include "experiment/train.h"

namespace lf {

class Member {
 public:
  // The run of a validated, finalized cfg on data as member k of engine: its initial weights (or
  // those of hooks.resume_state). Then, for a new run (needs_outputs), the ensemble's first
  // forward gives init_outputs its f0 and the engine its first gradient (needs_gradient); then
  // start(): the test outputs at w0, the kernels at init, the step-0 checkpoint. All members
  // start from one forward, so that the batched engine computes f0 as it computes every step.
  Member(const RunConfig& cfg, const Dataset& data, TrainHooks hooks, Engine& engine, int64_t k);
  bool needs_outputs() const { return fresh_; }
  void init_outputs(const Fit& fit0);  // the fit of f0 (engine.start)
  // kernel_init: the kernels at init when the ensemble measured them for all its new members at
  // once (measure_kernels_at_init of several runs); null: measured here if the run asks for them.
  void start(const nlohmann::json* kernel_init = nullptr);
  Net net0() const;  // the initial weights as a Net (ntk/ntk.h)
  bool running() const { return status_.empty(); }
  bool proceed();                  // stop checks; true: take a trial step now
  double decay() const;            // x of this trial step
  double dt() const { return s_.dt; }
  bool momentum() const { return Momentum{cfg_.tau}.enabled(); }
  // --integrator eab2 (dynamics/integrator.h): the trial is engine.trial_exp with exp_step()'s
  // coefficients, and after the gradient at an accepted point after_gradient() caps the next dt
  // by the step's smooth error estimate.
  bool exponential() const { return cfg_.integrator == "eab2"; }
  ExpStep exp_step() const;
  void after_gradient();
  // The trial's verdict; after Reject or Diverge the engine restores the member's weights.
  StepControl::Verdict judge(const Trial& trial);
  void accept();  // after engine.accept; may end the run (non-finite loss)
  bool needs_gradient() const { return running() && !stochastic_ && cur_.unsatisfied > 0; }
  // The stochastic variant (see above).
  bool stochastic() const { return stochastic_; }
  void begin_batch();
  const std::vector<int64_t>* walk_chunk();         // the walk's next chunk to forward; null: it is over
  void walk_outputs(const std::vector<double>& f);  // that chunk's outputs at the current weights
  bool end_batch();  // false: no unsatisfied point is left, the run has converged
  const std::vector<int64_t>& batch() const { return batch_; }
  const std::vector<double>& batch_coefficients() const { return batch_c_; }
  // The trial's verdict from the batch's outputs after it (df on the batch); then accept().
  StepControl::Verdict judge_batch(const std::vector<double>& f_new);
  // The trial steps on the device (Engine::rounds), for the paper's full-batch rule without zdot:
  // this member's scalars (park_at: its next checkpoint or step budget), and back from the
  // rounds (absorb: t, dt, steps, the fit, t1; a stop ends the run as Member's own rules would).
  bool rounds_eligible() const;
  RuleParams rule_params() const;  // the same for every member of an ensemble (lockstep_key)
  RuleState rule_state() const;
  void absorb(const RuleState& r);
  // A checkpoint is due after this step (engine.observe gives what it measures of the weights).
  bool checkpoint_due() const { return running() && s_.step >= s_.next_ckpt; }
  // What a stochastic member's intermediate checkpoints measure (the same for every member of an
  // ensemble): its first min(pte, 10 b_max) test points and training rows 0 ... min(n, 10 b_max)
  // (all: every row).
  at::Tensor diagnostic_test() const;
  std::vector<int64_t> diagnostic_rows(bool all = false) const;
  // After a step: the checkpoint when due, from this member's engine.observe (norms and test
  // outputs; observed alone when null) and, stochastic, its outputs on diagnostic_rows() (made
  // here when null), the resumable state, progress.
  void after_step(const ChangeNorms* norms = nullptr, const at::Tensor* f_test = nullptr,
                  const std::vector<double>* f_train = nullptr);
  // The final checkpoint and state, the end-of-run kernel measurements, the result. Once.
  RunResult finish();

 private:
  StepControl::Verdict judge_lte(const Trial& trial);   // --integrator lte
  StepControl::Verdict judge_eab2(const Trial& trial);  // --integrator eab2
  StepControl::Verdict settle(StepControl::Verdict v, double next_dt);  // s_.dt, rejections, divergence
  bool slope() const { return s_.dt_prev > 0 && !s_.crossed_last; }  // eab2: the step uses g1
  StepControl::Verdict verdict(double df);  // the paper's rule on df (already times alpha)
  // A checkpoint now (weights and test set; see above), from engine.observe's numbers of this
  // member (final: a stochastic run's last, on every point).
  void checkpoint(const ChangeNorms& norms, const at::Tensor& f_test, bool final = false,
                  const std::vector<double>* f_train = nullptr);
  void checkpoint(bool final = false);  // the same, observing this member alone
  // stochastic: cur_ from the outputs on the diagnostic points or all (f_train: given)
  void measure_train(bool all, const std::vector<double>* f_train = nullptr);
  double step_cap() const;           // max_dt of the step rule
  Checkpoint train_side() const;     // what a checkpoint knows without touching the weights
  void end(const char* status, const std::string& message);
  double wall() const;               // wall seconds of the run, earlier processes included
  std::string state_bytes() const;   // the resumable state now
  std::string progress_fields() const;

  using Clock = std::chrono::steady_clock;
  const RunConfig cfg_;
  const Dataset& data_;
  const TrainHooks hooks_;
  const Activation act_;
  const Loss loss_;
  const NetLayout lay_;
  const bool stochastic_;
  const bool growing_walk_;       // the batch walk's chunks grow (on cuda)
  const Clock::time_point start_;
  Engine& engine_;
  const int64_t k_;
  at::Tensor x_train_, x_test_;
  RunState s_;                    // s_.w, s_.v, s_.g are the engine's views of member k; s_.f, s_.f0
                                  // live in the engine (filled for a saved state only; a
                                  // stochastic member keeps them: its batches need f0)
  double df_ = 0, dt_trial_ = 0;  // of the trial being judged
  bool crossed_ = false;          // eab2: the trial carried a point across the kink
  double fmax_ = 0;               // eab2: alpha max |f_new - f0| of the trial
  double h_used_ = 0;             // eab2: the h_prev of the accepted step's slope (0: none)
  Fit cur_, trial_fit_;
  const double* f_before_ = nullptr;  // lte: the outputs before the trial being judged (engine's)
  std::vector<double> y_;             // the training labels (lte, the stochastic dynamics)
  std::unique_ptr<TestObserver> observer_;
  RunResult res_;
  std::string status_, message_;
  int64_t step_at_start_ = 0;
  bool fresh_ = false;            // a new run, until start()
  Clock::time_point last_state_, last_poll_;
  // The stochastic variant: the batch generator (seeded with seed_batch, protocol section 8), the
  // batch of the trial step (training rows), its outputs at the current weights and dL/df there.
  at::Generator gen_;
  struct Walk {  // the batch draw under way (begin_batch ... end_batch)
    int64_t b = 0;          // the batch size sought
    at::Tensor perm;        // [n] the draw's permutation
    int64_t s = 0, c = 0, cap = 0;  // the next chunk's start and length, the largest chunk
    std::vector<int64_t> chunk;     // the chunk being forwarded
  } walk_;
  std::vector<int64_t> batch_;
  std::vector<double> batch_f_, batch_c_;
  bool last_ckpt_full_ = false;
  int64_t measured_ = 0;  // the training points cur_ was measured on (stochastic: diagnostic or all)
  Progress progress_;
};

}  // namespace lf
