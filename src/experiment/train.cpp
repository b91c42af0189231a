// One run, or an ensemble of runs in lockstep (train.h), through one trainer: each run is a
// Member (experiment/member.h) that advances one trial step at a time.
#include "experiment/train.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>

#include "common/error.h"
#include "common/phase_times.h"
#include "common/sysinfo.h"
#include "data/dataset.h"
#include "experiment/engine.h"
#include "experiment/from_config.h"
#include "experiment/kernels.h"
#include "experiment/member.h"
#include "models/blas.h"

namespace lf {

namespace {

nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

}  // namespace

void validate_train_config(const RunConfig& cfg) {
  auto finite = [](double v, const char* name) {
    require(std::isfinite(v), std::string("--") + name + " must be a finite number");
  };
  require(cfg.arch == "fc" || cfg.arch == "cnn" || cfg.arch == "wrn",
          "--arch " + cfg.arch + " cannot be trained (fc, cnn and wrn networks are built)");
  require(cfg.arch == "fc" || !cfg.zdot, "--zdot is measured for fc networks only");
  finite(cfg.temperature, "temperature");
  finite(cfg.alpha, "alpha");
  finite(cfg.tau, "mu/--tau");
  finite(cfg.dt0, "dt0");
  finite(cfg.df_min, "df-min");
  finite(cfg.df_max, "df-max");
  finite(cfg.max_dt, "max-dt");
  finite(cfg.max_wall, "max-wall");
  finite(cfg.softplus_beta, "softplus-beta");
  finite(cfg.act_scale, "act-scale");
  require(cfg.alpha > 0, "--alpha must be > 0");
  if (cfg.device == "cuda") require(at::hasCUDA(), "--device cuda: this build/machine has no CUDA device");
}

namespace {

void validate(const RunConfig& cfg, const Dataset& data) {
  validate_train_config(cfg);
  const bool images = cfg.arch != "fc";
  const int64_t dims = images ? 4 : 2;  // images [n, C, rows, cols] or vectors [n, d]
  const std::string shape = images ? "[n, C, rows, cols] images (--arch " + cfg.arch + ")" : "[n, d] matrix (--arch fc)";
  require(data.x_train.defined() && data.x_train.dim() == dims && data.x_train.size(0) >= 1,
          "the training set must be a non-empty " + shape);
  require(data.x_test.defined() && data.x_test.dim() == dims, "the test set must be an " + shape);
}

}  // namespace

nlohmann::json Checkpoint::to_json() const {
  nlohmann::json lc = nlohmann::json::array();
  for (double v : layer_change) lc.push_back(num(v));
  return {{"step", step}, {"t", num(t)}, {"dt", num(dt)}, {"train_loss", num(train_loss)},
          {"train_err", num(train_err)}, {"test_err", num(test_err)}, {"unsatisfied", unsatisfied},
          {"weight_change", num(weight_change)}, {"w0_norm", num(w0_norm)}, {"layer_change", lc},
          {"output_norm", num(output_norm)}, {"f_norm", num(f_norm)}, {"wall_s", num(wall_s)}};
}

nlohmann::json RunResult::summary() const {
  nlohmann::json j = {{"status", status}, {"message", message}, {"steps", steps}, {"rejected", rejected},
                      {"gradient_evaluations", gradient_evaluations}, {"t", num(t)}, {"t1", num(t1)}, {"t2", num(t2)}, {"train_loss", num(train_loss)},
                      {"train_err", num(train_err)}, {"test_err", num(test_err)}, {"unsatisfied", unsatisfied},
                      {"weight_change", num(weight_change)}, {"output_norm", num(output_norm)},
                      {"f_norm", num(f_norm)}, {"kernel_change", num(kernel_change)}, {"wall_s", num(wall_s)},
                      {"steps_per_s", num(steps_per_s)}, {"trainer", trainer},
                      {"blas", blas_core()}};  // the machine's arithmetic (protocol section 8)
  if (!zdot.empty()) {
    nlohmann::json z = nlohmann::json::array();
    for (double v : zdot) z.push_back(num(v));
    j["zdot"] = z;
  }
  if (!kernel.is_null() && !kernel.empty()) j["kernel"] = kernel;
  return j;
}

namespace {

// Trial steps a call of Engine::rounds at most (a stop request or a state due waits that long).
constexpr int64_t kMaxRounds = 256;

// Where the paper's rule runs when the engine can run it on the device (LAZYFEAT_DEVICE_RULE):
// 0 on the host, one transfer a step; unset or 1 on the device between checkpoints more than a
// step apart; "all" on the device for every step (tests compare the three).
enum class DeviceRule { Off, BetweenCheckpoints, Always };
DeviceRule device_rule_wanted() {
  const char* e = std::getenv("LAZYFEAT_DEVICE_RULE");
  const std::string v = e ? e : "";
  return v == "0" ? DeviceRule::Off : v == "all" ? DeviceRule::Always : DeviceRule::BetweenCheckpoints;
}

// One trial step of the stochastic dynamics (protocol section 4) for the live members together:
// their batches (the walks in lockstep: each round of walking one engine.forward_batches of every
// walking member's next chunk), the batches' gradients, the trials, df on the batches, the
// verdicts. Each member's numbers are its run's alone: its own batch generator; on the
// sequential engine the same operations member after member. With `bench ensemble --phases` a
// step is a span of common/phase_times.h, its phases marked here (and inside the grouped CNN
// engine's gradient); run_members marks its checkpoints and collects.
void stochastic_step(Engine& engine, std::vector<std::unique_ptr<Member>>& members, const std::vector<int64_t>& live,
                     bool momentum) {
  if (PhaseTimes::enabled() && !live.empty()) PhaseTimes::begin(engine.w(live.front()).device());
  std::vector<int64_t> walking, drawn, restored;
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::vector<double>> f, c;
  std::vector<double> x, dt;
  for (int64_t k : live)
    if (members[k]->proceed()) members[k]->begin_batch(), walking.push_back(k);
  std::vector<int64_t> stepping = walking;
  while (true) {
    std::vector<int64_t> next;
    rows.clear();
    for (int64_t k : walking)
      if (const std::vector<int64_t>* chunk = members[k]->walk_chunk()) next.push_back(k), rows.push_back(*chunk);
    if (next.empty()) break;
    engine.forward_batches(next, rows, f);
    for (size_t i = 0; i < next.size(); ++i) members[next[i]]->walk_outputs(f[i]);
    walking.swap(next);
  }
  PhaseTimes::mark("walks");
  rows.clear();
  for (int64_t k : stepping) {
    Member& m = *members[k];
    if (!m.end_batch()) continue;
    drawn.push_back(k), rows.push_back(m.batch()), c.push_back(m.batch_coefficients());
    x.push_back(m.decay()), dt.push_back(m.dt());
  }
  engine.gradient_batches(drawn, rows, c);
  PhaseTimes::mark("batch gradients");
  engine.trial(drawn, x, dt, momentum);
  PhaseTimes::mark("trial step");
  engine.forward_batches(drawn, rows, f);
  PhaseTimes::mark("trial forwards");
  for (size_t i = 0; i < drawn.size(); ++i) {
    Member& m = *members[drawn[i]];
    if (m.judge_batch(f[i]) == StepControl::Verdict::Accept) m.accept();
    else restored.push_back(drawn[i]);
  }
  engine.restore(restored);
  PhaseTimes::mark("verdicts");
}

// The ensemble's loop: one trial step of every live member a round (experiment/member.h), the
// tensor work of each phase done by the engine for all of them at once. A member that ends
// leaves the round (compaction) and its result is made at once.
std::vector<RunResult> run_members(Engine& engine, std::vector<std::unique_ptr<Member>>& members,
                                   const at::Tensor& x_test) {
  std::vector<RunResult> out(members.size());
  std::vector<int64_t> live, step, accepted, restored, grads, due;
  std::vector<double> x, dt;
  std::vector<ExpStep> coefs;  // --integrator eab2
  std::vector<Trial> trials;
  std::vector<std::vector<double>> f_train;  // the stochastic dynamics' checkpoints: the diagnostic rows' outputs
  std::vector<ChangeNorms> norms;
  std::vector<at::Tensor> f_test;
  for (size_t k = 0; k < members.size(); ++k) live.push_back(int64_t(k));
  bool momentum = !members.empty() && members.front()->momentum();
  const bool exponential = !members.empty() && members.front()->exponential();  // the same for all (lockstep_key)
  const bool stochastic = !members.empty() && members.front()->stochastic();
  // The paper's full-batch rule on the device (Engine::rounds) where the engine runs it: several
  // trial steps a host round, each member parked at its next checkpoint, then its numbers back.
  const DeviceRule where = device_rule_wanted();
  bool on_device = !members.empty() && engine.rounds_supported() && where != DeviceRule::Off;
  for (const auto& m : members) on_device = on_device && m->rounds_eligible();
  std::vector<RuleState> rule;
  while (!live.empty()) {
    // As many rounds as the member farthest from its checkpoint needs (the others wait parked):
    // up to ~100 late in a run; early (a checkpoint every step) the host's rule, one step at a
    // time, which costs fewer launches than a round of the device's.
    int64_t rounds = 1;
    for (int64_t k : live)
      if (on_device && members[k]->running()) {
        const RuleState r = members[k]->rule_state();
        rounds = std::max(rounds, r.park_at - r.step);
      }
    if (on_device && (rounds > 1 || where == DeviceRule::Always)) {
      step.clear(), rule.clear();
      for (int64_t k : live)
        if (members[k]->proceed()) step.push_back(k), rule.push_back(members[k]->rule_state());
      if (!step.empty()) engine.rounds(step, members[step.front()]->rule_params(), std::min(rounds, kMaxRounds), rule);
      for (size_t i = 0; i < step.size(); ++i) members[step[i]]->absorb(rule[i]);
      due.clear();
      for (int64_t k : live)
        if (members[k]->checkpoint_due()) due.push_back(k);
      engine.observe(due, x_test, norms, f_test);
    } else if (stochastic) {
      stochastic_step(engine, members, live, momentum);
      // The checkpoints due: the members' weights observed together on the diagnostic points.
      due.clear();
      for (int64_t k : live)
        if (members[k]->checkpoint_due()) due.push_back(k);
      if (!due.empty()) {
        engine.observe(due, members[due.front()]->diagnostic_test(), norms, f_test);
        engine.forward_batches(due, std::vector<std::vector<int64_t>>(due.size(), members[due.front()]->diagnostic_rows()),
                               f_train);
      }
      PhaseTimes::mark("checkpoints");
      PhaseTimes::collect();
    } else {
      step.clear(), x.clear(), dt.clear(), coefs.clear();
      for (int64_t k : live)
        if (members[k]->proceed()) {
          step.push_back(k);
          if (exponential) {
            coefs.push_back(members[k]->exp_step());
          } else {
            x.push_back(members[k]->decay());
            dt.push_back(members[k]->dt());
          }
        }
      if (exponential) engine.trial_exp(step, coefs);
      else engine.trial(step, x, dt, momentum);
      engine.forward(step, trials);
      accepted.clear(), restored.clear();
      for (size_t i = 0; i < step.size(); ++i)
        (members[step[i]]->judge(trials[i]) == StepControl::Verdict::Accept ? accepted : restored).push_back(step[i]);
      engine.restore(restored);
      engine.accept(accepted);
      grads.clear();
      for (int64_t k : accepted) {
        Member& m = *members[k];
        m.accept();
        if (m.needs_gradient()) grads.push_back(k);
      }
      engine.gradient(grads);
      for (int64_t k : grads) members[k]->after_gradient();
      // The checkpoints due after this step: the members' weights observed together.
      due.clear();
      for (int64_t k : live)
        if (members[k]->checkpoint_due()) due.push_back(k);
      engine.observe(due, x_test, norms, f_test);
    }
    std::vector<int64_t> next;
    for (size_t i = 0, j = 0; i < live.size(); ++i) {
      const int64_t k = live[i];
      const bool seen = j < due.size() && due[j] == k;
      members[k]->after_step(seen ? &norms[j] : nullptr, seen ? &f_test[j] : nullptr,
                             seen && stochastic ? &f_train[j] : nullptr);
      j += seen;
      if (members[k]->running()) {
        next.push_back(k);
      } else {  // compaction: a finished member leaves and stops costing compute
        out[k] = members[k]->finish();
        members[k].reset();
      }
    }
    live.swap(next);
  }
  return out;
}

at::TensorOptions run_options(const RunConfig& cfg) {
  return at::TensorOptions()
      .dtype(cfg.is_double() ? at::kDouble : at::kFloat)
      .device(cfg.device == "cuda" ? at::kCUDA : at::kCPU);
}

}  // namespace

RunResult train_run(const RunConfig& cfg, const Dataset& data, const TrainHooks& hooks) {
  return train_ensemble({cfg}, data, {hooks}).at(0);
}

void validate_ensemble(const std::vector<RunConfig>& cfgs) {
  require(!cfgs.empty(), "an ensemble needs at least one member");
  for (const RunConfig& c : cfgs) {
    validate_train_config(c);
    require(lockstep_key(c) == lockstep_key(cfgs.front()),
            "ensemble members may differ in seed-init and alpha only (member with h " + std::to_string(c.h) +
                ", seed-init " + std::to_string(c.seed_init) + " differs in another option)");
  }
}

std::string lockstep_key(const RunConfig& cfg) {
  nlohmann::json j = config_to_json(cfg);
  for (const char* k : {"seed_init", "weights_seed", "alpha", "sqrt_h_alpha", "data_dir", "max_wall", "max_steps"})
    j.erase(k);
  return j.dump();
}

std::vector<RunResult> train_ensemble(const std::vector<RunConfig>& cfgs, const Dataset& data,
                                      const std::vector<TrainHooks>& hooks, EngineKind kind) {
  validate_ensemble(cfgs);
  require(hooks.size() == cfgs.size(), "train_ensemble: one TrainHooks per member");
  for (const RunConfig& c : cfgs) validate(c, data);
  const RunConfig& c0 = cfgs.front();
  const int64_t K = int64_t(cfgs.size());
  const NetLayout lay = NetLayout::of(c0, data.x_train);
  const at::Tensor x_train = data.x_train.to(at::kDouble).contiguous();
  // The batched engines (experiment/engine.h): full-batch fc ensembles, cnn ensembles (grouped).
  const bool batchable = (c0.arch == "fc" && !c0.stochastic()) || c0.arch == "cnn";
  // (A single cnn run on cuda stays sequential: ConvModel reuses the walk's kept forward for the
  // batch gradient, which the grouped engine does not.)
  if (kind == EngineKind::Auto)
    kind = c0.device == "cuda" && batchable && (c0.arch == "fc" || K > 1) ? EngineKind::Batched : EngineKind::Sequential;
  require(kind != EngineKind::Batched || batchable,
          "the batched engines train full-batch fc ensembles and cnn ensembles (not --arch wrn, not fc with "
          "--temperature > 0)");
  // The fused kernels: FC for full batches (the stochastic FC dynamics take plain LibTorch ops),
  // CNN for both dynamics; CPU float64 only (CUDA keeps cuDNN through at::conv2d; the wrn takes conv2d).
  // Not with MKL's dgemm_ (PyTorch's LibTorch), where they measured slower (models/blas.h).
  const bool fused = c0.device == "cpu" && c0.is_double() && !hooks.front().reference &&
                     fused_kernels_preferred() && batchable;
  FitSpec spec{Loss::make(c0.loss), to_vector(data.y_train), {}, c0.integrator != "paper",
               c0.integrator == "eab2"};
  for (const RunConfig& c : cfgs) spec.alpha.push_back(c.alpha);
  std::unique_ptr<Engine> engine;
  if (kind == EngineKind::Sequential)
    engine = make_sequential_engine(std::move(spec), fused, activation_of(c0), lay, x_train, run_options(c0));
  else if (c0.arch == "cnn")
    engine = make_grouped_cnn_engine(std::move(spec), activation_of(c0), lay.cnn, x_train, run_options(c0));
  else
    engine = make_batched_engine(std::move(spec), activation_of(c0), lay.fc, x_train, run_options(c0));
  std::vector<std::unique_ptr<Member>> members;
  for (int64_t k = 0; k < K; ++k) members.push_back(std::make_unique<Member>(cfgs[k], data, hooks[k], *engine, k));
  // f0 and the first gradient of the new runs: one forward for all of them (experiment/member.h).
  std::vector<int64_t> fresh, grads;
  for (int64_t k = 0; k < K; ++k)
    if (members[k]->needs_outputs()) fresh.push_back(k);
  std::vector<Fit> fit0;
  engine->start(fresh, fit0);
  for (size_t i = 0; i < fresh.size(); ++i) {
    members[fresh[i]]->init_outputs(fit0[i]);
    if (members[fresh[i]]->needs_gradient()) grads.push_back(fresh[i]);
  }
  engine->gradient(grads);
  // The kernels at init of the new runs, in one computation (FC: ntk_members, batched).
  std::vector<nlohmann::json> kernel_init(static_cast<size_t>(K));
  if (wants_kernels(c0) && !fresh.empty()) {
    std::vector<RunConfig> kc;
    std::vector<Net> nets;
    for (int64_t k : fresh) kc.push_back(cfgs[k]), nets.push_back(members[k]->net0());
    std::vector<nlohmann::json> js = measure_kernels_at_init(kc, data, nets);
    for (size_t i = 0; i < fresh.size(); ++i) kernel_init[size_t(fresh[i])] = std::move(js[i]);
  }
  for (int64_t k = 0; k < K; ++k) members[k]->start(kernel_init[k].is_null() ? nullptr : &kernel_init[k]);
  return run_members(*engine, members, data.x_test.to(at::kDouble).contiguous());
}

}  // namespace lf
