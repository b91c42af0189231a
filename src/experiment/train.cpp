// One run of an FC network under the paper's full-batch dynamics (protocol sections 3-5).
// Two interchangeable models under one driver: the fused CPU float64 kernels (models/fc_fused.h)
// and the plain LibTorch reference (autograd; any dtype and device). The driver holds all
// parameters as one flat vector w [P] (velocity v, gradient g alike) and runs, per trial step,
//   v <- x v - (1 - x) g; w <- w + dt v       (dynamics/momentum.h; tau = 0: w <- w - dt g)
// then one forward on the training set; an accepted trial's outputs are the next step's
// outputs, and one backward (on the points with a non-zero loss derivative only) gives the
// next g: one forward and one backward per accepted step.
// Deliberately not: the stochastic variant (temperature > 0), CNN/WRN networks; storage.
#include "experiment/train.h"

#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "common/progress.h"
#include "data/dataset.h"
#include "dynamics/momentum.h"
#include "experiment/from_config.h"
#include "experiment/kernels.h"
#include "experiment/loss.h"
#include "experiment/state.h"
#include "models/fc_fused.h"

namespace lf {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

// A network on a device as the dynamics see it: parameters w and gradient g (flat [P]).
class Model {
 public:
  virtual ~Model() = default;
  // f (n doubles) <- f(w, x_train); remembers what gradient() needs.
  virtual void forward_train(double* f) = 0;
  // g <- sum_k c[k] d f(w, x_rows[k]) / dw at the w of the last forward_train().
  virtual void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) = 0;
  // f(w, x) on a CPU float64 [N, d] set: [N] CPU float64.
  virtual at::Tensor evaluate(const at::Tensor& x) = 0;
  at::Tensor w, g;
};

class FusedModel final : public Model {
 public:
  FusedModel(const Activation& act, const FCLayout& lay, const at::Tensor& x)
      : lay_(lay), net_(act, lay, x.size(0)), x_(x.contiguous()) {
    auto o = at::TensorOptions().dtype(at::kDouble);
    w = at::zeros({lay.size}, o);
    g = at::zeros({lay.size}, o);
    pw_ = lay.views(w);
    pg_ = lay.views(g);
    f_ = at::empty({x.size(0)}, o);
  }
  void forward_train(double* f) override {
    net_.forward(pw_, x_, f_);
    std::memcpy(f, f_.data_ptr<double>(), sizeof(double) * f_.numel());
  }
  void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    net_.backward(pw_, x_, rows.data(), c.data(), int64_t(rows.size()), pg_);
  }
  at::Tensor evaluate(const at::Tensor& x) override { return net_.evaluate(pw_, x.contiguous()); }

 private:
  FCLayout lay_;
  FCFused net_;
  at::Tensor x_, f_;
  FCParams pw_, pg_;
};

// Plain LibTorch: autograd through fc_forward_reference, full batch, on any dtype/device.
class ReferenceModel final : public Model {
 public:
  ReferenceModel(const Activation& act, const FCLayout& lay, const at::Tensor& x, at::TensorOptions opts)
      : act_(act), lay_(lay), opts_(opts), x_(x.to(opts)) {
    w = at::zeros({lay.size}, opts);
    g = at::zeros({lay.size}, opts);
  }
  void forward_train(double* f) override {
    c10::AutoGradMode on(true);
    w.set_requires_grad(true);
    f_graph_ = fc_forward_reference(lay_.views(w), x_, act_);
    at::Tensor fc = f_graph_.detach().to(at::kCPU, at::kDouble).contiguous();
    std::memcpy(f, fc.data_ptr<double>(), sizeof(double) * fc.numel());
  }
  void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    c10::AutoGradMode on(true);
    at::Tensor cf = at::zeros({f_graph_.size(0)}, at::TensorOptions().dtype(at::kDouble));
    double* p = cf.data_ptr<double>();
    for (size_t k = 0; k < rows.size(); ++k) p[rows[k]] = c[k];
    (f_graph_ * cf.to(opts_)).sum().backward();
    c10::NoGradGuard ng;
    g.copy_(w.grad());
    w.mutable_grad() = at::Tensor();
    f_graph_ = at::Tensor();
  }
  at::Tensor evaluate(const at::Tensor& x) override {
    c10::NoGradGuard ng;
    at::Tensor out = at::empty({x.size(0)}, at::TensorOptions().dtype(at::kDouble));
    FCParams p = lay_.views(w.detach());
    for (int64_t s = 0; s < x.size(0); s += 8192) {
      int64_t r = std::min<int64_t>(8192, x.size(0) - s);
      out.narrow(0, s, r).copy_(fc_forward_reference(p, x.narrow(0, s, r).to(opts_), act_).to(at::kCPU));
    }
    return out;
  }

 private:
  Activation act_;
  FCLayout lay_;
  at::TensorOptions opts_;
  at::Tensor x_, f_graph_;
};

// The loss side of one set of training outputs (experiment/loss.h).
struct Fit {
  double loss2 = kNaN;     // alpha^2 L
  double train_err = kNaN; // fraction with F y <= 0
  int64_t unsatisfied = 0; // alpha (f - f0) y < 1
  std::vector<int64_t> rows;  // points with a non-zero loss derivative
  std::vector<double> c;      // dL/df there
};

void fit(const Loss& loss, double alpha, const std::vector<double>& f, const std::vector<double>& f0,
         const std::vector<double>& y, Fit& out) {
  const size_t n = f.size();
  out.rows.clear();
  out.c.clear();
  double sum = 0;
  int64_t errs = 0, unsat = 0;
  const double cscale = 1.0 / (alpha * double(n));  // dL/df = l'(m) y / (alpha n), loss.h
  for (size_t i = 0; i < n; ++i) {
    double m = alpha * (f[i] - f0[i]) * y[i];  // margin F y
    sum += loss.value(m);
    errs += (m <= 0);
    unsat += (m < 1);
    double s = loss.slope(m);
    if (s != 0) {
      out.rows.push_back(int64_t(i));
      out.c.push_back(s * y[i] * cscale);
    }
  }
  out.loss2 = sum / double(n);
  out.train_err = double(errs) / double(n);
  out.unsatisfied = unsat;
}

// Preactivations pre_1 .. pre_L [n, h] and the output f [n, 1] (CPU float64).
std::vector<at::Tensor> preactivations(const FCParams& p, const at::Tensor& x, const Activation& act) {
  std::vector<at::Tensor> out;
  at::Tensor z = x;
  for (int64_t l = 0; l <= p.L(); ++l) {
    double s = 1.0 / std::sqrt(double(p.W[l].size(1)));
    at::Tensor pre = at::addmm(p.b[l], z, p.W[l].t(), 1.0, s);
    out.push_back(pre);
    if (l < p.L()) z = act(pre);
  }
  return out;
}

// |dz/dt| at t = 0 per layer (protocol section 5), over one step of the actual dynamics from
// w_before to w_after taking dt: the first accepted step whose output change df exceeds df_min
// (earlier steps, from dt0 = 1e-50 up, move the weights by less than their rounding):
//   zdot_l = rms over training points and neurons of (pre_l(w_after) - pre_l(w_before)) / dt,
// for the preactivations l = 1..L and then the output f.
std::vector<double> measure_zdot(const FCLayout& lay, const at::Tensor& w_before, const at::Tensor& w_after,
                                 double dt, const at::Tensor& x, const Activation& act) {
  c10::NoGradGuard ng;
  auto before = preactivations(lay.views(w_before.to(at::kCPU, at::kDouble)), x, act);
  auto after = preactivations(lay.views(w_after.detach().to(at::kCPU, at::kDouble)), x, act);
  std::vector<double> out(lay.L + 1, 0.0);
  for (int64_t l = 0; l <= lay.L; ++l) out[l] = ((after[l] - before[l]) / dt).pow(2).mean().sqrt().item<double>();
  return out;
}

// Per layer l = 0..L, the norm of (W_l, b_l): the layer's weights and bias together.
std::vector<double> layer_norms(const FCParams& p) {
  std::vector<double> out;
  for (int64_t l = 0; l <= p.L(); ++l) {
    const double w = p.W[l].norm().item<double>(), b = p.b[l].norm().item<double>();
    out.push_back(std::sqrt(w * w + b * b));
  }
  return out;
}

std::vector<double> to_vector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
at::Tensor to_tensor(const std::vector<double>& v) {
  return at::from_blob(const_cast<double*>(v.data()), {int64_t(v.size())}, at::TensorOptions().dtype(at::kDouble))
      .clone();
}

}  // namespace

void validate_train_config(const RunConfig& cfg) {
  require(cfg.arch == "fc", "--arch " + cfg.arch + " cannot be trained yet (only fc networks are built)");
  require(!cfg.stochastic(),
          "--temperature > 0 (the stochastic dynamics of setup B) is not implemented yet; use the full-batch "
          "dynamics (temperature 0)");
  auto finite = [](double v, const char* name) {
    require(std::isfinite(v), std::string("--") + name + " must be a finite number");
  };
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
  require(data.x_train.defined() && data.x_train.dim() == 2 && data.x_train.size(0) >= 1,
          "the training set must be a non-empty [n, d] matrix");
  require(data.x_test.defined() && data.x_test.dim() == 2, "the test set must be an [n, d] matrix");
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
                      {"t", num(t)}, {"t1", num(t1)}, {"t2", num(t2)}, {"train_loss", num(train_loss)},
                      {"train_err", num(train_err)}, {"test_err", num(test_err)}, {"unsatisfied", unsatisfied},
                      {"weight_change", num(weight_change)}, {"output_norm", num(output_norm)},
                      {"f_norm", num(f_norm)}, {"kernel_change", num(kernel_change)}, {"wall_s", num(wall_s)},
                      {"steps_per_s", num(steps_per_s)}, {"trainer", trainer}};
  if (!zdot.empty()) {
    nlohmann::json z = nlohmann::json::array();
    for (double v : zdot) z.push_back(num(v));
    j["zdot"] = z;
  }
  if (!kernel.is_null() && !kernel.empty()) j["kernel"] = kernel;
  return j;
}

FCParams fc_params_from_state(const std::string& bytes) {
  TrainState s = TrainState::decode(bytes);
  FCLayout lay(s.header.at("d").get<int64_t>(), s.header.at("h").get<int64_t>(), s.header.at("L").get<int64_t>());
  at::Tensor w = s.tensor("w").to(at::kDouble);
  require(w.numel() == lay.size, "training state: weights of the wrong size");
  return lay.views(w).clone();
}

RunResult train_run(const RunConfig& cfg, const Dataset& data, const TrainHooks& hooks) {
  validate(cfg, data);
  const auto t_start = Clock::now();
  const Activation act = activation_of(cfg);
  const Loss loss = Loss::make(cfg.loss);
  const double alpha = cfg.alpha;
  const int64_t n = data.x_train.size(0), d = data.x_train.size(1), pte = data.x_test.size(0);
  const FCLayout lay(d, cfg.h, cfg.L);
  const bool fused = cfg.device == "cpu" && cfg.is_double() && !hooks.reference;
  auto opts = at::TensorOptions()
                  .dtype(cfg.is_double() ? at::kDouble : at::kFloat)
                  .device(cfg.device == "cuda" ? at::kCUDA : at::kCPU);
  const at::Tensor x_train = data.x_train.to(at::kDouble).contiguous();
  const at::Tensor x_test = data.x_test.to(at::kDouble).contiguous();
  std::unique_ptr<Model> model;
  if (fused) model = std::make_unique<FusedModel>(act, lay, x_train);
  else model = std::make_unique<ReferenceModel>(act, lay, x_train, opts);
  at::Tensor& w = model->w;
  at::Tensor& g = model->g;

  RunResult res;
  res.trainer = fused ? "fused" : "reference";
  const std::vector<double> y = to_vector(data.y_train), y_test = to_vector(data.y_test);
  std::vector<double> f(n), fnew(n), f0(n);
  at::Tensor v = at::zeros_like(w), w0, f0_test;
  StepControl sc;
  sc.dt = cfg.dt0;
  sc.df_min = cfg.df_min;  // protocol section 4: 1e-4
  sc.df_max = cfg.df_max;  // 1e-2
  sc.max_dt = cfg.max_dt;
  const Momentum mom{cfg.tau};
  double t = 0, t1 = kNaN, t2 = kNaN, wall_before = 0;
  int64_t step = 0, rejected = 0, next_ckpt = 0, last_ckpt = -1;
  nlohmann::json kernel_init;
  const bool kernels = cfg.delta_kernel || cfg.init_kernel || cfg.final_kernel;
  Fit cur;

  if (!hooks.resume_state.empty()) {
    TrainState s = TrainState::decode(hooks.resume_state);
    const auto& hd = s.header;
    require(hd.value("config_hash", "") == config_hash(cfg),
            "the saved training state belongs to another run configuration");
    require(hd.at("n").get<int64_t>() == n && hd.at("pte").get<int64_t>() == pte,
            "the saved training state was made on another dataset size");
    c10::NoGradGuard ng;
    w.copy_(s.tensor("w"));
    v.copy_(s.tensor("v"));
    g.copy_(s.tensor("g"));
    w0 = s.tensor("w0").to(opts);
    f = to_vector(s.tensor("f"));
    f0 = to_vector(s.tensor("f0"));
    f0_test = s.tensor("f0_test").clone();
    auto sc_v = to_vector(s.tensor("scalars"));  // t, dt, t1, t2, wall
    t = sc_v.at(0);
    sc.dt = sc_v.at(1);
    t1 = sc_v.at(2);
    t2 = sc_v.at(3);
    wall_before = sc_v.at(4);
    step = hd.at("step").get<int64_t>();
    rejected = hd.at("rejected").get<int64_t>();
    next_ckpt = hd.at("next_ckpt").get<int64_t>();
    last_ckpt = hd.at("last_ckpt").get<int64_t>();
    kernel_init = hd.value("kernel_init", nlohmann::json());
    if (hd.contains("zdot")) res.zdot = hd["zdot"].get<std::vector<double>>();
    fit(loss, alpha, f, f0, y, cur);
  } else {
    {
      c10::NoGradGuard ng;
      w.copy_(lay.flatten(fc_init(d, cfg.h, cfg.L, cfg.weights_seed())));  // protocol section 8
      w0 = w.detach().clone();
    }
    model->forward_train(f0.data());
    f = f0;
    f0_test = model->evaluate(x_test);
    fit(loss, alpha, f, f0, y, cur);
    if (cur.unsatisfied > 0) model->gradient(cur.rows, cur.c);
    if (kernels) {
      FCParams p0 = lay.views(w0.to(at::kCPU, at::kDouble));
      kernel_init = measure_kernels_at_init(cfg, data, p0);
    }
  }
  const int64_t step_at_start = step;

  at::Tensor wb = at::empty_like(w), vb = at::empty_like(v);
  const at::Tensor w0_norm_t = w0.norm();
  const double w0_norm = w0_norm_t.item<double>();
  const std::vector<double> w0_layer_norms = layer_norms(lay.views(w0.to(at::kCPU, at::kDouble)));
  at::Tensor last_f_test = f0_test;
  auto wall = [&] { return wall_before + seconds_since(t_start); };

  auto train_side = [&]() {  // what a checkpoint knows without touching the weights
    Checkpoint c;
    c.step = step;
    c.t = t;
    c.dt = sc.dt;
    c.train_loss = cur.loss2;
    c.train_err = cur.train_err;
    c.unsatisfied = cur.unsatisfied;
    return c;
  };
  auto make_checkpoint = [&]() {
    Checkpoint c = train_side();
    c10::NoGradGuard ng;
    at::Tensor dw = w.detach() - w0;
    c.w0_norm = w0_norm;
    c.weight_change = dw.norm().item<double>() / w0_norm;
    const std::vector<double> dl = layer_norms(lay.views(dw.to(at::kCPU, at::kDouble)));
    for (size_t l = 0; l < dl.size(); ++l) c.layer_change.push_back(dl[l] / w0_layer_norms[l]);
    if (pte > 0) {
      last_f_test = model->evaluate(x_test);
      at::Tensor delta = last_f_test - f0_test;  // f - f0 on the test set
      const double* dp = delta.data_ptr<double>();
      int64_t errs = 0;
      for (int64_t i = 0; i < pte; ++i) errs += (dp[i] * y_test[i] <= 0);  // F y <= 0
      c.test_err = double(errs) / double(pte);
      c.output_norm = delta.pow(2).mean().sqrt().item<double>();
      c.f_norm = last_f_test.pow(2).mean().sqrt().item<double>();
    }
    c.wall_s = wall();
    last_ckpt = step;
    res.checkpoints.push_back(c);
    if (hooks.on_checkpoint) hooks.on_checkpoint(c);
  };

  auto make_state = [&]() {
    TrainState s;
    s.header = {{"format", "lazyfeat-train-state"}, {"version", 1}, {"config_hash", config_hash(cfg)},
                {"d", d}, {"h", cfg.h}, {"L", cfg.L}, {"n", n}, {"pte", pte}, {"step", step},
                {"rejected", rejected}, {"next_ckpt", next_ckpt}, {"last_ckpt", last_ckpt},
                {"kernel_init", kernel_init}, {"trainer", res.trainer}};
    if (!res.zdot.empty()) s.header["zdot"] = res.zdot;
    s.tensors["w"] = w.detach();
    s.tensors["v"] = v;
    s.tensors["g"] = g;
    s.tensors["w0"] = w0;
    s.tensors["f"] = to_tensor(f);
    s.tensors["f0"] = to_tensor(f0);
    s.tensors["f0_test"] = f0_test;
    s.tensors["scalars"] = to_tensor({t, sc.dt, t1, t2, wall()});
    return s.encode();
  };

  if (step == next_ckpt && last_ckpt < step) {
    make_checkpoint();
    next_ckpt = next_checkpoint(step);
  }

  Progress progress("train", hooks.progress);
  auto progress_fields = [&]() {
    double el = seconds_since(t_start);
    double rate = el > 0 ? double(step - step_at_start) / el : 0;
    std::string s = "step " + std::to_string(step) + "  t " + fmt_num(t) + "  dt " + fmt_num(sc.dt) +
                    "  loss " + fmt_num(cur.loss2) + "  unsat " + std::to_string(cur.unsatisfied) + "  " +
                    fmt_num(rate) + " steps/s";
    double eta = -1;
    if (cfg.max_steps > 0 && rate > 0) eta = double(cfg.max_steps - step) / rate;
    if (cfg.max_wall > 0) eta = eta < 0 ? cfg.max_wall - wall() : std::min(eta, cfg.max_wall - wall());
    if (eta >= 0) s += "  ETA " + fmt_duration(eta);
    return s;
  };

  auto last_state = Clock::now();
  auto last_poll = Clock::now();
  std::string status, message;
  const double alpha_abs = std::fabs(alpha);
  for (;;) {
    if (cur.unsatisfied == 0) {  // every point satisfied: zero hinge loss
      status = "converged";
      message = "every training point satisfied (alpha F y >= 1)";
      if (std::isnan(t2)) t2 = t;
      break;
    }
    if (cfg.max_steps > 0 && step >= cfg.max_steps) {
      status = "stopped";
      message = "step budget (--max-steps) reached";
      break;
    }
    if (cfg.max_wall > 0 && wall() >= cfg.max_wall) {
      status = "stopped";
      message = "wall-time budget (--max-wall) reached";
      break;
    }
    if (hooks.should_stop && seconds_since(last_poll) >= 0.25) {
      last_poll = Clock::now();
      if (hooks.should_stop()) {
        status = "stopped";
        message = "stopped by request";
        break;
      }
    }
    // One trial step of size dt from (w, v, t) with the gradient g at w (protocol section 4).
    const double dt = sc.dt;
    if (fused) {  // CPU float64 contiguous: one pass over w, v, g (the same arithmetic as below)
      double* wp = w.data_ptr<double>();
      double* vp = v.data_ptr<double>();
      double* wbp = wb.data_ptr<double>();
      double* vbp = vb.data_ptr<double>();
      const double* gp = g.data_ptr<double>();
      const int64_t P = w.numel();
      if (mom.enabled()) {
        const double x = mom.decay(t, dt), y = 1.0 - x;
        for (int64_t i = 0; i < P; ++i) {
          wbp[i] = wp[i];
          vbp[i] = vp[i];
          const double vi = vp[i] * x - gp[i] * y;  // v <- x v - (1 - x) g
          vp[i] = vi;
          wp[i] += vi * dt;                         // w <- w + dt v
        }
      } else {
        for (int64_t i = 0; i < P; ++i) {
          wbp[i] = wp[i];
          vbp[i] = vp[i];
          wp[i] -= gp[i] * dt;  // gradient flow
        }
      }
    } else {
      c10::NoGradGuard ng;
      wb.copy_(w);
      vb.copy_(v);
      if (mom.enabled()) {
        double x = mom.decay(t, dt);
        v.mul_(x).sub_(g, 1.0 - x);  // v <- x v - (1 - x) g
        w.add_(v, dt);               // w <- w + dt v
      } else {
        w.sub_(g, dt);  // gradient flow
      }
    }
    model->forward_train(fnew.data());
    double df = 0;  // alpha max |f_new - f|, NaN if any output is not a number
    for (int64_t i = 0; i < n; ++i) {
      double a = std::fabs(fnew[i] - f[i]);
      if (!(a <= df)) df = (a > df) ? a : std::numeric_limits<double>::quiet_NaN();
      if (std::isnan(df)) break;
    }
    df *= alpha_abs;
    const StepControl::Verdict verdict = sc.judge(df);
    if (verdict != StepControl::Verdict::Accept) {
      c10::NoGradGuard ng;
      w.copy_(wb);
      v.copy_(vb);
      if (verdict == StepControl::Verdict::Diverge) {  // protocol section 4: stop on NaN
        status = "diverged";
        message = "a trial step gave a non-finite output change (NaN)";
        break;
      }
      ++rejected;
      if (!(sc.dt > 0)) {
        status = "diverged";
        message = kStepUnderflow;
        break;
      }
      continue;
    }
    if (cfg.zdot && res.zdot.empty() && df > cfg.df_min) res.zdot = measure_zdot(lay, wb, w, dt, x_train, act);
    t += dt;
    ++step;
    std::swap(f, fnew);
    fit(loss, alpha, f, f0, y, cur);
    if (!std::isfinite(cur.loss2) || !std::isfinite(t) || !std::isfinite(sc.dt)) {
      status = "diverged";
      message = "non-finite loss, time or step size";
      break;
    }
    if (std::isnan(t1) && cur.loss2 < 0.5) t1 = t;  // protocol section 5
    if (cur.unsatisfied > 0) model->gradient(cur.rows, cur.c);
    if (step >= next_ckpt) {
      make_checkpoint();
      next_ckpt = next_checkpoint(step);
    }
    if (hooks.on_state && seconds_since(last_state) >= hooks.state_every_s) {
      hooks.on_state(make_state());
      last_state = Clock::now();
    }
    if (progress.due()) progress.update(progress_fields());
  }

  if (last_ckpt != step && status != "diverged") make_checkpoint();
  if (status == "diverged") {  // record what there is, without a test evaluation of broken weights
    Checkpoint c = train_side();
    c.wall_s = wall();
    res.checkpoints.push_back(c);
    if (hooks.on_checkpoint) hooks.on_checkpoint(c);
  }
  if (hooks.on_state && status != "diverged") hooks.on_state(make_state());
  progress.finish(progress_fields() + "  " + status);

  const Checkpoint& last = res.checkpoints.back();
  res.status = status;
  res.message = message;
  res.steps = step;
  res.rejected = rejected;
  res.t = t;
  res.t1 = t1;
  res.t2 = t2;
  res.train_loss = cur.loss2;
  res.train_err = cur.train_err;
  res.unsatisfied = cur.unsatisfied;
  res.test_err = last.test_err;
  res.weight_change = last.weight_change;
  res.output_norm = last.output_norm;
  res.f_norm = last.f_norm;
  res.test_f0 = f0_test;
  res.test_f_delta = (last_f_test - f0_test).contiguous();
  if (kernels && status != "diverged") {
    FCParams p0 = lay.views(w0.to(at::kCPU, at::kDouble));
    FCParams pw = lay.views(w.detach().to(at::kCPU, at::kDouble));
    res.kernel = measure_kernels_at_end(cfg, data, p0, pw, kernel_init);
    if (res.kernel.is_object() && res.kernel.contains("change") && res.kernel["change"].is_number())
      res.kernel_change = res.kernel["change"].get<double>();
  }
  double el = seconds_since(t_start);
  res.wall_s = wall();
  res.steps_per_s = el > 0 ? double(step - step_at_start) / el : 0;
  return res;
}

}  // namespace lf
