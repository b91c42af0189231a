// One run under the paper's full-batch dynamics (protocol sections 3-5), as a state machine that
// advances by one trial step at a time, so that an ensemble can step its members in lockstep
// and a single run is an ensemble of one (experiment/train.h). Per trial step:
//   v <- x v - (1 - x) g; w <- w + dt v       (dynamics/momentum.h; tau = 0: w <- w - dt g)
// then one forward on the training set, df = alpha max |f_new - f|, and the step rule: accept,
// reject (restore w, v; dt /= 10), or stop on NaN. An accepted trial's outputs are the next
// step's outputs, and one backward (on the points with a non-zero loss derivative only) gives the
// next g: one forward and one backward per accepted step. Checkpoints follow the log-spaced
// schedule; resumable states (RunState) are offered every few minutes of wall time.
// Deliberately not: the stochastic variant (temperature > 0), CNN/WRN networks; storage.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "common/progress.h"
#include "data/dataset.h"
#include "dynamics/momentum.h"
#include "experiment/loss.h"
#include "experiment/model.h"
#include "experiment/observables.h"
#include "experiment/run_state.h"
#include "experiment/train.h"

namespace lf {

class Member {
 public:
  // Starts the run of a validated, finalized cfg on data (or resumes hooks.resume_state).
  Member(const RunConfig& cfg, const Dataset& data, TrainHooks hooks);
  bool running() const { return status_.empty(); }
  // One trial step, with the stop checks before it and the bookkeeping of an accepted step
  // after it (checkpoint, state, progress). Sets the status when the run ends.
  void advance();
  // The final checkpoint and state, the end-of-run kernel measurements, the result. Once.
  RunResult finish();

 private:
  void checkpoint();                 // a full checkpoint now (weights and test set)
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
  const FCLayout lay_;
  const Clock::time_point start_;
  std::unique_ptr<Model> model_;
  at::Tensor x_train_;
  std::vector<double> y_;
  RunState s_;                    // s_.w, s_.g alias model_->w, model_->g
  std::vector<double> f_new_;
  at::Tensor w_prev_, v_prev_;    // [P] before the current trial step
  Fit cur_;
  std::unique_ptr<TestObserver> observer_;
  RunResult res_;
  std::string status_, message_;
  int64_t step_at_start_ = 0;
  Clock::time_point last_state_, last_poll_;
  Progress progress_;
};

}  // namespace lf
