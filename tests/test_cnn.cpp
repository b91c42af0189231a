// The CNN of setup B: seed-compatible init, spatial sizes 28 -> 13 -> 11 -> 5 -> 3, the fused CPU
// kernels (models/cnn_fused.h) against at::conv2d + autograd, and its structured NTK (both the
// position-contraction and materialised-gradient paths) against the autograd Jacobian reference.
#include <gtest/gtest.h>

#include "models/cnn.h"
#include "models/cnn_fused.h"
#include "ntk/ntk.h"
#include "testing.h"
#include "common/error.h"

using namespace lf;

namespace {
auto f64 = at::TensorOptions().dtype(at::kDouble);
double rel(const at::Tensor& a, const at::Tensor& b) { return (at::linalg_norm(a - b) / at::linalg_norm(b)).item<double>(); }
}  // namespace

TEST(Cnn, InitFollowsTheSeedOrder) {
  CNNParams p = cnn_init(1, 3, 42);
  ASSERT_EQ(p.W.size(), 5u);
  EXPECT_EQ(p.W[0].sizes(), (std::vector<int64_t>{3, 1, 5, 5}));
  EXPECT_EQ(p.W[1].sizes(), (std::vector<int64_t>{3, 3, 5, 5}));
  EXPECT_EQ(p.W[4].sizes(), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(p.b[3].sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(p.b[4].sizes(), (std::vector<int64_t>{1}));
  for (auto& b : p.b) EXPECT_EQ(b.abs().sum().item<double>(), 0.0);
  // Protocol section 8: for each convolution in order, one randn(C_in, 5, 5) per output channel,
  // then randn(h) for the output weights. Numbers drawn once by PyTorch 1.13.1 (Debian's
  // python3-torch, the LibTorch linked here) following that protocol:
  //   /usr/bin/python3 -c "import torch; torch.manual_seed(42); w=[[torch.randn(1 if l==0 else 3,5,5,dtype=torch.float64) for c in range(3)] for l in range(4)]; o=torch.randn(3,dtype=torch.float64); print(w[0][0].flatten()[:3].tolist(), w[0][2].flatten()[:3].tolist(), w[3][1].flatten()[-3:].tolist(), o.tolist())"
  //   [0.2995562877502637, 0.24237779080894106, 0.28320739441795323]
  //   [1.3602887543809026, -0.09352909908052096, 1.7962695897011005]
  //   [0.053479655637221256, 1.8516326791880857, 0.9950366560366398]
  //   [0.6689318899204322, 0.5460614516256274, 0.005883668804571833]
  auto first3 = [](const at::Tensor& t) { return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + 3); };
  auto last3 = [](const at::Tensor& t) { return std::vector<double>(t.data_ptr<double>() + t.numel() - 3, t.data_ptr<double>() + t.numel()); };
  EXPECT_EQ(first3(p.W[0][0].contiguous()), (std::vector<double>{0.2995562877502637, 0.24237779080894106, 0.28320739441795323}));
  EXPECT_EQ(first3(p.W[0][2].contiguous()), (std::vector<double>{1.3602887543809026, -0.09352909908052096, 1.7962695897011005}));
  EXPECT_EQ(last3(p.W[3][1].contiguous()), (std::vector<double>{0.053479655637221256, 1.8516326791880857, 0.9950366560366398}));
  EXPECT_EQ(last3(p.W[4][0].contiguous()), (std::vector<double>{0.6689318899204322, 0.5460614516256274, 0.005883668804571833}));
  EXPECT_TRUE(at::equal(cnn_init(1, 3, 42).W[2], p.W[2]));
  EXPECT_FALSE(at::equal(cnn_init(1, 3, 43).W[2], p.W[2]));
}

TEST(Cnn, SpatialSizesAndScale) {
  CNNParams p = cnn_init(1, 4, 0);
  at::manual_seed(0);
  at::Tensor x = at::randn({2, 1, 28, 28}, f64);
  CNNForward fw = cnn_forward_layers(p, x, Activation::make("relu"));
  std::vector<int64_t> sizes;
  for (auto& a : fw.a) sizes.push_back(a.size(2));
  EXPECT_EQ(sizes, (std::vector<int64_t>{13, 11, 5, 3}));
  EXPECT_EQ(fw.f.sizes(), (std::vector<int64_t>{2}));
  EXPECT_TRUE(at::allclose(fw.f, cnn_forward_reference(p, x, Activation::make("relu"))));
  // NTK scaling: pre-activations of order 1 (weights divided by sqrt(C_in 25)).
  double s = fw.a[0].std().item<double>();
  EXPECT_GT(s, 0.3);
  EXPECT_LT(s, 3.0);
}

// cnn_conv's two implementations (models/cnn.h): at::conv2d against im2col and a batched product,
// for one network and for groups (an ensemble's members), both strides of the network: the same
// outputs and the same gradients (autograd through each) to rounding. LAZYFEAT_CNN_CONV chooses.
TEST(Cnn, Im2colConvolutionEqualsConv2d) {
  at::manual_seed(3);
  for (int64_t groups : {1, 3})
    for (int64_t st : {1, 2}) {
      SCOPED_TRACE("groups " + std::to_string(groups) + ", stride " + std::to_string(st));
      const int64_t c_in = 2, h = 4;
      const at::Tensor z0 = at::randn({5, groups * c_in, 13, 13}, f64), W0 = at::randn({groups * h, c_in, 5, 5}, f64),
                       b0 = at::randn({groups * h}, f64), g = at::randn({5, groups * h, st == 1 ? 11 : 6, st == 1 ? 11 : 6}, f64);
      std::vector<at::Tensor> out, grads;
      for (CnnConv how : {CnnConv::Direct, CnnConv::Im2col}) {
        at::Tensor z = z0.clone().requires_grad_(true), W = W0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
        at::Tensor y = cnn_conv(z, W, b, st, groups, how);
        ASSERT_EQ(y.sizes(), g.sizes());
        (y * g).sum().backward();
        out.push_back(y.detach());
        grads.push_back(z.grad()), grads.push_back(W.grad()), grads.push_back(b.grad());
      }
      EXPECT_LT(rel(out[1], out[0]), 1e-14);
      for (int i = 0; i < 3; ++i) EXPECT_LT(rel(grads[3 + i], grads[i]), 1e-14) << "gradient " << i;
    }
  // The whole network through the switch, and a value it refuses.
  CNNParams p = cnn_init(1, 4, 0);
  const at::Tensor x = at::randn({3, 1, 28, 28}, f64);
  const at::Tensor direct = cnn_forward_reference(p, x, Activation::make("relu"));
  {
    lft::ScopedEnv env("LAZYFEAT_CNN_CONV", "im2col");
    EXPECT_EQ(cnn_conv_wanted(), CnnConv::Im2col);
    EXPECT_LT(rel(cnn_forward_reference(p, x, Activation::make("relu")), direct), 1e-13);
  }
  {
    lft::ScopedEnv env("LAZYFEAT_CNN_CONV", "cudnn-benchmark");
    at::globalContext().setBenchmarkCuDNN(false);
    EXPECT_EQ(cnn_conv_wanted(), CnnConv::Direct);
    EXPECT_TRUE(at::globalContext().benchmarkCuDNN());
    at::globalContext().setBenchmarkCuDNN(false);
  }
  lft::ScopedEnv bad("LAZYFEAT_CNN_CONV", "winograd");
  EXPECT_THROW(cnn_conv_wanted(), UsageError);
}

TEST(CnnNtk, StructuredEqualsJacobian) {
  for (const std::string act : {"relu", "softplus"}) {
    CNNParams p = cnn_init(1, 3, 7);
    at::manual_seed(8);
    for (auto& b : p.b) b.normal_();  // biases contribute too
    Net net = Net::cnn(p, Activation::make(act));
    at::Tensor x1 = at::randn({5, 1, 28, 28}, f64), x2 = at::randn({3, 1, 28, 28}, f64);
    NtkOptions jac;
    jac.method = NtkMethod::Jacobian;
    at::Tensor J = ntk(net, x1, x2, jac), Js = ntk(net, x1, jac);
    // Default plan (materialised per-sample gradients at this size) and the contraction over
    // positions (forced by a budget too small to hold the per-sample gradients).
    for (double budget : {1e9, 2e3}) {
      NtkOptions s;
      s.memory_budget = budget;
      s.tile = 2;
      std::string plan;
      s.plan = &plan;
      EXPECT_LT(rel(ntk(net, x1, x2, s), J), 1e-10) << act << " " << plan;
      EXPECT_LT(rel(ntk(net, x1, s), Js), 1e-10) << act << " " << plan;
      if (budget < 1e4) EXPECT_EQ(plan.find("materialise"), std::string::npos) << plan;
      else EXPECT_NE(plan.find("materialise"), std::string::npos) << plan;
    }
  }
}

TEST(CnnFused, MatchesConv2dAndAutograd) {
  // Outputs f [B] and the gradient of sum_i c_i f_i in every layer's weights and bias: the fused
  // kernels (one GEMM per layer over the block) against the reference forward (at::conv2d) and
  // autograd, to float64 rounding, for several batch sizes and widths; the kept forward and the
  // blocked one (keeping nothing) give the same outputs.
  struct Case { int64_t h, B; std::string act; };
  std::vector<Case> cases;
  for (int64_t h : {1, 3, 32})
    for (int64_t B : {1, 7, 64}) cases.push_back({h, B, "relu"});
  cases.push_back({3, 7, "softplus"});
  cases.push_back({3, 130, "relu"});  // more than one block of the forward that keeps nothing
  for (const Case& k : cases) {
    SCOPED_TRACE("h " + std::to_string(k.h) + " B " + std::to_string(k.B) + " " + k.act);
    const Activation act = Activation::make(k.act);
    at::manual_seed(uint64_t(100 * k.h + k.B));
    CNNParams p = cnn_init(1, k.h, 3);
    for (auto& b : p.b) b.normal_();  // non-zero biases
    if (k.h == 1)  // one channel: positive weights and biases after the first layer, so it is not dead
      for (int64_t l = 1; l < kCnnConvs; ++l) p.W[l].abs_(), p.b[l].abs_();
    const at::Tensor x = at::randn({k.B, 1, 28, 28}, f64), c = at::randn({k.B}, f64);
    // The reference: conv2d + autograd.
    CNNParams q;
    for (auto& t : p.W) q.W.push_back(t.clone().requires_grad_(true));
    for (auto& t : p.b) q.b.push_back(t.clone().requires_grad_(true));
    const at::Tensor f_ref = cnn_forward_reference(q, x, act);
    (f_ref * c).sum().backward();
    // The fused kernels, gradient into views of one flat buffer as the trainer's.
    const CNNLayout lay(1, k.h);
    CNNFused net(act, lay);
    at::Tensor f = at::empty({k.B}, f64), f_blocks = at::empty({k.B}, f64), flat = at::zeros({lay.size}, f64);
    CNNParams g = lay.views(flat);
    net.forward(p, x, f_blocks.data_ptr<double>(), false);
    EXPECT_EQ(net.kept(), 0);
    net.forward(p, x, f.data_ptr<double>(), true);
    EXPECT_EQ(net.kept(), k.B);
    net.backward(p, c.data_ptr<double>(), g);
    EXPECT_EQ(net.kept(), 0);
    EXPECT_LT(rel(f, f_ref.detach()), 1e-12);
    EXPECT_LT(rel(f_blocks, f_ref.detach()), 1e-12);
    for (int64_t l = 0; l <= kCnnConvs; ++l) {
      ASSERT_GT(q.W[l].grad().abs().max().item<double>(), 0.0) << "W_" << l;  // a live network
      EXPECT_LT(rel(g.W[l], q.W[l].grad()), 1e-12) << "W_" << l;
      EXPECT_LT(rel(g.b[l], q.b[l].grad()), 1e-12) << "b_" << l;
    }
  }
}

// The fused kernels split each product over their threads in fixed chunks of columns of its
// result: one or two threads give the same bits (outputs and every gradient), in the kept forward
// and the blocked one.
TEST(CnnFused, SameNumbersOnOneOrTwoThreads) {
  const Activation act = Activation::make("relu");
  at::manual_seed(8);
  CNNParams p = cnn_init(1, 32, 5);
  for (auto& b : p.b) b.normal_();
  const at::Tensor x = at::randn({70, 1, 28, 28}, f64), c = at::randn({70}, f64);
  const CNNLayout lay(1, 32);
  auto run = [&](int threads) {
    CNNFused net(act, lay, threads);
    at::Tensor f = at::empty({70}, f64), fb = at::empty({70}, f64), flat = at::zeros({lay.size}, f64);
    CNNParams g = lay.views(flat);
    net.forward(p, x, fb.data_ptr<double>(), false);
    net.forward(p, x, f.data_ptr<double>(), true);
    net.backward(p, c.data_ptr<double>(), g);
    return std::vector<at::Tensor>{f, fb, flat};
  };
  const std::vector<at::Tensor> one = run(1), two = run(2);
  for (size_t k = 0; k < one.size(); ++k) EXPECT_TRUE(at::equal(one[k], two[k])) << k;
  EXPECT_GT(one[2].abs().max().item<double>(), 0.0);
}
