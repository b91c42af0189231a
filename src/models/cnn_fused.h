// The fused CPU float64 kernels of the CNN of setup B (models/cnn.h): forward and backward of a
// block of images with dgemms over the whole block's positions in fixed chunks (models/blas.h;
// the chunk sizes in cnn_fused.cpp), instead of
// LibTorch's float64 conv2d (slow_conv2d: an im2col and a small GEMM per image, and again per
// image in the backward). Per convolution l (input z [r, H, W, C] channels-last, K = 25 C,
// N = r Ho Wo output positions, s = 1/sqrt(K)):
//   cols_l [N, K]  = im2col(z), columns in (kh, kw, c) order (contiguous runs of C channels)
//   a_l    [N, h]  = s cols_l W'_l^T + b_l   (W'_l [h, K]: W_l [h, C, 5, 5] permuted to (kh, kw, c))
//   z_l    [N, h]  = phi(a_l), phi'(a_l) kept          (one pass, bias before the GEMM)
// and the backward, from da_l = dL/da_l [N, h]:
//   dW'_l [h, K] = s da_l^T cols_l,  db_l = sum_N da_l,  dcols [N, K] = s da_l W'_l,
//   dz_{l-1} = col2im(dcols),  da_{l-1} = phi'(a_{l-1}) dz_{l-1}.
// Activations are channels-last ([r, H, W, h]), so the output [N, h] of one GEMM is the next
// layer's input as is. Buffers grow to the largest block kept and are reused across calls.
// The CPU only: on CUDA the trainer keeps cuDNN through at::conv2d (experiment/model.cpp).
// Deliberately not: autograd, other dtypes or devices, other architectures, the loss, threads of
// its own (products and elementwise passes run in fixed pieces on lazyfeat's pool, common/pool.h,
// the BLAS single-threaded inside).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "models/activation.h"
#include "models/cnn.h"

namespace lf {

class CNNFused {
 public:
  // threads: 1 runs everything on the caller; otherwise the pieces go to lazyfeat's thread pool
  // (common/pool.h), as the FC kernels' (1 where the BLAS's threads are not ours to set). The
  // numbers do not depend on it.
  CNNFused(const Activation& act, const CNNLayout& layout, int threads = 2);

  // f [r] = f(w, x) for x [r, C, H, W] (CPU float64). keep: all r images at once, remembering
  // what backward() needs (the buffers grow to r images); otherwise in blocks, keeping nothing.
  void forward(const CNNParams& p, const at::Tensor& x, double* f, bool keep);

  // grad += sum_i c[i] d f(w, x_i) / dw over the r images of the last forward(keep = true), at
  // the weights of that forward (p); grad has the layout's shapes (CNNLayout::views of a flat
  // contiguous buffer). Consumes the kept forward.
  void backward(const CNNParams& p, const double* c, CNNParams& grad);

  // Images kept by the last forward (0: none).
  int64_t kept() const { return kept_; }

 private:
  struct Layer {
    int64_t c_in = 0, hi = 0, wi = 0, ho = 0, wo = 0, stride = 1, k = 0;  // input and output sizes, k = 25 c_in
    double s = 1;                                                          // 1 / sqrt(k)
    at::Tensor cols, z, dphi, wp;  // [cap Ho Wo, k], [cap Ho Wo, h] twice, [h, k]
    int64_t positions() const { return ho * wo; }
  };
  void reserve(int64_t r, int64_t rows, int64_t cols);  // buffers for r images of rows x cols
  void run(const CNNParams& p, const at::Tensor& x, double* f, bool keep);  // r <= cap_ images
  Activation act_;
  CNNLayout lay_;
  int threads_;
  std::vector<Layer> layers_;
  at::Tensor xin_, pooled_, da_, db_, dwp_;  // input channels-last, [cap, h], two gradient buffers, [h, k]
  int64_t cap_ = 0, kept_ = 0, rows_ = 0, cols_ = 0;  // capacity in images, kept images, image size
};

}  // namespace lf
