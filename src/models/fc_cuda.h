// Hand-written CUDA kernels of the batched FC engine (experiment/engine.cpp) on cuda, float64,
// for the passes over the ensemble's [K, n, h] activations that LibTorch's kernels make twice.
// Compiled (models/cuda/*.cu) only where CMake finds the CUDA toolkit and LibTorch has CUDA:
// then LAZYFEAT_WITH_CUDA_KERNELS is defined; this header has no CUDA types, so that the C++
// side compiles anywhere. Each kernel has its plain LibTorch composition next to it in
// tests/cuda_kernels.cpp, which it must equal.
// Deliberately not: the matrix products (cuBLAS's, through LibTorch), other dtypes, other
// activations (their LibTorch path stays).
#pragma once
#include <cstdint>

namespace lf::cuda {

// The forward epilogue of one layer, for K members at once, on the stream `stream` (a
// cudaStream_t), after the product pre = z_{l-1} W_l^T (cuBLAS, unscaled):
//   pre[k, i, j] <- m pre[k, i, j] + b[k * b_stride + j]          (scale and bias, in place,
//                   rounded as two operations: m pre, then + b)
//   z[k, i, j]   <- softplus_beta(pre[k, i, j])                   (ATen's formula: x when
//                   beta x > threshold, else log1p(exp(beta x)) / beta)
// pre, z: [K, N, H] contiguous float64 on the device; b: K rows of H float64 at stride b_stride
// (the biases inside the [K, P] weights). One pass: reads pre and b, writes pre and z, where
// baddbmm with a broadcast bias and at::softplus take two (the bias expanded to [K, N, H] first).
// Equals at::softplus(m * pre + b, beta, threshold) bit for bit (tests/cuda_kernels.cpp).
// Throws std::runtime_error on a launch error.
void bias_softplus(const double* b, int64_t b_stride, double m, double* pre, double* z, int64_t K, int64_t N,
                   int64_t H, double beta, double threshold, void* stream);

}  // namespace lf::cuda
