// Tests of the analysis library (src/analysis) on synthetic data with known answers: power-law
// exponents with bootstrap errors, ensembles of constructed outputs (error, variance), the
// rescaling of error curves to [0,1] (F1d collapse), t1/t2, means and standard errors, grouping.
// Deliberately not: the database or the CLI (tests/test_report.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "analysis/ensemble.h"
#include "analysis/runs.h"
#include "analysis/stats.h"

using namespace lf::analysis;

TEST(Analysis, MeanSem) {
  MeanSem m = mean_sem({1.0, 2.0, 3.0, 4.0, NaN});
  EXPECT_EQ(m.n, 4);
  EXPECT_DOUBLE_EQ(m.mean, 2.5);
  EXPECT_NEAR(m.sem, std::sqrt(5.0 / 3.0) / 2.0, 1e-15);  // sample sd sqrt(5/3), / sqrt(4)
  MeanSem one = mean_sem({7.0});
  EXPECT_EQ(one.n, 1);
  EXPECT_TRUE(std::isnan(one.sem)) << one.sem;  // unknown from one seed, not 0
  EXPECT_TRUE(std::isnan(mean_sem({}).mean));
}

TEST(Analysis, PowerLawExactSlopeNoNoise) {
  // O = 3 x^-1.7 in group 0 and 5 x^-1.7 in group 1: one common slope, separate intercepts.
  std::vector<PowerPoint> pts;
  for (int g = 0; g < 2; ++g)
    for (double x : {1e-3, 1e-2, 1e-1, 1.0})
      pts.push_back({g, x, {{0, (g ? 5.0 : 3.0) * std::pow(x, -1.7)}, {1, (g ? 5.0 : 3.0) * std::pow(x, -1.7)}}});
  PowerFit f = fit_power_law(pts, 1e-4, 10.0, 50);
  EXPECT_NEAR(f.slope, -1.7, 1e-12);
  EXPECT_NEAR(f.intercept, std::log(3.0), 1e-10);
  EXPECT_EQ(f.points, 8);
  EXPECT_EQ(f.groups, 2);
  EXPECT_EQ(f.seeds, 2);
  EXPECT_NEAR(f.slope_err, 0.0, 1e-12);  // identical seeds: every resampling gives -1.7
  // The range selects points: only x <= 1e-2 leaves 2 points per group.
  PowerFit r = fit_power_law(pts, 1e-4, 2e-2, 0);
  EXPECT_EQ(r.points, 4);
  EXPECT_NEAR(r.slope, -1.7, 1e-12);
  // Nothing in range: no slope, a reason.
  PowerFit none = fit_power_law(pts, 100, 1000, 10);
  EXPECT_TRUE(std::isnan(none.slope));
  EXPECT_FALSE(none.why.empty());
}

TEST(Analysis, PowerLawBootstrapErrorCoversTruth) {
  // O_s(x) = x^-1 * exp(0.1 z_{s,x}), 10 seeds, 8 abscissae: the fitted slope lies within
  // 3 bootstrap errors of -1 and the error is of the size the noise implies (~0.1/sqrt(10)/spread).
  std::mt19937_64 rng(12345);
  std::normal_distribution<double> z(0.0, 1.0);
  int covered = 0;
  const int trials = 20;
  for (int trial = 0; trial < trials; ++trial) {
    std::vector<PowerPoint> pts;
    for (int k = 0; k < 8; ++k) {
      double x = std::pow(10.0, 2.0 + 0.5 * k);
      PowerPoint p{0, x, {}};
      for (uint64_t s = 0; s < 10; ++s) p.seed_values.push_back({s, std::exp(0.1 * z(rng)) / x});
      pts.push_back(p);
    }
    PowerFit f = fit_power_law(pts, 1e2, 1e6, 200, trial);
    ASSERT_TRUE(std::isfinite(f.slope_err));
    EXPECT_GT(f.slope_err, 0.001);
    EXPECT_LT(f.slope_err, 0.05);
    EXPECT_LT(std::abs(f.slope + 1.0), 4 * f.slope_err);
    if (std::abs(f.slope + 1.0) < 2 * f.slope_err) covered++;
  }
  // A 2-sigma interval should cover the truth in most trials (~95%).
  EXPECT_GE(covered, 15);
}

TEST(Analysis, EnsembleOfConstructedOutputs) {
  // 3 seeds, 4 test points, y = (+1, -1, +1, -1).
  at::Tensor y = at::tensor({1, -1, 1, -1}, at::kChar);
  at::Tensor F = at::tensor({0.5, -0.5, -0.2, 0.3,    //
                             0.7, 0.1, -0.4, -0.1,    //
                             0.3, -0.6, 0.3, 0.1},
                            at::kDouble)
                     .view({3, 4});
  EnsembleStats e = ensemble_stats(F, y);
  // f_bar = (0.5, -1/3, -0.1, 0.1): correct, correct, wrong, wrong -> 0.5.
  EXPECT_NEAR(e.f_bar[1].item<double>(), -1.0 / 3.0, 1e-15);
  EXPECT_DOUBLE_EQ(e.ensemble_err, 0.5);
  // Single errors: seed 0 wrong at points 2 and 3 (0.5), seed 1 at 1, 2 (0.5), seed 2 at 3 (0.25).
  EXPECT_NEAR(e.single_err.mean, 1.25 / 3.0, 1e-15);
  EXPECT_EQ(e.single_err.n, 3);
  // Variance: mean over 12 entries of (F - f_bar)^2, computed by hand.
  double fbar[4] = {0.5, -1.0 / 3.0, -0.1, 0.1}, v = 0;
  double Fv[3][4] = {{0.5, -0.5, -0.2, 0.3}, {0.7, 0.1, -0.4, -0.1}, {0.3, -0.6, 0.3, 0.1}};
  for (auto& row : Fv)
    for (int x = 0; x < 4; ++x) v += (row[x] - fbar[x]) * (row[x] - fbar[x]);
  EXPECT_NEAR(e.variance, v / 12.0, 1e-15);
  EXPECT_EQ(e.seeds, 3);
  EXPECT_EQ(e.points, 4);
  // A zero output counts as an error (F y <= 0).
  EnsembleStats z = ensemble_stats(at::zeros({2, 4}, at::kDouble), y);
  EXPECT_DOUBLE_EQ(z.ensemble_err, 1.0);
  EXPECT_DOUBLE_EQ(z.variance, 0.0);
  EXPECT_THROW(ensemble_stats(at::zeros({2, 3}, at::kDouble), y), std::invalid_argument);
}

TEST(Analysis, EnsembleVarianceScalesAsOneOverH) {
  // Outputs y + sigma_h * s_i with s = (-1.5, -0.5, 0.5, 1.5) and sigma_h^2 = 1/h: Var = 1.25/h.
  for (int h : {50, 200, 800}) {
    at::Tensor y = at::tensor({1, -1, 1, 1, -1}, at::kChar);
    std::vector<at::Tensor> rows;
    for (double s : {-1.5, -0.5, 0.5, 1.5})
      rows.push_back(y.to(at::kDouble) + s / std::sqrt(static_cast<double>(h)));
    EnsembleStats e = ensemble_stats(at::stack(rows), y);
    EXPECT_NEAR(e.variance, 1.25 / h, 1e-15);
    EXPECT_DOUBLE_EQ(e.ensemble_err, 0.0);
  }
}

TEST(Analysis, RescaleCollapsesCurves) {
  // err_h(X) = a_h + b_h g(X) for two widths: rescaled to [0,1] both are (g - g_min)/(g_max - g_min).
  std::vector<double> X = {1e-2, 1e-1, 1, 10, 100};
  std::vector<double> e1, e2, g;
  for (double x : X) {
    double gx = x / (1 + x);
    g.push_back(gx);
    e1.push_back(0.02 + 0.01 * gx);
    e2.push_back(0.05 + 0.04 * gx);
  }
  auto r1 = rescale_unit(e1), r2 = rescale_unit(e2), rg = rescale_unit(g);
  EXPECT_DOUBLE_EQ(r1.front(), 0.0);
  EXPECT_DOUBLE_EQ(r1.back(), 1.0);
  for (size_t k = 0; k < X.size(); ++k) {
    EXPECT_NEAR(r1[k], rg[k], 1e-12);
    EXPECT_NEAR(r2[k], rg[k], 1e-12);
  }
  // A flat curve has no rescaling.
  for (double v : rescale_unit({0.1, 0.1, 0.1})) EXPECT_TRUE(std::isnan(v));
  // NaN entries stay NaN and do not set the range.
  auto rn = rescale_unit({1.0, NaN, 3.0});
  EXPECT_DOUBLE_EQ(rn[2], 1.0);
  EXPECT_TRUE(std::isnan(rn[1]));
}

TEST(Analysis, CharacteristicTimesAndSteps) {
  std::vector<double> t = {0, 1, 2, 4, 8, 16};
  std::vector<double> loss = {1.0, 0.8, 0.6, 0.4, 0.1, 0.0};
  CharTimes c = characteristic_times(t, loss);
  EXPECT_DOUBLE_EQ(c.t1, 4.0);  // first alpha^2 L < 0.5
  EXPECT_DOUBLE_EQ(c.t2, 16.0);
  EXPECT_TRUE(std::isnan(characteristic_times({0, 1}, {1.0, 0.9}).t1));
  EXPECT_DOUBLE_EQ(step_value(t, loss, 3.0, false), 0.6);
  EXPECT_DOUBLE_EQ(step_value(t, loss, 20.0, true), 0.0);
  EXPECT_TRUE(std::isnan(step_value(t, loss, 20.0, false)));
  auto g = log_grid(1e-2, 1e2, 5);
  EXPECT_NEAR(g[2], 1.0, 1e-12);
  EXPECT_NEAR(g[4], 1e2, 1e-10);
}

TEST(Analysis, GroupingDropsSeedsAndKeepsConverged) {
  auto mk = [](int64_t h, double alpha, uint64_t seed, const char* status, bool delta_kernel, double test_err) {
    RunRecord r;
    r.status = status;
    r.arch = "fc", r.act = "softplus", r.dataset = "mnist", r.loss = "hinge";
    r.L = 5, r.h = h, r.ptr = 100, r.pte = 100, r.pca = 10, r.tau = -1000, r.temperature = 0;
    r.alpha = alpha;
    r.seed_init = seed;
    r.test_err = test_err;
    // As config_to_json writes it: weights_seed is derived from the seed (and alpha, with
    // published_seed), so it differs between seeds and must not split an ensemble either.
    r.config = {{"h", h}, {"alpha", alpha}, {"sqrt_h_alpha", std::sqrt(double(h)) * alpha},
                {"seed_init", seed}, {"weights_seed", seed + 1000}, {"L", 5}, {"delta_kernel", delta_kernel}};
    return r;
  };
  // alpha 0.1 computed two ways (0.1 and 0.3 / 3, one ulp apart): one value once rounded.
  const double a = 0.3 / 3.0;
  ASSERT_NE(a, 0.1);
  std::vector<RunRecord> runs = {
      mk(100, 0.1, 0, "converged", false, 0.10),  // 0 \  one ensemble: seeds 0, 1, 2
      mk(100, 0.1, 1, "converged", false, 0.20),  // 1  | (test errors 0.1, 0.2, 0.3: mean 0.2)
      mk(100, 0.2, 0, "converged", false, 0.90),  // 2    other alpha: its own ensemble
      mk(100, a, 2, "converged", false, 0.30),    // 3 /
      mk(400, 0.1, 0, "converged", false, 0.70),  // 4    other h: its own ensemble
      mk(100, 0.1, 3, "converged", true, 0.50),   // 5    delta_kernel: own ensemble, same family
      mk(100, 0.3, 0, "stopped", false, 0.0),     //      dropped
      mk(100, 0.1, 4, "diverged", false, 0.0)};   //      dropped (seed 4 would join 0, 1, 3)
  runs[6].error = "max wall time";
  Selection s = select_converged(runs);
  ASSERT_EQ(s.kept.size(), 6u);
  EXPECT_EQ(s.dropped["stopped"], 1);
  EXPECT_EQ(s.dropped["diverged"], 1);
  EXPECT_EQ(s.reasons["stopped"], "max wall time");
  auto ens = group_by(s.kept, ensemble_key);
  std::vector<std::vector<size_t>> members;
  for (const auto& [key, idx] : ens) members.push_back(idx);
  EXPECT_EQ(members, (std::vector<std::vector<size_t>>{{0, 1, 3}, {2}, {4}, {5}}));
  // The mean over the first ensemble is its three seeds' mean, 0.2; merged with the other
  // alpha (0.9), the other h (0.7) or the measurement-only run (0.5) it would be larger.
  ASSERT_FALSE(ens.empty());
  std::vector<double> errs;
  for (size_t i : ens[0].second) errs.push_back(s.kept[i].test_err);
  EXPECT_NEAR(mean_sem(errs).mean, 0.2, 1e-15);
  EXPECT_EQ(mean_sem(errs).n, 3);
  // The family: every kept run (h, alpha, seeds and delta_kernel ignored).
  auto fam = group_by(s.kept, family_key);
  ASSERT_EQ(fam.size(), 1u);
  EXPECT_EQ(fam[0].second.size(), 6u);
  EXPECT_NEAR(regime(s.kept[4]), 2.0, 1e-12);
  EXPECT_EQ(value_key(0.031622776601683794, 3), "0.0316");
}
