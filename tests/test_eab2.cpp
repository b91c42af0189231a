// The eab2 integrator (dynamics/integrator.h, --integrator eab2): its step coefficients against a
// fine numerical solution of the momentum ODE with a gradient linear in time (every momentum
// convention); exactness for a constant gradient in one step; second order on a smooth problem
// (the global error falls as tol^(2/3)); a linear model under the hinge (frozen kernel,
// orthogonal inputs) against its exact trajectory in far fewer gradients than the paper's rule;
// the frozen coupled kernel with the paper's momentum against the paper's rule ten times finer;
// the network (fused and reference), its exact resume, an ensemble equal to its runs alone.
// Deliberately not: closeness to the paper's trajectories on MNIST (lazyfeat bench integrator).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "dynamics/integrator.h"
#include "experiment/run_state.h"
#include "dynamics/momentum.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "ntk/frozen.h"
#include "testing.h"

using namespace lf;

namespace {

const auto kD = at::TensorOptions().dtype(at::kDouble);
using V = StepControl::Verdict;

// w' = v, tau(t) v' = -(v + g0 - g1 (t - a)... ) integrated by classical RK4 with N steps (error
// ~ (h/N)^4): the reference for one exponential step. tau(t) per Momentum (t / mu for tau < 0).
void rk4(const Momentum& m, double a, double h, double g0, double g1, double& w, double& v, int N = 200000) {
  auto rate = [&](double t, double vv, double& dw, double& dv) {
    const double g = g0 + g1 * (t - a);
    dw = vv;
    if (m.tau == 0) dw = -g, dv = 0;
    else dv = -(vv + g) / (m.tau > 0 ? m.tau : t / -m.tau);
  };
  const double s = h / N;
  for (int i = 0; i < N; ++i) {
    const double t = a + i * s;
    double k1w, k1v, k2w, k2v, k3w, k3v, k4w, k4v;
    rate(t, v, k1w, k1v);
    rate(t + s / 2, v + s / 2 * k1v, k2w, k2v);
    rate(t + s / 2, v + s / 2 * k2v, k3w, k3v);
    rate(t + s, v + s * k3v, k4w, k4v);
    w += s / 6 * (k1w + 2 * k2w + 2 * k3w + k4w);
    v += s / 6 * (k1v + 2 * k2v + 2 * k3v + k4v);
  }
}

TEST(Eab2, StepCoefficientsMatchTheOde) {
  struct Case {
    Momentum m;
    double a, h;
  };
  // constant tau (small and large z), the paper's t/mu late and early, mu = 1, gradient flow
  const std::vector<Case> cases = {{Momentum{2.0}, 0.0, 0.3}, {Momentum{0.05}, 1.0, 0.8}, {Momentum{-1000.0}, 3.6, 0.04},
                                   {Momentum{-1000.0}, 3.6, 0.4}, {Momentum{-3.0}, 0.5, 0.7}, {Momentum{-1.0}, 0.2, 0.5},
                                   {Momentum{0.0}, 1.0, 0.5}};
  const double g0 = 0.7, g1 = -1.3, v0 = 0.4, gp_dt = 0.25;
  for (const Case& c : cases) {
    double w = 0, v = v0;
    rk4(c.m, c.a, c.h, g0, g1, w, v);
    // the step from g_n = g0 and g_{n-1} = g0 - g1 gp_dt, h_prev = gp_dt
    const ExpStep s = exp_step(c.m, c.a, c.h, gp_dt);
    const double gp = g0 - g1 * gp_dt;
    const double v1 = s.vv * v0 + s.vg * g0 + s.vp * gp, w1 = s.wv * v0 + s.wg * g0 + s.wp * gp;
    EXPECT_NEAR(v1, v, 1e-11) << "tau " << c.m.tau << " a " << c.a << " h " << c.h;
    EXPECT_NEAR(w1, w, 1e-11) << "tau " << c.m.tau << " a " << c.a << " h " << c.h;
    EXPECT_DOUBLE_EQ(s.r, c.h / gp_dt);
    // without the slope: exact for the constant gradient g0
    double wc = 0, vc = v0;
    rk4(c.m, c.a, c.h, g0, 0.0, wc, vc);
    const ExpStep e = exp_step(c.m, c.a, c.h, 0.0);
    EXPECT_EQ(e.vp, 0.0);
    EXPECT_NEAR(e.vv * v0 + e.vg * g0, vc, 1e-11) << c.m.tau;
    EXPECT_NEAR(e.wv * v0 + e.wg * g0, wc, 1e-11) << c.m.tau;
  }
  // From t = 0 under t/mu: v = -g0 - g1 mu h/(mu+1), w = -g0 h - g1 mu h^2 / (2 (mu+1)), exactly.
  const ExpStep z = exp_step(Momentum{-4.0}, 0.0, 0.5, 0.5);  // g_{n-1} = g0 - g1 * 0.5
  EXPECT_NEAR(z.vv * v0 + z.vg * g0 + z.vp * (g0 - g1 * 0.5), -g0 - g1 * 4 * 0.5 / 5, 1e-14);
  EXPECT_NEAR(z.wv * v0 + z.wg * g0 + z.wp * (g0 - g1 * 0.5), -g0 * 0.5 - g1 * 4 * 0.25 / 10, 1e-14);
}

// One scalar w = f (label -1, far below the kink) under w' = v, tau v' = -(v + k w + b): a smooth
// problem whose gradient depends on w. eab2's controller alone (no kinks): the step, the verdict,
// the gradient at the accepted point, the cap from its defect. Steps are cut to land on T.
double eab2_linear(const Momentum& m, double k, double b, double T, double tol, int64_t& steps) {
  Eab2Control ec{tol};
  double w = 0, v = 0, t = 0, dt = 1e-3, h_prev = 0, h_used = 0, df = 0, g = b, gp = 0, gx = 0;
  const double y = -1;
  steps = 0;
  while (t < T) {
    const double step = std::min(dt, T - t);
    double wp, vp, d = step;
    bool crossed = false;
    const ExpStep c = exp_step(m, t, step, h_prev);
    exp_trial_step(c, &w, &v, &g, &gp, 1, &wp, &vp, &gx);
    if (ec.judge(d, &wp, &w, nullptr, &y, 1, 1e-3, m, t, &df, &crossed) != V::Accept) {
      w = wp, v = vp, dt = d;
      continue;
    }
    if (step == dt) dt = d;
    h_used = h_prev;
    h_prev = step;
    t += step;
    ++steps;
    gp = g;
    g = k * w + b;
    dt = std::min(dt, ec.next_dt_cap(step, h_used, df * 1e3, std::fabs(g - gx) / std::fabs(gp)) );
  }
  return w;
}

// tau w'' + w' + k w + b = 0 from rest (constant tau, overdamped: 1 - 4 k tau > 0): w = -b/k +
// A e^{r1 t} + B e^{r2 t}. The global error falls as tol^(2/3) (second order, error per step held
// at tol): 100x smaller tol, ~21x smaller error and ~4.6x more steps.
TEST(Eab2, SmoothProblemConvergesAtSecondOrder) {
  const double tau = 0.1, k = 1.5, b = -2.0, T = 3.0;
  const double disc = std::sqrt(1 - 4 * k * tau), r1 = (-1 + disc) / (2 * tau), r2 = (-1 - disc) / (2 * tau);
  // w(0) = 0, w'(0) = 0: A + B = b/k, r1 A + r2 B = 0
  const double A = (b / k) * r2 / (r2 - r1), B = (b / k) - A;
  const double exact = -b / k + A * std::exp(r1 * T) + B * std::exp(r2 * T);
  std::vector<double> err;
  std::vector<int64_t> steps;
  for (double tol : {1e-5, 1e-7, 1e-9}) {
    int64_t s = 0;
    err.push_back(std::fabs(eab2_linear(Momentum{tau}, k, b, T, tol, s) - exact));
    steps.push_back(s);
  }
  for (size_t i = 1; i < err.size(); ++i) {
    const double ratio = err[i - 1] / err[i], sr = double(steps[i]) / double(steps[i - 1]);
    EXPECT_GT(ratio, 8.0) << err[0] << " " << err[1] << " " << err[2];
    EXPECT_LT(ratio, 60.0) << err[0] << " " << err[1] << " " << err[2];
    EXPECT_GT(sr, 2.5) << steps[0] << " " << steps[1] << " " << steps[2];
    EXPECT_LT(sr, 9.0) << steps[0] << " " << steps[1] << " " << steps[2];
  }
  EXPECT_LT(err.back(), 1e-6 * std::fabs(exact));
}

// ------------------------------------------------------- a linear model under the hinge

// f(w, x) = w . x with orthogonal inputs (Theta = diag(k)) under gradient flow: the exact
// piecewise-linear trajectory ends at lft::exact_hinge_t2 with every margin at 1.
TEST(Eab2, FrozenLinearHingeMatchesExactTrajectory) {
  const lft::LinearHingeProblem p = lft::linear_hinge_problem();
  const FrozenResult rp = frozen_kernel_train(p.K, p.y, p.gradient_flow);
  ASSERT_EQ(rp.status, "converged");
  FrozenOptions o = p.gradient_flow;
  o.eab2 = true;
  for (double tol : {1e-2, 1e-3, 1e-4}) {
    o.eab2_control.tol = tol;
    FrozenResult r = frozen_kernel_train(p.K, p.y, o);
    ASSERT_EQ(r.status, "converged");
    EXPECT_LE(p.margin_error(r), tol) << tol;
    EXPECT_LE(std::fabs(r.t2 - p.t2) / p.t2, tol) << tol;
    EXPECT_EQ(r.gradient_evaluations, r.steps);
    EXPECT_LT(10 * r.gradient_evaluations, rp.gradient_evaluations)
        << "eab2 " << r.gradient_evaluations << " paper " << rp.gradient_evaluations;
  }
}

// Frozen-kernel training with the paper's momentum (tau = t/mu) on a coupled kernel: eab2 against
// the paper's rule ten times finer, in far fewer gradients than the paper's rule.
TEST(Eab2, FrozenMomentumCoupledKernelNearFineRule) {
  const lft::CoupledFrozenProblem p = lft::coupled_frozen_problem();
  const FrozenResult &rf = p.fine_run, &rp = p.paper_run;
  ASSERT_EQ(rf.status, "converged");
  const double d_paper = p.distance(rp);
  FrozenOptions o = p.paper;
  for (double tol : {1e-3, 1e-4}) {
    o.eab2 = true;
    o.eab2_control.tol = tol;
    FrozenResult re = frozen_kernel_train(p.K, p.y, o);
    ASSERT_EQ(re.status, "converged");
    const double d = p.distance(re);
    // Measured: 2.4e-3 (tol 1e-3) and 1.7e-3 (1e-4) against the paper's 2.8e-4, in 1,173 and 3,640
    // gradients against its 28,821: the hinge's chatter at the margin, not the steps between kinks
    // (exact here), sets the error (protocol section 4, "Integrator eab2").
    EXPECT_LT(d, 5e-3) << tol;
    EXPECT_LT(5 * re.gradient_evaluations, rp.gradient_evaluations) << tol;
    EXPECT_NEAR(re.t2, rf.t2, 5e-3 * rf.t2) << tol;
    std::cout << "frozen coupled: paper " << rp.gradient_evaluations << " grads, diff " << d_paper << " t2 " << rp.t2
              << "; eab2 tol " << tol << ": " << re.gradient_evaluations << " grads (" << re.rejected
              << " rejected), diff " << d << " t2 " << re.t2 << "; fine " << rf.gradient_evaluations << " t2 "
              << rf.t2 << "\n";
  }
}

// ------------------------------------------------------------------------ the network

RunConfig small_eab2() { return lft::small_integrator_run("eab2"); }

// Fused and reference trainers reach the same end (two roundings of one dynamics), counting one
// gradient at w0 and one after each accepted step but the last; far fewer than the paper's rule.
TEST(Eab2Network, ConvergesFusedAndReferenceInFewerGradients) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig c = small_eab2();
  TrainHooks h = lft::quiet();
  RunResult a = train_run(c, d, h);
  ASSERT_EQ(a.status, "converged");
  EXPECT_EQ(a.trainer, lft::cpu_trainer());
  EXPECT_EQ(a.gradient_evaluations, a.steps);
  h.reference = true;
  RunResult b = train_run(c, d, h);
  ASSERT_EQ(b.status, "converged");
  EXPECT_EQ(b.trainer, "reference");
  const double rms = a.test_f_delta.pow(2).mean().sqrt().item<double>();
  EXPECT_LT((a.test_f_delta - b.test_f_delta).pow(2).mean().sqrt().item<double>(), 0.05 * rms);
  RunConfig p = c;
  p.integrator = "paper";
  RunResult rp = train_run(p, d, lft::quiet());
  ASSERT_EQ(rp.status, "converged");
  EXPECT_LT(3 * a.gradient_evaluations, rp.gradient_evaluations);
  EXPECT_LT((a.test_f_delta - rp.test_f_delta).pow(2).mean().sqrt().item<double>(), 0.05 * rms);
  std::cout << "network: eab2 " << a.gradient_evaluations << " grads (" << a.rejected << " rejected), paper "
            << rp.gradient_evaluations << "\n";
}

// A run stopped and resumed from its saved state equals the uninterrupted run bit for bit, cut
// after a step across a kink (the next step takes no slope: crossed_last must be saved) and after
// one that did not (the next step's slope needs the saved g_prev).
TEST(Eab2Network, ResumeEqualsUninterrupted) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig c = small_eab2();
  RunResult probe = train_run(c, d, lft::quiet());
  ASSERT_EQ(probe.status, "converged");
  ASSERT_GT(probe.steps, 20);
  auto crossed_at = [&](int64_t cut) {  // whether step cut crossed a kink, from its saved state
    RunConfig part = c;
    part.max_steps = cut;
    std::string st;
    TrainHooks h = lft::quiet();
    h.on_state = [&](const std::string& s) { st = s; };
    train_run(part, d, h);
    return RunState::decode(st, part, 60, 100, kD).crossed_last;
  };
  for (bool crossing : {true, false}) {
    SCOPED_TRACE(crossing ? "cut after a step across a kink" : "cut after a smooth step");
    int64_t cut = probe.steps / 2;
    bool found = false;
    for (int tries = 0; tries < 50 && cut < probe.steps - 1; ++tries, ++cut)
      if (crossed_at(cut) == crossing) {
        found = true;
        break;
      }
    ASSERT_TRUE(found) << "no such step among 50 from half the run on";
    const lft::ResumedRun r = lft::train_and_resume(c, d, cut);
    EXPECT_EQ(r.full.steps, r.second.steps);
    EXPECT_EQ(r.full.rejected, r.second.rejected);
    EXPECT_EQ(r.full.gradient_evaluations, r.second.gradient_evaluations);
    EXPECT_EQ(r.full.t, r.second.t);
    EXPECT_EQ(r.full.t2, r.second.t2);
    EXPECT_TRUE(at::equal(r.full.test_f_delta, r.second.test_f_delta));
    FCParams pa = fc_params_from_state(r.end_full), pb = fc_params_from_state(r.end_resumed);
    for (size_t i = 0; i < pa.W.size(); ++i) EXPECT_TRUE(at::equal(pa.W[i], pb.W[i]));
  }
}

// Per-member step sizes and histories: each member of an ensemble equals its run alone (the
// sequential engine, bit for bit); the batched engine makes the same decisions (its rounding
// differs: numbers to 1e-6).
TEST(Eab2Network, EnsembleMembersEqualSingleRuns) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig a = small_eab2(), b = small_eab2();
  b.alpha = 3.0;
  b.seed_init = 1;
  auto res = train_ensemble({a, b}, d, {lft::quiet(), lft::quiet()}, EngineKind::Sequential);
  RunResult ra = train_run(a, d, lft::quiet()), rb = train_run(b, d, lft::quiet());
  EXPECT_EQ(res[0].steps, ra.steps);
  EXPECT_EQ(res[1].steps, rb.steps);
  EXPECT_NE(res[0].steps, res[1].steps);
  EXPECT_TRUE(at::equal(res[0].test_f_delta, ra.test_f_delta));
  EXPECT_TRUE(at::equal(res[1].test_f_delta, rb.test_f_delta));
  // The batched engine over 300 steps from a first step above rounding (lft::above_rounding: its
  // sums run in another order, and the step decisions magnify that over a whole run).
  a.max_steps = b.max_steps = 300;
  a = lft::above_rounding(a), b = lft::above_rounding(b);
  auto seq = train_ensemble({a, b}, d, {lft::quiet(), lft::quiet()}, EngineKind::Sequential);
  auto bat = train_ensemble({a, b}, d, {lft::quiet(), lft::quiet()}, EngineKind::Batched);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_EQ(bat[k].steps, seq[k].steps);
    EXPECT_EQ(bat[k].rejected, seq[k].rejected);
    EXPECT_GT(seq[k].rejected, 0);
    EXPECT_NEAR(bat[k].t, seq[k].t, 1e-6 * seq[k].t);
    EXPECT_NEAR(bat[k].train_loss, seq[k].train_loss, 1e-6 * seq[k].train_loss);
  }
}

TEST(Eab2Config, RefusesTheStochasticDynamics) {
  RunConfig c;
  c.integrator = "eab2";
  c.temperature = 3e-4;
  EXPECT_THROW(finalize(c), UsageError);
}

}  // namespace
