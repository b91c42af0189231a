// On the GPU (built only where LibTorch has CUDA; CTest label `cuda`): the batched engine on
// cuda (experiment/engine.h: batched products, the hand-written backward, df and the fit as
// device reductions) against the sequential fused engine on the CPU, and a run alone on cuda
// against the same run on the CPU, the stochastic dynamics on cuda against the CPU's, and the
// rule's rounds replayed as a CUDA graph against the same rounds launched kernel by kernel, and
// the products' weights as aligned copies against views of the members' rows.
// Deliberately not: speed (lazyfeat bench ensemble --device cuda).
#include <gtest/gtest.h>

#include "common/cuda_graph.h"
#include "data/dataset.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "testing.h"

using namespace lf;

namespace {

RunConfig member(uint64_t seed, double sqrt_h_alpha, const char* device) {
  RunConfig c = lft::small_member(seed, sqrt_h_alpha, 2000);
  c.device = device;
  // cuBLAS and the CPU kernels round the products differently: from a first step above rounding
  // (lft::above_rounding), the decisions are the dynamics', which both devices must agree on.
  return lft::above_rounding(c);
}

}  // namespace

// Three members in both regimes, 2,000 steps: the same decisions and checkpoints to 1e-9.
TEST(Cuda, BatchedEnsembleOnCudaEqualsSequentialOnCpu) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(50, 30, 5);
  std::vector<RunConfig> gpu, cpu;
  for (auto [seed, a] : {std::pair<uint64_t, double>{0, 1e-2}, {1, 1e3}, {2, 1e-2}}) {
    gpu.push_back(member(seed, a, "cuda"));
    cpu.push_back(member(seed, a, "cpu"));
  }
  std::vector<lft::Recorded> rg(3), rc(3);
  std::vector<TrainHooks> hg, hc;
  for (auto& r : rg) hg.push_back(lft::recording(r));
  for (auto& r : rc) hc.push_back(lft::recording(r));
  std::vector<RunResult> a = train_ensemble(gpu, d, hg);
  std::vector<RunResult> b = train_ensemble(cpu, d, hc);
  for (size_t k = 0; k < 3; ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(a[k].trainer, "batched");
    EXPECT_EQ(b[k].trainer, lft::cpu_trainer());
    EXPECT_GT(b[k].steps, 100);
    lft::expect_same_run(a[k], rg[k], b[k], rc[k]);
  }
}

// `train --device cuda` (an ensemble of one on the batched engine) against the CPU's run.
TEST(Cuda, RunAloneOnCudaEqualsTheCpuRun) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(50, 30, 5);
  lft::Recorded rg, rc;
  RunResult a = train_run(member(3, 1.0, "cuda"), d, lft::recording(rg));
  RunResult b = train_run(member(3, 1.0, "cpu"), d, lft::recording(rc));
  EXPECT_EQ(a.trainer, "batched");
  lft::expect_same_run(a, rg, b, rc);
}

// The stochastic dynamics on cuda, whose walk grows its chunks (Member::begin_batch) where the
// CPU's takes b_max points at a time: the same batches, so the CPU's run to 1e-9, to convergence
// (the late walks cover most of the training set). Stopped and resumed on cuda (the walk's length
// is in the state), the run makes the uninterrupted one's decisions and numbers.
TEST(Cuda, StochasticRunOnCudaEqualsTheCpuRun) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(100, 50);
  RunConfig c = lft::stochastic_config("fc", 100), g = c;
  c.max_steps = g.max_steps = 20000;
  g.device = "cuda";
  finalize(g);
  lft::Recorded rg, rc;
  RunResult a = train_run(g, d, lft::recording(rg));
  RunResult b = train_run(c, d, lft::recording(rc));
  EXPECT_EQ(a.status, "converged");
  lft::expect_same_run(a, rg, b, rc);
  const lft::ResumedRun r = lft::train_and_resume(g, d, a.steps / 2 - 7);
  EXPECT_EQ(r.second.status, a.status);
  EXPECT_EQ(r.second.steps, a.steps);
  EXPECT_EQ(r.second.rejected, a.rejected);
  EXPECT_NEAR(r.second.t, a.t, 1e-9 * a.t);
  EXPECT_EQ(r.second.test_err, a.test_err);
}

// The grouped CNN engine on cuda (an ensemble of CNNs as one network of grouped convolutions,
// experiment/cnn_ensemble.cpp; cuDNN's grouped convolutions, and im2col with cuBLAS's batched
// products) against each member's run alone on the CPU (the fused kernels), 2 seeds x 2 alphas,
// under the stochastic dynamics (the walks in lockstep, growing on cuda) and full batches: the
// same decisions and numbers to rounding.
TEST(Cuda, GroupedCnnEnsembleEqualsTheCpuRuns) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  const int64_t n = 48;
  Dataset d = lft::images(n, 50);
  for (const char* conv : {"cudnn", "im2col"})
  for (const bool stochastic : {true, false}) {
    lft::ScopedEnv env("LAZYFEAT_CNN_CONV", conv);
    SCOPED_TRACE(std::string(conv) + (stochastic ? ", stochastic" : ", full batch"));
    RunConfig base = stochastic ? lft::stochastic_config("cnn", n) : lft::conv_config("cnn", n, 50, 4);
    base.max_steps = 40;
    base.device = "cuda";
    const std::vector<RunConfig> cfgs = lft::members_of(base, {1e-2, 1e2}, {0, 1});
    std::vector<lft::Recorded> rg(cfgs.size());
    std::vector<TrainHooks> hooks;
    for (auto& r : rg) hooks.push_back(lft::recording(r));
    const std::vector<RunResult> g = train_ensemble(cfgs, d, hooks);
    for (size_t k = 0; k < cfgs.size(); ++k) {
      SCOPED_TRACE("member " + std::to_string(k));
      RunConfig cpu = cfgs[k];
      cpu.device = "cpu";
      finalize(cpu);
      lft::Recorded rc;
      const RunResult alone = train_run(cpu, d, lft::recording(rc));
      EXPECT_EQ(g[k].trainer, "grouped");
      EXPECT_EQ(g[k].steps, 40);
      lft::expect_same_run(g[k], rg[k], alone, rc);
    }
  }
}

// The rounds of the paper's rule on the device replayed as a CUDA graph (common/cuda_graph.h)
// against the same rounds launched one kernel at a time (LAZYFEAT_CUDA_GRAPHS=0): the same
// kernels on the same numbers, so the same bits, for members that converge, stop at their step
// budget and diverge (a member that leaves changes the graph's members: a new capture).
TEST(Cuda, GraphRoundsEqualEagerRounds) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(50, 30, 5);
  RunConfig converges = member(4, 1e-2, "cuda"), budget = member(5, 1e-2, "cuda"), diverges = member(3, 1e-2, "cuda");
  converges.max_steps = 0;  // no budget: it runs to zero loss
  budget.max_steps = 1234;
  diverges.alpha = 1e-310;
  const std::vector<RunConfig> cfgs = {converges, member(2, 1e3, "cuda"), budget, diverges};
  std::vector<lft::Recorded> rg, re;
  const int64_t before = CudaGraph::replays();
  const std::vector<RunResult> g = lft::ensemble_with("LAZYFEAT_CUDA_GRAPHS", nullptr, cfgs, d, rg);
  const int64_t replays = CudaGraph::replays() - before;
  const std::vector<RunResult> e = lft::ensemble_with("LAZYFEAT_CUDA_GRAPHS", "0", cfgs, d, re);
  EXPECT_GT(replays, 500) << "the rounds did not run as a graph";
  EXPECT_EQ(CudaGraph::replays() - before, replays) << "LAZYFEAT_CUDA_GRAPHS=0 replayed a graph";
  EXPECT_EQ(g[0].status, "converged");
  EXPECT_EQ(g[1].status, "stopped");
  EXPECT_EQ(g[2].steps, 1234);
  EXPECT_EQ(g[3].status, "diverged");
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(g[k].trainer, "batched");
    EXPECT_EQ(lft::numbers(g[k]), lft::numbers(e[k]));  // every number, bit for bit
    lft::expect_same_run(g[k], rg[k], e[k], re[k]);
  }
}

// The products' weights copied out of the members' parameter rows (the default on cuda,
// experiment/engine.cpp's batched_outputs) against the views of those rows
// (LAZYFEAT_ALIGNED_WEIGHTS=0): the same matrices, so the same decisions and numbers to 1e-9
// (cuBLAS picks other kernels for aligned operands: other roundings). A copy of the wrong slice
// or shape changes the run.
TEST(Cuda, AlignedWeightsEqualTheViews) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(50, 30, 5);
  std::vector<RunConfig> cfgs;
  for (auto [seed, a] : {std::pair<uint64_t, double>{0, 1e-2}, {1, 1e3}, {2, 1.0}}) cfgs.push_back(member(seed, a, "cuda"));
  std::vector<lft::Recorded> ra, rv;
  const std::vector<RunResult> a = lft::ensemble_with("LAZYFEAT_ALIGNED_WEIGHTS", nullptr, cfgs, d, ra);
  const std::vector<RunResult> v = lft::ensemble_with("LAZYFEAT_ALIGNED_WEIGHTS", "0", cfgs, d, rv);
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(a[k].trainer, "batched");
    EXPECT_GT(a[k].steps, 100);
    lft::expect_same_run(a[k], ra[k], v[k], rv[k]);
  }
}

// `bench ensemble --phases` on cuda: the marks as CUDA events (common/phase_times.h), the rounds
// then eager (no graph), the numbers those of the untimed run.
TEST(Cuda, PhaseTimesAccountForTheRounds) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(50, 30, 5);
  std::vector<RunConfig> cfgs = {member(4, 1e-2, "cuda"), member(2, 1e3, "cuda"), member(5, 1.0, "cuda")};
  for (RunConfig& c : cfgs) c = lft::above_rounding(c);
  lft::expect_phase_times_account_for_the_rounds(cfgs, d);
}
