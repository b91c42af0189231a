// Replaying the published runs (protocol section 8): the data pool, the whitened PCA, the
// initial weights and f0 against reference values computed once with the published code's
// operations on Debian's PyTorch 1.13, stored in tests/fixtures/replay.json and made by
// tests/fixtures/make_replay_fixture.py (its header has the command).
// What can be promised where:
//  - The pool (lazyfeat's own arithmetic, fixed in order) and the weights: the fixture's bits on
//    any machine.
//  - The whitened PCA: its covariance product and dsyev run in the BLAS, whose kernels sum in an
//    order of their own. With the fixture's library (LibTorch 1.13 on OpenBLAS) and the OpenBLAS
//    kernels the fixture was made with (meta.openblas_cores: Zen, whose float64 kernels are
//    Haswell's), every bit must agree. With other kernels (OpenBLAS picks them for the CPU:
//    SkylakeX on AVX-512 machines) or another library (PyTorch 2.x's MKL) the sums round
//    differently, and the values must agree to kPcaRounding of their scale with the same signs; with
//    the fixture's library on a CPU with AVX2 and FMA, the test then also runs itself again
//    under OPENBLAS_CORETYPE=Zen, so that the bits are checked on every such machine.
//  - f0 agrees to rounding either way: the fused and reference forwards sum in another order
//    than the published x @ (W^T / sqrt(f)) + b.
#include <gtest/gtest.h>
#include <torch/csrc/api/include/torch/version.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/pyhash.h"
#include "common/sysinfo.h"
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

// The fixture's library: with its OpenBLAS kernels, every bit of the PCA must then agree.
constexpr bool kSameLibrary = TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR == 13;

// Whether OpenBLAS runs one of the cores whose kernels made the fixture (lf::blas_core() ends
// with the core's name).
bool fixture_kernels() {
  const std::string core = lf::blas_core();
  if (core.empty()) return false;
  const std::string name = core.substr(core.rfind(' ') + 1);
  for (const auto& c : fixture().at("meta").at("openblas_cores")) {
    if (c.get<std::string>() == name) return true;
  }
  return false;
}

// The PCA's values under other kernels, as a fraction of max(1, |value|) (the whitened values
// have unit variance, so 1 is their scale; the eigenvalues are > 1): measured on the fixture's
// 2 x 170 values and 2 x 10 eigenvalues under OpenBLAS 0.3.21's SkylakeX, Sandybridge, Nehalem,
// Prescott, Core2, Atom, Penryn, Dunnington, Barcelona and Bobcat kernels, at most 4.0e-14
// (Core2, Penryn; SkylakeX 1.0e-14): the order of the 63,130-term covariance sums (sqrt(N) eps =
// 2.8e-14). The bound is 25 times that, below N eps = 7e-12, one such sum's worst case.
constexpr double kPcaRounding = 1e-12;

// The pool and the weights: lazyfeat's own arithmetic, the fixture's bits everywhere.
void expect_bits(double a, double b, const std::string& what) { EXPECT_EQ(a, b) << what; }
// The PCA: the fixture's bits with its library and kernels, kPcaRounding of max(1, |b|) (same sign) otherwise.
double pca_deviation = 0;  // the largest deviation expect_pca met under other kernels (of max(1, |b|))
void expect_pca(double a, double b, const std::string& what) {
  if (kSameLibrary && fixture_kernels()) {
    EXPECT_EQ(a, b) << what;
  } else {
    pca_deviation = std::max(pca_deviation, std::fabs(a - b) / std::max(1.0, std::fabs(b)));
    EXPECT_LE(std::fabs(a - b), kPcaRounding * std::max(1.0, std::fabs(b))) << what << ": " << a << " vs " << b;
    EXPECT_EQ(std::signbit(a), std::signbit(b)) << what;
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

// Set in that child: it checks the bits of the dsyev PCA only (its parent checked the evd one).
constexpr const char* kBitsChild = "LAZYFEAT_REPLAY_BITS_CHILD";

// This test binary again, under the fixture's kernels (OPENBLAS_CORETYPE, read when OpenBLAS
// loads), where the test below then asks for every bit of the PCA. The Zen kernels need AVX2 and
// FMA; a CPU without them has had the PCA checked to kPcaRounding only.
void expect_bits_under_the_fixtures_kernels() {
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
    std::cout << "[ NOTE ] no AVX2 + FMA: the fixture's kernels (Zen) cannot run here; the PCA agreed to "
              << kPcaRounding << " of their scale\n";
    return;
  }
  lft::TempDir dir;
  const int pid = lft::start({"/proc/self/exe", "--gtest_filter=Replay.PoolAndWhitenedPcaAreThePublishedBits"},
                             dir.file("out"), dir.file("err"), false,
                             {"OPENBLAS_CORETYPE=Zen", std::string(kBitsChild) + "=1"});
  ASSERT_GT(pid, 0);
  const int status = lft::wait_exit(pid);
  const std::string out = lft::slurp(dir.file("out"));
  const std::string tail = out.substr(out.size() > 4000 ? out.size() - 4000 : 0);
  EXPECT_EQ(status, 0) << tail;
  EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos) << tail;
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
        expect_bits(pool.x[i][pix[k]].item<double>(), want[k], "row " + row + " pixel " + std::to_string(pix[k]));
    }
    // The whitened PCA of the pool through dsyev: every bit with the fixture's kernels (above);
    // through dsyevd (evd): the same numbers up to each component's sign and rounding.
    // The child of expect_bits_under_the_fixtures_kernels skips the evd fit (its parent made it).
    const bool evd = std::getenv(kBitsChild) == nullptr;
    at::Tensor w, w_evd;
    lf::WhitenedPca p = lf::fit_whitened_pca(pool.x, 10, lf::PcaSolver::Dsyev, &w);
    if (evd) lf::fit_whitened_pca(pool.x, 10, lf::PcaSolver::Evd, &w_evd);
    const json& pca = fixture().at("pca").at(seed_key);
    const auto ev = dec(pca.at("eigenvalues_top10"));
    for (int k = 0; k < 10; ++k) expect_pca(p.eigenvalues[k].item<double>(), ev[k], "eigenvalue " + std::to_string(k));
    for (const auto& [row, r] : pca.at("rows").items()) {
      const int64_t i = std::stoll(row);
      const auto want = dec(r);
      for (int k = 0; k < 10; ++k) {
        expect_pca(w[i][k].item<double>(), want[k], "row " + row + " component " + std::to_string(k));
        if (evd) EXPECT_NEAR(std::fabs(w_evd[i][k].item<double>()), std::fabs(want[k]), 1e-6) << "evd row " << i;
      }
    }
  }
  const auto labels = fixture().at("labels").at("0").at("first40").get<std::vector<int>>();
  Pool pool0 = load_pool(0);
  for (size_t i = 0; i < labels.size(); ++i) EXPECT_EQ(pool0.y[i].item<double>(), labels[i]) << "label " << i;
  if (!(kSameLibrary && fixture_kernels()))
    std::cout << "[ NOTE ] " << lf::blas_core() << ": the PCA's largest deviation from the fixture (a fraction of max(1, |value|)) "
              << pca_deviation << "\n";
  // OpenBLAS picked other kernels for this CPU: the bits under the fixture's, in a child process.
  if (kSameLibrary && !fixture_kernels()) expect_bits_under_the_fixtures_kernels();
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
