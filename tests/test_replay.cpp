// Replaying the published runs (protocol section 8): the data pool, the whitened PCA, the
// initial weights and f0 against reference values computed once with the published code's
// operations on Debian's PyTorch 1.13 (the same LibTorch and OpenBLAS as this build), stored in
// tests/fixtures/replay.json and made by tests/fixtures/make_replay_fixture.py (its header has
// the command). With that library (LibTorch 1.13, as Debian ships it) pool, PCA and weights
// must agree to the last bit; with another one (PyTorch 2.x's, MKL's LAPACK) the reductions
// round differently and they must agree to 1e-12 relative, with the same signs. f0 agrees to
// rounding either way: the fused and reference forwards sum in another order than the
// published x @ (W^T / sqrt(f)) + b.
#include <gtest/gtest.h>
#include <torch/csrc/api/include/torch/version.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/pyhash.h"
#include "experiment/config.h"
#include "experiment/from_config.h"
#include "models/fc.h"
#include "models/fc_fused.h"
#include "testing.h"

namespace {

using json = nlohmann::json;

const json& fixture() {
  static const json j = [] {
    std::ifstream f(std::string(LAZYFEAT_SOURCE_DIR) + "/tests/fixtures/replay.json");
    EXPECT_TRUE(f.good()) << "tests/fixtures/replay.json is missing";
    return json::parse(f);
  }();
  return j;
}

std::vector<double> dec(const json& v) { return v.at("dec").get<std::vector<double>>(); }

// The fixture's library: every bit must then agree.
constexpr bool kSameLibrary = TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR == 13;

// a == b to the last bit with the fixture's library, to 1e-12 relative (same sign) otherwise.
void expect_replayed(double a, double b, const std::string& what) {
  if (kSameLibrary) {
    EXPECT_EQ(a, b) << what;
  } else {
    EXPECT_LE(std::fabs(a - b), 1e-12 * std::fabs(b)) << what << ": " << a << " vs " << b;
  }
}

// The pool of a data seed, normalised, as the published get_normalized_dataset: [63130, 784].
struct Pool {
  at::Tensor x, y, source;
};
Pool load_pool(uint64_t seed) {
  lf::DataOptions o;
  o.data_dir = lft::data_dir();
  o.ptr = 5000;
  o.pte = 63130 - 5000;
  o.seed_data = seed;
  lf::Dataset ds = lf::load_dataset(o);
  return {at::cat({ds.x_train, ds.x_test}), at::cat({ds.y_train, ds.y_test}),
          at::cat({ds.source_train, ds.source_test})};
}

TEST(Replay, PoolAndWhitenedPcaAreThePublishedBits) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent from " << lft::data_dir() << ": run scripts/setup.sh";
  for (const char* seed_key : {"0", "1"}) {
    SCOPED_TRACE(std::string("data seed ") + seed_key);
    const json& ref = fixture().at("pool").at(seed_key);
    Pool pool = load_pool(std::stoull(seed_key));
    ASSERT_EQ(pool.x.size(0), ref.at("size").get<int64_t>());
    const auto src = ref.at("first40_src").get<std::vector<int64_t>>();
    for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(pool.source[i].item<int64_t>(), src[i]) << "pool row " << i;
    const auto pix = ref.at("pixel_indices").get<std::vector<int64_t>>();
    for (const auto& [row, r] : ref.at("rows").items()) {
      const int64_t i = std::stoll(row);
      EXPECT_EQ(pool.source[i].item<int64_t>(), r.at("src").get<int64_t>()) << "row " << i;
      const auto want = dec(r.at("pixels"));
      for (size_t k = 0; k < pix.size(); ++k)
        expect_replayed(pool.x[i][pix[k]].item<double>(), want[k], "row " + row + " pixel " + std::to_string(pix[k]));
    }
    // The whitened PCA of the pool through dsyev: every bit; through dsyevd (evd): the same
    // numbers up to each component's sign and rounding.
    at::Tensor w, w_evd;
    lf::WhitenedPca p = lf::fit_whitened_pca(pool.x, 10, lf::PcaSolver::Dsyev, &w);
    lf::fit_whitened_pca(pool.x, 10, lf::PcaSolver::Evd, &w_evd);
    const json& pca = fixture().at("pca").at(seed_key);
    const auto ev = dec(pca.at("eigenvalues_top10"));
    for (int k = 0; k < 10; ++k) expect_replayed(p.eigenvalues[k].item<double>(), ev[k], "eigenvalue " + std::to_string(k));
    for (const auto& [row, r] : pca.at("rows").items()) {
      const int64_t i = std::stoll(row);
      const auto want = dec(r);
      for (int k = 0; k < 10; ++k) {
        expect_replayed(w[i][k].item<double>(), want[k], "row " + row + " component " + std::to_string(k));
        EXPECT_NEAR(std::fabs(w_evd[i][k].item<double>()), std::fabs(want[k]), 1e-6) << "evd row " << i;
      }
    }
  }
  const auto labels = fixture().at("labels").at("0").at("first40").get<std::vector<int>>();
  Pool pool0 = load_pool(0);
  for (size_t i = 0; i < labels.size(); ++i) EXPECT_EQ(pool0.y[i].item<double>(), labels[i]) << "label " << i;
}

TEST(Replay, PublishedSeedWeightsAndF0) {
  ASSERT_TRUE(lft::have_mnist()) << "MNIST files absent from " << lft::data_dir() << ": run scripts/setup.sh";
  // The training inputs of data seed 0, d = 10: pool rows 0..7 of the whitened PCA.
  lf::RunConfig base;
  base.data_dir = lft::data_dir();
  base.ptr = 5000;
  base.pte = 0;
  lf::finalize(base);
  lf::Dataset ds = lf::load_dataset(base);
  const at::Tensor x8 = ds.x_train.slice(0, 0, 8);
  for (const auto& e : fixture().at("init")) {
    const uint64_t init_seed = e.at("init_seed").get<uint64_t>();
    const double alpha = e.at("alpha").at("dec").get<double>();
    const int64_t h = e.at("h"), L = e.at("L");
    SCOPED_TRACE("init_seed " + std::to_string(init_seed) + " h " + std::to_string(h));
    // The seed, through the run options as a user gives them.
    lf::RunConfig c;
    c.seed_init = init_seed;
    c.alpha = alpha;
    c.h = h;
    c.L = L;
    c.published_seed = true;
    lf::finalize(c);
    ASSERT_EQ(c.weights_seed(), e.at("seed").get<uint64_t>());
    lf::FCParams p = lf::fc_init(10, h, L, c.weights_seed());
    const auto& wref = e.at("weights");
    ASSERT_EQ(int64_t(wref.size()), L + 1);
    for (int64_t l = 0; l <= L; ++l) {
      const auto first5 = dec(wref[l].at("first5"));
      at::Tensor flat = p.W[l].reshape({-1});
      for (int k = 0; k < 5; ++k) EXPECT_EQ(flat[k].item<double>(), first5[k]) << "W_" << l << "[" << k << "]";
      const double fro = dec(wref[l].at("fro"))[0];  // a norm's rounding is the library's, not the replay's
      EXPECT_NEAR(p.W[l].norm().item<double>(), fro, 1e-13 * fro) << "||W_" << l << "||";
    }
    // f0 with the published activation: 1.40438 softplus_5, PyTorch's cut-off at beta z > 20.
    lf::Activation act = lf::Activation::make("softplus", 5.0, 1.40438, 20.0);
    const auto f0 = dec(e.at("f0_first8"));
    at::Tensor f_ref = lf::fc_forward_reference(p, x8, act);
    lf::FCFused fused(act, lf::FCLayout(10, h, L), 8);
    at::Tensor f_fused = fused.evaluate(p, x8.contiguous());
    for (int i = 0; i < 8; ++i) {
      const double tol = 1e-12 * std::max(1.0, std::fabs(f0[i]));
      EXPECT_NEAR(f_ref[i].item<double>(), f0[i], tol) << "reference f0 point " << i;
      EXPECT_NEAR(f_fused[i].item<double>(), f0[i], tol) << "fused f0 point " << i;
    }
  }
}

}  // namespace
