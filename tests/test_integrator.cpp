// The lte integrator (dynamics/integrator.h, --integrator lte): its step rule on scripted
// outputs; the momentum ODE with a constant gradient against its closed form, with the global
// error falling at the stated rate (tol^(1/2)) as tol shrinks; a linear model under the hinge
// (frozen kernel, orthogonal inputs) against its exact piecewise-linear trajectory (error
// proportional to tol) in far fewer gradients than the paper's rule; the network with lte (fused
// and reference trainers, an ensemble with per-member steps), its exact resume; the
// configuration's identity; the store's upgrade from schema 2.
// Deliberately not: closeness to the paper's trajectories on MNIST (lazyfeat bench integrator).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <vector>

#include "common/error.h"
#include "dynamics/integrator.h"
#include "dynamics/momentum.h"
#include "experiment/config.h"
#include "experiment/run_state.h"
#include "experiment/state.h"
#include "experiment/train.h"
#include "ntk/frozen.h"
#include "store/store.h"
#include "testing.h"

using namespace lf;

namespace {

const auto kD = at::TensorOptions().dtype(at::kDouble);
using V = StepControl::Verdict;
const Momentum kGF{0.0};  // gradient flow: a kink's whole overshoot is error

// ---------------------------------------------------------------- the rule on scripted outputs

// A straight trajectory (the same velocity as the previous step) has no error: accept, dt x5.
TEST(Lte, StraightTrajectoryGrowsFiveFold) {
  LteControl lc{1e-3};
  const double y[2] = {1, -1}, f_prev[2] = {0, 0}, f_old[2] = {0.001, -0.002}, f_new[2] = {0.002, -0.004};
  double dt = 2.0, df = 0, err = -1;
  EXPECT_EQ(lc.judge(dt, 2.0, f_old, f_new, f_prev, nullptr, y, 2, 1.0, kGF, 0.0, &df, &err), V::Accept);
  EXPECT_DOUBLE_EQ(df, 0.002);
  EXPECT_EQ(err, 0.0);
  EXPECT_DOUBLE_EQ(dt, 10.0);
}

// A bend: e_s = (r/2) alpha max|Delta - r Delta_prev| (r = 1 here: 0.5 * 0.004 = 2e-3 > tol):
// reject, dt *= 0.9 sqrt(tol / e_s).
TEST(Lte, BendRejectsBySquareRootRule) {
  LteControl lc{1e-3};
  const double y[1] = {-1}, f_prev[1] = {0}, f_old[1] = {0.01}, f_new[1] = {0.024};
  double dt = 1.0, err = 0;
  EXPECT_EQ(lc.judge(dt, 1.0, f_old, f_new, f_prev, nullptr, y, 1, 1.0, kGF, 0.0, nullptr, &err), V::Reject);
  EXPECT_NEAR(err, 0.002, 1e-15);
  EXPECT_NEAR(dt, 0.9 * std::sqrt(0.5), 1e-15);
  // Half the bend (e_s = 5e-4 <= tol): accepted, dt *= 0.9 sqrt(2).
  const double f_half[1] = {0.021};
  dt = 1.0;
  EXPECT_EQ(lc.judge(dt, 1.0, f_old, f_half, f_prev, nullptr, y, 1, 1.0, kGF, 0.0), V::Accept);
  EXPECT_NEAR(dt, 0.9 * std::sqrt(2.0), 1e-12);
}

// Crossing the kink by more than tol: reject, and the next trial ends tol/4 past it (margins
// with f0 and alpha: m = alpha (f - f0) y).
TEST(Lte, KinkCrossingLandsJustPast) {
  LteControl lc{1e-2};
  const double alpha = 2.0, y[1] = {1}, f0[1] = {0.5}, f_prev[1] = {0.94}, f_old[1] = {0.98}, f_new[1] = {1.02};
  // m_old = 0.96, m_new = 1.04 (a straight line: e_s = 0), overshoot 0.04
  double dt = 1.0, err = 0;
  EXPECT_EQ(lc.judge(dt, 1.0, f_old, f_new, f_prev, f0, y, 1, alpha, kGF, 0.0, nullptr, &err), V::Reject);
  EXPECT_NEAR(err, 0.04, 1e-12);
  EXPECT_NEAR(dt, (0.04 + 0.25e-2) / 0.08, 1e-12);
  // That trial (the same straight velocity): m_new = 1 + tol/4, accepted.
  const double f_land[1] = {0.98 + 0.04 * dt};
  double dt2 = dt;
  EXPECT_EQ(lc.judge(dt2, 1.0, f_old, f_land, f_prev, f0, y, 1, alpha, kGF, 0.0, nullptr, &err), V::Accept);
  EXPECT_NEAR(err, 0.25e-2, 1e-12);
}

// With momentum the wrong gradient after the kink reached the velocity only by 1 - x_c: at
// tau = t/mu = 10 and dt = 0.1 (crossing at mid-step) e_k = overshoot (1 - (t_c/(t+dt))^mu).
TEST(Lte, KinkWithMomentumWeighsTheOvershoot) {
  LteControl lc{1e-2};
  const Momentum m{-1000.0};
  const double t = 1e4, y[1] = {1}, f_prev[1] = {0.8}, f_old[1] = {0.9}, f_new[1] = {1.1};
  double dt = 0.1, err = 0;
  const double share = 1 - std::pow((t + 0.05) / (t + 0.1), 1000.0);
  lc.judge(dt, 0.05, f_old, f_new, f_prev, nullptr, y, 1, 1.0, m, t, nullptr, &err);
  EXPECT_NEAR(err, 0.1 * share, 1e-12);
  EXPECT_LT(err, 0.01 * 0.1);
}

TEST(Lte, NanDivergesZeroGrowsTenfoldCapHolds) {
  LteControl lc{1e-3, /*max_dt=*/50.0};
  const double y[1] = {1}, f_old[1] = {0}, f_nan[1] = {NAN}, f_same[1] = {0};
  double dt = 1.0;
  EXPECT_EQ(lc.judge(dt, 0, f_old, f_nan, nullptr, nullptr, y, 1, 1.0, kGF, 0.0), V::Diverge);
  dt = 1.0;
  EXPECT_EQ(lc.judge(dt, 0, f_old, f_same, nullptr, nullptr, y, 1, 1.0, kGF, 0.0), V::Accept);
  EXPECT_EQ(dt, 10.0);
  dt = 10.0;
  const double f_prev[1] = {-1e-9}, f_lin[1] = {1e-8};
  EXPECT_EQ(lc.judge(dt, 10.0, f_old, f_lin, f_prev, nullptr, y, 1, 1.0, kGF, 0.0), V::Accept);
  EXPECT_EQ(dt, 50.0) << "max_dt caps the growth";
  // df >= 100 tol is rejected even on a straight line
  const double f_big[1] = {-0.2}, f_prev_big[1] = {0.2};
  dt = 1.0;
  EXPECT_EQ(lc.judge(dt, 1.0, f_old, f_big, f_prev_big, nullptr, y, 1, 1.0, kGF, 0.0), V::Reject);
}

// ------------------------------------------------- the momentum ODE with a constant gradient

// One scalar w with dw/dt = v, tau dv/dt = -(v + g), g constant, integrated by the trainers' trial
// step (momentum.h) under the lte rule with the outputs f = w (label -1: the margin stays below
// the kink). Steps are cut to land on T. Returns w(T); steps (out): accepted steps.
double lte_momentum(const Momentum& m, double g, double t0, double v0, double T, double tol, int64_t& steps) {
  LteControl lc{tol};
  double w = 0, v = v0, t = t0, dt = 1e-6 * (T - t0), dt_prev = 0, w_hist = 0;
  const double y = -1;
  steps = 0;
  while (t < T) {
    const double step = std::min(dt, T - t);
    double wp, vp, d = step;
    const double x = m.decay(t, step);
    trial_step(x, 1 - x, step, m.enabled(), &w, &v, &g, 1, &wp, &vp);
    const V verdict = lc.judge(d, dt_prev, &wp, &w, dt_prev > 0 ? &w_hist : nullptr, nullptr, &y, 1, 1.0, m, t);
    if (verdict != V::Accept) {
      trial_restore(&w, &v, &wp, &vp, 1);
      dt = d;
      continue;
    }
    w_hist = wp;
    dt_prev = step;
    t += step;
    ++steps;
    if (step == dt) dt = d;  // a step cut to land on T keeps the controller's dt
  }
  return w;
}

// Constant tau: v = -g + (v0 + g) e^{-t/tau}, w(T) = -g T + (v0 + g) tau (1 - e^{-T/tau}).
// tau = t / mu from t0 > 0: v = -g + (v0 + g) (t0/t)^mu,
//   w(T) = -g (T - t0) + (v0 + g) t0 / (mu - 1) (1 - (t0/T)^(mu - 1)).
// The global error falls as tol^(1/2) (first order, error per step held at tol): 100x smaller
// tol, ~10x smaller error and ~10x more steps.
TEST(Lte, MomentumConstantGradientConvergesAtStatedOrder) {
  struct Case {
    Momentum m;
    double t0, T, exact;
  };
  const double g = 0.7, v0 = 0.4, tau = 2.0, mu = 3.0;
  const std::vector<Case> cases = {
      {Momentum{tau}, 0.0, 5.0, -g * 5.0 + (v0 + g) * tau * (1 - std::exp(-5.0 / tau))},
      {Momentum{-mu}, 0.5, 5.0, -g * 4.5 + (v0 + g) * 0.5 / (mu - 1) * (1 - std::pow(0.5 / 5.0, mu - 1))}};
  for (const Case& c : cases) {
    std::vector<double> err;
    std::vector<int64_t> steps;
    for (double tol : {1e-4, 1e-6, 1e-8}) {
      int64_t s = 0;
      err.push_back(std::fabs(lte_momentum(c.m, g, c.t0, v0, c.T, tol, s) - c.exact));
      steps.push_back(s);
    }
    for (size_t i = 1; i < err.size(); ++i) {
      const double ratio = err[i - 1] / err[i];
      EXPECT_GT(ratio, 5.0) << "tau " << c.m.tau << ": errors " << err[0] << " " << err[1] << " " << err[2];
      EXPECT_LT(ratio, 20.0) << "tau " << c.m.tau << ": errors " << err[0] << " " << err[1] << " " << err[2];
      EXPECT_GT(steps[i], 5 * steps[i - 1]);
      EXPECT_LT(steps[i], 20 * steps[i - 1]);
    }
    EXPECT_LT(err.back(), 1e-4 * std::fabs(c.exact));
  }
  // tau = t / mu from t = 0 with v = 0: v = -g from the first step on, w = -g t exactly.
  int64_t s = 0;
  EXPECT_NEAR(lte_momentum(Momentum{-1000.0}, g, 0.0, 0.0, 5.0, 1e-3, s), -g * 5.0, 1e-12);
  EXPECT_LT(s, 60) << "a straight trajectory: the steps grow x5 each up to the df cap (0.1 a step)";
}

// ------------------------------------------------------- a linear model under the hinge

// f(w, x) = w . x with orthogonal inputs (Theta = diag(k)) under gradient flow: the exact
// piecewise-linear trajectory ends at lft::exact_hinge_t2 with every margin at 1.
TEST(Lte, FrozenLinearHingeMatchesExactTrajectory) {
  const lft::LinearHingeProblem p = lft::linear_hinge_problem();
  const double t2 = p.t2;
  FrozenOptions o = p.gradient_flow;
  o.lte = true;
  std::vector<double> errs;
  for (double tol : {1e-2, 1e-3, 1e-4}) {
    o.lte_control.tol = tol;
    FrozenResult r = frozen_kernel_train(p.K, p.y, o);
    ASSERT_EQ(r.status, "converged");
    const double over = p.margin_error(r);
    EXPECT_LE(over, tol) << tol;
    const double e = std::fabs(r.t2 - t2) / t2;
    EXPECT_LE(e, tol) << tol;
    errs.push_back(std::max(e, over));
    EXPECT_EQ(r.gradient_evaluations, r.steps) << "one gradient at u = 0 and after each step but the last";
    // the paper's rule on the same problem at its default band
    if (tol == 1e-3) {
      FrozenResult rp = frozen_kernel_train(p.K, p.y, p.gradient_flow);
      ASSERT_EQ(rp.status, "converged");
      EXPECT_LT(10 * r.gradient_evaluations, rp.gradient_evaluations)
          << "lte " << r.gradient_evaluations << " paper " << rp.gradient_evaluations;
      EXPECT_LT(std::fabs(r.t2 - t2), std::fabs(rp.t2 - t2) + 1e-3 * t2);
    }
  }
  EXPECT_LT(errs[2], errs[0] / 20) << errs[0] << " " << errs[2];  // proportional to tol
}

// Frozen-kernel training with momentum (tau = t/mu, the paper's) on a coupled kernel: lte
// converges to the same end as the paper's rule ten times finer, within its tolerance's reach.
TEST(Lte, FrozenMomentumCoupledKernelNearFineRule) {
  const lft::CoupledFrozenProblem p = lft::coupled_frozen_problem();
  const FrozenResult &rf = p.fine_run, &rp = p.paper_run;
  FrozenOptions o = p.paper;
  o.lte = true;
  o.lte_control.tol = 1e-4;
  FrozenResult rl = frozen_kernel_train(p.K, p.y, o);
  ASSERT_EQ(rf.status, "converged");
  ASSERT_EQ(rl.status, "converged");
  const double d_paper = p.distance(rp);
  const double d_lte = p.distance(rl);
  EXPECT_LT(d_lte, 0.05) << d_lte;
  RecordProperty("paper_vs_fine", std::to_string(d_paper));
  RecordProperty("lte_vs_fine", std::to_string(d_lte));
  std::cout << "frozen coupled: paper " << rp.gradient_evaluations << " grads, diff " << d_paper << "; lte "
            << rl.gradient_evaluations << " grads, diff " << d_lte << "; fine " << rf.gradient_evaluations << "\n";
  EXPECT_LT(rl.gradient_evaluations, rp.gradient_evaluations);
}

// ------------------------------------------------------------------------ the network

RunConfig small_lte() { return lft::small_integrator_run("lte"); }

TEST(LteNetwork, ConvergesFusedAndReferenceCountingGradients) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig c = small_lte();
  TrainHooks h = lft::quiet();
  RunResult a = train_run(c, d, h);
  ASSERT_EQ(a.status, "converged");
  EXPECT_EQ(a.trainer, lft::cpu_trainer());
  EXPECT_EQ(a.gradient_evaluations, a.steps) << "one at w0 and one after each accepted step but the last";
  EXPECT_EQ(a.summary().at("gradient_evaluations").get<int64_t>(), a.gradient_evaluations);
  h.reference = true;
  RunResult b = train_run(c, d, h);
  ASSERT_EQ(b.status, "converged");
  EXPECT_EQ(b.trainer, "reference");
  // Two roundings of the same dynamics: close ends, not bit-equal step sequences.
  const double rms = a.test_f_delta.pow(2).mean().sqrt().item<double>();
  EXPECT_LT((a.test_f_delta - b.test_f_delta).pow(2).mean().sqrt().item<double>(), 0.05 * rms);
  // The paper's rule at the default band takes many more gradients on the same run.
  RunConfig p = c;
  p.integrator = "paper";
  RunResult rp = train_run(p, d, lft::quiet());
  ASSERT_EQ(rp.status, "converged");
  EXPECT_EQ(rp.gradient_evaluations, rp.steps);
  EXPECT_LT(a.gradient_evaluations, rp.gradient_evaluations);
  std::cout << "network: lte " << a.gradient_evaluations << " grads, paper " << rp.gradient_evaluations << "\n";
}

// An ensemble (per-member t, dt and history through the Member/Engine loop): each member equals
// its run alone, bit for bit (the sequential engine).
TEST(LteNetwork, EnsembleMembersEqualSingleRuns) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig a = small_lte(), b = small_lte();
  b.alpha = 3.0;
  b.seed_init = 1;
  auto res = train_ensemble({a, b}, d, {lft::quiet(), lft::quiet()});
  RunResult ra = train_run(a, d, lft::quiet()), rb = train_run(b, d, lft::quiet());
  EXPECT_EQ(res[0].steps, ra.steps);
  EXPECT_EQ(res[1].steps, rb.steps);
  EXPECT_NE(res[0].steps, res[1].steps);
  EXPECT_TRUE(at::equal(res[0].test_f_delta, ra.test_f_delta));
  EXPECT_TRUE(at::equal(res[1].test_f_delta, rb.test_f_delta));
}

TEST(LteNetwork, ResumeEqualsUninterrupted) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig c = small_lte();
  TrainHooks h = lft::quiet();
  RunResult probe = train_run(c, d, h);
  ASSERT_EQ(probe.status, "converged");
  ASSERT_GT(probe.steps, 20);
  const int64_t cut = probe.steps / 2;
  const lft::ResumedRun r = lft::train_and_resume(c, d, cut);
  const RunResult &full = r.full, &second = r.second;
  ASSERT_EQ(r.first.steps, cut);
  EXPECT_EQ(full.steps, second.steps);
  EXPECT_EQ(full.rejected, second.rejected);
  EXPECT_EQ(full.gradient_evaluations, second.gradient_evaluations);
  EXPECT_EQ(full.t, second.t);
  EXPECT_EQ(full.t2, second.t2);
  EXPECT_TRUE(at::equal(full.test_f_delta, second.test_f_delta));
  FCParams pa = fc_params_from_state(r.end_full), pb = fc_params_from_state(r.end_resumed);
  for (size_t i = 0; i < pa.W.size(); ++i) EXPECT_TRUE(at::equal(pa.W[i], pb.W[i]));
}

// A version-1 state (before gradient_evaluations and the lte history; with w0, as versions 1 and 2
// stored it) still resumes a paper run.
TEST(LteNetwork, VersionOneStateStillDecodes) {
  Dataset d = lft::synthetic(60, 100);
  RunConfig c;
  c.h = 16, c.L = 2, c.ptr = 60, c.pte = 100, c.max_steps = 300;
  finalize(c);
  std::string st;
  TrainHooks h = lft::quiet();
  h.on_state = [&](const std::string& s) { st = s; };
  train_run(c, d, h);
  TrainState ts = TrainState::decode(st);
  ts.header["version"] = 1;
  ts.header.erase("gradient_evaluations");
  ts.tensors.erase("dt_prev");
  const at::Tensor w0 = at::arange(ts.tensor("w").numel(), kD);  // versions 1 and 2 stored w0
  ts.tensors["w0"] = w0;
  RunState r = RunState::decode(ts.encode(), c, 60, 100, kD);
  EXPECT_TRUE(r.w0.defined() && at::equal(r.w0, w0)) << "a stored w0 is the one used";
  EXPECT_EQ(r.step, 300);
  EXPECT_EQ(r.gradient_evaluations, 301);
  EXPECT_TRUE(r.f_prev.empty());
}

// ------------------------------------------------------------------ configuration, store

TEST(LteConfig, IdentityOfPaperRunsUnchangedLteInKeys) {
  RunConfig p;
  finalize(p);
  EXPECT_EQ(config_identity(p).find("integrator"), std::string::npos);
  RunConfig l = p;
  set_run_option(l, "integrator", "lte");
  finalize(l);
  EXPECT_NE(config_hash(l), config_hash(p));
  EXPECT_NE(lockstep_key(l), lockstep_key(p));
  RunConfig l2 = l;
  set_run_option(l2, "integrator-tol", "1e-4");
  finalize(l2);
  EXPECT_NE(config_hash(l2), config_hash(l));
  EXPECT_EQ(config_hash(config_from_json(config_to_json(l2))), config_hash(l2));
  RunConfig bad = p;
  bad.integrator = "rk45";
  EXPECT_THROW(finalize(bad), UsageError);
  RunConfig stoch = p;
  stoch.integrator = "lte";
  stoch.temperature = 3e-4;
  EXPECT_THROW(finalize(stoch), UsageError);
}

TEST(LteStore, SchemaTwoUpgradesToThree) {
  lft::TempDir tmp;
  const std::string path = tmp.file("v2.sqlite");
  RunConfig c;
  c.ptr = 100, c.pte = 200, c.L = 2, c.h = 8;
  finalize(c);
  int64_t id = 0;
  {
    Store s(path);
    id = s.plan(c).first;
  }
  {  // make it a version-2 database: no gradient_evaluations column
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "ALTER TABLE runs DROP COLUMN gradient_evaluations;"
                           "UPDATE meta SET value = '2' WHERE key = 'schema_version';",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  {
    Store s(path);
    ASSERT_TRUE(s.claim(id, c, 600));
    nlohmann::json summary = {{"steps", 10}, {"gradient_evaluations", 11}};
    s.finish(id, "converged", "", summary, at::Tensor(), at::Tensor(), at::Tensor(), nlohmann::json());
  }
  EXPECT_EQ(lft::query(path, "SELECT value FROM meta WHERE key = 'schema_version'").at(0).at(0), "3");
  EXPECT_EQ(lft::query(path, "SELECT gradient_evaluations FROM runs").at(0).at(0), "11");
  EXPECT_EQ(lft::count(path, "SELECT count(*) FROM runs"), 1);
}

}  // namespace
