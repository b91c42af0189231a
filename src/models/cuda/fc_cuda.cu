// CUDA kernels of models/fc_cuda.h (see there). Plain CUDA C++: no LibTorch header, so that this
// file builds with nvcc alone (its own static library in CMakeLists.txt).
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../fc_cuda.h"

namespace lf::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// One thread per value, a grid-stride loop; Index is 32-bit when K N H < 2^32 (the divisions by
// N H and H are then 32-bit: several times cheaper than 64-bit ones on the GPU).
template <typename Index>
__global__ void bias_softplus_kernel(const double* __restrict__ b, Index b_stride, double m, double* __restrict__ pre,
                                     double* __restrict__ z, Index total, Index NH, Index H, double beta,
                                     double threshold) {
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += Index(gridDim.x) * blockDim.x) {
    const Index k = i / NH, j = i % H;
    // m pre + b as two roundings (no fused multiply-add), as the composition m * pre + b.
    const double x = __dadd_rn(__dmul_rn(m, pre[i]), b[k * b_stride + j]);
    pre[i] = x;
    // ATen's softplus (its CUDA kernel, opmath double): the same expression, the same rounding.
    z[i] = (x * beta) > threshold ? x : ::log1p(::exp(x * beta)) / beta;
  }
}

}  // namespace

void bias_softplus(const double* b, int64_t b_stride, double m, double* pre, double* z, int64_t K, int64_t N,
                   int64_t H, double beta, double threshold, void* stream) {
  const int64_t total = K * N * H;
  if (total == 0) return;
  constexpr int kThreads = 256;
  // Enough blocks to fill the device several times over; the loop strides over the rest.
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 132 * 32);
  auto s = static_cast<cudaStream_t>(stream);
  const bool narrow = total < (int64_t(1) << 32) && K * b_stride < (int64_t(1) << 32);
  if (narrow) {
    bias_softplus_kernel<uint32_t><<<unsigned(blocks), kThreads, 0, s>>>(
        b, uint32_t(b_stride), m, pre, z, uint32_t(total), uint32_t(N * H), uint32_t(H), beta, threshold);
  } else {
    bias_softplus_kernel<uint64_t><<<unsigned(blocks), kThreads, 0, s>>>(
        b, uint64_t(b_stride), m, pre, z, uint64_t(total), uint64_t(N * H), uint64_t(H), beta, threshold);
  }
  check(cudaGetLastError(), "bias_softplus launch");
}

}  // namespace lf::cuda
