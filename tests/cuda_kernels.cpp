// On the GPU (built only where LibTorch has CUDA and CMake found nvcc; CTest label `cuda`): each
// hand-written kernel of models/fc_cuda.h against its plain LibTorch composition, on fresh random
// inputs with the output poisoned first, and the batched engine with the kernels against the
// engine without them (LAZYFEAT_CUDA_KERNELS=0).
// Deliberately not: speed (lazyfeat bench ensemble --device cuda, scripts/gpu-check.sh).
#include <gtest/gtest.h>

#include <ATen/cuda/CUDAContext.h>

#include <cstdlib>
#include <limits>

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
  for (const Shape s : {Shape{1, 7, 3}, Shape{5, 300, 100}, Shape{3, 1001, 33}, Shape{40, 257, 64}}) {
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
