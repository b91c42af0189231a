#include "experiment/member.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>

#include "dynamics/integrator.h"
#include "experiment/from_config.h"
#include "experiment/kernels.h"
#include "models/fc.h"

namespace lf {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Member::Member(const RunConfig& cfg, const Dataset& data, TrainHooks hooks, Engine& engine, int64_t k)
    : cfg_(cfg), data_(data), hooks_(std::move(hooks)), act_(activation_of(cfg)),
      lay_(data.x_train.size(1), cfg.h, cfg.L), start_(Clock::now()), engine_(engine), k_(k),
      progress_("train", hooks_.progress) {
  x_train_ = data.x_train.to(at::kDouble).contiguous();
  x_test_ = data.x_test.to(at::kDouble).contiguous();
  if (cfg.integrator == "lte") y_ = to_vector(data.y_train);
  const int64_t n = x_train_.size(0), pte = x_test_.size(0);
  const at::Tensor w = engine.w(k), v = engine.v(k), g = engine.g(k);
  res_.trainer = engine.name();
  c10::NoGradGuard ng;
  if (!hooks_.resume_state.empty()) {
    s_ = RunState::decode(hooks_.resume_state, cfg, n, pte, w.options());
    w.copy_(s_.w);  // into the engine's own buffers
    v.copy_(s_.v);
    g.copy_(s_.g);
    engine.w0(k).copy_(s_.w0);
    cur_ = engine.set_outputs(k, s_.f, s_.f0);
    s_.f.clear(), s_.f0.clear();  // the engine keeps them
  } else {  // f0 and the first gradient come from the ensemble's first forward (init_outputs)
    w.copy_(lay_.flatten(fc_init(lay_.d, cfg.h, cfg.L, cfg.weights_seed())));  // protocol section 8
    v.zero_();
    engine.w0(k).copy_(w);
    s_.dt = cfg.dt0;
    fresh_ = true;
  }
  s_.w = w;
  s_.v = v;
  s_.g = g;
  s_.w0 = engine.w0(k);
  s_.trainer = res_.trainer;
  res_.zdot = s_.zdot;
  step_at_start_ = s_.step;
}

void Member::init_outputs(const Fit& fit0) {
  cur_ = fit0;
  if (needs_gradient()) ++s_.gradient_evaluations;  // the engine's first backward (train.cpp)
}

void Member::start() {
  if (fresh_) {
    s_.f0_test = engine_.evaluate(k_, x_test_);
    if (wants_kernels(cfg_))
      s_.kernel_init = measure_kernels_at_init(cfg_, data_, lay_.views(s_.w0.to(at::kCPU, at::kDouble)));
    fresh_ = false;
  }
  observer_ = std::make_unique<TestObserver>(lay_, s_.w0, to_vector(data_.y_test), s_.f0_test);
  last_state_ = last_poll_ = Clock::now();
  if (s_.step == s_.next_ckpt && s_.last_ckpt < s_.step) {
    checkpoint();
    s_.next_ckpt = next_checkpoint(s_.step);
  }
}

double Member::wall() const { return s_.wall + seconds_since(start_); }

std::string Member::state_bytes() const {
  RunState now = s_;  // s_.wall stays the wall time before this process; the state holds the total
  now.wall = wall();
  engine_.outputs(k_, now.f, now.f0);
  return now.encode(cfg_, lay_);
}

Checkpoint Member::train_side() const {
  Checkpoint c;
  c.step = s_.step;
  c.t = s_.t;
  c.dt = s_.dt;
  c.train_loss = cur_.loss2;
  c.train_err = cur_.train_err;
  c.unsatisfied = cur_.unsatisfied;
  return c;
}

void Member::checkpoint() {
  std::vector<ChangeNorms> norms;
  std::vector<at::Tensor> f;
  engine_.observe({k_}, x_test_, norms, f);
  checkpoint(norms.at(0), f.at(0));
}

void Member::checkpoint(const ChangeNorms& norms, const at::Tensor& f_test) {
  Checkpoint c = train_side();
  observer_->measure(norms, f_test, c);
  c.wall_s = wall();
  s_.last_ckpt = s_.step;
  res_.checkpoints.push_back(c);
  if (hooks_.on_checkpoint) hooks_.on_checkpoint(c);
}

std::string Member::progress_fields() const {
  const double el = seconds_since(start_);
  const double rate = el > 0 ? double(s_.step - step_at_start_) / el : 0;
  std::string s = "step " + std::to_string(s_.step) + "  t " + fmt_num(s_.t) + "  dt " + fmt_num(s_.dt) + "  loss " +
                  fmt_num(cur_.loss2) + "  unsat " + std::to_string(cur_.unsatisfied) + "  " + fmt_num(rate) +
                  " steps/s";
  double eta = -1;
  if (cfg_.max_steps > 0 && rate > 0) eta = double(cfg_.max_steps - s_.step) / rate;
  if (cfg_.max_wall > 0) eta = eta < 0 ? cfg_.max_wall - wall() : std::min(eta, cfg_.max_wall - wall());
  if (eta >= 0) s += "  ETA " + fmt_duration(eta);
  return s;
}

void Member::end(const char* status, const std::string& message) {
  status_ = status;
  message_ = message;
}

bool Member::proceed() {
  if (!running()) return false;
  // Stop checks (protocol section 4: zero loss; the budgets; a request).
  if (cur_.unsatisfied == 0) {  // every point satisfied: zero hinge loss
    if (std::isnan(s_.t2)) s_.t2 = s_.t;
    end("converged", "every training point satisfied (alpha F y >= 1)");
  } else if (cfg_.max_steps > 0 && s_.step >= cfg_.max_steps) {
    end("stopped", "step budget (--max-steps) reached");
  } else if (cfg_.max_wall > 0 && wall() >= cfg_.max_wall) {
    end("stopped", "wall-time budget (--max-wall) reached");
  } else if (hooks_.should_stop && seconds_since(last_poll_) >= 0.25) {
    last_poll_ = Clock::now();
    if (hooks_.should_stop()) end("stopped", "stopped by request");
  }
  return running();
}

double Member::decay() const { return Momentum{cfg_.tau}.decay(s_.t, s_.dt); }

StepControl::Verdict Member::judge(const Trial& trial) {
  df_ = trial.df;
  trial_fit_ = trial.fit;
  f_before_ = trial.f;
  if (cfg_.integrator == "lte") return judge_lte(trial);
  StepControl sc{s_.dt, cfg_.df_min, cfg_.df_max, cfg_.max_dt};
  const StepControl::Verdict verdict = sc.judge(df_);
  dt_trial_ = s_.dt;
  s_.dt = sc.dt;
  if (verdict == StepControl::Verdict::Diverge) {
    end("diverged", kNanStep);  // protocol section 4
  } else if (verdict == StepControl::Verdict::Reject) {
    ++s_.rejected;
    if (!(s_.dt > 0)) end("diverged", kStepUnderflow);
  }
  return verdict;
}

// The lte integrator's verdict (dynamics/integrator.h): the error estimate needs every output
// before and after the trial (the engine's host views), those before the previous accepted step
// (s_.f_prev), f0 and the labels.
StepControl::Verdict Member::judge_lte(const Trial& trial) {
  require(trial.f && trial.f_new && trial.f0, "--integrator lte: the engine gave no host outputs");
  const int64_t n = x_train_.size(0);
  const LteControl lc{cfg_.integrator_tol, cfg_.max_dt};
  const bool hist = int64_t(s_.f_prev.size()) == n && s_.dt_prev > 0;
  double dt = s_.dt;
  const StepControl::Verdict verdict =
      lc.judge(dt, s_.dt_prev, trial.f, trial.f_new, hist ? s_.f_prev.data() : nullptr, trial.f0, y_.data(), n,
               cfg_.alpha, Momentum{cfg_.tau}, s_.t, &df_);
  dt_trial_ = s_.dt;
  s_.dt = dt;
  if (verdict == StepControl::Verdict::Diverge) {
    end("diverged", kNanStep);
  } else if (verdict == StepControl::Verdict::Reject) {
    ++s_.rejected;
    if (!(s_.dt > 0)) end("diverged", kStepUnderflow);
  }
  return verdict;
}

void Member::accept() {
  const double dt = dt_trial_;
  if (cfg_.zdot && res_.zdot.empty() && df_ > cfg_.df_min) {
    res_.zdot = measure_zdot(lay_, engine_.prev_w(k_), engine_.w(k_), dt, x_train_, act_);
    s_.zdot = res_.zdot;
  }
  s_.t += dt;
  ++s_.step;
  const double loss_before = cur_.loss2;
  cur_ = std::move(trial_fit_);
  if (cfg_.integrator == "lte") {  // the history of the error estimate: the outputs before this step
    s_.f_prev.assign(f_before_, f_before_ + x_train_.size(0));
    s_.dt_prev = dt;
  }
  if (!std::isfinite(cur_.loss2) || !std::isfinite(s_.t) || !std::isfinite(s_.dt))
    return end("diverged", "non-finite loss, time or step size");
  if (std::isnan(s_.t1) && cur_.loss2 < 0.5) {  // protocol section 5
    s_.t1 = s_.t;
    // lte's steps are long: the crossing of 0.5 interpolated linearly in the loss within the step
    // (protocol section 4 "Integrator lte"); the paper's rule keeps the step's end.
    if (cfg_.integrator == "lte" && loss_before > cur_.loss2)
      s_.t1 = (s_.t - dt) + dt * std::min(1.0, (loss_before - 0.5) / (loss_before - cur_.loss2));
  }
  if (needs_gradient()) ++s_.gradient_evaluations;  // the backward run_members makes next
}

void Member::after_step(const ChangeNorms* norms, const at::Tensor* f_test) {
  if (!running()) return;
  if (s_.step >= s_.next_ckpt) {
    if (norms) checkpoint(*norms, *f_test);
    else checkpoint();
    s_.next_ckpt = next_checkpoint(s_.step);
  }
  if (hooks_.on_state && seconds_since(last_state_) >= hooks_.state_every_s) {
    hooks_.on_state(state_bytes());
    last_state_ = Clock::now();
  }
  if (progress_.due()) progress_.update(progress_fields());
}

RunResult Member::finish() {
  const bool diverged = status_ == "diverged";
  // A run resumed from its final state takes no step: its last checkpoint is made again.
  if ((s_.last_ckpt != s_.step || res_.checkpoints.empty()) && !diverged) checkpoint();
  if (diverged) {  // record what there is, without a test evaluation of broken weights
    Checkpoint c = train_side();
    c.wall_s = wall();
    res_.checkpoints.push_back(c);
    if (hooks_.on_checkpoint) hooks_.on_checkpoint(c);
  }
  if (hooks_.on_state && !diverged) hooks_.on_state(state_bytes());
  progress_.finish(progress_fields() + "  " + status_);

  const Checkpoint& last = res_.checkpoints.back();
  res_.status = status_;
  res_.message = message_;
  res_.steps = s_.step;
  res_.rejected = s_.rejected;
  res_.gradient_evaluations = s_.gradient_evaluations;
  res_.t = s_.t;
  res_.t1 = s_.t1;
  res_.t2 = s_.t2;
  res_.train_loss = cur_.loss2;
  res_.train_err = cur_.train_err;
  res_.unsatisfied = cur_.unsatisfied;
  res_.test_err = last.test_err;
  res_.weight_change = last.weight_change;
  res_.output_norm = last.output_norm;
  res_.f_norm = last.f_norm;
  res_.test_f0 = s_.f0_test;
  res_.test_f_delta = (observer_->f_test() - s_.f0_test).contiguous();
  if (wants_kernels(cfg_) && !diverged) {
    FCParams p0 = lay_.views(s_.w0.to(at::kCPU, at::kDouble));
    FCParams pw = lay_.views(engine_.w(k_).detach().to(at::kCPU, at::kDouble));
    res_.kernel = measure_kernels_at_end(cfg_, data_, p0, pw, s_.kernel_init);
    if (res_.kernel.is_object() && res_.kernel.contains("change") && res_.kernel["change"].is_number())
      res_.kernel_change = res_.kernel["change"].get<double>();
  }
  const double el = seconds_since(start_);
  res_.wall_s = wall();
  res_.steps_per_s = el > 0 ? double(s_.step - step_at_start_) / el : 0;
  return std::move(res_);
}

}  // namespace lf
