// The fused FC kernels (models/fc_fused.h) against the autograd reference (models/fc.h) and
// against central finite differences, for every activation, with non-zero biases.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>

#include "models/activation.h"
#include "models/fc.h"
#include "models/fc_fused.h"

using namespace lf;

namespace {

const auto kD = at::TensorOptions().dtype(at::kDouble);

// A small network with random non-zero biases, its flat parameters and some inputs.
struct Case {
  FCLayout lay{10, 12, 3};
  at::Tensor w, x;
  explicit Case(uint64_t seed, int64_t n = 37) {
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    FCParams p = fc_init(10, 12, 3, seed);
    for (auto& b : p.b) b.copy_(0.5 * at::randn(b.sizes(), gen, kD));
    w = lay.flatten(p);
    x = at::randn({n, 10}, gen, kD);
  }
};

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(1e-300, b.abs().max().item<double>());
}

const char* kActs[] = {"softplus", "relu", "tanh", "swish"};

}  // namespace

TEST(FCFused, LayoutRoundTrip) {
  Case c(1);
  FCParams v = c.lay.views(c.w);
  EXPECT_EQ(c.lay.size, 12 * 10 + 12 + 2 * (12 * 12 + 12) + 12 + 1);
  EXPECT_TRUE(at::equal(c.lay.flatten(v), c.w));
  EXPECT_EQ(v.W[3].sizes(), (std::vector<int64_t>{1, 12}));
}

TEST(FCFused, ActivationKernelMatchesScalarReference) {
  // Covers the SIMD body and the scalar tail (n not a multiple of 4) and large |z|.
  std::vector<double> xs;
  for (int i = -403; i <= 403; ++i) xs.push_back(i * 0.05);
  xs.push_back(300.0);
  xs.push_back(-300.0);
  for (const char* name : kActs) {
    Activation act = Activation::make(name);
    std::vector<double> z = xs, dz(xs.size());
    activation_inplace(act, z.data(), dz.data(), int64_t(z.size()));
    for (size_t i = 0; i < xs.size(); ++i) {
      double v = act.value(xs[i]), dv = act.deriv(xs[i]);
      EXPECT_NEAR(z[i], v, 1e-14 * std::max(1.0, std::fabs(v))) << name << " x=" << xs[i];
      EXPECT_NEAR(dz[i], dv, 1e-14 * std::max(1.0, std::fabs(dv))) << name << " x=" << xs[i];
    }
  }
  // The two-thread split of large passes gives the same numbers as one pass.
  Activation sp = Activation::make("softplus");
  at::Tensor big = at::randn({1 << 17}, kD) * 3;
  at::Tensor a = big.clone(), da = at::empty_like(big);
  activation_inplace(sp, a.data_ptr<double>(), da.data_ptr<double>(), a.numel());
  EXPECT_LT(rel_err(a, sp(big)), 1e-14);
  EXPECT_LT(rel_err(da, sp.derivative(big)), 1e-14);
}

TEST(FCFused, ForwardEqualsReference) {
  for (const char* name : kActs) {
    Activation act = Activation::make(name);
    Case c(7);
    FCFused net(act, c.lay, c.x.size(0));
    at::Tensor f = at::empty({c.x.size(0)}, kD);
    net.forward(c.lay.views(c.w), c.x, f);
    at::Tensor ref = fc_forward_reference(c.lay.views(c.w), c.x, act);
    EXPECT_LT(rel_err(f, ref), 1e-12) << name;
    at::Tensor e = net.evaluate(c.lay.views(c.w), c.x);
    EXPECT_LT(rel_err(e, ref), 1e-12) << name;
  }
}

// Fused backward on a subset of the points vs autograd of sum_k c_k f(x_rows[k]).
TEST(FCFused, BackwardOnSubsetEqualsAutograd) {
  for (const char* name : kActs) {
    Activation act = Activation::make(name);
    Case c(11);
    const int64_t n = c.x.size(0);
    FCFused net(act, c.lay, n);
    at::Tensor f = at::empty({n}, kD);
    net.forward(c.lay.views(c.w), c.x, f);
    for (bool all : {false, true}) {
      std::vector<int64_t> rows;
      std::vector<double> cs;
      for (int64_t i = 0; i < n; ++i)
        if (all || i % 3 != 1) {
          rows.push_back(i);
          cs.push_back(std::sin(1.0 + i));
        }
      at::Tensor g = at::zeros({c.lay.size}, kD);
      FCParams gp = c.lay.views(g);
      net.backward(c.lay.views(c.w), c.x, rows.data(), cs.data(), int64_t(rows.size()), gp);

      at::Tensor w = c.w.clone().set_requires_grad(true);
      at::Tensor cf = at::zeros({n}, kD);
      for (size_t k = 0; k < rows.size(); ++k) cf[rows[k]] = cs[k];
      (fc_forward_reference(c.lay.views(w), c.x, act) * cf).sum().backward();
      EXPECT_LT(rel_err(g, w.grad()), 1e-12) << name << (all ? " all" : " subset");
    }
  }
}

// Both gradients against central finite differences of sum_k c_k f(x_k) (float64).
TEST(FCFused, GradientMatchesFiniteDifferences) {
  for (const char* name : {"softplus", "tanh", "swish"}) {  // relu: kinks make FD unreliable
    Activation act = Activation::make(name);
    Case c(3, 9);
    const int64_t n = c.x.size(0);
    std::vector<int64_t> rows;
    std::vector<double> cs;
    for (int64_t i = 0; i < n; ++i) {
      rows.push_back(i);
      cs.push_back(std::cos(0.3 * i));
    }
    at::Tensor cf = at::from_blob(cs.data(), {n}, kD).clone();
    auto objective = [&](const at::Tensor& w) {
      return (fc_forward_reference(c.lay.views(w), c.x, act) * cf).sum().item<double>();
    };
    FCFused net(act, c.lay, n);
    at::Tensor f = at::empty({n}, kD), g = at::zeros({c.lay.size}, kD);
    net.forward(c.lay.views(c.w), c.x, f);
    FCParams gp = c.lay.views(g);
    net.backward(c.lay.views(c.w), c.x, rows.data(), cs.data(), n, gp);
    at::Tensor wr = c.w.clone().set_requires_grad(true);
    (fc_forward_reference(c.lay.views(wr), c.x, act) * cf).sum().backward();
    at::Tensor gref = wr.grad();
    // Every bias and a spread of weights of every layer.
    double worst = 0;
    for (int64_t i = 0; i < c.lay.size; i += 7) {
      const double eps = 1e-5;
      at::Tensor wp = c.w.clone(), wm = c.w.clone();
      wp[i] += eps;
      wm[i] -= eps;
      double fd = (objective(wp) - objective(wm)) / (2 * eps);
      double scale = std::max(1e-3, std::fabs(fd));
      worst = std::max(worst, std::fabs(g[i].item<double>() - fd) / scale);
      worst = std::max(worst, std::fabs(gref[i].item<double>() - fd) / scale);
    }
    EXPECT_LT(worst, 1e-6) << name;
  }
}

TEST(FCFused, EmptySubsetGivesZeroGradient) {
  Case c(5);
  Activation act = Activation::make("softplus");
  FCFused net(act, c.lay, c.x.size(0));
  at::Tensor f = at::empty({c.x.size(0)}, kD), g = at::ones({c.lay.size}, kD);
  net.forward(c.lay.views(c.w), c.x, f);
  FCParams gp = c.lay.views(g);
  net.backward(c.lay.views(c.w), c.x, nullptr, nullptr, 0, gp);
  EXPECT_EQ(g.abs().max().item<double>(), 0.0);
}
