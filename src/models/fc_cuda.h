// Hand-written CUDA kernels of the batched FC engine (experiment/engine.cpp) on cuda, float64,
// for the passes over the ensemble's [K, n, h] activations that LibTorch's kernels make twice.
// Compiled (models/cuda/*.cu) only where CMake finds the CUDA toolkit and LibTorch has CUDA:
// then LAZYFEAT_WITH_CUDA_KERNELS is defined; this header has no CUDA types, so that the C++
// side compiles anywhere. Each kernel has its plain LibTorch composition next to it in
// tests/cuda_kernels.cpp, which it must equal.
// Deliberately not: the matrix products (cuBLAS's, through LibTorch; only the top layer's outer
// product is made here), other dtypes, other activations (their LibTorch path stays), the rule's
// decisions over [K] (LibTorch's small kernels: a CUDA graph replays them).
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
// z may be pre: then only z is written, over the product (the preactivation is not kept, and the
// backward takes phi' from z: softplus_backward_bias with from_z). Two passes instead of three.
// Throws std::runtime_error on a launch error.
void bias_softplus(const double* b, int64_t b_stride, double m, double* pre, double* z, int64_t K, int64_t N,
                   int64_t H, double beta, double threshold, void* stream);

// The backward's epilogue of one hidden layer, for K members at once, after the product
// gz = m_{l+1} gpre_{l+1} W_{l+1} (cuBLAS): the activation's derivative and the layer's bias
// gradient in one pass over [K, N, H] (LibTorch's softplus_backward and gpre.sum(1) take two):
//   gpre[k, i, j]         <- phi'(x[k, i, j]) gz[k, i, j]      (gpre may be gz: in place)
//   gb[k * gb_stride + j] <- sum_i gpre[k, i, j]                 (the bias gradient, [K, H] rows)
// a [K, N, H] is the layer's preactivation x (from_z false: ATen's softplus_backward, bit for bit:
// g when beta x > threshold, else g e / (e + 1), e = exp(beta x)) or its softplus z (from_z true:
// phi' = 1 when beta z > threshold, else -expm1(-beta z) = sigmoid(beta x), to rounding).
// The sums are deterministic: partial sums over chunks of rows in `work` (bias_work_size(K, N, H)
// float64 values on the device), then their sum over the chunks in order; they equal
// gpre.sum(1) to rounding (another order). Throws std::runtime_error on a launch error.
void softplus_backward_bias(const double* gz, const double* a, bool from_z, double* gpre, double* gb,
                            int64_t gb_stride, double* work, int64_t K, int64_t N, int64_t H, double beta,
                            double threshold, void* stream);

// The same for the layer below the output (fan-out 1), whose product is an outer product and is
// made here too (no [K, N, H] gz is written, nor read):
//   gz[k, i, j] = m c[k * N + i] w[k * w_stride + j]   (c [K, N] = dL/df; w the output layer's
//                                                        weights, [K, H] rows at w_stride)
// then gpre and gb as softplus_backward_bias. Equals at::baddbmm(., c [K, N, 1], w [K, 1, H], 0,
// m) followed by softplus_backward to rounding.
void outer_softplus_backward_bias(const double* c, const double* w, int64_t w_stride, double m, const double* a,
                                  bool from_z, double* gpre, double* gb, int64_t gb_stride, double* work, int64_t K,
                                  int64_t N, int64_t H, double beta, double threshold, void* stream);

// The float64 values of `work` that the two functions above need at these shapes.
int64_t bias_work_size(int64_t K, int64_t N, int64_t H);

// The bookkeeping of a round of the paper's rule (Engine::rounds), over the members' [K, P]
// parameters (rows contiguous, float64): one pass each where LibTorch's composition makes five
// (products, difference, where) or four (where, copy). live, acc, keep: [K] bool masks; x, dt:
// [K] float64. Throw std::runtime_error on a launch error.
//
// The trial step, on the members with live[k] (the others: Wt = W, Vt = V):
//   momentum (V given):  Vt = V x - G (1 - x),  Wt = W + Vt dt
//   gradient flow (V and Vt null):  Wt = W - G dt
// each product and sum rounded on its own (no fused multiply-add), 1 - x first: bit for bit the
// composition V * x - G * (1 - x), W + Vt * dt (tests/cuda_kernels.cpp).
void trial_step(const double* W, const double* V, const double* G, const double* x, const double* dt,
                const bool* live, double* Wt, double* Vt, int64_t K, int64_t P, void* stream);

// The accepted trials kept: G[k] <- Gk[k] where keep[k]; W[k] <- Wt[k] and (V given) V[k] <- Vt[k]
// where acc[k]; the other rows are not touched (not read, not written).
void keep_trials(const bool* acc, const bool* keep, const double* Gk, const double* Wt, const double* Vt, double* G,
                 double* W, double* V, int64_t K, int64_t P, void* stream);

}  // namespace lf::cuda
