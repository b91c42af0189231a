// The CNN of setup B: seed-compatible init, spatial sizes 28 -> 13 -> 11 -> 5 -> 3, and its
// structured NTK (both the position-contraction and materialised-gradient paths) against the
// autograd Jacobian reference.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "models/cnn.h"
#include "ntk/ntk.h"

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
  // Protocol section 8: randn(C_in,5,5) per output channel, conv by conv, then randn(h).
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(42);
  std::vector<at::Tensor> draws;
  for (int l = 0; l < 4; ++l)
    for (int c = 0; c < 3; ++c) draws.push_back(at::randn({l == 0 ? 1 : 3, 5, 5}, g, f64));
  at::Tensor out = at::randn({3}, g, f64);
  EXPECT_TRUE(at::equal(p.W[0][2], draws[2]));
  EXPECT_TRUE(at::equal(p.W[3][1], draws[10]));
  EXPECT_TRUE(at::equal(p.W[4][0], out));
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
