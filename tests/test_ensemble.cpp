// Ensembles (experiment/train.h, train_ensemble): K runs in lockstep give each member exactly the
// run it would have alone (decisions, checkpoints, result), whatever the others do: converge
// early, or diverge on NaN.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>
#include <cstdlib>

#include "common/error.h"
#include "data/dataset.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "testing.h"

using namespace lf;

namespace {

Dataset synthetic(int64_t n, int64_t pte) { return lft::synthetic(n, pte, 5); }

const auto kD = at::TensorOptions().dtype(at::kDouble);

// The protocol's dynamics (tau = t/1000, df in [1e-4, 1e-2], dt from 1e-50) on a small net.
RunConfig member(uint64_t seed, double sqrt_h_alpha, int64_t max_steps) {
  return lft::small_member(seed, sqrt_h_alpha, max_steps);
}

// The same ensemble on the sequential and on the batched engine, with every member's checkpoints,
// from a first step above rounding (lft::above_rounding: the two engines sum in other orders).
struct TwoEngines {
  std::vector<RunResult> seq, bat;
  std::vector<lft::Recorded> seq_rec, bat_rec;
};
TwoEngines on_both_engines(std::vector<RunConfig> cfgs, const Dataset& d) {
  for (RunConfig& c : cfgs) c = lft::above_rounding(c);
  TwoEngines e;
  e.seq_rec.resize(cfgs.size());
  e.bat_rec.resize(cfgs.size());
  std::vector<TrainHooks> hs, hb;
  for (auto& r : e.seq_rec) hs.push_back(lft::recording(r));
  for (auto& r : e.bat_rec) hb.push_back(lft::recording(r));
  e.seq = train_ensemble(cfgs, d, hs, EngineKind::Sequential);
  e.bat = train_ensemble(cfgs, d, hb, EngineKind::Batched);
  return e;
}

}  // namespace

// 2 seeds x 2 alphas, one alpha in each regime (sqrt(h) alpha = 1e-2 and 1e3), 2,000 steps.
TEST(Ensemble, FourMembersEqualTheirRunsAlone) {
  Dataset d = synthetic(50, 30);
  std::vector<RunConfig> cfgs = {member(0, 1e-2, 2000), member(1, 1e-2, 2000), member(0, 1e3, 2000),
                                 member(1, 1e3, 2000)};
  std::vector<lft::Recorded> rec(cfgs.size());
  std::vector<TrainHooks> hooks;
  for (auto& r : rec) hooks.push_back(lft::recording(r));
  std::vector<RunResult> together = train_ensemble(cfgs, d, hooks);
  ASSERT_EQ(together.size(), 4u);
  int64_t rejections = 0;
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    lft::Recorded alone_rec;
    RunResult alone = train_run(cfgs[k], d, lft::recording(alone_rec));
    EXPECT_GT(alone.steps, 100);
    lft::expect_same_run(together[k], rec[k], alone, alone_rec);
    rejections += alone.rejected;
  }
  EXPECT_GT(rejections, 0) << "the test needs rejections to compare decisions";
  EXPECT_NE(together[0].steps + together[0].rejected, together[2].steps + together[2].rejected)
      << "the members must take different paths for lockstep to matter";
}

// The kernels of an ensemble's members (at init: one ntk_members call for all of them; at the end
// Theta(w) and Theta(w0) in one) equal those of each run alone, tiled one network at a time.
TEST(Ensemble, KernelMeasurementsEqualTheirRunsAlone) {
  Dataset d = synthetic(50, 30);
  std::vector<RunConfig> cfgs;
  for (auto [seed, sha] : std::vector<std::pair<uint64_t, double>>{{0, 1e-2}, {1, 1e-2}, {2, 1e3}}) {
    RunConfig c = member(seed, sha, 300);
    c.delta_kernel = c.init_kernel = true;
    c.kernel_points = 25;
    cfgs.push_back(c);
  }
  std::vector<RunResult> together = train_ensemble(cfgs, d, std::vector<TrainHooks>(cfgs.size()));
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    const RunResult alone = train_run(cfgs[k], d);
    const nlohmann::json &a = alone.kernel, &b = together[k].kernel;
    ASSERT_TRUE(a.contains("init") && a.contains("final") && a.contains("init_kernel_run")) << a.dump();
    for (const char* which : {"init", "final"})
      for (const char* stat : {"frobenius", "trace", "mean"})
        EXPECT_NEAR(b[which][stat].get<double>(), a[which][stat].get<double>(), 1e-12 * std::fabs(a[which][stat].get<double>()))
            << which << " " << stat;
    EXPECT_NEAR(b["change"].get<double>(), a["change"].get<double>(), 1e-9 * a["change"].get<double>());
    EXPECT_GT(a["change"].get<double>(), 0.0);
    EXPECT_EQ(b["init_kernel_run"]["test_err"], a["init_kernel_run"]["test_err"]);
  }
  EXPECT_NE(together[0].kernel["init"]["frobenius"], together[1].kernel["init"]["frobenius"]);
}

// Members that converge at different steps (each leaves the ensemble when it converges) and one
// forced to diverge at once (alpha so small that the first trial step gives NaN) leave the
// others' numbers unchanged; the diverged one is recorded as diverged with its message.
TEST(Ensemble, EarlyConvergedAndDivergedMembersLeaveTheOthersAlone) {
  Dataset d = synthetic(50, 30);
  RunConfig diverges = member(3, 1e-2, 0);
  diverges.alpha = 1e-310;
  std::vector<RunConfig> cfgs = {member(4, 1e-2, 0), member(2, 1e3, 0), diverges};  // no budgets
  std::vector<lft::Recorded> rec(3);
  std::vector<TrainHooks> hooks;
  for (auto& r : rec) hooks.push_back(lft::recording(r));
  std::vector<RunResult> out = train_ensemble(cfgs, d, hooks);
  EXPECT_EQ(out[0].status, "converged");
  EXPECT_EQ(out[1].status, "converged");
  EXPECT_EQ(out[2].status, "diverged");
  EXPECT_EQ(out[2].message, "a trial step gave a non-finite output change (NaN)");
  EXPECT_EQ(out[2].steps, 0);
  EXPECT_NE(out[0].steps, out[1].steps) << "one member must leave while the other runs on";
  for (size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    lft::Recorded alone_rec;
    RunResult alone = train_run(cfgs[k], d, lft::recording(alone_rec));
    lft::expect_same_run(out[k], rec[k], alone, alone_rec);
  }
}

// The paper's rule on the device (Engine::rounds: several trial steps between transfers, each
// member parked at its next checkpoint), for every step (LAZYFEAT_DEVICE_RULE=all) and between
// checkpoints more than a step apart (the default), against the host's rule one step at a time
// (LAZYFEAT_DEVICE_RULE=0), on the batched engine: the same decisions and checkpoints for a member
// that converges early, one in the lazy regime, one stopped by its step budget between two
// checkpoints, and one that diverges at its first step; all from a first step above rounding
// (the device's exp and log may round otherwise than the C library's).
TEST(Ensemble, DeviceRuleEqualsTheHostRule) {
  Dataset d = synthetic(50, 30);
  RunConfig diverges = member(3, 1e-2, 0), budget = member(5, 1e-2, 1234);
  diverges.alpha = 1e-310;
  std::vector<RunConfig> cfgs = {member(4, 1e-2, 0), member(2, 1e3, 3000), budget, diverges};
  for (RunConfig& c : cfgs) c = lft::above_rounding(c);
  auto run = [&](const char* rule, std::vector<lft::Recorded>& rec) {
    return lft::ensemble_with("LAZYFEAT_DEVICE_RULE", rule, cfgs, d, rec, EngineKind::Batched);
  };
  std::vector<lft::Recorded> rd, rh, rm;
  const std::vector<RunResult> dev = run("all", rd), host = run("0", rh), mixed = run("1", rm);
  EXPECT_EQ(dev[0].status, "converged");
  EXPECT_EQ(dev[1].status, "stopped");
  EXPECT_EQ(dev[2].status, "stopped");
  EXPECT_EQ(dev[2].steps, 1234);
  EXPECT_EQ(dev[3].status, "diverged");
  EXPECT_EQ(dev[3].message, "a trial step gave a non-finite output change (NaN)");
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    lft::expect_same_run(dev[k], rd[k], host[k], rh[k]);
    lft::expect_same_run(mixed[k], rm[k], host[k], rh[k]);
    EXPECT_EQ(dev[k].gradient_evaluations, host[k].gradient_evaluations);
  }
  EXPECT_NEAR(dev[0].t2, host[0].t2, 1e-9 * host[0].t2);
  EXPECT_GT(dev[0].rejected + dev[2].rejected, 0) << "the rejection path";
}

// `bench ensemble --phases` (common/phase_times.h) on the CPU's batched engine: the marks of
// engine.cpp's rounds counted and timed by the host's clock, the numbers unchanged.
TEST(Ensemble, PhaseTimesAccountForTheRounds) {
  Dataset d = synthetic(50, 30);
  std::vector<RunConfig> cfgs = {member(4, 1e-2, 400), member(2, 1e3, 300), member(5, 1.0, 200)};
  for (RunConfig& c : cfgs) c = lft::above_rounding(c);
  lft::expect_phase_times_account_for_the_rounds(cfgs, d);
}

TEST(Ensemble, MembersMustShareAllButSeedAndAlpha) {
  std::vector<RunConfig> cfgs = {member(0, 1e-2, 10), member(1, 1e3, 10)};
  EXPECT_NO_THROW(validate_ensemble(cfgs));
  cfgs[1].h = 32;
  try {
    validate_ensemble(cfgs);
    FAIL() << "members of different widths were accepted";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()),
              "ensemble members may differ in seed-init and alpha only (member with h 32, seed-init 1 differs in "
              "another option)");
  }
}

// The batched engine (one batched forward and backward for all members, the GPU path; here on
// the CPU in float64) against the sequential fused engine: the same decisions and checkpoints to
// rounding over 2,000 steps, for members in both regimes.
TEST(Ensemble, BatchedEngineEqualsSequentialEngine) {
  Dataset d = synthetic(50, 30);
  std::vector<RunConfig> cfgs = {member(0, 1e-2, 2000), member(1, 1e3, 2000), member(2, 1e-2, 2000)};
  const TwoEngines e = on_both_engines(cfgs, d);
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(e.seq[k].trainer, lft::cpu_trainer());
    EXPECT_EQ(e.bat[k].trainer, "batched");
    lft::expect_same_run(e.bat[k], e.bat_rec[k], e.seq[k], e.seq_rec[k]);
  }
}

// The batched engine's hand-written backward and on-device fit for the other activations
// (the generic derivative path) and losses, against the sequential engine.
TEST(Ensemble, BatchedEngineEqualsSequentialForEveryActivationAndLoss) {
  Dataset d = synthetic(50, 30);
  for (auto [act, loss] : {std::pair<const char*, const char*>{"relu", "hinge"}, {"tanh", "softhinge"},
                           {"swish", "qhinge"}, {"softplus", "softhinge"}}) {
    SCOPED_TRACE(std::string(act) + " " + loss);
    std::vector<RunConfig> cfgs = {member(0, 1e-2, 600), member(1, 1e3, 600)};
    for (RunConfig& c : cfgs) {
      c.act = act;
      c.loss = loss;
      if (std::string(act) == "softplus") c.softplus_threshold = 20;  // the cut-off inside the backward too
      finalize(c);
    }
    TwoEngines e = on_both_engines(cfgs, d);
    for (size_t k = 0; k < cfgs.size(); ++k) {
      SCOPED_TRACE("member " + std::to_string(k));
      EXPECT_GT(e.seq[k].steps, 100);
      // qhinge starts at alpha^2 L = 0.5 exactly, t1's threshold: its t1 is a tie that rounding breaks.
      if (std::string(loss) == "qhinge") e.seq[k].t1 = e.bat[k].t1 = kNaN;
      lft::expect_same_run(e.bat[k], e.bat_rec[k], e.seq[k], e.seq_rec[k]);
    }
  }
}

// A batched ensemble stopped by its step budget and resumed from its members' saved states
// (the outputs f, f0 come back out of the engine into the state and into it again) equals the
// uninterrupted ensemble, number for number.
TEST(Ensemble, BatchedEnsembleResumedEqualsUninterrupted) {
  Dataset d = synthetic(50, 30);
  auto cfgs_at = [](int64_t max_steps) { return std::vector<RunConfig>{member(0, 1e-2, max_steps), member(1, 1e3, max_steps)}; };
  std::vector<lft::Recorded> whole(2), first(2), second(2);
  std::vector<std::string> states(2);
  std::vector<TrainHooks> hw, h1, h2;
  for (auto& r : whole) hw.push_back(lft::recording(r));
  for (size_t k = 0; k < 2; ++k) {
    h1.push_back(lft::recording(first[k]));
    h1.back().on_state = [&states, k](const std::string& s) { states[k] = s; };
  }
  std::vector<RunResult> a = train_ensemble(cfgs_at(900), d, hw, EngineKind::Batched);
  train_ensemble(cfgs_at(400), d, h1, EngineKind::Batched);
  for (size_t k = 0; k < 2; ++k) {
    ASSERT_FALSE(states[k].empty());
    h2.push_back(lft::recording(second[k]));
    h2.back().resume_state = states[k];
  }
  std::vector<RunResult> b = train_ensemble(cfgs_at(900), d, h2, EngineKind::Batched);
  for (size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(a[k].steps, 900);
    EXPECT_EQ(b[k].steps, a[k].steps);
    EXPECT_EQ(b[k].rejected, a[k].rejected);
    EXPECT_EQ(b[k].t, a[k].t);
    EXPECT_EQ(b[k].train_loss, a[k].train_loss);
    ASSERT_FALSE(second[k].checkpoints.empty());
    const Checkpoint& x = second[k].checkpoints.back();
    const Checkpoint& y = whole[k].checkpoints.back();
    EXPECT_EQ(x.step, y.step);
    EXPECT_EQ(x.t, y.t);
    EXPECT_EQ(x.output_norm, y.output_norm);
    EXPECT_EQ(x.weight_change, y.weight_change);
  }
}

// --integrator lte on the batched engine (its step rule reads every output through the engine's
// host views): the same decisions as on the sequential engine, from a first step above rounding
// (lft::above_rounding). lte's step sizes follow the second difference of the outputs, which
// magnifies the two engines' rounding (1e-16) to ~1e-9 of dt over 600 steps, so the numbers are
// compared to 1e-6.
TEST(Ensemble, LteOnTheBatchedEngineMakesTheSequentialDecisions) {
  Dataset d = synthetic(50, 30);
  std::vector<RunConfig> cfgs = {member(0, 1e-2, 600), member(1, 1e3, 600)};
  for (RunConfig& c : cfgs) {
    c.integrator = "lte";
    c = lft::above_rounding(c);
  }
  std::vector<TrainHooks> hooks(2, lft::quiet());
  std::vector<RunResult> a = train_ensemble(cfgs, d, hooks, EngineKind::Sequential);
  std::vector<RunResult> b = train_ensemble(cfgs, d, hooks, EngineKind::Batched);
  for (size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(b[k].status, a[k].status);
    EXPECT_EQ(b[k].steps, a[k].steps);
    EXPECT_EQ(b[k].rejected, a[k].rejected);
    EXPECT_EQ(b[k].gradient_evaluations, a[k].gradient_evaluations);
    EXPECT_GT(a[k].rejected + a[k].steps, 100);
    for (auto [x, y] : {std::pair<double, double>{a[k].t, b[k].t}, {a[k].train_loss, b[k].train_loss},
                        {a[k].output_norm, b[k].output_norm}})
      EXPECT_NEAR(x, y, 1e-6 * std::fabs(x));
  }
}
