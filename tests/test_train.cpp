// One run (experiment/train.h): convergence, determinism, exact resume, divergence, the
// losses, the CLI's bad-input exits. Synthetic data in-process; MNIST through the CLI.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <algorithm>
#include <cmath>
#include <fstream>

#include "common/error.h"
#include "experiment/from_config.h"
#include "experiment/run_state.h"
#include "experiment/state.h"
#include "experiment/config.h"
#include "dynamics/loss.h"
#include "experiment/train.h"
#include "testing.h"

using namespace lf;

namespace {

using lft::numbers;
using lft::quiet;
using lft::synthetic;

const auto kD = at::TensorOptions().dtype(at::kDouble);

// A small fast run: a wider df band and a larger first step than the protocol's.
RunConfig small_config() {
  RunConfig c;
  c.h = 16;
  c.L = 2;
  c.ptr = 60;
  c.pte = 100;
  c.dt0 = 1e-2;
  c.df_min = 1e-2;
  c.df_max = 1e-1;
  finalize(c);
  return c;
}

}  // namespace

TEST(Loss, ValuesSlopesAndFiniteDifferences) {
  Loss hinge = Loss::make("hinge"), soft = Loss::make("softhinge"), q = Loss::make("qhinge");
  EXPECT_EQ(hinge.value(0.0), 1.0);  // alpha^2 L = 1 at t = 0
  EXPECT_EQ(hinge.value(1.0), 0.0);
  EXPECT_EQ(hinge.slope(1.0), 0.0);  // satisfied points: exactly zero gradient
  EXPECT_EQ(hinge.slope(0.999), -1.0);
  EXPECT_EQ(q.value(0.0), 0.5);
  EXPECT_NEAR(soft.value(1.0), std::log(2.0) / 20.0, 1e-15);
  for (const Loss& l : {hinge, soft, q})
    for (double m : {-1.3, 0.2, 0.77, 1.4}) {
      double e = 1e-6, fd = (l.value(m + e) - l.value(m - e)) / (2 * e);
      EXPECT_NEAR(l.slope(m), fd, 1e-7) << m;
    }
  EXPECT_THROW(Loss::make("mse"), UsageError);
}

TEST(Train, ConvergesWithT1BeforeT2) {
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  RunResult r = train_run(c, d, quiet());
  EXPECT_EQ(r.status, "converged") << r.summary().dump();
  EXPECT_EQ(r.trainer, lft::cpu_trainer());
  EXPECT_EQ(r.train_loss, 0.0);
  EXPECT_EQ(r.train_err, 0.0);
  EXPECT_EQ(r.unsatisfied, 0);
  EXPECT_LT(r.t1, r.t2);
  EXPECT_EQ(r.t2, r.t);
  ASSERT_GE(r.checkpoints.size(), 2u);
  const Checkpoint& c0 = r.checkpoints.front();
  EXPECT_EQ(c0.step, 0);
  EXPECT_EQ(c0.train_loss, 1.0);  // hinge: alpha^2 L = 1 at t = 0
  EXPECT_EQ(c0.train_err, 1.0);   // F = 0: every F y <= 0
  EXPECT_EQ(c0.unsatisfied, 60);
  EXPECT_EQ(c0.weight_change, 0.0);
  EXPECT_EQ(c0.layer_change.size(), 3u);
  EXPECT_EQ(r.checkpoints.back().step, r.steps);
  EXPECT_GT(r.weight_change, 0.0);
  EXPECT_EQ(r.test_f_delta.numel(), 100);
  EXPECT_EQ(r.test_f0.numel(), 100);
  // The final test error is that of sign(f - f0) on the test set.
  at::Tensor wrong = (r.test_f_delta * d.y_test <= 0).to(at::kDouble);
  EXPECT_DOUBLE_EQ(r.test_err, wrong.mean().item<double>());
  EXPECT_NEAR(r.output_norm, r.test_f_delta.pow(2).mean().sqrt().item<double>(), 1e-15);
}

TEST(Train, SameSeedsSameNumbers) {
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  c.max_steps = 300;
  RunResult a = train_run(c, d, quiet()), b = train_run(c, d, quiet());
  EXPECT_EQ(numbers(a).dump(), numbers(b).dump());
  EXPECT_TRUE(at::equal(a.test_f_delta, b.test_f_delta));
  c.seed_init = 1;
  RunResult e = train_run(c, d, quiet());
  EXPECT_NE(numbers(a).dump(), numbers(e).dump());
}

TEST(Train, FusedAndReferenceAgree) {
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  c.max_steps = 40;
  TrainHooks h = quiet();
  RunResult a = train_run(c, d, h);
  h.reference = true;
  RunResult b = train_run(c, d, h);
  EXPECT_EQ(b.trainer, "reference");
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_NEAR(a.t, b.t, 1e-9 * a.t);
  EXPECT_NEAR(a.train_loss, b.train_loss, 1e-9);
  EXPECT_LT((a.test_f_delta - b.test_f_delta).abs().max().item<double>(), 1e-9);
}

TEST(Train, ResumeEqualsUninterrupted) {
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  c.max_steps = 400;
  const lft::ResumedRun r = lft::train_and_resume(c, d, 150);
  const RunResult &full = r.full, &second = r.second;
  const std::string &end_full = r.end_full, &end_resumed = r.end_resumed;
  ASSERT_EQ(full.status, "stopped");
  ASSERT_EQ(r.first.steps, 150);
  EXPECT_EQ(numbers(full).dump(), numbers(second).dump());
  EXPECT_TRUE(at::equal(full.test_f_delta, second.test_f_delta));
  // Identical weights, and the checkpoints after the interruption are the same.
  FCParams pa = fc_params_from_state(end_full), pb = fc_params_from_state(end_resumed);
  for (size_t i = 0; i < pa.W.size(); ++i) {
    EXPECT_TRUE(at::equal(pa.W[i], pb.W[i]));
    EXPECT_TRUE(at::equal(pa.b[i], pb.b[i]));
  }
  // The state holds no w0 (format 3): the resumed run made it again from the seed, and its weight
  // changes (checkpoints below) are the uninterrupted run's.
  EXPECT_EQ(TrainState::decode(r.mid).tensors.count("w0"), 0u);
  EXPECT_FALSE(RunState::decode(r.mid, c, 60, 100, at::kDouble).w0.defined());
  const nlohmann::json tail_full = lft::checkpoints_after(full, 150);
  EXPECT_EQ(tail_full.dump(), lft::checkpoints_after(second, 150).dump());
  EXPECT_FALSE(tail_full.empty());
  // A state of another configuration is refused.
  RunConfig other = c;
  other.seed_init = 9;
  TrainHooks h = quiet();
  h.resume_state = r.mid;
  EXPECT_THROW(train_run(other, d, h), UsageError);
  EXPECT_THROW(fc_params_from_state("garbage"), UsageError);
}

TEST(Train, DivergingRunEndsDiverged) {
  // alpha so small that dL/df = l'/(alpha n) overflows: the first trial step gives NaN outputs
  // and the run stops there as "diverged" (protocol section 4: stop on NaN), without
  // shrinking dt through hundreds of rejections, looping or crashing.
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  c.alpha = 1e-310;
  RunResult r = train_run(c, d, quiet());
  EXPECT_EQ(r.status, "diverged");
  EXPECT_EQ(r.message, "a trial step gave a non-finite output change (NaN)");
  EXPECT_EQ(r.steps, 0);
  EXPECT_EQ(r.rejected, 0);
  EXPECT_TRUE(r.summary().dump().find("\"status\":\"diverged\"") != std::string::npos);
}

TEST(Train, ZdotAndOtherLosses) {
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  c.zdot = true;
  c.max_steps = 100;  // zdot is measured at the first step with df > df_min (observables test)
  RunResult r = train_run(c, d, quiet());
  ASSERT_EQ(r.zdot.size(), 3u);  // pre_1, pre_2, f
  for (double z : r.zdot) EXPECT_GT(z, 0.0);
  for (const char* loss : {"softhinge", "qhinge"}) {
    RunConfig q = small_config();
    q.loss = loss;
    q.max_steps = 30;
    RunResult rq = train_run(q, d, quiet());
    EXPECT_EQ(rq.status, "stopped") << loss;
    EXPECT_LT(rq.train_loss, rq.checkpoints.front().train_loss) << loss;
  }
}

TEST(Train, UnsupportedConfigsAreUsageErrors) {
  Dataset d = synthetic(60, 100);
  RunConfig c = small_config();
  c.arch = "wrn";
  EXPECT_THROW(train_run(c, d, quiet()), UsageError);
  c = small_config();
  c.dt0 = std::numeric_limits<double>::infinity();
  EXPECT_THROW(train_run(c, d, quiet()), UsageError);
}

TEST(TrainCli, BadInputExit2) {
  // Each bad input exits 2 with one line naming its own problem.
  struct Case {
    std::vector<std::string> args;
    std::string msg;
  };
  for (const Case& c : std::vector<Case>{
           {{"train", "--alpha", "0"}, "--alpha must be a finite number > 0"},
           {{"train", "--h", "0"}, "--h must be >= 1, got 0"},
           {{"train", "--L", "0"}, "--L must be >= 1, got 0"},
           {{"train", "--act", "gelu"}, "unknown activation 'gelu' (expected softplus, relu, tanh or swish)"},
           {{"train", "--loss", "mse"}, "unknown loss 'mse' (expected hinge, softhinge or qhinge)"},
           {{"train", "--dt0", "inf"}, "--dt0 must be a finite number"},
           {{"train", "--df-max", "nan"}, "need 0 < --df-min < --df-max"},
           {{"train", "--resume"}, "--resume needs --db FILE"},
           {{"train", "extra"}, "train takes no positional arguments (got 'extra')"}}) {
    auto r = lft::run_cli(c.args);
    EXPECT_EQ(r.status, 2) << c.args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("lazyfeat: error: " + c.msg), std::string::npos) << c.args[1] << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  // The softplus kernel's width from the environment (models/fc_fused.h), likewise.
  auto r = lft::run_cli({"train", "--ptr", "50", "--pte", "50", "--h", "8", "--L", "1", "--max-steps", "1"},
                        {"LAZYFEAT_SIMD=sse2"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("lazyfeat: error: LAZYFEAT_SIMD must be avx512, avx2 or none (got 'sse2')"), std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(TrainCli, DivergedRunExits1WithItsJson) {
  // alpha so small that the loss gradient overflows (see DivergingRunEndsDiverged).
  auto r = lft::run_cli({"train", "--ptr", "100", "--pte", "100", "--h", "8", "--L", "2", "--alpha", "1e-310",
                         "--json", "--quiet"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("diverged"), std::string::npos) << r.err;
  auto j = nlohmann::json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["status"], "diverged");
}

TEST(TrainCli, MnistPtr200Converges) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent under " << lft::data_dir() << "/mnist: run scripts/setup.sh";
  lft::TempDir tmp;
  auto r = lft::run_cli({"train", "--ptr", "200", "--pte", "1000", "--h", "32", "--L", "3", "--dt0", "1e-2",
                         "--df-min", "1e-2", "--df-max", "1e-1", "--json", "--quiet", "--out", tmp.file("run.json")});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["status"], "converged");
  EXPECT_LT(j["t1"].get<double>(), j["t2"].get<double>());
  EXPECT_EQ(j["train_loss"].get<double>(), 0.0);
  EXPECT_GT(j["test_err"].get<double>(), 0.05);
  EXPECT_LT(j["test_err"].get<double>(), 0.35);
  for (const char* k : {"steps", "t", "weight_change", "output_norm", "wall_s", "steps_per_s"})
    EXPECT_TRUE(j.contains(k)) << k;
  std::ifstream in(tmp.file("run.json"));
  auto all = nlohmann::json::parse(in);
  EXPECT_EQ(all["test_f_delta"].size(), 1000u);
  EXPECT_EQ(all["checkpoints"][0]["step"], 0);
}

// On a LibTorch without an exported dgemm_ the fused kernels take their products from at::mm inside
// an ATen parallel region (models/fc_fused.cpp); with a dgemm_ whose threads cannot be set
// (PyTorch's, MKL inside) the trainer takes the reference trainer. Emulated here with
// LAZYFEAT_FUSED_ATEN_MM=1 and LAZYFEAT_FUSED_BLAS_THREADS=fixed: the same run, step for step, to
// rounding (600 points at h = 64: three blocks of rows, so that both threads take tasks).
// The same seeds give the same numbers, bit for bit, with one or two OpenBLAS threads, ATen
// intra-op threads and threads of lazyfeat's pool (common/pool.h): the whitened PCA of the data
// runs on a fixed two BLAS threads (data/pca.cpp; left to the machine, its covariance differed in
// the last bits and the six runs of a small sweep in their steps), and the fused trainer keeps its
// products single-threaded, in fixed tasks. The prepared-data cache is off: each process builds
// its data.
TEST(TrainCli, SameNumbersWithOneOrTwoThreads) {
  auto cli = [](std::vector<std::string> args, const char* threads) {
    auto r = lft::run_cli(args, {std::string("OPENBLAS_NUM_THREADS=") + threads, std::string("OMP_NUM_THREADS=") + threads,
                                 std::string("LAZYFEAT_THREADS=") + threads, "LAZYFEAT_DATA_CACHE=0"});
    EXPECT_EQ(r.status, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(lft::last_line(r.out));
    for (const char* k : {"seconds", "wall_s", "steps_per_s"}) j.erase(k);
    return j;
  };
  const std::vector<std::string> data = {"data", "--ptr", "200", "--pte", "200", "--json"};
  EXPECT_EQ(cli(data, "1"), cli(data, "2"));
  std::vector<std::string> train = {"train", "--ptr", "200", "--pte", "200", "--h", "16", "--L", "2",
                                    "--sqrt-h-alpha", "10", "--max-steps", "3000", "--json", "--quiet"};
  const nlohmann::json one = cli(train, "1"), two = cli(train, "2");
  EXPECT_EQ(one["trainer"], lft::cpu_trainer());
  EXPECT_EQ(one, two);
  train.push_back("--reference");  // the plain LibTorch trainer: its products on OpenBLAS's threads
  const nlohmann::json ref1 = cli(train, "1"), ref2 = cli(train, "2");
  EXPECT_EQ(ref1["trainer"], "reference");
  EXPECT_EQ(ref1, ref2);
}

TEST(TrainCli, FusedKernelsWithoutDgemmGiveTheSameRun) {
  auto train = [](const std::vector<std::string>& env) {
    // From a first step above rounding (lft::kDt0AboveRounding: at::mm and dgemm_ sum in other orders).
    static_assert(lft::kDt0AboveRounding == 1e-7, "the --dt0 below");
    auto r = lft::run_cli({"train", "--ptr", "600", "--pte", "300", "--h", "64", "--L", "3",
                           "--sqrt-h-alpha", "10", "--max-steps", "600", "--dt0", "1e-7", "--json", "--quiet"},
                          env);
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(lft::last_line(r.out));
  };
  const nlohmann::json a = train({});
  // Also a dgemm_ whose threads cannot be set (MKL: LAZYFEAT_FUSED_BLAS_THREADS=fixed), where the
  // trainer falls back to the reference trainer (train.cpp): the same run to 1e-9.
  for (const char* env : {"LAZYFEAT_FUSED_ATEN_MM=1", "LAZYFEAT_FUSED_BLAS_THREADS=fixed"}) {
    SCOPED_TRACE(env);
    const bool mkl = std::string(env).find("THREADS") != std::string::npos;
    const nlohmann::json b = train({env});
    EXPECT_EQ(a["trainer"], lft::cpu_trainer());
    EXPECT_EQ(b["trainer"], mkl ? "reference" : "fused");
    EXPECT_EQ(a["steps"], b["steps"]);
    EXPECT_EQ(a["rejected"], b["rejected"]);
    const double tol = a["trainer"] == b["trainer"] ? 1e-10 : 1e-9;
    for (const char* k : {"t", "train_loss", "test_err", "weight_change", "output_norm"})
      EXPECT_NEAR(a[k].get<double>(), b[k].get<double>(), tol * std::fabs(a[k].get<double>()) + 1e-14) << k;
  }
}
