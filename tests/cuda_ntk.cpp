// On the GPU (built only where LibTorch has CUDA; CTest label `cuda`): the empirical NTK on cuda
// (both methods, FC, CNN and the wide ResNet) against the same kernel on the CPU, and a cuda
// run's kernel measurements (experiment/kernels.h) against the CPU run's.
// Deliberately not: speed (lazyfeat bench ntk --device cuda).
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "models/cnn.h"
#include "models/fc.h"
#include "models/wrn.h"
#include "ntk/ntk.h"
#include "testing.h"

using namespace lf;

namespace {

const auto kCpu = at::TensorOptions().dtype(at::kDouble).device(at::kCPU);
const auto kGpu = at::TensorOptions().dtype(at::kDouble).device(at::kCUDA);

// max |a - b| / max |b| over the entries of two Grams.
double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(kCpu) - b.to(kCpu)).abs().max().item<double>() / b.to(kCpu).abs().max().item<double>();
}

}  // namespace

TEST(Cuda, NtkOnCudaEqualsTheCpuKernel) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  const Activation act = Activation::make("softplus");
  at::manual_seed(1);
  {
    SCOPED_TRACE("fc");
    const at::Tensor x = at::randn({300, 10}, kCpu);
    const Net cpu = Net::fc(fc_init(10, 32, 3, 0), act), gpu = cpu.to(kGpu);
    const at::Tensor K = ntk(cpu, x);
    EXPECT_LT(rel(ntk(gpu, x.to(kGpu)), K), 1e-12);
    NtkOptions jac;
    jac.method = NtkMethod::Jacobian;
    EXPECT_LT(rel(ntk(gpu, x.narrow(0, 0, 40).to(kGpu), jac), K.narrow(0, 0, 40).narrow(1, 0, 40)), 1e-12);
  }
  const at::Tensor img = at::randn({12, 1, 28, 28}, kCpu);
  for (const char* arch : {"cnn", "wrn"}) {
    SCOPED_TRACE(arch);
    const Net cpu = std::string(arch) == "cnn" ? Net::cnn(cnn_init(1, 4, 0), Activation::make("relu"))
                                               : Net::wrn(wrn_init(1, 1, 0), Activation::make("relu"));
    const Net gpu = cpu.to(kGpu);
    EXPECT_LT(rel(ntk(gpu, img.to(kGpu)), ntk(cpu, img)), 1e-11);
  }
}

// The members' kernels batched on cuda (ntk_members: one batched forward and backward, the Grams
// stacked over members and layers) against each network's kernel on the CPU.
TEST(Cuda, MembersNtkOnCudaEqualsEachCpuKernel) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  at::manual_seed(3);
  const at::Tensor x = at::randn({200, 10}, kCpu);
  std::vector<Net> cpu, gpu;
  for (uint64_t seed : {0, 1, 2}) {
    cpu.push_back(Net::fc(fc_init(10, 32, 3, seed), Activation::make("softplus")));
    gpu.push_back(cpu.back().to(kGpu));
  }
  const at::Tensor K = ntk_members(gpu, x.to(kGpu));
  for (size_t k = 0; k < cpu.size(); ++k) EXPECT_LT(rel(K[k], ntk(cpu[k], x)), 1e-12) << "member " << k;
}

// A run on cuda measures its kernels on the GPU: the same statistics and frozen-kernel run as the
// CPU run's (both from dt = 1e-4: see cuda_engine.cpp).
TEST(Cuda, RunKernelsOnCudaEqualTheCpuRunsKernels) {
  ASSERT_TRUE(at::hasCUDA()) << "this test needs a CUDA device";
  Dataset d = lft::synthetic(60, 40, 5);
  auto cfg = [](const char* device) {
    RunConfig c;
    c.h = 16;
    c.L = 2;
    c.ptr = 60;
    c.pte = 40;
    c.sqrt_h_alpha = 1.0;
    c.max_steps = 300;
    c.dt0 = 1e-4;
    c.delta_kernel = true;
    c.init_kernel = true;
    c.device = device;
    finalize(c);
    return c;
  };
  const RunResult a = train_run(cfg("cuda"), d, lft::quiet()), b = train_run(cfg("cpu"), d, lft::quiet());
  ASSERT_TRUE(a.kernel.is_object() && b.kernel.is_object());
  EXPECT_NEAR(a.kernel_change, b.kernel_change, 1e-9 * std::fabs(b.kernel_change));
  const double fa = a.kernel["init"]["frobenius"].get<double>(), fb = b.kernel["init"]["frobenius"].get<double>();
  EXPECT_NEAR(fa, fb, 1e-12 * fb);
  // The frozen-kernel run's products ran on the GPU (ntk/frozen.cpp): the same trajectory.
  const nlohmann::json &ra = a.kernel["init_kernel_run"], &rb = b.kernel["init_kernel_run"];
  EXPECT_EQ(ra["test_err"], rb["test_err"]);
  EXPECT_EQ(ra["steps"], rb["steps"]);
  EXPECT_NEAR(ra["t"].get<double>(), rb["t"].get<double>(), 1e-9 * rb["t"].get<double>());
}
