// On the GPU (built only where LibTorch has CUDA and CMake found nvcc; CTest label `cuda`): each
// hand-written kernel of models/fc_cuda.h against its plain LibTorch composition, on fresh random
// inputs with the output poisoned first, and the batched engine with the kernels against the
// engine without them (LAZYFEAT_CUDA_KERNELS=0).
// Deliberately not: speed (lazyfeat bench ensemble --device cuda, scripts/gpu-check.sh).
#include <gtest/gtest.h>

#include <ATen/cuda/CUDAContext.h>

#include <array>
#include <cstdlib>
#include <limits>
#include <vector>

#include "data/dataset.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "models/fc_cuda.h"
#include "testing.h"

using namespace lf;

namespace {

const auto kGpu = at::TensorOptions().dtype(at::kDouble).device(at::kCUDA);

// The number of entries where a and b differ in any bit (both on the device, same shape).
int64_t bits_differ(const at::Tensor& a, const at::Tensor& b) {
  return (a.view(at::kLong) != b.view(at::kLong)).sum().item<int64_t>();
}

}  // namespace

// pre <- m pre + b, z <- softplus(pre): bit for bit the composition at::softplus(m * pre + b),
// at shapes with H odd and even, one member and many, the bias rows inside a wider [K, P]
// weight tensor, and values past the cut-off (beta x > threshold: z = x) and far below it.
TEST(CudaKernels, BiasSoftplusEqualsItsComposition) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  at::manual_seed(11);
  struct Shape {
    int64_t K, N, H;
  };
  // {300, 1001, 33}: 15 blocks a member, three passes of a thread, its column stepped by 12;
  // {70000, 2, 3}: more members than the grid's y limit.
  for (const Shape s : {Shape{1, 7, 3}, Shape{5, 300, 100}, Shape{3, 1001, 33}, Shape{40, 257, 64},
                        Shape{300, 1001, 33}, Shape{70000, 2, 3}}) {
    for (const double threshold : {20.0, 600.0}) {
      SCOPED_TRACE("K " + std::to_string(s.K) + " N " + std::to_string(s.N) + " H " + std::to_string(s.H) +
                   " threshold " + std::to_string(threshold));
      const double beta = 5.0, m = 1.40438 / std::sqrt(double(s.H));
      const int64_t P = 3 * s.H + 17, offset = s.H + 5;  // the bias at an offset inside each member's row
      at::Tensor Wk = at::randn({s.K, P}, kGpu);
      at::Tensor pre = at::randn({s.K, s.N, s.H}, kGpu) * 3.0;
      pre.view({-1}).slice(0, 0, std::min<int64_t>(pre.numel() / 4, 50)).fill_(2000.0);  // beta m pre > threshold
      pre.view({-1}).slice(0, pre.numel() / 2, pre.numel() / 2 + 1).fill_(-4000.0);  // exp underflows to 0
      const at::Tensor b = Wk.narrow(1, offset, s.H);  // [K, H] at stride P
      const at::Tensor want_pre = pre * m + b.unsqueeze(1);
      const at::Tensor want_z = at::softplus(want_pre, beta, threshold);
      at::Tensor got_pre = pre.clone();
      at::Tensor got_z = at::full_like(pre, std::numeric_limits<double>::quiet_NaN());  // poisoned
      cuda::bias_softplus(b.data_ptr<double>(), b.stride(0), m, got_pre.data_ptr<double>(), got_z.data_ptr<double>(),
                          s.K, s.N, s.H, beta, threshold, at::cuda::getCurrentCUDAStream().stream());
      EXPECT_EQ(bits_differ(got_pre, want_pre), 0);
      EXPECT_EQ(bits_differ(got_z, want_z), 0);
      EXPECT_FALSE(got_z.isnan().any().item<bool>()) << "an entry left unwritten";
      // In place (z = pre, the engine's call): the same z over the product.
      at::Tensor in_place = pre.clone();
      cuda::bias_softplus(b.data_ptr<double>(), b.stride(0), m, in_place.data_ptr<double>(),
                          in_place.data_ptr<double>(), s.K, s.N, s.H, beta, threshold,
                          at::cuda::getCurrentCUDAStream().stream());
      EXPECT_EQ(bits_differ(in_place, want_z), 0);
    }
  }
}

namespace {

// |got - want| <= rtol |want| + 1e-300 everywhere (the latter for values that underflow).
void expect_close_all(const at::Tensor& got, const at::Tensor& want, double rtol, const char* what) {
  const at::Tensor bad = (got - want).abs() > want.abs() * rtol + 1e-300;
  EXPECT_EQ(bad.sum().item<int64_t>(), 0) << what << ": largest difference "
                                          << (got - want).abs().max().item<double>();
}

// The backward's inputs at shape (K, N, H): x [K, N, H] as in the forward's test (values past the
// cut-off and far below it), and the bias gradient's destination, rows inside a wider [K, P]
// tensor poisoned with NaN.
struct BackwardCase {
  int64_t K, N, H, P, offset;
  at::Tensor x, G;
  BackwardCase(int64_t K_, int64_t N_, int64_t H_) : K(K_), N(N_), H(H_), P(3 * H_ + 17), offset(H_ + 5) {
    x = at::randn({K, N, H}, kGpu) * 3.0;
    x.view({-1}).slice(0, 0, std::min<int64_t>(x.numel() / 4, 50)).fill_(2000.0);
    x.view({-1}).slice(0, x.numel() / 2, x.numel() / 2 + 1).fill_(-4000.0);
    G = at::full({K, P}, std::numeric_limits<double>::quiet_NaN(), kGpu);
  }
  double* gb() { return G.data_ptr<double>() + offset; }
  // The bias rows against the sums over the points of gpre [K, N, H] to rounding (another order
  // of the sum: within 1e-13 of the sum of the terms' magnitudes), and every other entry of G
  // still NaN.
  void expect_bias(const at::Tensor& gpre) const {
    const at::Tensor got = G.narrow(1, offset, H), want = gpre.sum(1), scale = gpre.abs().sum(1) + 1e-300;
    EXPECT_LE(((got - want).abs() / scale).max().item<double>(), 1e-13) << "bias gradient";
    EXPECT_EQ(G.isnan().sum().item<int64_t>(), K * (P - H)) << "entries outside the bias rows written";
  }
};

const std::vector<std::array<int64_t, 3>> kBackwardShapes = {{1, 7, 3}, {5, 300, 100}, {3, 1001, 33}, {40, 257, 64},
                                                             {2, 5000, 1000}};

}  // namespace

// gpre <- softplus_backward(gz, x) and the bias gradient sum_i gpre: from x bit for bit ATen's
// softplus_backward, from z = softplus(x) to rounding; in place over gz and not; the sums equal
// gpre.sum(1) to rounding, written at their stride and nowhere else.
TEST(CudaKernels, SoftplusBackwardBiasEqualsItsComposition) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  at::manual_seed(12);
  for (const auto& [K, N, H] : kBackwardShapes) {
    for (const double threshold : {20.0, 600.0}) {
      for (const bool from_z : {false, true}) {
        SCOPED_TRACE("K " + std::to_string(K) + " N " + std::to_string(N) + " H " + std::to_string(H) +
                     " threshold " + std::to_string(threshold) + (from_z ? " from z" : " from x"));
        const double beta = 5.0;
        BackwardCase c(K, N, H);
        const at::Tensor gz = at::randn({K, N, H}, kGpu);
        const at::Tensor want = at::softplus_backward(gz, c.x, beta, threshold);
        const at::Tensor a = from_z ? at::softplus(c.x, beta, threshold) : c.x;
        at::Tensor work = at::full({cuda::bias_work_size(K, N, H)}, std::numeric_limits<double>::quiet_NaN(), kGpu);
        at::Tensor got = at::full_like(gz, std::numeric_limits<double>::quiet_NaN());
        cuda::softplus_backward_bias(gz.data_ptr<double>(), a.data_ptr<double>(), from_z, got.data_ptr<double>(),
                                     c.gb(), c.P, work.data_ptr<double>(), K, N, H, beta, threshold,
                                     at::cuda::getCurrentCUDAStream().stream());
        if (from_z) expect_close_all(got, want, 1e-14, "gpre");
        else EXPECT_EQ(bits_differ(got, want), 0);
        c.expect_bias(want);
        at::Tensor in_place = gz.clone();  // the engine's call: gpre over gz
        cuda::softplus_backward_bias(in_place.data_ptr<double>(), a.data_ptr<double>(), from_z,
                                     in_place.data_ptr<double>(), c.gb(), c.P, work.data_ptr<double>(), K, N, H, beta,
                                     threshold, at::cuda::getCurrentCUDAStream().stream());
        EXPECT_EQ(bits_differ(in_place, got), 0);
      }
    }
  }
}

// The top layer's outer product made in the kernel: gz = m c w^T, then as above; against
// baddbmm(c [K, N, 1], w [K, 1, H], beta 0, alpha m) and softplus_backward, to rounding.
TEST(CudaKernels, OuterSoftplusBackwardBiasEqualsItsComposition) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  at::manual_seed(13);
  for (const auto& [K, N, H] : kBackwardShapes) {
    for (const bool from_z : {false, true}) {
      SCOPED_TRACE("K " + std::to_string(K) + " N " + std::to_string(N) + " H " + std::to_string(H) +
                   (from_z ? " from z" : " from x"));
      const double beta = 5.0, threshold = 600.0, m = 1.40438 / std::sqrt(double(H));
      BackwardCase c(K, N, H);
      const at::Tensor C = at::randn({K, N}, kGpu);
      const at::Tensor Wk = at::randn({K, H + 9}, kGpu);
      const at::Tensor w = Wk.narrow(1, 4, H);  // [K, H] at stride H + 9
      const at::Tensor gz = at::baddbmm(at::empty({K, N, H}, kGpu), C.unsqueeze(2), w.unsqueeze(1), 0.0, m);
      const at::Tensor want = at::softplus_backward(gz, c.x, beta, threshold);
      const at::Tensor a = from_z ? at::softplus(c.x, beta, threshold) : c.x;
      at::Tensor work = at::empty({cuda::bias_work_size(K, N, H)}, kGpu);
      at::Tensor got = at::full_like(gz, std::numeric_limits<double>::quiet_NaN());
      cuda::outer_softplus_backward_bias(C.data_ptr<double>(), w.data_ptr<double>(), w.stride(0), m,
                                         a.data_ptr<double>(), from_z, got.data_ptr<double>(), c.gb(), c.P,
                                         work.data_ptr<double>(), K, N, H, beta, threshold,
                                         at::cuda::getCurrentCUDAStream().stream());
      expect_close_all(got, want, 1e-14, "gpre");
      c.expect_bias(want);
    }
  }
}

namespace {

// [K] masks with both values, random (at least one of each where K > 1).
at::Tensor random_mask(int64_t K, double p_true) {
  at::Tensor m = at::rand({K}, kGpu) < p_true;
  if (K > 1) m[0].fill_(true), m[K - 1].fill_(false);
  return m;
}

const std::vector<std::array<int64_t, 2>> kRoundShapes = {{1, 5}, {3, 7}, {100, 41601}, {21, 165201}, {70000, 3}};

}  // namespace

// The trial step of a round, momentum and gradient flow: bit for bit the engine's composition
// (where(live, V x - G (1 - x), V), where(live, W + Vt dt, W); where(live, W - G dt, W)), at a
// single member, odd P, the shapes of the study's blocks, and more members than the grid's y limit.
TEST(CudaKernels, TrialStepEqualsItsComposition) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  at::manual_seed(14);
  for (const auto& [K, P] : kRoundShapes) {
    SCOPED_TRACE("K " + std::to_string(K) + " P " + std::to_string(P));
    const at::Tensor W = at::randn({K, P}, kGpu), V = at::randn({K, P}, kGpu), G = at::randn({K, P}, kGpu);
    const at::Tensor x = at::rand({K}, kGpu), dt = at::rand({K}, kGpu) * 1e3, live = random_mask(K, 0.7);
    const at::Tensor lc = live.unsqueeze(1), xc = x.unsqueeze(1), dtc = dt.unsqueeze(1);
    const at::Tensor want_V = at::where(lc, V * xc - G * (1.0 - x).unsqueeze(1), V);
    const at::Tensor want_W = at::where(lc, W + want_V * dtc, W);
    at::Tensor Wt = at::full_like(W, std::numeric_limits<double>::quiet_NaN()), Vt = Wt.clone();  // poisoned
    cuda::trial_step(W.data_ptr<double>(), V.data_ptr<double>(), G.data_ptr<double>(), x.data_ptr<double>(),
                     dt.data_ptr<double>(), live.data_ptr<bool>(), Wt.data_ptr<double>(), Vt.data_ptr<double>(), K, P,
                     at::cuda::getCurrentCUDAStream().stream());
    EXPECT_EQ(bits_differ(Vt, want_V), 0);
    EXPECT_EQ(bits_differ(Wt, want_W), 0);
    // Gradient flow: no velocity.
    const at::Tensor want_gf = at::where(lc, W - G * dtc, W);
    Wt.fill_(std::numeric_limits<double>::quiet_NaN());
    cuda::trial_step(W.data_ptr<double>(), nullptr, G.data_ptr<double>(), nullptr, dt.data_ptr<double>(),
                     live.data_ptr<bool>(), Wt.data_ptr<double>(), nullptr, K, P,
                     at::cuda::getCurrentCUDAStream().stream());
    EXPECT_EQ(bits_differ(Wt, want_gf), 0);
  }
}

// The accepted trials kept: the rows of acc and keep replaced, every other row untouched (its
// NaN poison stays), with and without the velocity.
TEST(CudaKernels, KeepTrialsEqualsItsComposition) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  at::manual_seed(15);
  for (const auto& [K, P] : kRoundShapes) {
    for (const bool momentum : {true, false}) {
      SCOPED_TRACE("K " + std::to_string(K) + " P " + std::to_string(P) + (momentum ? " momentum" : " gradient flow"));
      const at::Tensor Gk = at::randn({K, P}, kGpu), Wt = at::randn({K, P}, kGpu), Vt = at::randn({K, P}, kGpu);
      const at::Tensor acc = random_mask(K, 0.6), keep = acc & random_mask(K, 0.8);
      at::Tensor G = at::full({K, P}, std::numeric_limits<double>::quiet_NaN(), kGpu);
      at::Tensor W = G.clone(), V = G.clone();
      const at::Tensor want_G = at::where(keep.unsqueeze(1), Gk, G), want_W = at::where(acc.unsqueeze(1), Wt, W);
      const at::Tensor want_V = momentum ? at::where(acc.unsqueeze(1), Vt, V) : V.clone();
      cuda::keep_trials(acc.data_ptr<bool>(), keep.data_ptr<bool>(), Gk.data_ptr<double>(), Wt.data_ptr<double>(),
                        momentum ? Vt.data_ptr<double>() : nullptr, G.data_ptr<double>(), W.data_ptr<double>(),
                        momentum ? V.data_ptr<double>() : nullptr, K, P, at::cuda::getCurrentCUDAStream().stream());
      EXPECT_EQ(bits_differ(G, want_G), 0);
      EXPECT_EQ(bits_differ(W, want_W), 0);
      EXPECT_EQ(bits_differ(V, want_V), 0);
    }
  }
}

// The batched engine on cuda with the kernels and without (the LibTorch composition, whose bias
// rides in baddbmm's epilogue: other roundings): the same decisions and numbers to 1e-9, from a
// first step above rounding. The final test outputs differ in their last bits, which shows that
// the two runs took different paths.
TEST(CudaKernels, EngineWithKernelsEqualsTheComposition) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(80, 40, 5);
  std::vector<RunConfig> cfgs;
  for (auto [seed, a] : {std::pair<uint64_t, double>{0, 1e-2}, {1, 1e3}, {2, 1.0}}) {
    RunConfig c = lft::small_member(seed, a, 1500);
    c.device = "cuda";
    cfgs.push_back(lft::above_rounding(c));
  }
  std::vector<lft::Recorded> rk, rc;
  std::vector<RunResult> a = lft::ensemble_with("LAZYFEAT_CUDA_KERNELS", nullptr, cfgs, d, rk);
  std::vector<RunResult> b = lft::ensemble_with("LAZYFEAT_CUDA_KERNELS", "0", cfgs, d, rc);
  bool some_bits_differ = false;
  for (size_t k = 0; k < 3; ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(a[k].trainer, "batched");
    EXPECT_GT(a[k].steps, 100);
    lft::expect_same_run(a[k], rk[k], b[k], rc[k]);
    some_bits_differ = some_bits_differ || !at::equal(a[k].test_f_delta, b[k].test_f_delta);
  }
  EXPECT_TRUE(some_bits_differ) << "both runs took the same path: the kernels were not used";
}
