// Ensembles (experiment/train.h, train_ensemble): K runs in lockstep give each member exactly the
// run it would have alone (decisions, checkpoints, result), whatever the others do: converge
// early, or diverge on NaN.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>

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
  RunConfig c;
  c.h = 16;
  c.L = 2;
  c.ptr = 50;
  c.pte = 30;
  c.seed_init = seed;
  c.sqrt_h_alpha = sqrt_h_alpha;
  c.max_steps = max_steps;
  finalize(c);
  return c;
}

struct Recorded {
  std::vector<Checkpoint> checkpoints;
  int states = 0;
};

TrainHooks recording(Recorded& r) {
  TrainHooks h = lft::quiet();
  h.on_checkpoint = [&r](const Checkpoint& c) { r.checkpoints.push_back(c); };
  return h;
}

// a and b to 1e-9 relative, or within floor (the rounding of quantities that start at 0).
void expect_close(double a, double b, const std::string& what, double floor = 0) {
  if (std::isnan(a) || std::isnan(b)) {
    EXPECT_EQ(std::isnan(a), std::isnan(b)) << what;
    return;
  }
  EXPECT_LE(std::fabs(a - b), 1e-9 * std::max(std::fabs(a), std::fabs(b)) + floor) << what << ": " << a << " vs " << b;
}

void expect_same_run(const RunResult& a, const Recorded& ca, const RunResult& b, const Recorded& cb) {
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.rejected, b.rejected) << "the same accept/reject decisions";
  expect_close(a.t, b.t, "t");
  expect_close(a.t1, b.t1, "t1");
  expect_close(a.test_err, b.test_err, "test_err");
  ASSERT_EQ(ca.checkpoints.size(), cb.checkpoints.size());
  for (size_t i = 0; i < ca.checkpoints.size(); ++i) {
    const Checkpoint &x = ca.checkpoints[i], &y = cb.checkpoints[i];
    const std::string at = "checkpoint " + std::to_string(i);
    EXPECT_EQ(x.step, y.step) << at;
    expect_close(x.t, y.t, at + " t");
    expect_close(x.dt, y.dt, at + " dt");
    expect_close(x.train_loss, y.train_loss, at + " train_loss");
    // f - f0 and w - w0 start at 0: two engines' roundings (1e-16 of f, w) floor their agreement.
    expect_close(x.weight_change, y.weight_change, at + " weight_change", 1e-14);
    expect_close(x.output_norm, y.output_norm, at + " output_norm", 1e-13);
    EXPECT_EQ(x.unsatisfied, y.unsatisfied) << at;
  }
}

}  // namespace

// 2 seeds x 2 alphas, one alpha in each regime (sqrt(h) alpha = 1e-2 and 1e3), 2,000 steps.
TEST(Ensemble, FourMembersEqualTheirRunsAlone) {
  Dataset d = synthetic(50, 30);
  std::vector<RunConfig> cfgs = {member(0, 1e-2, 2000), member(1, 1e-2, 2000), member(0, 1e3, 2000),
                                 member(1, 1e3, 2000)};
  std::vector<Recorded> rec(cfgs.size());
  std::vector<TrainHooks> hooks;
  for (auto& r : rec) hooks.push_back(recording(r));
  std::vector<RunResult> together = train_ensemble(cfgs, d, hooks);
  ASSERT_EQ(together.size(), 4u);
  int64_t rejections = 0;
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    Recorded alone_rec;
    RunResult alone = train_run(cfgs[k], d, recording(alone_rec));
    EXPECT_GT(alone.steps, 100);
    expect_same_run(together[k], rec[k], alone, alone_rec);
    rejections += alone.rejected;
  }
  EXPECT_GT(rejections, 0) << "the test needs rejections to compare decisions";
  EXPECT_NE(together[0].steps + together[0].rejected, together[2].steps + together[2].rejected)
      << "the members must take different paths for lockstep to matter";
}

// Members that converge at different steps (each leaves the ensemble when it converges) and one
// forced to diverge at once (alpha so small that the first trial step gives NaN) leave the
// others' numbers unchanged; the diverged one is recorded as diverged with its message.
TEST(Ensemble, EarlyConvergedAndDivergedMembersLeaveTheOthersAlone) {
  Dataset d = synthetic(50, 30);
  RunConfig diverges = member(3, 1e-2, 0);
  diverges.alpha = 1e-310;
  std::vector<RunConfig> cfgs = {member(4, 1e-2, 0), member(2, 1e3, 0), diverges};  // no budgets
  std::vector<Recorded> rec(3);
  std::vector<TrainHooks> hooks;
  for (auto& r : rec) hooks.push_back(recording(r));
  std::vector<RunResult> out = train_ensemble(cfgs, d, hooks);
  EXPECT_EQ(out[0].status, "converged");
  EXPECT_EQ(out[1].status, "converged");
  EXPECT_EQ(out[2].status, "diverged");
  EXPECT_EQ(out[2].message, "a trial step gave a non-finite output change (NaN)");
  EXPECT_EQ(out[2].steps, 0);
  EXPECT_NE(out[0].steps, out[1].steps) << "one member must leave while the other runs on";
  for (size_t k = 0; k < 2; ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    Recorded alone_rec;
    RunResult alone = train_run(cfgs[k], d, recording(alone_rec));
    expect_same_run(out[k], rec[k], alone, alone_rec);
  }
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
  std::vector<Recorded> seq(3), bat(3);
  std::vector<TrainHooks> hs, hb;
  for (auto& r : seq) hs.push_back(recording(r));
  for (auto& r : bat) hb.push_back(recording(r));
  std::vector<RunResult> a = train_ensemble(cfgs, d, hs, EngineKind::Sequential);
  std::vector<RunResult> b = train_ensemble(cfgs, d, hb, EngineKind::Batched);
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(a[k].trainer, "fused");
    EXPECT_EQ(b[k].trainer, "batched");
    expect_same_run(b[k], bat[k], a[k], seq[k]);
  }
}
