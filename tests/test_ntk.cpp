// The empirical NTK: structured equals the autograd Jacobian reference (FC: softplus, relu,
// biases, several L), the kernel predicts the first-order change of the outputs, symmetry and
// positive semi-definiteness, tiling, statistics, frozen-kernel training, the .npy writer, and
// the `lazyfeat ntk` / `bench ntk` command lines (bad input exits 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <torch/csrc/autograd/autograd.h>

#include "common/error.h"
#include "common/npy.h"
#include "common/options.h"
#include "experiment/from_config.h"
#include "experiment/config.h"
#include "ntk/frozen.h"
#include "ntk/ntk.h"
#include "ntk/stats.h"
#include "testing.h"

using namespace lf;

namespace {

auto f64 = at::TensorOptions().dtype(at::kDouble);

// An FC network with non-zero biases (so that their contribution is tested too).
Net make_fc(int64_t d, int64_t h, int64_t L, const std::string& act, uint64_t seed) {
  FCParams p = fc_init(d, h, L, seed);
  at::manual_seed(seed + 100);
  for (auto& b : p.b) b.normal_();
  return Net::fc(p, Activation::make(act));
}

double rel(const at::Tensor& a, const at::Tensor& b) { return (at::linalg_norm(a - b) / at::linalg_norm(b)).item<double>(); }

}  // namespace

TEST(NtkFC, StructuredEqualsJacobian) {
  for (const std::string act : {"softplus", "relu", "tanh"}) {
    for (int64_t L : {1, 2, 4}) {
      Net net = make_fc(5, 7, L, act, uint64_t(L));
      at::manual_seed(7);
      at::Tensor x1 = at::randn({9, 5}, f64), x2 = at::randn({6, 5}, f64);
      NtkOptions s, j;
      j.method = NtkMethod::Jacobian;
      at::Tensor S = ntk(net, x1, x2, s), J = ntk(net, x1, x2, j);
      ASSERT_EQ(S.sizes(), (std::vector<int64_t>{9, 6}));
      EXPECT_LT(rel(S, J), 1e-10) << act << " L=" << L;
      at::Tensor Ss = ntk(net, x1, s), Js = ntk(net, x1, j);
      EXPECT_LT(rel(Ss, Js), 1e-10) << act << " L=" << L << " symmetric";
      NtkOptions jb = j;  // J in blocks of 4 rows, recomputed per block
      jb.memory_budget = 2.0 * 8.0 * double(net.num_params()) * 4;
      std::string plan;
      jb.plan = &plan;
      EXPECT_LT(rel(ntk(net, x1, jb), Js), 1e-13) << act << " L=" << L << " symmetric, blocks";
      EXPECT_NE(plan.find("blocks of 4"), std::string::npos) << plan;
      EXPECT_LT(rel(ntk(net, x1, x2, jb), J), 1e-13) << act << " L=" << L << " blocks";
      EXPECT_GT(S.abs().max().item<double>(), 0.1);  // not trivially zero
    }
  }
}

TEST(NtkFC, TilesAndBlocksAgree) {
  Net net = make_fc(10, 16, 3, "softplus", 3);
  at::manual_seed(1);
  at::Tensor a = at::randn({23, 10}, f64), b = at::randn({17, 10}, f64);
  NtkOptions big, small;
  small.tile = 4;  // many tiles, ragged edges
  EXPECT_LT(rel(ntk(net, a, b, small), ntk(net, a, b, big)), 1e-13);
  EXPECT_LT(rel(ntk(net, a, small), ntk(net, a, big)), 1e-13);
  NtkBlocks blk = ntk_blocks(net, a, b, small);
  EXPECT_LT(rel(blk.aa, ntk(net, a, big)), 1e-13);
  EXPECT_LT(rel(blk.ba, ntk(net, b, a, big)), 1e-13);
  EXPECT_LT(rel(blk.bb, ntk(net, b, big)), 1e-13);
}

// The layers' Grams stacked into two batched products (the GPU's default plan) against the
// tiles (the CPU's), and the members' kernels batched against each network's own.
TEST(NtkFC, StackedLayersEqualTiles) {
  for (int64_t L : {1, 3}) {
    Net net = make_fc(10, 16, L, "softplus", 3);
    at::manual_seed(1);
    at::Tensor a = at::randn({23, 10}, f64), b = at::randn({17, 10}, f64);
    NtkOptions tiled, stacked;
    tiled.stack_layers = false;
    tiled.tile = 8;
    stacked.stack_layers = true;
    std::string plan;
    stacked.plan = &plan;
    EXPECT_LT(rel(ntk(net, a, b, stacked), ntk(net, a, b, tiled)), 1e-13) << "L=" << L;
    EXPECT_NE(plan.find("stacked"), std::string::npos) << plan;
    const at::Tensor S = ntk(net, a, stacked);
    EXPECT_LT(rel(S, ntk(net, a, tiled)), 1e-13) << "L=" << L;
    EXPECT_TRUE(at::equal(S, S.t()));
  }
}

TEST(NtkFC, MembersBatchedEqualEachNetworkAlone) {
  at::manual_seed(2);
  const at::Tensor a = at::randn({19, 6}, f64), b = at::randn({11, 6}, f64);
  std::vector<Net> nets;
  for (uint64_t seed : {0, 1, 2, 5}) nets.push_back(make_fc(6, 12, 3, "softplus", seed));
  const double one = 2.0 * 8 * 3 * 19 * 19;  // the stacked buffers of one member (L = 3, 19 points)
  for (double budget : {1e9, 2.5 * one, 0.5 * one}) {  // one chunk of 4; chunks of 2; one by one
    NtkOptions o;
    o.memory_budget = budget;
    std::string plan;
    o.plan = &plan;
    const at::Tensor S = ntk_members(nets, a, at::Tensor(), o);
    if (budget < one) EXPECT_EQ(plan.find("members batched"), std::string::npos) << plan;
    else EXPECT_NE(plan.find(budget < 1e9 ? "chunks of 2 " : "chunks of 4 "), std::string::npos) << plan;
    const at::Tensor X = ntk_members(nets, a, b, o);
    ASSERT_EQ(S.sizes(), (std::vector<int64_t>{4, 19, 19}));
    ASSERT_EQ(X.sizes(), (std::vector<int64_t>{4, 19, 11}));
    for (size_t k = 0; k < nets.size(); ++k) {
      EXPECT_LT(rel(S[k], ntk(nets[k], a)), 1e-13) << "member " << k;
      EXPECT_LT(rel(X[k], ntk(nets[k], a, b)), 1e-13) << "member " << k;
    }
    EXPECT_GT(rel(S[0], S[1]), 1e-3);  // the members differ
  }
  // Networks of other shapes or activations go one after another, with the same result.
  nets.push_back(make_fc(6, 8, 3, "softplus", 7));
  nets.push_back(make_fc(6, 12, 3, "relu", 8));
  std::string plan;
  NtkOptions o;
  o.plan = &plan;
  const at::Tensor S = ntk_members(nets, a, at::Tensor(), o);
  EXPECT_EQ(plan.find("members batched"), std::string::npos) << plan;
  for (size_t k = 0; k < nets.size(); ++k) EXPECT_LT(rel(S[k], ntk(nets[k], a)), 1e-13) << "member " << k;
}

TEST(NtkFC, SymmetricPositiveSemidefinite) {
  Net net = make_fc(10, 32, 3, "relu", 5);
  at::manual_seed(2);
  at::Tensor x = at::randn({60, 10}, f64);
  NtkOptions o;
  o.tile = 16;
  at::Tensor K = ntk(net, x, o);
  EXPECT_TRUE(at::equal(K, K.t()));
  at::Tensor ev = at::linalg_eigvalsh(K);
  EXPECT_GT(ev.min().item<double>(), -1e-10 * ev.max().item<double>());
  EXPECT_GT(ev.max().item<double>(), 1.0);
}

// The Jacobian's rows B at a time (the gradients with respect to expanded parameter views through
// the per-sample forward) against one backward pass a row.
TEST(NtkFC, JacobianRowsPerPassEqualOneRowAPass) {
  Net net = make_fc(6, 12, 3, "softplus", 4);
  at::manual_seed(5);
  const at::Tensor x = at::randn({8, 6}, f64);
  auto unflat = [](const std::vector<at::Tensor>& ps) {
    FCParams p;
    for (size_t i = 0; i < ps.size(); i += 2) { p.W.push_back(ps[i]); p.b.push_back(ps[i + 1]); }
    return p;
  };
  const ForwardFn f = [&](const std::vector<at::Tensor>& ps, const at::Tensor& z) {
    return fc_forward_reference(unflat(ps), z, net.act);
  };
  const ForwardFn per_sample = [&](const std::vector<at::Tensor>& ps, const at::Tensor& z) {
    return fc_forward_per_sample(unflat(ps), z, net.act);
  };
  const at::Tensor J1 = jacobian(f, net.flat(), x);
  ASSERT_EQ(J1.sizes(), (std::vector<int64_t>{8, net.num_params()}));
  for (int64_t B : {0, 3, 8}) EXPECT_LT(rel(jacobian(f, net.flat(), x, per_sample, B), J1), 1e-13) << "B=" << B;
  // Each row is its own point's gradient: the rows of two different points differ.
  EXPECT_GT(rel(J1[0], J1[1]), 1e-2);
}

// The symmetric Jacobian Gram from the lower tiles of J J^T (the default: two) against one
// product (tile = n): the same matrix, at 3/4 of the product's flops.
TEST(NtkFC, JacobianLowerTilesEqualOneProduct) {
  Net net = make_fc(6, 12, 3, "softplus", 4);
  at::manual_seed(6);
  const at::Tensor x = at::randn({11, 6}, f64);
  NtkOptions one;
  one.method = NtkMethod::Jacobian;
  one.tile = 11;
  double flops_one = 0;
  one.flops = &flops_one;
  const at::Tensor K1 = ntk(net, x, one);
  for (int64_t tile : {0, 2, 5}) {
    NtkOptions o = one;
    o.tile = tile;
    double flops = 0;
    std::string plan;
    o.flops = &flops;
    o.plan = &plan;
    const at::Tensor K = ntk(net, x, o);
    EXPECT_LT(rel(K, K1), 1e-13) << "tile " << tile;
    EXPECT_TRUE(at::equal(K, K.t())) << "tile " << tile;
    EXPECT_LT(flops, flops_one) << "tile " << tile;
    EXPECT_NE(plan.find("lower tiles of " + std::to_string(tile ? tile : 6) + " rows"), std::string::npos) << plan;
  }
  // The automatic tiles (of 6 and 5 rows) compute the 3 lower tiles of 4: 6 x 6, 5 x 6 and
  // 5 x 5, 91 of the 121 entries' products.
  const double P = double(net.num_params()), rows_flops = 6.0 * 11 * P;
  NtkOptions a = one;
  a.tile = 0;
  double flops_auto = 0;
  a.flops = &flops_auto;
  ntk(net, x, a);
  EXPECT_DOUBLE_EQ(flops_auto - rows_flops, 2.0 * P * 91);
  EXPECT_DOUBLE_EQ(flops_one - rows_flops, 2.0 * P * 121);
}

// f(w + eps grad_w f(x')) - f(w) = eps Theta(x, x') + O(eps^2).
TEST(NtkFC, PredictsFirstOrderChange) {
  Net net = make_fc(6, 12, 3, "softplus", 9);
  at::manual_seed(3);
  at::Tensor x = at::randn({8, 6}, f64), xp = at::randn({1, 6}, f64);
  at::Tensor K = ntk(net, x, xp);  // [8, 1]
  at::Tensor g = jacobian([&](const std::vector<at::Tensor>& ps, const at::Tensor& z) {
    FCParams p;
    for (size_t i = 0; i < ps.size(); i += 2) { p.W.push_back(ps[i]); p.b.push_back(ps[i + 1]); }
    return fc_forward_reference(p, z, net.act);
  }, net.flat(), xp)[0];
  const double eps = 1e-6;
  FCParams moved = std::get<FCParams>(net.params).clone();
  int64_t off = 0;
  auto step = [&](at::Tensor& t) { t.add_(eps * g.narrow(0, off, t.numel()).view(t.sizes())); off += t.numel(); };
  for (size_t l = 0; l < moved.W.size(); ++l) { step(moved.W[l]); step(moved.b[l]); }
  at::Tensor df = fc_forward_reference(moved, x, net.act) - net.forward(x);
  EXPECT_LT(rel(df / eps, K.squeeze(1)), 1e-5);
}

TEST(NtkStats, KnownMatrix) {
  at::Tensor K = at::diag(at::tensor({3.0, 2.0, 1.0}, f64));
  auto s = kernel_stats(K, at::tensor({1.0, 1.0, 0.0}, f64));
  EXPECT_DOUBLE_EQ(s["trace"].get<double>(), 6.0);
  EXPECT_NEAR(s["frobenius"].get<double>(), std::sqrt(14.0), 1e-14);
  EXPECT_NEAR(s["mean"].get<double>(), 6.0 / 9.0, 1e-14);
  EXPECT_NEAR(s["top_eigenvalues"][0].get<double>(), 3.0, 1e-12);
  EXPECT_NEAR(s["top_eigenvalues"][2].get<double>(), 1.0, 1e-12);
  EXPECT_NEAR(s["label_projection"][0].get<double>(), 0.5, 1e-12);
  EXPECT_NEAR(s["label_projection"][2].get<double>(), 0.0, 1e-12);
  EXPECT_NEAR(kernel_change(2 * K, K), 1.0, 1e-14);
  EXPECT_THROW(kernel_change(K, at::eye(2, f64)), UsageError);
}

TEST(Frozen, FitsTinyProblemAndPredictsThroughTheKernel) {
  Net net = make_fc(5, 32, 2, "softplus", 4);
  at::manual_seed(4);
  at::Tensor xtr = at::randn({30, 5}, f64), xte = at::randn({12, 5}, f64);
  at::Tensor ytr = at::where(xtr.select(1, 0) * xtr.select(1, 1) > 0, 1.0, -1.0).to(at::kDouble);
  NtkBlocks K = ntk_blocks(net, xtr, xte);
  for (double tau : {-1000.0, 0.0}) {  // momentum t/mu, and gradient flow
    FrozenOptions o;
    o.alpha = 0.5;
    o.momentum.tau = tau;
    FrozenResult r = frozen_kernel_train(K.aa, ytr, o);
    ASSERT_EQ(r.status, "converged") << tau;
    EXPECT_GT(r.steps, 10);
    EXPECT_GT(r.t2, 0.0);
    EXPECT_EQ(r.train_err, 0.0);
    EXPECT_GE((o.alpha * r.u_train * ytr).min().item<double>(), 1.0);  // every point satisfied
    // Theta c = u on the training set, so predictions through the kernel reproduce u there.
    EXPECT_LT(rel(at::mv(K.aa, r.c), r.u_train), 1e-8);
    at::Tensor u_test = at::mv(K.ba, r.c);
    double err = frozen_test_error(u_test, at::ones({12}, f64));
    EXPECT_NEAR(err, (u_test <= 0).to(at::kDouble).mean().item<double>(), 0);
  }
  // A step budget stops it.
  FrozenOptions o;
  o.max_steps = 5;
  FrozenResult r = frozen_kernel_train(K.aa, ytr, o);
  EXPECT_EQ(r.status, "stopped");
  EXPECT_EQ(r.steps, 5);
  EXPECT_TRUE(r.to_json()["t2"].is_null());
}

// Frozen-kernel training with each loss against an independent computation: a plain explicit
// Euler (and exact-momentum) integration in function space whose gradient comes from autograd of
// the linearised loss L(u) = 1/(alpha^2 n) sum l(alpha u y) written with tensor ops, rescaled to
// the protocol's 1/|B| normalisation: g = Theta (n / |B|) dL/du, B = points with dL/du_mu != 0.
// The step size is held fixed (df_min < 0, df_max = inf: every step accepted, dt unchanged).
TEST(Frozen, EveryLossMatchesExplicitIntegrationWithAutogradGradient) {
  Net net = make_fc(4, 16, 2, "softplus", 21);
  at::manual_seed(22);
  at::Tensor x = at::randn({7, 4}, f64);
  at::Tensor y = at::where(x.select(1, 0) > 0, 1.0, -1.0).to(at::kDouble);
  at::Tensor K = ntk(net, x);
  const double alpha = 0.7, dt = 0.05;
  auto loss_of = [](const std::string& name, const at::Tensor& m) {  // l(m), elementwise, autograd
    if (name == "hinge") return at::relu(1 - m);
    if (name == "softhinge") return at::softplus(20 * (1 - m), 1, 1e3) / 20;  // no linear cut-off
    return 0.5 * at::relu(1 - m).pow(2);
  };
  for (const std::string name : {"hinge", "softhinge", "qhinge"}) {
    for (double tau : {0.0, 2.0}) {  // gradient flow, constant-tau momentum
      const int64_t steps = 40;
      FrozenOptions o;
      o.alpha = alpha;
      o.loss = Loss::make(name);
      o.momentum.tau = tau;
      o.control.dt = dt;
      o.control.df_min = -1;
      o.control.df_max = std::numeric_limits<double>::infinity();
      o.max_steps = steps;
      FrozenResult r = frozen_kernel_train(K, y, o);
      // The reference.
      at::Tensor u = at::zeros({7}, f64), v = at::zeros({7}, f64);
      int64_t done = 0;
      for (; done < steps; ++done) {
        if ((alpha * u * y).min().item<double>() >= 1) break;  // every point satisfied: stop
        at::Tensor ug = u.clone().requires_grad_(true);
        at::Tensor L = loss_of(name, alpha * ug * y).sum() / (alpha * alpha * 7);
        at::Tensor dL = torch::autograd::grad({L}, {ug})[0];
        const double nB = (dL != 0).sum().item<double>();
        at::Tensor g = at::mv(K, dL) * (7.0 / nB);
        if (tau == 0) {
          u = u - dt * g;
        } else {
          const double xdec = std::exp(-dt / tau);
          v = xdec * v - (1 - xdec) * g;
          u = u + dt * v;
        }
      }
      EXPECT_EQ(r.steps, done) << name << " tau " << tau;
      EXPECT_LT(rel(r.u_train, u), 1e-12) << name << " tau " << tau << "\n" << r.u_train << u;
      EXPECT_NEAR(r.t, dt * done, 1e-12);
    }
  }
  // The losses give different paths (the test above can tell them apart).
  FrozenOptions o;
  o.alpha = alpha;
  o.control.dt = dt;
  o.control.df_min = -1;
  o.control.df_max = std::numeric_limits<double>::infinity();
  o.max_steps = 30;
  o.momentum.tau = 0;
  at::Tensor uh = frozen_kernel_train(K, y, o).u_train;
  o.loss = Loss::make("qhinge");
  at::Tensor uq = frozen_kernel_train(K, y, o).u_train;
  o.loss = Loss::make("softhinge");
  at::Tensor us = frozen_kernel_train(K, y, o).u_train;
  EXPECT_GT(rel(uq, uh), 1e-3);
  EXPECT_GT(rel(us, uh), 1e-3);
}

// Every loss trains a tiny problem to the end under the adaptive step (the default rules).
TEST(Frozen, EveryLossConverges) {
  Net net = make_fc(5, 32, 2, "softplus", 4);
  at::manual_seed(4);
  at::Tensor xtr = at::randn({30, 5}, f64);
  at::Tensor ytr = at::where(xtr.select(1, 0) * xtr.select(1, 1) > 0, 1.0, -1.0).to(at::kDouble);
  at::Tensor K = ntk(net, xtr);
  for (const std::string name : {"hinge", "softhinge", "qhinge"}) {
    FrozenOptions o;
    o.alpha = 0.5;
    o.loss = Loss::make(name);
    o.momentum.tau = 0;
    o.max_steps = 200000;
    FrozenResult r = frozen_kernel_train(K, ytr, o);
    ASSERT_EQ(r.status, "converged") << name << " " << r.message;
    EXPECT_GE((o.alpha * r.u_train * ytr).min().item<double>(), 1.0) << name;
    EXPECT_LT(rel(at::mv(K, r.c), r.u_train), 1e-8) << name;
  }
}

TEST(Npy, RoundTrip) {
  lft::TempDir dir;
  at::manual_seed(5);
  std::vector<at::Tensor> ts = {at::randn({7, 5}, f64), at::randn({11}, at::kFloat),
                                at::arange(24, at::kLong).view({2, 3, 4}), at::randn({3, 4}, f64).t()};
  for (size_t i = 0; i < ts.size(); ++i) {
    std::string path = dir.file("t" + std::to_string(i) + ".npy");
    write_npy(path, ts[i]);
    at::Tensor back = read_npy(path);
    EXPECT_EQ(back.sizes(), ts[i].sizes());
    EXPECT_TRUE(at::equal(back, ts[i])) << i;
    std::ifstream f(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_EQ(all.substr(1, 5), "NUMPY");
    size_t header_end = all.find('\n') + 1;
    EXPECT_EQ(header_end % 64, 0u);  // data aligned, as numpy writes it
    EXPECT_EQ(all.size() - header_end, size_t(ts[i].numel() * ts[i].element_size()));
  }
  // The header bytes each file really holds: numpy's own text (a Python dict literal, the 1-D
  // shape with its trailing comma), spaces up to a 64-byte boundary, then '\n'.
  const char* dicts[] = {"{'descr': '<f8', 'fortran_order': False, 'shape': (7, 5), }",
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (11,), }",
                         "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3, 4), }",
                         "{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), }"};
  for (size_t i = 0; i < ts.size(); ++i) {
    std::ifstream f(dir.file("t" + std::to_string(i) + ".npy"), std::ios::binary);
    std::string head(128, '\0');
    f.read(head.data(), 128);
    ASSERT_TRUE(f) << i;
    // Every dict here is < 118 characters: one 128-byte block, header length 118 = 0x76.
    std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dicts[i];
    expected += std::string(127 - expected.size(), ' ') + "\n";
    EXPECT_EQ(head, expected) << i;
  }
  { std::ofstream(dir.file("bad.npy")) << "not numpy"; }
  EXPECT_THROW(read_npy(dir.file("bad.npy")), UsageError);
  EXPECT_THROW(read_npy(dir.file("missing.npy")), UsageError);
}

TEST(NtkCli, BadInputExitsTwo) {
  struct Case { std::vector<std::string> args; std::string msg; };
  std::vector<Case> cases = {
      {{"ntk", "--points", "10", "--method", "magic"}, "unknown NTK method 'magic'"},
      {{"ntk", "--points", "0"}, "--points must be >= 1"},
      {{"ntk", "--points", "100", "--pte", "50", "--ptr", "50"}, "--points must be <= --pte (50)"},
      {{"ntk", "--points", "10", "--arch", "wrn", "--pca", "10"}, "--pca applies to fc networks only"},
      {{"ntk", "--points", "10", "--arch", "resnet"}, "unknown arch 'resnet' (expected fc, cnn or wrn)"},
      {{"ntk", "--points", "abc"}, "--points: not an integer: 'abc'"},
      {{"ntk", "stray"}, "unexpected argument 'stray'"},
      {{"bench", "ntk", "--h", "0"}, "--h must be >= 1"},
      {{"bench", "ntk", "--members", "-1"}, "--members must be >= 0"},
      {{"bench", "ntk", "--stack-layers", "yes"}, "--stack-layers must be auto, on or off"},
  };
  for (const auto& c : cases) {
    auto r = lft::run_cli(c.args);
    EXPECT_EQ(r.status, 2) << c.args.back() << ": " << r.err;
    EXPECT_NE(r.err.find("lazyfeat: error: " + c.msg), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  auto help = lft::run_cli({"ntk", "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--method"), std::string::npos);
}

TEST(NtkCli, GramOfTestPointsWrittenAsNpy) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent under " << lft::data_dir() << "/mnist: run scripts/setup.sh";
  lft::TempDir dir;
  const std::string out = dir.file("k.npy");
  // One run (each loads the data pool); structured = jacobian is tested in-library above.
  std::vector<std::string> base = {"ntk", "--ptr", "20", "--pte", "40", "--points", "30", "--h", "20", "--L", "3", "--json"};
  auto s = lft::run_cli([&] { auto a = base; a.insert(a.end(), {"--out", out}); return a; }());
  ASSERT_EQ(s.status, 0) << s.err;
  auto js = nlohmann::json::parse(lft::last_line(s.out));
  EXPECT_EQ(js["n"], 30);
  EXPECT_EQ(js["method"], "structured");
  at::Tensor K = read_npy(out);
  ASSERT_EQ(K.sizes(), (std::vector<int64_t>{30, 30}));
  EXPECT_NEAR(js["frobenius"].get<double>(), at::linalg_norm(K).item<double>(), 1e-9 * js["frobenius"].get<double>());
  EXPECT_NEAR(js["trace"].get<double>(), K.trace().item<double>(), 1e-9 * js["trace"].get<double>());
  // The matrix itself, recomputed here by the autograd Jacobian reference: the network of
  // `--seed-init 0` (fc_init, default activation) on the first 30 test points of the same split.
  const RunConfig cfg = lft::config_of_args({"--ptr", "20", "--pte", "40", "--h", "20", "--L", "3"});
  Dataset data = load_dataset(cfg);
  at::Tensor x = data.x_test.narrow(0, 0, 30);
  ASSERT_EQ(x.sizes(), (std::vector<int64_t>{30, 10}));  // PCA 10, the fc default
  Net net = Net::fc(fc_init(10, 20, 3, 0), activation_of(cfg));
  NtkOptions jac;
  jac.method = NtkMethod::Jacobian;
  at::Tensor ref = ntk(net, x, jac);
  EXPECT_LT(rel(K, ref), 1e-10);
  EXPECT_GT(rel(K, ntk(net, data.x_test.narrow(0, 1, 30), jac)), 1e-3);  // other points: another matrix
}

// The CNN and the wide ResNet on MNIST images (1 channel, no PCA): the command's matrix equals
// the autograd Jacobian reference of the same freshly initialised network.
TEST(NtkCli, ConvolutionalNetworksOnImages) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent under " << lft::data_dir() << "/mnist: run scripts/setup.sh";
  lft::TempDir dir;
  for (const std::string arch : {"cnn", "wrn"}) {
    const std::string out = dir.file(arch + ".npy");
    std::vector<std::string> run = {"--ptr", "10", "--pte", "10", "--h", arch == "cnn" ? "4" : "1", "--arch", arch,
                                    "--act", "relu", "--seed-init", "3"};
    auto cli = run;
    cli.insert(cli.begin(), "ntk");
    cli.insert(cli.end(), {"--points", "5", "--json", "--out", out});
    auto r = lft::run_cli(cli);
    ASSERT_EQ(r.status, 0) << r.err;
    auto js = nlohmann::json::parse(lft::last_line(r.out));
    EXPECT_EQ(js["arch"], arch);
    EXPECT_EQ(js["params"], arch == "cnn" ? 1321 : 367809);
    at::Tensor K = read_npy(out);
    const RunConfig cfg = lft::config_of_args(run);
    Dataset data = load_dataset(cfg);
    at::Tensor x = data.x_test.narrow(0, 0, 5);
    ASSERT_EQ(x.sizes(), (std::vector<int64_t>{5, 1, 28, 28}));
    const Activation act = activation_of(cfg);
    Net net = arch == "cnn" ? Net::cnn(cnn_init(1, 4, 3), act) : Net::wrn(wrn_init(1, 1, 3), act);
    NtkOptions jac;
    jac.method = NtkMethod::Jacobian;
    EXPECT_LT(rel(K, ntk(net, x, jac)), 1e-10) << arch;
  }
}

TEST(NtkCli, TrainedNetworkFromTheDatabase) {
  // A run trained into a study database keeps its final weights; `ntk --db --run` uses them.
  lft::TempDir tmp;
  const std::string db = tmp.file("study.sqlite");
  std::vector<std::string> cfg = {"--ptr", "100", "--pte", "200", "--h", "8", "--L", "2", "--sqrt-h-alpha", "1e3",
                                  "--df-min", "1e-2", "--df-max", "1"};  // lazy: the kernel barely moves
  auto train = cfg;
  train.insert(train.begin(), "train");
  train.insert(train.end(), {"--db", db, "--json", "--quiet"});
  auto t = lft::run_cli(train);
  ASSERT_EQ(t.status, 0) << t.err;
  ASSERT_EQ(nlohmann::json::parse(lft::last_line(t.out))["status"], "converged");
  auto fresh = cfg;
  fresh.insert(fresh.begin(), "ntk");
  fresh.insert(fresh.end(), {"--points", "50", "--json"});
  auto f = lft::run_cli(fresh);
  ASSERT_EQ(f.status, 0) << f.err;
  auto k = lft::run_cli({"ntk", "--db", db, "--run", "1", "--points", "50", "--json"});
  ASSERT_EQ(k.status, 0) << k.err;
  double f0 = nlohmann::json::parse(lft::last_line(f.out))["frobenius"];
  double f1 = nlohmann::json::parse(lft::last_line(k.out))["frobenius"];
  EXPECT_TRUE(std::isfinite(f1));
  EXPECT_NE(f0, f1);                        // the trained kernel, not the initial one
  EXPECT_LT(std::fabs(f1 - f0) / f0, 0.05);  // but the same network, and lazy
  auto missing = lft::run_cli({"ntk", "--db", db, "--run", "99", "--json"});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("no run with id 99"), std::string::npos) << missing.err;
  EXPECT_EQ(lft::run_cli({"ntk", "--run", "1"}).status, 2);  // --run without --db
}
