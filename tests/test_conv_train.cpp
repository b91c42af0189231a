// The wide ResNet 28 through the trainer, and the kernel observables of convolutional runs
// (setup B, protocol sections 2, 4, 5): the wide ResNet's flat layout; bad input; its gradients
// over several blocks of points against one backward; full-batch and stochastic runs whose loss
// falls, with a weight change per layer; a stopped and resumed run against the uninterrupted one, bit for bit;
// the kernel change, the kernels at init and at the end recorded by cnn and wrn runs against the
// autograd Jacobian of the run's own initial and final weights. Synthetic images in-process
// (fast); MNIST through the CLI (slow): a wide ResNet run into a study database, `ntk --db --run`
// on a cnn run against the Jacobian of its stored weights, bad input leaving the database intact.
// Deliberately not: the NTK's own methods (test_wrn.cpp, test_ntk.cpp), speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/npy.h"
#include "common/options.h"
#include "experiment/config.h"
#include "experiment/from_config.h"
#include "experiment/model.h"
#include "experiment/run_state.h"
#include "experiment/train.h"
#include "ntk/ntk.h"
#include "ntk/stats.h"
#include "store/store.h"
#include "testing.h"

using namespace lf;
using lft::numbers;

namespace {

const auto kD = at::TensorOptions().dtype(at::kDouble);

double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / b.norm().item<double>();
}

// A loose full-batch setting (df in [1e-2, 1e-1], dt from 1e-2), h = 1 (the wide ResNet's width
// factor, the cnn's channels otherwise: 3).
RunConfig conv_config(const std::string& arch, int64_t n, int64_t pte) {
  return lft::conv_config(arch, n, pte, arch == "wrn" ? 1 : 3);
}

// The same with the stochastic dynamics: tau 1, T = 1e-2, batches of at most 8.
RunConfig stochastic(RunConfig c) {
  c.tau = 1;
  c.temperature = 1e-2;
  c.batch_max = 8;
  finalize(c);
  return c;
}

at::Tensor flat(const Net& n) {
  std::vector<at::Tensor> parts;
  for (const at::Tensor& t : n.flat()) parts.push_back(t.reshape({-1}));
  return at::cat(parts);
}

}  // namespace

TEST(WrnTrain, FlatLayoutHoldsEveryParameterOnce) {
  const WRNLayout L = wrn_layout(1, 1);
  // The stem, 12 blocks of two convolutions, the shortcuts of stages 2 and 3, the head.
  ASSERT_EQ(L.layers(), 1 + 24 + 2 + 1);
  int64_t next = 0;
  for (const ParamSlice& s : L.slices()) {  // consecutive, W then b, nothing left over
    EXPECT_EQ(s.w_offset, next);
    EXPECT_EQ(s.b_offset, s.w_offset + s.w_numel);
    next = s.b_offset + s.b_numel;
  }
  EXPECT_EQ(next, L.size);
  const WRNParams p = wrn_init(1, 1, 7);
  const at::Tensor w = L.flatten(p);
  ASSERT_EQ(w.numel(), L.size);
  int64_t P = 0;
  for (const at::Tensor& t : p.flat()) P += t.numel();
  EXPECT_EQ(P, L.size);
  const WRNParams v = L.views(w);
  for (size_t i = 0; i < p.W.size(); ++i) {
    EXPECT_TRUE(at::equal(v.W[i], p.W[i])) << i;
    EXPECT_TRUE(at::equal(v.b[i], p.b[i])) << i;
  }
  // The trainer's initial weights are protocol section 8's draw.
  RunConfig c = conv_config("wrn", 4, 2);
  const NetLayout lay = NetLayout::of(c, lft::images(4, 2, 8).x_train);
  EXPECT_EQ(lay.size(), L.size);
  EXPECT_TRUE(at::equal(lay.init(7), w));
  EXPECT_EQ(lay.shape().dump(), R"({"arch":"wrn","channels":1,"h":1})");
  EXPECT_EQ(NetLayout::of_shape(lay.shape()).size(), L.size);
}

TEST(WrnTrain, BadInputIsAUsageError) {
  RunConfig c = conv_config("wrn", 10, 5);
  try {  // vectors [n, d] (what --pca gives an fc run), not images
    train_run(c, lft::synthetic(10, 5), lft::quiet());
    ADD_FAILURE() << "vector data trained a wide ResNet";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()), "the training set must be a non-empty [n, C, rows, cols] images (--arch wrn)");
  }
  c.zdot = true;
  EXPECT_THROW(train_run(c, lft::images(10, 5, 8), lft::quiet()), UsageError);
  RunConfig p = c;
  p.zdot = false;
  p.pca = 10;
  EXPECT_THROW(finalize(p), UsageError);
}

TEST(WrnTrain, GradientOverSeveralBlocksEqualsOneBackward) {
  // 40 points: more than one block of the model's forward passes (32 for the wide ResNet).
  const int64_t n = 40;
  Dataset d = lft::images(n, 0, 8);
  RunConfig c = conv_config("wrn", n, 0);
  const NetLayout lay = NetLayout::of(c, d.x_train);
  auto model = make_model(false, activation_of(c), lay, d.x_train, kD);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  model->w.copy_(lay.init(3) + 0.1 * at::randn({lay.size()}, gen, kD));  // non-zero biases too
  std::vector<int64_t> rows;
  std::vector<double> cs;
  for (int64_t i = 0; i < n; ++i) rows.push_back((7 * i) % n), cs.push_back(std::sin(double(i)));
  model->gradient_rows(rows, cs);
  // The reference: one autograd backward of sum_k c_k f(x_rows[k]) over all points at once.
  at::Tensor leaf = model->w.detach().clone().requires_grad_(true);
  at::Tensor f = wrn_forward_reference(lay.wrn.views(leaf), d.x_train.index_select(0, at::tensor(rows)), activation_of(c));
  (f * at::tensor(cs, kD)).sum().backward();
  EXPECT_LT(rel(model->g, leaf.grad()), 1e-12);
  std::vector<double> out(static_cast<size_t>(n), 0.0);
  model->forward_train(out.data());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = std::find(rows.begin(), rows.end(), i) - rows.begin();
    EXPECT_NEAR(out[i], f[k].item<double>(), 1e-12) << i;
  }
  model->gradient(rows, cs);  // the full-batch path
  EXPECT_LT(rel(model->g, leaf.grad()), 1e-12);
}

TEST(WrnTrain, LossFallsWithAWeightChangePerLayer) {
  Dataset d = lft::images(16, 20, 8);
  for (const bool stoch : {false, true}) {
    RunConfig c = conv_config("wrn", 16, 20);
    c.dt0 = 0.1;  // looser still: fewer steps
    c.df_min = 0.1;
    c.df_max = 1;
    if (stoch) c = stochastic(c);
    c.max_steps = 25;
    EXPECT_EQ(c.act, "relu");  // the paper's activation is the wrn default
    lft::Recorded rec;
    RunResult r = train_run(c, d, lft::recording(rec));
    ASSERT_NE(r.status, "diverged") << r.summary().dump();
    EXPECT_EQ(r.trainer, "reference");
    ASSERT_GE(rec.checkpoints.size(), 3u) << stoch;
    EXPECT_EQ(rec.checkpoints.front().train_loss, 1.0);  // f = f0 at t = 0
    EXPECT_LT(r.train_loss, 0.8) << stoch << r.summary().dump();
    EXPECT_LT(rec.checkpoints.back().train_loss, rec.checkpoints.front().train_loss);
    ASSERT_EQ(int64_t(r.checkpoints.back().layer_change.size()), wrn_layout(1, 1).layers());
    for (double v : r.checkpoints.back().layer_change) EXPECT_GT(v, 0.0) << stoch;  // every layer moved
    EXPECT_GT(r.weight_change, 0.0);
    at::Tensor wrong = (r.test_f_delta * d.y_test <= 0).to(at::kDouble);
    EXPECT_DOUBLE_EQ(r.test_err, wrong.mean().item<double>());
  }
}

TEST(WrnTrain, ResumeEqualsUninterrupted) {
  Dataset d = lft::images(16, 10, 8);
  for (const bool stoch : {false, true}) {
    RunConfig c = conv_config("wrn", 16, 10);
    if (stoch) c = stochastic(c);
    c.max_steps = 14;
    const int64_t cut = 6;
    const lft::ResumedRun r = lft::train_and_resume(c, d, cut);
    ASSERT_EQ(r.full.status, "stopped") << stoch << r.full.summary().dump();
    ASSERT_EQ(r.first.steps, cut);
    EXPECT_EQ(numbers(r.full).dump(), numbers(r.second).dump()) << stoch;
    EXPECT_TRUE(at::equal(r.full.test_f_delta, r.second.test_f_delta)) << stoch;
    const nlohmann::json tail = lft::checkpoints_after(r.full, cut);
    EXPECT_FALSE(tail.empty());
    EXPECT_EQ(tail.dump(), lft::checkpoints_after(r.second, cut).dump()) << stoch;
    const Activation act = activation_of(c);
    EXPECT_TRUE(at::equal(flat(net_from_state(r.end_full, act)), flat(net_from_state(r.end_resumed, act))));
    EXPECT_FALSE(at::equal(flat(net_from_state(r.mid, act)), flat(net_from_state(r.end_full, act))));
    EXPECT_EQ(net_from_state(r.end_full, act).arch(), "wrn");
    EXPECT_THROW(fc_params_from_state(r.end_full), UsageError);
  }
}

// The kernel observables of a convolutional run (--init-kernel, --final-kernel, --delta-kernel):
// the kernels at init and at the end on the first kernel_points test points and their relative
// change, against the autograd Jacobian of the run's initial weights and of its final state's.
TEST(ConvKernels, RecordedChangeEqualsTheKernelsOfTheRunsWeights) {
  for (const std::string arch : {"cnn", "wrn"}) {
    Dataset d = lft::images(12, 10, arch == "cnn" ? 28 : 8);  // the cnn needs >= 19 x 19
    RunConfig c = conv_config(arch, 12, 10);
    c.init_kernel = c.final_kernel = c.delta_kernel = true;
    c.kernel_points = 6;
    c.max_steps = 10;
    lf::TrainHooks h = lft::quiet();
    std::string end;
    h.on_state = [&](const std::string& s) { end = s; };
    RunResult r = train_run(c, d, h);
    ASSERT_NE(r.status, "diverged") << arch;
    ASSERT_FALSE(end.empty());
    const Activation act = activation_of(c);
    const NetLayout lay = NetLayout::of(c, d.x_train);
    const Net w0 = lay.net(lay.init(c.weights_seed()), act), w = net_from_state(end, act);
    NtkOptions jac;
    jac.method = NtkMethod::Jacobian;
    const at::Tensor x = d.x_test.narrow(0, 0, 6);
    const at::Tensor K0 = ntk(w0, x, jac), K1 = ntk(w, x, jac);
    const double change = kernel_change(K1, K0);
    EXPECT_GT(change, 1e-4) << arch;  // the kernel moved
    EXPECT_NEAR(r.kernel_change, change, 1e-9 * change) << arch << r.kernel.dump();
    EXPECT_EQ(r.summary()["kernel_change"].get<double>(), r.kernel_change);
    EXPECT_NEAR(r.kernel["init"]["frobenius"].get<double>(), K0.norm().item<double>(), 1e-9 * K0.norm().item<double>());
    EXPECT_NEAR(r.kernel["final"]["frobenius"].get<double>(), K1.norm().item<double>(), 1e-9 * K1.norm().item<double>());
    EXPECT_TRUE(r.kernel.contains("init_kernel_run")) << arch << r.kernel.dump();
    EXPECT_TRUE(r.kernel.contains("final_kernel_run")) << arch << r.kernel.dump();
  }
}

// MNIST through the CLI: a wide ResNet (width 1, 32 images) trains into a study database, its
// checkpoints recorded there with the loss falling and every layer's weights moving; `ntk --db
// --run` takes its stored weights.
TEST(ConvCli, WrnOnMnistIntoTheDatabase) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent under " << lft::data_dir() << "/mnist: run scripts/setup.sh";
  lft::TempDir tmp;
  const std::string db = tmp.file("study.sqlite");
  auto r = lft::run_cli({"train", "--arch", "wrn", "--h", "1", "--ptr", "32", "--pte", "50", "--dt0", "1e-2", "--df-min",
                         "1e-2", "--df-max", "1e-1", "--max-steps", "12", "--db", db, "--json", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(lft::last_line(r.out));
  EXPECT_NE(j["status"], "diverged") << j.dump();
  EXPECT_LT(j["train_loss"].get<double>(), 1.0) << j.dump();
  auto rows = lft::query(db, "SELECT step, train_loss, layer_change FROM checkpoints WHERE run_id = 1 ORDER BY step");
  ASSERT_GE(rows.size(), 3u);
  EXPECT_EQ(rows.front()[0], "0");
  EXPECT_LT(std::stod(rows.back()[1]), std::stod(rows.front()[1]));
  auto lc = nlohmann::json::parse(rows.back()[2]);
  ASSERT_EQ(int64_t(lc.size()), wrn_layout(1, 1).layers());
  for (const auto& v : lc) EXPECT_GT(v.get<double>(), 0.0);
  EXPECT_EQ(lft::query(db, "SELECT arch FROM runs WHERE id = 1").at(0).at(0), "wrn");
  // Its kernel from the stored weights (ntk --db --run): the wide ResNet of the run.
  auto k = lft::run_cli({"ntk", "--db", db, "--run", "1", "--points", "4", "--json"});
  ASSERT_EQ(k.status, 0) << k.err;
  auto jk = nlohmann::json::parse(lft::last_line(k.out));
  EXPECT_EQ(jk["arch"], "wrn");
  EXPECT_EQ(jk["params"].get<int64_t>(), wrn_layout(1, 1).size);
  EXPECT_GT(jk["frobenius"].get<double>(), 0.0);
}

// `ntk --db F --run ID` on a cnn run: the Gram of the run's stored weights (the Jacobian of the
// state read here), not of its initialisation. Bad input: one line, exit 2, the database as it was.
TEST(ConvCli, NtkOfAStoredCnnRunAndBadInput) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent under " << lft::data_dir() << "/mnist: run scripts/setup.sh";
  lft::TempDir tmp;
  const std::string db = tmp.file("study.sqlite"), out = tmp.file("k.npy");
  std::vector<std::string> run = {"--arch", "cnn", "--h", "4", "--ptr", "32", "--pte", "20", "--dt0", "1e-2",
                                  "--df-min", "1e-2", "--df-max", "1e-1", "--max-steps", "30"};
  auto train = run;
  train.insert(train.begin(), "train");
  train.insert(train.end(), {"--db", db, "--json", "--quiet"});
  auto t = lft::run_cli(train);
  ASSERT_EQ(t.status, 0) << t.err;
  auto k = lft::run_cli({"ntk", "--db", db, "--run", "1", "--points", "5", "--out", out, "--json"});
  ASSERT_EQ(k.status, 0) << k.err;
  EXPECT_EQ(nlohmann::json::parse(lft::last_line(k.out))["arch"], "cnn");
  const at::Tensor K = read_npy(out);
  // The reference: the stored state's weights, the run's test points, the Jacobian method.
  const RunConfig cfg = lft::config_of_args(run);
  const at::Tensor x = load_dataset(cfg).x_test.narrow(0, 0, 5);
  StoreOptions so;
  so.create = false;
  so.readonly = true;
  std::string state;
  {
    Store store(db, so);
    auto s = store.load_state(1);
    ASSERT_TRUE(bool(s));
    state = s->blob;
  }
  const Activation act = activation_of(cfg);
  NtkOptions jac;
  jac.method = NtkMethod::Jacobian;
  EXPECT_LT(rel(K, ntk(net_from_state(state, act), x, jac)), 1e-10);
  const NetLayout lay = NetLayout::of(cfg, x);
  EXPECT_GT(rel(K, ntk(lay.net(lay.init(cfg.weights_seed()), act), x, jac)), 1e-6);  // trained, not fresh

  const std::string runs_sql = "SELECT * FROM runs", ckpt_sql = "SELECT * FROM checkpoints";
  const auto runs = lft::query(db, runs_sql), ckpts = lft::query(db, ckpt_sql);
  ASSERT_EQ(runs.size(), 1u);
  struct Case {
    std::vector<std::string> args;
    std::string msg;
  };
  for (const Case& c : std::vector<Case>{
           {{"ntk", "--db", db, "--run", "7", "--points", "5"}, "no run with id 7"},
           {{"train", "--arch", "wrn", "--pca", "10", "--ptr", "32", "--db", db}, "--pca applies to fc networks only"}}) {
    auto r = lft::run_cli(c.args);
    EXPECT_EQ(r.status, 2) << c.args[0] << ": " << r.err;
    EXPECT_NE(r.err.find("lazyfeat: error: " + c.msg), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(lft::query(db, runs_sql), runs);
  EXPECT_EQ(lft::query(db, ckpt_sql), ckpts);
}
