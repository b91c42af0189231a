#include "experiment/member.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
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

// Whether the batch walk grows its chunks: on cuda, where each chunk ends in a host sync.
// LAZYFEAT_WALK=grow or b_max forces either on any device (the tests compare the two on the CPU).
bool growing_walk(const std::string& device) {
  const char* e = std::getenv("LAZYFEAT_WALK");
  if (e && std::strcmp(e, "grow") == 0) return true;
  if (e && std::strcmp(e, "b_max") == 0) return false;
  return device == "cuda";
}

}  // namespace

Member::Member(const RunConfig& cfg, const Dataset& data, TrainHooks hooks, Engine& engine, int64_t k)
    : cfg_(cfg), data_(data), hooks_(std::move(hooks)), act_(activation_of(cfg)), loss_(Loss::make(cfg.loss)),
      lay_(NetLayout::of(cfg, data.x_train)), stochastic_(cfg.stochastic()),
      growing_walk_(growing_walk(cfg.device)), start_(Clock::now()), engine_(engine),
      k_(k), progress_("train", hooks_.progress), gen_(at::make_generator<at::CPUGeneratorImpl>(cfg.seed_batch)) {
  x_train_ = data.x_train.to(at::kDouble).contiguous();
  x_test_ = data.x_test.to(at::kDouble).contiguous();
  y_ = to_vector(data.y_train);
  const int64_t n = x_train_.size(0), pte = x_test_.size(0);
  const at::Tensor w = engine.w(k), v = engine.v(k), g = engine.g(k);
  res_.trainer = engine.name();
  c10::NoGradGuard ng;
  if (!hooks_.resume_state.empty()) {
    s_ = RunState::decode(hooks_.resume_state, cfg, n, pte, w.options());
    w.copy_(s_.w);  // into the engine's own buffers
    v.copy_(s_.v);
    g.copy_(s_.g);
    // Not in states since format 3: the seed gives the same bits (protocol section 8).
    engine.w0(k).copy_(s_.w0.defined() ? s_.w0 : lay_.init(cfg.weights_seed()));
    cur_ = engine.set_outputs(k, s_.f, s_.f0);
    if (stochastic_) gen_.set_state(s_.batch_rng);  // the same batch stream onwards
    else s_.f.clear(), s_.f0.clear();             // the engine keeps them
  } else {  // f0 and the first gradient come from the ensemble's first forward (init_outputs)
    w.copy_(lay_.init(cfg.weights_seed()));  // protocol section 8
    v.zero_();
    engine.w0(k).copy_(w);
    s_.dt = stochastic_ ? cfg.temperature : cfg.dt0;  // protocol section 4: the stochastic dt starts at T
    fresh_ = true;
  }
  s_.w = w;
  s_.v = v;
  s_.g = g;
  s_.w0 = engine.w0(k);
  if (exponential()) {  // the eab2 history lives in the engine (a saved one goes there)
    if (s_.g_prev.defined()) engine.g_prev(k).copy_(s_.g_prev);
    s_.g_prev = engine.g_prev(k);
  }
  s_.trainer = res_.trainer;
  res_.zdot = s_.zdot;
  step_at_start_ = s_.step;
}

void Member::init_outputs(const Fit& fit0) {
  cur_ = fit0;
  if (stochastic_) engine_.outputs(k_, s_.f, s_.f0);  // its batches need f0 on every point
  if (needs_gradient()) ++s_.gradient_evaluations;  // the engine's first backward (train.cpp)
}

Net Member::net0() const { return lay_.net(s_.w0.detach(), act_); }

void Member::start(const nlohmann::json* kernel_init) {
  if (fresh_) {
    s_.f0_test = engine_.evaluate(k_, x_test_);
    if (wants_kernels(cfg_)) s_.kernel_init = kernel_init ? *kernel_init : measure_kernels_at_init(cfg_, data_, net0());
    fresh_ = false;
  }
  observer_ = std::make_unique<TestObserver>(lay_.slices(), s_.w0, to_vector(data_.y_test), s_.f0_test);
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
  if (stochastic_) now.batch_rng = gen_.get_state();
  else engine_.outputs(k_, now.f, now.f0);
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

static int64_t diagnostic_points(const RunConfig& cfg) { return 10 * cfg.batch_max; }  // the published code's

at::Tensor Member::diagnostic_test() const {
  return x_test_.narrow(0, 0, std::min(x_test_.size(0), diagnostic_points(cfg_)));
}

std::vector<int64_t> Member::diagnostic_rows(bool all) const {
  const int64_t n = int64_t(y_.size()), m = all ? n : std::min(n, diagnostic_points(cfg_));
  std::vector<int64_t> rows(size_t(m), 0);
  for (int64_t i = 0; i < m; ++i) rows[size_t(i)] = i;
  return rows;
}

void Member::measure_train(bool all, const std::vector<double>* f_train) {
  std::vector<double> f;
  if (f_train) f = *f_train;
  else engine_.forward_rows(k_, diagnostic_rows(all), f);
  const int64_t m = int64_t(f.size());
  measured_ = m;
  if (all) {
    s_.f = f;
    lf::fit(loss_, cfg_.alpha, s_.f, s_.f0, y_, cur_);
    engine_.set_outputs(k_, s_.f, s_.f0);
  } else {
    const std::vector<double> f0(s_.f0.begin(), s_.f0.begin() + m), y(y_.begin(), y_.begin() + m);
    lf::fit(loss_, cfg_.alpha, f, f0, y, cur_);
  }
  if (std::isnan(s_.t1) && cur_.loss2 < 0.5) s_.t1 = s_.t;  // protocol section 5, at checkpoints
}

void Member::checkpoint(bool final) {
  // The stochastic variant's intermediate checkpoints: the first diagnostic_points test points.
  const bool sub = stochastic_ && !final;
  const at::Tensor x = sub ? diagnostic_test() : x_test_;
  std::vector<ChangeNorms> norms;
  std::vector<at::Tensor> f;
  engine_.observe({k_}, x, norms, f);
  checkpoint(norms.at(0), f.at(0), final);
}

void Member::checkpoint(const ChangeNorms& norms, const at::Tensor& f_test, bool final,
                        const std::vector<double>* f_train) {
  const bool sub = stochastic_ && !final;
  if (stochastic_) measure_train(final, f_train);
  Checkpoint c = train_side();
  observer_->measure(norms, f_test, c);
  c.wall_s = wall();
  // A final checkpoint at the step of a diagnostic one replaces it (the store's too).
  if (!res_.checkpoints.empty() && res_.checkpoints.back().step == c.step) res_.checkpoints.pop_back();
  s_.last_ckpt = s_.step;
  last_ckpt_full_ = !sub;
  res_.checkpoints.push_back(c);
  if (hooks_.on_checkpoint) hooks_.on_checkpoint(c);
}

std::string Member::progress_fields() const {
  const double el = seconds_since(start_);
  const double rate = el > 0 ? double(s_.step - step_at_start_) / el : 0;
  std::string s = "step " + std::to_string(s_.step) + "  t " + fmt_num(s_.t) + "  dt " + fmt_num(s_.dt) + "  loss " +
                  fmt_num(cur_.loss2) + "  unsat " + std::to_string(cur_.unsatisfied) +
                  // the stochastic dynamics measures its fit on the diagnostic points between checkpoints
                  (stochastic_ && measured_ > 0 && measured_ < int64_t(y_.size()) ? "/" + std::to_string(measured_) : std::string()) +
                  "  " + fmt_num(rate) +
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
  // Stop checks (protocol section 4: zero loss; the budgets; a request). The stochastic variant
  // finds zero loss when it draws its batch (end_batch).
  if (!stochastic_ && cur_.unsatisfied == 0) {  // every point satisfied: zero hinge loss
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

bool Member::rounds_eligible() const { return !stochastic_ && cfg_.integrator == "paper" && !cfg_.zdot; }

RuleParams Member::rule_params() const { return {cfg_.df_min, cfg_.df_max, step_cap(), cfg_.tau}; }

RuleState Member::rule_state() const {
  RuleState r;
  r.t = s_.t, r.dt = s_.dt, r.t1 = s_.t1;
  r.step = s_.step, r.rejected = s_.rejected, r.gradient_evaluations = s_.gradient_evaluations;
  r.park_at = s_.next_ckpt;  // a checkpoint is due once step reaches next_ckpt (after_step)
  if (cfg_.max_steps > 0) r.park_at = std::min(r.park_at, cfg_.max_steps);
  r.fit.loss2 = cur_.loss2, r.fit.train_err = cur_.train_err, r.fit.unsatisfied = cur_.unsatisfied;
  return r;
}

void Member::absorb(const RuleState& r) {
  s_.t = r.t, s_.dt = r.dt, s_.t1 = r.t1;
  s_.step = r.step, s_.rejected = r.rejected, s_.gradient_evaluations = r.gradient_evaluations;
  cur_.loss2 = r.fit.loss2, cur_.train_err = r.fit.train_err, cur_.unsatisfied = r.fit.unsatisfied;
  switch (r.stop) {  // as settle() and accept(); Converged ends at the next proceed(), as in the loop
    case RuleState::Stop::NanStep: end("diverged", kNanStep); break;
    case RuleState::Stop::StepUnderflow: end("diverged", kStepUnderflow); break;
    case RuleState::Stop::NonFinite: end("diverged", "non-finite loss, time or step size"); break;
    case RuleState::Stop::Converged:
    case RuleState::Stop::Running: break;
  }
}

double Member::step_cap() const {
  if (!stochastic_) return cfg_.max_dt;
  const double m = stochastic_max_dt(int64_t(y_.size()), cfg_.temperature, cfg_.batch_max);  // 0: none
  if (cfg_.max_dt > 0) return m > 0 ? std::min(m, cfg_.max_dt) : cfg_.max_dt;
  return m;
}

void Member::begin_batch() {
  const int64_t n = int64_t(y_.size());
  walk_.b = stochastic_batch_size(n, cfg_.temperature, s_.dt, cfg_.batch_min);
  walk_.perm = at::randperm(n, gen_, at::TensorOptions().dtype(at::kLong));  // [n]
  batch_.clear();
  batch_f_.clear();
  // The walk over the permutation forwards chunks of b_max points. Growing (on cuda), the chunks
  // double up to 16 b_max, and when the last draw walked past b_max points the first is a quarter
  // longer than that walk (at most 64 b_max): late in a run few points are unsatisfied and the walk
  // covers much of the training set, where one device call per 64 images (each ending in a host
  // sync) would dominate the step. While b points lie within b_max, the chunk stays b_max (no
  // forward, nor a backward through the kept chunk, of points the batch does not take).
  // The batch (the first b unsatisfied points in permutation order) does not depend on the chunks.
  walk_.c = growing_walk_ && s_.walked > cfg_.batch_max ? std::min({n, 64 * cfg_.batch_max, s_.walked + s_.walked / 4})
                                                       : cfg_.batch_max;
  walk_.cap = growing_walk_ ? std::max(walk_.c, 16 * cfg_.batch_max) : cfg_.batch_max;
  walk_.s = 0;
  s_.walked = n;  // unless b points are found before the end
}

const std::vector<int64_t>* Member::walk_chunk() {
  const int64_t n = int64_t(y_.size());
  if (walk_.s >= n || int64_t(batch_.size()) >= walk_.b) return nullptr;
  const int64_t* p = walk_.perm.data_ptr<int64_t>();
  walk_.chunk.assign(p + walk_.s, p + std::min(n, walk_.s + walk_.c));
  return &walk_.chunk;
}

void Member::walk_outputs(const std::vector<double>& f) {
  const std::vector<int64_t>& chunk = walk_.chunk;
  for (size_t i = 0; i < chunk.size(); ++i) {
    const int64_t r = chunk[i];
    if (cfg_.alpha * (f[i] - s_.f0[r]) * y_[r] < 1) {  // unsatisfied, in permutation order
      batch_.push_back(r);
      batch_f_.push_back(f[i]);
      if (int64_t(batch_.size()) == walk_.b) s_.walked = walk_.s + int64_t(i) + 1;
    }
  }
  walk_.s += walk_.c;
  walk_.c = std::min(2 * walk_.c, walk_.cap);
}

bool Member::end_batch() {
  const int64_t b = walk_.b;
  if (int64_t(batch_.size()) > b) {
    batch_.resize(size_t(b));
    batch_f_.resize(size_t(b));
  }
  if (batch_.empty()) {  // the whole training set was walked: every point satisfied
    if (std::isnan(s_.t2)) s_.t2 = s_.t;
    end("converged", "every training point satisfied (alpha F y >= 1)");
    return false;
  }
  batch_c_.resize(batch_.size());  // dL/df of the batch loss (1 / (alpha^2 b)) sum l(F y)
  for (size_t i = 0; i < batch_.size(); ++i) {
    const int64_t r = batch_[i];
    batch_c_[i] = loss_.slope(cfg_.alpha * (batch_f_[i] - s_.f0[r]) * y_[r]) * y_[r] / (cfg_.alpha * double(b));
  }
  if (hooks_.on_batch) hooks_.on_batch(s_.dt, b, int64_t(batch_.size()));
  ++s_.gradient_evaluations;  // every drawn batch gets its backward (gradient_rows), rejected trials included
  return true;
}

StepControl::Verdict Member::judge_batch(const std::vector<double>& f_new) {
  double df = 0;  // alpha max |f_new - f| over the batch, NaN if any output is not a number
  for (size_t i = 0; i < f_new.size(); ++i) {
    const double a = std::fabs(f_new[i] - batch_f_[i]);
    if (!(a <= df)) df = (a > df) ? a : std::numeric_limits<double>::quiet_NaN();
    if (std::isnan(df)) break;
  }
  df_ = df * std::fabs(cfg_.alpha);
  trial_fit_ = cur_;  // the fit of the whole training set is measured at checkpoints only
  f_before_ = nullptr;
  return verdict(df_);
}

StepControl::Verdict Member::judge(const Trial& trial) {
  df_ = trial.df;
  trial_fit_ = trial.fit;
  f_before_ = trial.f;
  if (cfg_.integrator == "lte") return judge_lte(trial);
  if (cfg_.integrator == "eab2") return judge_eab2(trial);
  return verdict(df_);
}

StepControl::Verdict Member::verdict(double df) {
  StepControl sc{s_.dt, cfg_.df_min, cfg_.df_max, step_cap()};
  const StepControl::Verdict v = sc.judge(df);  // before reading sc.dt, which it updates
  return settle(v, sc.dt);
}

StepControl::Verdict Member::settle(StepControl::Verdict v, double next_dt) {
  dt_trial_ = s_.dt;
  s_.dt = next_dt;
  if (v == StepControl::Verdict::Diverge) {
    end("diverged", kNanStep);  // protocol section 4
  } else if (v == StepControl::Verdict::Reject) {
    ++s_.rejected;
    if (!(s_.dt > 0)) end("diverged", kStepUnderflow);
  }
  return v;
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
  return settle(verdict, dt);
}

// The eab2 integrator's verdict on the trial's outputs (dynamics/integrator.h): df and the kinks.
StepControl::Verdict Member::judge_eab2(const Trial& trial) {
  require(trial.f && trial.f_new && trial.f0, "--integrator eab2: the engine gave no host outputs");
  const Eab2Control ec{cfg_.integrator_tol, cfg_.max_dt};
  double dt = s_.dt;
  const StepControl::Verdict verdict = ec.judge(dt, trial.f, trial.f_new, trial.f0, y_.data(), x_train_.size(0),
                                                cfg_.alpha, Momentum{cfg_.tau}, s_.t, &df_, &crossed_, &fmax_);
  return settle(verdict, dt);
}

ExpStep Member::exp_step() const { return lf::exp_step(Momentum{cfg_.tau}, s_.t, s_.dt, slope() ? s_.dt_prev : 0.0); }

// After the gradient g_{n+1} at the end of an accepted eab2 step: the step's smooth error from how
// far g_{n+1} left the step's extrapolation caps the next dt (dynamics/integrator.h).
void Member::after_gradient() {
  if (!exponential()) return;
  c10::NoGradGuard ng;
  // both norms in one transfer (one host sync on cuda)
  const at::Tensor norms = at::stack({(s_.g - engine_.g_extrap(k_)).norm(), s_.g_prev.norm()}).to(at::kCPU, at::kDouble);
  const double* nv = norms.data_ptr<double>();
  const double rho = nv[1] > 0 ? nv[0] / nv[1] : 0.0;
  const Eab2Control ec{cfg_.integrator_tol, cfg_.max_dt};
  s_.dt = std::min(s_.dt, ec.next_dt_cap(s_.dt_prev, h_used_, df_, rho, fmax_));
}

void Member::accept() {
  const double dt = dt_trial_;
  if (cfg_.zdot && res_.zdot.empty() && df_ > cfg_.df_min) {
    res_.zdot = measure_zdot(lay_.fc, engine_.prev_w(k_), engine_.w(k_), dt, x_train_, act_);
    s_.zdot = res_.zdot;
  }
  s_.t += dt;
  ++s_.step;
  if (stochastic_) {  // the fit of the whole training set is measured at checkpoints only
    if (!std::isfinite(s_.t) || !std::isfinite(s_.dt)) end("diverged", "non-finite time or step size");
    return;
  }
  const double loss_before = cur_.loss2;
  cur_ = std::move(trial_fit_);
  if (cfg_.integrator == "lte") {  // the history of the error estimate: the outputs before this step
    s_.f_prev.assign(f_before_, f_before_ + x_train_.size(0));
    s_.dt_prev = dt;
  } else if (exponential()) {  // the history of the next step's slope and error estimate
    h_used_ = slope() ? s_.dt_prev : 0.0;
    s_.dt_prev = dt;
    s_.crossed_last = crossed_;
  }
  if (!std::isfinite(cur_.loss2) || !std::isfinite(s_.t) || !std::isfinite(s_.dt))
    return end("diverged", "non-finite loss, time or step size");
  if (std::isnan(s_.t1) && cur_.loss2 < 0.5) {  // protocol section 5
    s_.t1 = s_.t;
    // lte's and eab2's steps are long: the crossing of 0.5 interpolated linearly in the loss within the step
    // (protocol section 4 "Integrator lte"); the paper's rule keeps the step's end.
    if (cfg_.integrator != "paper" && loss_before > cur_.loss2)
      s_.t1 = (s_.t - dt) + dt * std::min(1.0, (loss_before - 0.5) / (loss_before - cur_.loss2));
  }
  if (needs_gradient()) ++s_.gradient_evaluations;  // the backward run_members makes next
}

void Member::after_step(const ChangeNorms* norms, const at::Tensor* f_test, const std::vector<double>* f_train) {
  if (!running()) return;
  if (s_.step >= s_.next_ckpt) {
    if (norms) checkpoint(*norms, *f_test, false, f_train);
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
  // A run resumed from its final state takes no step: its last checkpoint is made again. The
  // stochastic variant's last checkpoint measures every point.
  if ((s_.last_ckpt != s_.step || res_.checkpoints.empty() || (stochastic_ && !last_ckpt_full_)) && !diverged)
    checkpoint(true);
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
    res_.kernel = measure_kernels_at_end(cfg_, data_, net0(),
                                         lay_.net(engine_.w(k_).detach(), act_), s_.kernel_init);
    if (res_.kernel.is_object() && res_.kernel.contains("change") && res_.kernel["change"].is_number())
      res_.kernel_change = res_.kernel["change"].get<double>();
  }
  const double el = seconds_since(start_);
  res_.wall_s = wall();
  res_.steps_per_s = el > 0 ? double(s_.step - step_at_start_) / el : 0;
  return std::move(res_);
}

}  // namespace lf
