// The published code's conventions that a replay needs (protocol sections 2, 6, 8), without
// data: Python's float hash against the values CPython gave (tests/fixtures/replay.json, made
// by tests/fixtures/make_replay_fixture.py), the seed of (init_seed, alpha), the published
// alpha grid of the sweep specs as the literals the authors typed, PyTorch's softplus cut-off
// in the fused kernels and the reference, and the scale option of every activation.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/pyhash.h"
#include "experiment/config.h"
#include "models/activation.h"
#include "models/fc.h"
#include "models/fc_fused.h"
#include "sweep/sweep.h"

namespace {

nlohmann::json fixture() {
  std::ifstream f(std::string(LAZYFEAT_SOURCE_DIR) + "/tests/fixtures/replay.json");
  EXPECT_TRUE(f.good()) << "tests/fixtures/replay.json is missing";
  return nlohmann::json::parse(f);
}

}  // namespace

TEST(Published, PythonFloatHashOfEveryFixtureValue) {
  const auto j = fixture();
  ASSERT_GE(j.at("hash").size(), 20u);
  for (const auto& e : j.at("hash")) {
    const double x = e.at("dec").get<double>();
    EXPECT_EQ(lf::python_float_hash(x), e.at("hash").get<int64_t>()) << e.at("expr");
  }
  EXPECT_EQ(lf::python_float_hash(125.0), 125);
  EXPECT_EQ(lf::python_float_hash(-1.0), -2);  // -1 is reserved in CPython
  EXPECT_EQ(lf::python_float_hash(-125.0), -125);
  EXPECT_EQ(lf::python_float_hash(0.00125), 1155803808368364093);
  for (const auto& e : j.at("init"))
    EXPECT_EQ(lf::published_init_seed(e.at("init_seed").get<uint64_t>(), e.at("alpha").at("dec").get<double>()),
              e.at("seed").get<uint64_t>());
}

// --sqrt-h-alpha gives alpha = X / h ** 0.5 as the published code did (pow, not sqrt): the
// seed of sqrt(h) alpha = 1e3 at h = 64 is init_seed + hash(125.0) = init_seed + 125.
TEST(Published, SqrtHAlphaGivesThePublishedAlphaAndSeed) {
  lf::RunConfig c;
  c.h = 64;
  c.sqrt_h_alpha = 1e3;
  c.seed_init = 1;
  c.published_seed = true;
  lf::finalize(c);
  EXPECT_EQ(c.alpha, 125.0);
  EXPECT_EQ(c.weights_seed(), 126u);
  c.published_seed = false;
  EXPECT_EQ(c.weights_seed(), 1u);
  // The option as a user writes it, and the seed in the canonical JSON (and so the database).
  lf::RunConfig d;
  lf::set_run_option(d, "published-seed", "true");
  lf::set_run_option(d, "alpha", "0.00125");
  lf::finalize(d);
  EXPECT_EQ(lf::config_to_json(d).at("weights_seed").get<uint64_t>(), 1155803808368364093u);
}

// setup-a.toml's alpha axis: 1e-3, 2.2e-3, 4.6e-3, 1e-2, ..., 1e5: 25 values, each the double
// of the decimal literal (2.2 * 1e-3 would be another double, and another hash).
TEST(Published, SetupAAlphaGridIsThePublishedLiterals) {
  auto grid = lf::parse_sweep_spec(std::string(LAZYFEAT_SOURCE_DIR) + "/examples/setup-a.toml");
  std::vector<double> alphas;
  for (const auto& c : grid)
    if (c.h == 100 && c.seed_init == 0) alphas.push_back(c.alpha);
  ASSERT_EQ(alphas.size(), 25u);
  EXPECT_EQ(alphas[0], 1e-3);
  EXPECT_EQ(alphas[1], 2.2e-3);
  EXPECT_EQ(alphas[2], 4.6e-3);
  EXPECT_EQ(alphas[3], 1e-2);
  EXPECT_EQ(alphas[4], 2.2e-2);
  EXPECT_EQ(alphas[7], 2.2e-1);
  EXPECT_EQ(alphas[22], 2.2e4);
  EXPECT_EQ(alphas[24], 1e5);
  // The literal matters: 2.2 * 1e-2 and 4.6 * 1e-1 are other doubles (hence other seeds).
  EXPECT_NE(2.2 * 1e-2, 2.2e-2);
  EXPECT_NE(4.6 * 1e-1, 4.6e-1);
  EXPECT_EQ(alphas[8], 4.6e-1);
  for (const auto& c : grid) {
    EXPECT_TRUE(c.published_seed);
    EXPECT_EQ(c.act_scale, 1.40438);
    EXPECT_EQ(c.softplus_threshold, 20.0);
  }
  EXPECT_THROW(lf::parse_sweep_spec_text("[axes]\nalpha = { decades = [1e-3, 5e-2], mantissas = [1] }\n", "t"),
               lf::UsageError);
  EXPECT_THROW(lf::parse_sweep_spec_text("[axes]\nalpha = { decades = [1e-3, 1e-2], mantissas = [2, 1] }\n", "t"),
               lf::UsageError);
}

// PyTorch's softplus(x, beta, threshold) is x itself where beta x > threshold (derivative 1):
// the fused kernels (SIMD and the scalar tail) and the reference agree with that definition on
// both sides of the cut, and without a threshold they keep the exact softplus.
TEST(Published, SoftplusThresholdInFusedAndReference) {
  const double a = 1.40438, beta = 5, thr = 20;
  lf::Activation cut = lf::Activation::make("softplus", beta, a, thr);
  lf::Activation exact = lf::Activation::make("softplus", beta, a);
  std::vector<double> zs;
  for (double z = -6; z <= 6; z += 0.37) zs.push_back(z);
  zs.push_back(4.0000001);  // just above the cut (beta z = 20.0000005)
  zs.push_back(3.9999999);  // just below
  std::vector<double> v = zs, dv(zs.size());
  lf::activation_inplace(cut, v.data(), dv.data(), int64_t(v.size()));
  for (size_t i = 0; i < zs.size(); ++i) {
    const double z = zs[i];
    const bool linear = beta * z > thr;
    const double want = linear ? a * z : a * std::log1p(std::exp(beta * z)) / beta;
    const double dwant = linear ? a : a / (1 + std::exp(-beta * z));
    EXPECT_NEAR(v[i], want, 1e-14 * std::max(1.0, std::fabs(want))) << "z = " << z;
    EXPECT_NEAR(dv[i], dwant, 1e-14) << "z = " << z;
    EXPECT_NEAR(cut.value(z), want, 1e-14 * std::max(1.0, std::fabs(want))) << "z = " << z;
    EXPECT_EQ(cut.deriv(z), linear ? a : exact.deriv(z)) << "z = " << z;
  }
  // Above the cut the exact softplus differs by a log1p(exp(-beta z)) / beta ~ 2.9e-10 at z = 4.
  EXPECT_GT(std::fabs(exact.value(4.0000001) - cut.value(4.0000001)), 1e-10);
  at::Tensor zt = at::tensor(zs, at::TensorOptions().dtype(at::kDouble));
  at::Tensor ref = cut(zt), dref = cut.derivative(zt);
  for (size_t i = 0; i < zs.size(); ++i) {
    EXPECT_NEAR(ref[i].item<double>(), v[i], 1e-14 * std::max(1.0, std::fabs(v[i])));
    EXPECT_NEAR(dref[i].item<double>(), dv[i], 1e-14);
  }
}

// --act-scale sets the prefactor of every activation (the published tanh was unnormalised).
TEST(Published, ActScaleForEveryActivation) {
  for (const char* name : {"softplus", "relu", "tanh", "swish"}) {
    lf::Activation normalised = lf::Activation::make(name);
    lf::Activation one = lf::Activation::make(name, 5.0, 1.0);
    EXPECT_EQ(one.scale, 1.0) << name;
    EXPECT_NE(normalised.scale, 1.0) << name;
    EXPECT_DOUBLE_EQ(one.value(0.7) * normalised.scale, normalised.value(0.7)) << name;
  }
  EXPECT_DOUBLE_EQ(lf::Activation::make("tanh", 5.0, 1.0).value(0.3), std::tanh(0.3));
}
