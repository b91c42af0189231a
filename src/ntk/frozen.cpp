// Frozen-kernel training (see frozen.h). Cost: O(n) per trial step on the host, plus one
// [n, |B|] x [|B|] product (2 n |B| flops) each time the unsatisfied set B changes (hinge), or one
// [n, n] x [n] product (2 n^2 flops) after every accepted step (softhinge, qhinge), on the device
// Theta is given on (cuda: the GPU, and one [n] transfer back); at the end one least-squares solve
// on the CPU (QR with pivoting, O(n^3)).
#include "ntk/frozen.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <vector>
#include <algorithm>

#include "common/error.h"

namespace lf {

nlohmann::json FrozenResult::to_json() const {
  auto num = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  return {{"status", status}, {"message", message}, {"steps", steps},          {"rejected", rejected},
          {"gradient_evaluations", gradient_evaluations}, {"t", t},
          {"t2", num(t2)},    {"train_err", train_err},  {"test_err", num(test_err)}, {"wall_s", wall_s}};
}

FrozenResult frozen_kernel_train(const at::Tensor& K_in, const at::Tensor& y_in, const FrozenOptions& opt) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t n = K_in.size(0);
  require(K_in.dim() == 2 && K_in.size(1) == n && y_in.numel() == n, "frozen kernel: Theta must be [n, n] and y [n]");
  const at::TensorOptions cpu = at::TensorOptions().dtype(at::kDouble).device(at::kCPU);
  const at::Tensor K = K_in.to(at::kDouble).contiguous();  // [n, n] where it was computed: the products there
  at::Tensor yt = y_in.to(cpu).reshape({n}).contiguous();
  const double* y = yt.data_ptr<double>();
  const double alpha = opt.alpha;
  StepControl ctl = opt.control;
  FrozenResult r;
  r.t2 = std::numeric_limits<double>::quiet_NaN();
  r.test_err = std::numeric_limits<double>::quiet_NaN();
  // The state lives in plain arrays: a step is O(n) scalar work. Under the hinge,
  // g = Theta[:, B] l'_B / |B| depends on u only through the set B (l'_mu = -y_mu / alpha on B),
  // so it is recomputed (O(n |B|)) only when B changes: the same numbers as recomputing it every
  // step. Under the other losses l' varies with u: g is recomputed after every accepted step.
  const bool hinge = opt.loss.kind == Loss::Kind::Hinge;
  std::vector<double> u(n, 0.0), v(n, 0.0), g(n, 0.0), u_prev(n), v_prev(n), lp(n, 0.0);
  std::vector<double> u_hist;  // lte: u before the previous accepted step (dynamics/integrator.h)
  double dt_prev = 0;
  // eab2: the gradient at the previous accepted point, the extrapolation of the last step, and
  // what the error estimate after the next gradient needs (dynamics/integrator.h)
  std::vector<double> gprev(opt.eab2 ? n : 0), gx(opt.eab2 ? n : 0);
  bool have_prev = false, crossed_last = false;
  double h_used = 0, df_last = 0, fmax = 0;
  std::vector<char> inB(n, 0);
  bool first = true;
  double t = 0;
  auto wall = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  while (true) {
    // Protocol section 4: l'_mu = -y_mu [1 - alpha u_mu y_mu >= 0] / alpha for the hinge, and
    // (dl/dm)(alpha u_mu y_mu) y_mu / alpha for the others; the run stops when every point has
    // alpha u y >= 1.
    bool changed = first || !hinge, finite = true;
    int64_t unsatisfied = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double margin = 1.0 - alpha * u[i] * y[i];
      finite = finite && std::isfinite(u[i]);
      unsatisfied += margin > 0;
      if (hinge) {
        lp[i] = -y[i] / alpha;
      } else {
        lp[i] = opt.loss.slope(alpha * u[i] * y[i]) * y[i] / alpha;
      }
      const char b = hinge ? margin >= 0 : lp[i] != 0.0;
      changed = changed || b != inB[i];
      inB[i] = b;
    }
    first = false;
    if (!finite) {
      r.status = "diverged";
      r.message = "non-finite output";
      break;
    }
    if (unsatisfied == 0) {
      r.status = "converged";
      r.message = "every training point satisfied (alpha u y >= 1)";
      r.t2 = t;
      break;
    }
    if (opt.max_steps > 0 && r.steps >= opt.max_steps) {
      r.status = "stopped";
      r.message = "step budget (--max-steps) reached";
      break;
    }
    if (opt.max_wall > 0 && (r.steps & 255) == 0 && wall() >= opt.max_wall) {
      r.status = "stopped";
      r.message = "wall-time budget (--max-wall) reached";
      break;
    }
    ++r.gradient_evaluations;
    if (opt.eab2 && have_prev) gprev = g;  // g_n, before g becomes g_{n+1}
    if (changed) {
      std::vector<int64_t> idx;
      for (int64_t i = 0; i < n; ++i)
        if (inB[i]) idx.push_back(i);
      at::Tensor gt;  // [n]
      if (hinge) {  // Theta[:, B] l'_B: B is usually a small part of the points late in training
        at::Tensor B = at::tensor(idx, at::kLong).to(K.device());
        at::Tensor lpB = at::tensor(lp, cpu).to(K.device()).index_select(0, B);  // l'_B  [|B|]
        gt = at::mv(K.index_select(1, B), lpB);
      } else {      // l' = 0 outside B: Theta l', without copying columns of Theta every step
        gt = at::mv(K, at::tensor(lp, cpu).to(K.device()));
      }
      gt = gt.div_(double(idx.size())).to(cpu).contiguous();
      std::copy(gt.data_ptr<double>(), gt.data_ptr<double>() + n, g.begin());
    }
    if (opt.eab2 && have_prev) {  // the last step's smooth error caps the next dt
      double d2 = 0, g2 = 0;
      for (int64_t i = 0; i < n; ++i) d2 += (g[i] - gx[i]) * (g[i] - gx[i]), g2 += gprev[i] * gprev[i];
      const double rho = g2 > 0 ? std::sqrt(d2 / g2) : 0.0;
      ctl.dt = std::min(ctl.dt, opt.eab2_control.next_dt_cap(dt_prev, h_used, df_last, rho, fmax));
    }
    while (true) {  // trial steps until one is accepted (dynamics/momentum.h, as the network's)
      const double dt = ctl.dt;
      StepControl::Verdict verdict;
      bool crossed = false;
      const bool slope = opt.eab2 && have_prev && !crossed_last;  // eab2 with g1
      if (opt.eab2) {  // the exponential step, judged on the outputs before (u_prev) and after (u) it
        const ExpStep c = exp_step(opt.momentum, t, dt, slope ? dt_prev : 0.0);
        exp_trial_step(c, u.data(), v.data(), g.data(), gprev.data(), n, u_prev.data(), v_prev.data(), gx.data());
        verdict = opt.eab2_control.judge(ctl.dt, u_prev.data(), u.data(), nullptr, y, n, alpha, opt.momentum, t,
                                         &df_last, &crossed, &fmax);
      } else {
        const double x = opt.momentum.decay(t, dt);
        trial_step(x, 1.0 - x, dt, opt.momentum.enabled(), u.data(), v.data(), g.data(), n, u_prev.data(),
                   v_prev.data());
        if (opt.lte) {  // judged on the outputs before (u_prev) and after (u) the trial
          const bool hist = dt_prev > 0 && !u_hist.empty();
          verdict = opt.lte_control.judge(ctl.dt, dt_prev, u_prev.data(), u.data(), hist ? u_hist.data() : nullptr,
                                          nullptr, y, n, alpha, opt.momentum, t);
        } else {
          const double* rate = opt.momentum.enabled() ? v.data() : g.data();  // du/dt = v, or -g
          double vmax = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double a = std::fabs(rate[i]);
            if (!(a <= vmax)) vmax = a > vmax ? a : std::numeric_limits<double>::quiet_NaN();  // NaN sticks
          }
          const double df = alpha * dt * vmax;  // NaN if any velocity is not a number
          verdict = ctl.judge(df);
        }
      }
      if (verdict != StepControl::Verdict::Accept) {
        trial_restore(u.data(), v.data(), u_prev.data(), v_prev.data(), n);
        if (verdict == StepControl::Verdict::Diverge) {
          r.status = "diverged";
          r.message = kNanStep;
          break;
        }
        ++r.rejected;
        if (!(ctl.dt > 0)) {
          r.status = "diverged";
          r.message = kStepUnderflow;
          break;
        }
        continue;
      }
      t += dt;
      ++r.steps;
      if (opt.eab2) {
        h_used = slope ? dt_prev : 0.0;
        dt_prev = dt;
        crossed_last = crossed;
        have_prev = true;
      }
      if (opt.lte) {
        u_hist = u_prev;
        dt_prev = dt;
      }
      break;
    }
    if (r.status == "diverged") break;
  }
  r.t = t;
  r.u_train = at::tensor(u, cpu);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; ++i) wrong += alpha * u[i] * y[i] <= 0;
  r.train_err = double(wrong) / double(n);
  // Least squares Theta c = u (QR with column pivoting: Theta may be singular). A diverged run
  // has no predictor (and LAPACK builds differ on NaN input: MKL's gelsy refuses it).
  if (r.status == "diverged")
    r.c = at::full({n}, std::numeric_limits<double>::quiet_NaN(), cpu);
  else  // on the CPU: cuda's lstsq has no pivoting QR (gelsy)
    r.c = std::get<0>(at::linalg_lstsq(K.to(cpu), r.u_train.unsqueeze(1), c10::nullopt, std::string("gelsy"))).squeeze(1);
  r.wall_s = wall();
  return r;
}

double frozen_test_error(const at::Tensor& u_test, const at::Tensor& y_test) {
  require(u_test.numel() == y_test.numel(), "frozen kernel: test predictions and labels differ in size");
  return (u_test * y_test.to(u_test.scalar_type()) <= 0).to(at::kDouble).mean().item<double>();
}

}  // namespace lf
