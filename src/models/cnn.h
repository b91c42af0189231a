// The convolutional network of setup B (protocol section 2), NTK parametrisation:
//   z_0 = x                                              [n, C, 28, 28]
//   z_l = phi( conv(z_{l-1}; W_{l-1} / sqrt(C_in 25), stride s_l, padding 1) + b_{l-1} ),
//         l = 1..4, 5x5 kernels, h channels, strides 2,1,2,1: 28 -> 13 -> 11 -> 5 -> 3
//   f   = W_4 . mean_positions(z_4) / sqrt(h) + b_4     (a scalar per point)
// Weights N(0,1), biases 0; the 1/sqrt(fan_in) stays in the forward pass.
// This header: the parameters, the seed-compatible initialisation (protocol section 8), the
// convolution (cnn_conv: two implementations), the plain autograd reference forward, and the
// layout of all parameters in one flat vector (the trainer's view, experiment/model.h).
// Deliberately not: the training step (experiment/), the NTK (ntk/ntk.h takes the per-layer
// pieces from cnn_forward_layers()).
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

#include "models/activation.h"
#include "models/params.h"

namespace lf {

constexpr int64_t kCnnConvs = 4;                              // protocol section 2
constexpr int64_t kCnnKernel = 5;                             // 5x5 convolutions
constexpr int64_t kCnnPadding = 1;
constexpr std::array<int64_t, 4> kCnnStrides = {2, 1, 2, 1};  // 28 -> 13 -> 11 -> 5 -> 3

// W[0..3]: [h, C_in, 5, 5] convolutions, W[4]: [1, h] output; b[0..3]: [h], b[4]: [1].
struct CNNParams : LayeredParams<CNNParams> {
  int64_t h() const { return W[0].size(0); }
  int64_t channels() const { return W[0].size(1); }
};

// All parameters in one flat vector, in CNNParams::flat() order: W_0 [h, C, 5, 5], b_0 [h],
// W_1 [h, h, 5, 5], b_1, W_2, b_2, W_3, b_3, W_4 [1, h], b_4 [1].
struct CNNLayout {
  int64_t channels = 0, h = 0;
  std::vector<std::vector<int64_t>> w_shape;  // 5 shapes
  std::vector<int64_t> w_offset, b_offset;    // 5 each
  int64_t size = 0;                           // total number of parameters
  CNNLayout() = default;
  CNNLayout(int64_t channels, int64_t h);
  int64_t fan_out(int64_t l) const { return w_shape[l][0]; }
  int64_t w_numel(int64_t l) const;
  CNNParams views(const at::Tensor& flat) const;  // views into flat [size] (any dtype/device)
  at::Tensor flatten(const CNNParams& p) const;   // a flat [size] copy
  std::vector<ParamSlice> slices() const;         // layer l = 0..4
};

// Protocol section 8: on a generator seeded like manual_seed(seed), for each convolution in
// order one randn(C_in, 5, 5) per output channel, then randn(h) for the output weights;
// float64, biases zero. Then cast/move to opts.
CNNParams cnn_init(int64_t channels, int64_t h, uint64_t seed,
                   at::TensorOptions opts = at::TensorOptions().dtype(at::kDouble));

// One convolution of the network (5x5 kernels, padding 1, stride st) in `groups` independent
// groups (an ensemble's members side by side in the channels; 1 for one network):
//   z [N, G C_in, H, W], W [G h, C_in, 5, 5] (already scaled), b [G h]  ->  [N, G h, H', W'].
// Two implementations, the same numbers to rounding, differentiable by autograd:
//   Direct: at::conv2d (cuDNN on cuda; on the H200 its float64 convolutions ran setup B's layers
//           at 0.7-0.9 TFLOP/s, under 2% of the card's float64 product rate: docs/benchmarks.md).
//   Im2col: the patches as columns, then one batched product over the groups (cuBLAS's float64
//           GEMM on cuda):  cols [N, G C_in 25, L] = im2col(z) -> [G, C_in 25, N L];
//           y [G, h, N L] = W [G, h, C_in 25] cols + b -> [N, G h, H', W'] (L = H' W').
//           Memory: the columns, N G C_in 25 L values (0.5 GB for 640 images at h = 32).
//           Slower on the H100 (2026-12-07): 37.5 steps/s against Direct's 136 for one network,
//           167 member-steps/s against 250 for 10 members (docs/benchmarks.md).
enum class CnnConv { Direct, Im2col };
// LAZYFEAT_CNN_CONV: "cudnn" (or unset: Direct), "im2col", or "cudnn-benchmark": Direct with
// cuDNN's benchmark mode on for the process (it times its algorithms at each new shape and keeps
// the fastest, so the summation order, and the last bits, may differ from run to run: for
// benchmarks, scripts/gpu-check.sh); UsageError for anything else.
CnnConv cnn_conv_wanted();
at::Tensor cnn_conv(const at::Tensor& z, const at::Tensor& W, const at::Tensor& b, int64_t st, int64_t groups,
                    CnnConv how);

// Reference forward, differentiable by autograd: x [n, C, H, W] -> f [n]. Its convolutions are
// cnn_conv's, as cnn_conv_wanted() says.
at::Tensor cnn_forward_reference(const CNNParams& p, const at::Tensor& x, const Activation& act);

// The forward pass with every layer's pieces kept, for the structured NTK:
// a[l] the pre-activations [n, h, H_l, W_l] of convolution l, z[l] its input (z[0] = x),
// pooled = mean over positions of phi(a[3]) [n, h], f [n].
struct CNNForward {
  std::vector<at::Tensor> z, a;
  at::Tensor pooled, f;
};
CNNForward cnn_forward_layers(const CNNParams& p, const at::Tensor& x, const Activation& act);

}  // namespace lf
