// The wide ResNet 28 (protocol section 2): its layout, the seed-compatible initialisation
// (protocol section 8), the forward at width 1 against an independent computation with plain
// loops on a hand-checkable input, its autograd gradient against finite differences, and its
// structured NTK against the autograd Jacobian reference; the arch-generic kernel measurements
// of a run (experiment/kernels.h) for the CNN and the wide ResNet.
#include <gtest/gtest.h>

#include <cmath>
#include <torch/csrc/autograd/autograd.h>

#include "data/dataset.h"
#include "experiment/config.h"
#include "experiment/from_config.h"
#include "experiment/kernels.h"
#include "models/cnn.h"
#include "models/wrn.h"
#include "ntk/frozen.h"
#include "ntk/ntk.h"
#include "ntk/stats.h"

using namespace lf;

namespace {

auto f64 = at::TensorOptions().dtype(at::kDouble);
double rel(const at::Tensor& a, const at::Tensor& b) { return (at::linalg_norm(a - b) / at::linalg_norm(b)).item<double>(); }

// The input x[0, 0, i, j] = (i - 2 j) / 8 on 8x8, and its negative as a second point.
at::Tensor hand_input() {
  at::Tensor x = at::empty({2, 1, 8, 8}, f64);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      x[0][0][i][j] = (i - 2.0 * j) / 8.0;
      x[1][0][i][j] = -(i - 2.0 * j) / 8.0;
    }
  return x;
}

// ---- An independent forward with plain loops, written from protocol section 2. ----
// An image: channels x rows x cols, row-major.
struct Img {
  int64_t C, H, W;
  std::vector<double> v;
  double& at(int64_t c, int64_t i, int64_t j) { return v[(c * H + i) * W + j]; }
  double get(int64_t c, int64_t i, int64_t j) const {
    return (i < 0 || j < 0 || i >= H || j >= W) ? 0.0 : v[(c * H + i) * W + j];  // zero padding
  }
};

// out[o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] / sqrt(C s^2) in[c, stride i + u - pad, stride j + v - pad]
Img loop_conv(const Img& in, const at::Tensor& w_t, const at::Tensor& b_t, int64_t stride, int64_t pad) {
  at::Tensor w = w_t.contiguous(), b = b_t.contiguous();
  const int64_t O = w.size(0), s = w.size(2);
  const double* wp = w.data_ptr<double>();
  const double scale = 1.0 / std::sqrt(double(in.C * s * s));
  Img out{O, (in.H + 2 * pad - s) / stride + 1, (in.W + 2 * pad - s) / stride + 1, {}};
  out.v.assign(O * out.H * out.W, 0.0);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i = 0; i < out.H; ++i)
      for (int64_t j = 0; j < out.W; ++j) {
        double acc = 0;
        for (int64_t c = 0; c < in.C; ++c)
          for (int64_t u = 0; u < s; ++u)
            for (int64_t q = 0; q < s; ++q)
              acc += wp[((o * in.C + c) * s + u) * s + q] * scale * in.get(c, stride * i + u - pad, stride * j + q - pad);
        out.at(o, i, j) = acc + b[o].item<double>();
      }
  return out;
}

Img relu2(Img z) {  // phi = sqrt(2) max(0, .)
  for (auto& e : z.v) e = e > 0 ? std::sqrt(2.0) * e : 0.0;
  return z;
}

// Stem 3x3 to 16 channels; 3 stages x 4 blocks of widths 16k, 32k, 64k, strides 1, 2, 2 on c2
// and the shortcut of each stage's first block; a 1x1 shortcut wherever the shape changes;
// out = cos45 s(x) + sin45 c2(phi(c1(phi(x)))); head phi, mean over positions, linear / sqrt(64k).
// The parameters are taken in draw order: stem, then per block c1, c2, [shortcut], then head.
double loop_wrn(const WRNParams& p, int64_t k, const at::Tensor& x1) {
  Img z{1, x1.size(1), x1.size(2), {}};
  for (int64_t i = 0; i < z.H; ++i)
    for (int64_t j = 0; j < z.W; ++j) z.v.push_back(x1[0][i][j].item<double>());
  size_t next = 0;
  z = loop_conv(z, p.W[next], p.b[next], 1, 1);
  ++next;
  int64_t in = 16;
  const int64_t widths[3] = {16 * k, 32 * k, 64 * k}, strides[3] = {1, 2, 2};
  const double c = std::cos(M_PI / 4), s = std::sin(M_PI / 4);
  for (int st = 0; st < 3; ++st)
    for (int blk = 0; blk < 4; ++blk) {
      const int64_t stride = blk == 0 ? strides[st] : 1;
      const size_t i1 = next++, i2 = next++;
      Img out = loop_conv(relu2(loop_conv(relu2(z), p.W[i1], p.b[i1], 1, 1)), p.W[i2], p.b[i2], stride, 1);
      Img cut = z;
      if (stride != 1 || in != widths[st]) {
        cut = loop_conv(z, p.W[next], p.b[next], stride, 0);
        ++next;
      }
      for (size_t e = 0; e < out.v.size(); ++e) out.v[e] = c * cut.v[e] + s * out.v[e];
      z = out;
      in = widths[st];
    }
  EXPECT_EQ(next + 1, p.W.size());
  Img a = relu2(z);
  double f = p.b.back().item<double>();
  for (int64_t ch = 0; ch < a.C; ++ch) {
    double mean = 0;
    for (int64_t e = 0; e < a.H * a.W; ++e) mean += a.v[ch * a.H * a.W + e];
    mean /= double(a.H * a.W);
    f += p.W.back()[0][ch].item<double>() * mean / std::sqrt(double(64 * k));
  }
  return f;
}

WRNParams with_random_biases(WRNParams p, uint64_t seed) {
  at::manual_seed(seed);
  for (auto& b : p.b) b.normal_();
  return p;
}

}  // namespace

TEST(Wrn, LayoutAndInitFollowTheSeedOrder) {
  // Width 1: the first stage keeps 16 channels (identity shortcuts throughout); 27 convolutions.
  WRNLayout L1 = wrn_layout(1, 1);
  EXPECT_EQ(L1.convs.size(), 27u);
  EXPECT_EQ(L1.blocks.size(), 12u);
  EXPECT_EQ(L1.blocks[0].shortcut, -1);
  EXPECT_EQ(L1.blocks[4].shortcut, 11);  // stage 2's first block: stride 2, 16 -> 32
  EXPECT_EQ(L1.convs[10].stride, 2);     // its c2 carries the stride
  EXPECT_EQ(L1.convs[11].size, 1);
  EXPECT_EQ(L1.head_in, 64);
  // Width 2: the first block changes 16 -> 32 channels, so it has a 1x1 shortcut too.
  EXPECT_EQ(wrn_layout(1, 2).convs.size(), 28u);
  EXPECT_EQ(wrn_layout(1, 2).blocks[0].shortcut, 3);

  WRNParams p = wrn_init(1, 1, 42);
  ASSERT_EQ(p.W.size(), 28u);
  EXPECT_EQ(p.width(), 1);
  EXPECT_EQ(p.W[0].sizes(), (std::vector<int64_t>{16, 1, 3, 3}));
  EXPECT_EQ(p.W[11].sizes(), (std::vector<int64_t>{32, 16, 1, 1}));
  EXPECT_EQ(p.W[27].sizes(), (std::vector<int64_t>{1, 64}));
  int64_t n = 0;
  for (auto& t : p.flat()) n += t.numel();
  EXPECT_EQ(n, 367809);
  for (auto& b : p.b) EXPECT_EQ(b.abs().sum().item<double>(), 0.0);
  // Protocol section 8: one randn(C_out, C_in, s, s) per convolution in layout order, then
  // randn(1, 64k). Numbers from PyTorch 1.13.1 (Debian's python3-torch) following that order
  // (manual_seed(42), float64): stem first 3, the 6th convolution's last 3, the head's last 3
  //   k=1: [0.2995562877502637, 0.24237779080894106, 0.28320739441795323]
  //        [0.8313257587194035, -0.014541865211528828, 0.42819120074867917]
  //        [0.28233439643929187, -0.5849853715345102, 1.3695008973882652]
  auto first3 = [](const at::Tensor& t) { return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + 3); };
  auto last3 = [](const at::Tensor& t) {
    return std::vector<double>(t.data_ptr<double>() + t.numel() - 3, t.data_ptr<double>() + t.numel());
  };
  EXPECT_EQ(first3(p.W[0].contiguous()), (std::vector<double>{0.2995562877502637, 0.24237779080894106, 0.28320739441795323}));
  EXPECT_EQ(last3(p.W[5].contiguous()), (std::vector<double>{0.8313257587194035, -0.014541865211528828, 0.42819120074867917}));
  EXPECT_EQ(last3(p.W[27].contiguous()), (std::vector<double>{0.28233439643929187, -0.5849853715345102, 1.3695008973882652}));
  WRNParams p2 = wrn_init(1, 2, 42);
  EXPECT_EQ(last3(p2.W[5].contiguous()), (std::vector<double>{-1.1119743976474052, 0.41813310103973045, 0.9927481481152813}));
  EXPECT_FALSE(at::equal(wrn_init(1, 1, 43).W[3], p.W[3]));
}

TEST(Wrn, WidthOneMatchesItsDefinitionOnAHandInput) {
  const Activation relu = Activation::make("relu");
  at::Tensor x = hand_input();
  for (bool biases : {false, true}) {
    WRNParams p = wrn_init(1, 1, 42);
    if (biases) p = with_random_biases(p, 5);
    at::Tensor f = wrn_forward_reference(p, x, relu);
    ASSERT_EQ(f.sizes(), (std::vector<int64_t>{2}));
    for (int i = 0; i < 2; ++i) EXPECT_NEAR(f[i].item<double>(), loop_wrn(p, 1, x[i]), 1e-12) << i;
    if (!biases) {
      // The same network in PyTorch 1.13.1, float64, written from protocol section 2 and seeded
      // as section 8 (manual_seed(42)) on this input: an independent third computation.
      EXPECT_NEAR(f[0].item<double>(), 0.003551966760035592, 1e-15);
      EXPECT_NEAR(f[1].item<double>(), -0.01823376684736863, 1e-15);
    }
  }
  // Spatial sizes 28 -> 28 -> 14 -> 7 on MNIST-sized images.
  WRNForward fw = wrn_forward_layers(wrn_init(1, 1, 0), at::randn({1, 1, 28, 28}, f64), relu);
  EXPECT_EQ(fw.a[0].size(2), 28);
  EXPECT_EQ(fw.a.back().size(2), 7);
  EXPECT_EQ(fw.pooled.sizes(), (std::vector<int64_t>{1, 64}));
}

TEST(Wrn, WidthTwoMatchesPyTorch) {
  at::Tensor f = wrn_forward_reference(wrn_init(1, 2, 42), hand_input(), Activation::make("relu"));
  EXPECT_NEAR(f[0].item<double>(), -0.09870967344563271, 1e-15);
  EXPECT_NEAR(f[1].item<double>(), -0.09801425103588075, 1e-15);
}

// Autograd's gradient of sum f against central differences along one random direction per
// parameter tensor (each layer checked on its own) and one along all parameters.
TEST(Wrn, GradientMatchesFiniteDifferences) {
  const Activation act = Activation::make("softplus");  // smooth: differences converge cleanly
  WRNParams p = with_random_biases(wrn_init(1, 1, 3), 4);
  at::manual_seed(6);
  at::Tensor x = at::randn({2, 1, 8, 8}, f64);
  std::vector<at::Tensor> ps;
  for (auto& t : p.flat()) ps.push_back(t.clone().requires_grad_(true));
  auto unflat = [](const std::vector<at::Tensor>& v) {
    WRNParams q;
    for (size_t i = 0; i < v.size(); i += 2) {
      q.W.push_back(v[i]);
      q.b.push_back(v[i + 1]);
    }
    return q;
  };
  at::Tensor out = wrn_forward_reference(unflat(ps), x, act).sum();
  auto g = torch::autograd::grad({out}, ps);
  const double eps = 1e-5;
  auto fd = [&](const std::vector<at::Tensor>& dir) {
    std::vector<at::Tensor> plus, minus;
    for (size_t i = 0; i < ps.size(); ++i) {
      plus.push_back(ps[i].detach() + eps * dir[i]);
      minus.push_back(ps[i].detach() - eps * dir[i]);
    }
    return (wrn_forward_reference(unflat(plus), x, act).sum() - wrn_forward_reference(unflat(minus), x, act).sum())
               .item<double>() /
           (2 * eps);
  };
  double worst = 0;
  for (int64_t k = -1; k < int64_t(ps.size()); ++k) {
    std::vector<at::Tensor> dir;
    double analytic = 0;
    for (size_t i = 0; i < ps.size(); ++i) {
      dir.push_back(k < 0 || int64_t(i) == k ? at::randn(ps[i].sizes(), f64) : at::zeros(ps[i].sizes(), f64));
      analytic += (g[i] * dir[i]).sum().item<double>();
    }
    const double numeric = fd(dir);
    const double err = std::fabs(numeric - analytic) / std::max(1e-3, std::fabs(analytic));
    worst = std::max(worst, err);
    EXPECT_LT(err, 1e-6) << "direction " << k << ": autograd " << analytic << ", differences " << numeric;
  }
  std::cout << "worst relative difference " << worst << "\n";
}

TEST(WrnNtk, StructuredEqualsJacobian) {
  for (const std::string name : {"relu", "softplus"}) {
    for (int64_t k : {1, 2}) {
      Net net = Net::wrn(with_random_biases(wrn_init(1, k, 7), 8), Activation::make(name));
      at::manual_seed(9);
      at::Tensor x1 = at::randn({4, 1, 8, 8}, f64), x2 = at::randn({3, 1, 8, 8}, f64);
      NtkOptions jac;
      jac.method = NtkMethod::Jacobian;
      at::Tensor J = ntk(net, x1, x2, jac), Js = ntk(net, x1, jac);
      for (int64_t tile : {0, 2}) {  // one block, and blocks of 2 points (features recomputed)
        NtkOptions s;
        s.tile = tile;
        std::string plan;
        s.plan = &plan;
        EXPECT_LT(rel(ntk(net, x1, x2, s), J), 1e-10) << name << " k " << k << " " << plan;
        at::Tensor S = ntk(net, x1, s);
        EXPECT_LT(rel(S, Js), 1e-10) << name << " k " << k << " " << plan;
        EXPECT_TRUE(at::equal(S, S.t()));
        EXPECT_NE(plan.find("wrn structured"), std::string::npos) << plan;
      }
    }
  }
}

// More points than one forward chunk (32): the per-sample gradients are assembled from chunks.
TEST(WrnNtk, ManyPointsInChunks) {
  Net net = Net::wrn(with_random_biases(wrn_init(1, 1, 17), 18), Activation::make("relu"));
  at::manual_seed(19);
  at::Tensor x = at::randn({40, 1, 8, 8}, f64);
  NtkOptions jac;
  jac.method = NtkMethod::Jacobian;
  EXPECT_LT(rel(ntk(net, x), ntk(net, x, jac)), 1e-10);
}

// The kernel predicts the first-order change of the outputs: f(w + eps g_x0) - f(w) = eps Theta(., x0),
// with g_x0 the gradient of f(x0): a check of the kernel independent of the Jacobian method.
TEST(WrnNtk, PredictsFirstOrderChange) {
  const Activation act = Activation::make("softplus");
  WRNParams p = with_random_biases(wrn_init(1, 1, 11), 12);
  at::manual_seed(13);
  at::Tensor x = at::randn({3, 1, 8, 8}, f64);
  at::Tensor K = ntk(Net::wrn(p, act), x);
  std::vector<at::Tensor> ps;
  for (auto& t : p.flat()) ps.push_back(t.clone().requires_grad_(true));
  WRNParams q;
  for (size_t i = 0; i < ps.size(); i += 2) {
    q.W.push_back(ps[i]);
    q.b.push_back(ps[i + 1]);
  }
  auto g = torch::autograd::grad({wrn_forward_reference(q, x.narrow(0, 0, 1), act).sum()}, ps);
  const double eps = 1e-6;
  WRNParams plus, minus;
  for (size_t i = 0; i < ps.size(); i += 2) {
    plus.W.push_back(ps[i].detach() + eps * g[i]);
    plus.b.push_back(ps[i + 1].detach() + eps * g[i + 1]);
    minus.W.push_back(ps[i].detach() - eps * g[i]);
    minus.b.push_back(ps[i + 1].detach() - eps * g[i + 1]);
  }
  at::Tensor df = (wrn_forward_reference(plus, x, act) - wrn_forward_reference(minus, x, act)) / (2 * eps);
  EXPECT_LT(rel(df, K.select(1, 0)), 1e-7) << df << K.select(1, 0);
}

// The arch-generic kernel measurements of a run (experiment/kernels.h) for the CNN and the wide
// ResNet: the kernel at init on the first kernel_points test points, frozen-kernel training with
// a non-hinge loss, and the relative kernel change at the end, each against a direct computation.
TEST(WrnKernels, MeasuredThroughTheGenericEntryPoint) {
  for (const std::string arch : {"cnn", "wrn"}) {
    const int64_t side = arch == "cnn" ? 28 : 8, n = 8, pte = 7;
    at::manual_seed(31);
    Dataset data;
    data.x_train = at::randn({n, 1, side, side}, f64);
    data.x_test = at::randn({pte, 1, side, side}, f64);
    data.y_train = at::where(data.x_train.mean({1, 2, 3}) > 0, 1.0, -1.0).to(at::kDouble);
    data.y_test = at::where(data.x_test.mean({1, 2, 3}) > 0, 1.0, -1.0).to(at::kDouble);
    RunConfig cfg;
    cfg.kernel_points = 5;
    cfg.init_kernel = cfg.final_kernel = cfg.delta_kernel = true;
    cfg.loss = "qhinge";
    cfg.act = "relu";
    const Activation act = activation_of(cfg);
    auto fresh = [&] { return arch == "cnn" ? Net::cnn(cnn_init(1, 3, 1), act) : Net::wrn(wrn_init(1, 1, 1), act); };
    Net w0 = fresh(), w = fresh();
    at::manual_seed(32);
    for (auto& t : w.flat()) t.add_(at::randn(t.sizes(), f64), 0.05);  // a "trained" network
    nlohmann::json j0 = measure_kernels_at_init(cfg, data, w0);
    at::Tensor K0 = ntk(w0, data.x_test.narrow(0, 0, 5)), K1 = ntk(w, data.x_test.narrow(0, 0, 5));
    EXPECT_NEAR(j0["init"]["frobenius"].get<double>(), at::linalg_norm(K0).item<double>(), 1e-12 * at::linalg_norm(K0).item<double>()) << arch;
    EXPECT_EQ(j0["init_kernel_run"]["status"], "converged") << arch << j0.dump();
    // The frozen run alone: the same dynamics on Theta(x_train, x_train).
    FrozenResult r = frozen_kernel_train(ntk(w0, data.x_train), data.y_train, frozen_options(cfg));
    EXPECT_EQ(j0["init_kernel_run"]["steps"].get<int64_t>(), r.steps) << arch;
    nlohmann::json j1 = measure_kernels_at_end(cfg, data, w0, w, j0);
    EXPECT_NEAR(j1["change"].get<double>(), kernel_change(K1, K0), 1e-12) << arch;
    EXPECT_GT(j1["change"].get<double>(), 1e-3) << arch;
    EXPECT_EQ(j1["final_kernel_run"]["status"], "converged") << arch << j1.dump();
  }
}
