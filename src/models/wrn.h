// The Wide ResNet 28 of protocol section 2, without batch normalisation, NTK parametrisation.
// Width factor k (the run's --h). Convolutions conv(z; W / sqrt(C_in k_s^2), stride, padding) + b:
//   z   = conv_stem(x)                                   3x3, C -> 16, stride 1      [n, 16, H, W]
//   3 stages of 4 basic blocks, widths 16k, 32k, 64k, stage strides 1, 2, 2:
//     block(z) = cos(45 deg) s(z) + sin(45 deg) c2( phi( c1( phi(z) ) ) )
//       c1: 3x3, C_in -> C_out, stride 1;  c2: 3x3, C_out -> C_out, the stage stride (first block)
//       s:  identity, or a 1x1 convolution C_in -> C_out (padding 0, the stage stride) wherever
//           the shape changes (stride 2 or C_in != C_out)
//   f   = W_head . mean_positions(phi(z)) / sqrt(64k) + b_head        (a scalar per point)
// All 3x3 convolutions have padding 1. Weights N(0,1), biases 0. On 28x28 MNIST the spatial sizes
// are 28 -> 28 -> 14 -> 7; on 32x32 CIFAR 32 -> 32 -> 16 -> 8.
// This header: the layout (with every parameter's place in one flat vector, the trainer's view,
// experiment/model.h), the parameters, the seed-compatible initialisation (protocol section 8
// "Wide ResNet weights") and the reference forward, differentiable by autograd, with every
// convolution's input and output kept for the structured NTK (ntk/ntk.h).
// Deliberately not: other depths or mixing angles (the paper used 28 and 45 degrees), batch norm,
// training (the experiment layer), the NTK.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <vector>

#include "models/activation.h"
#include "models/params.h"

namespace lf {

constexpr int64_t kWrnDepth = 28;
constexpr int64_t kWrnBlocksPerStage = (kWrnDepth - 4) / 6;  // 4
constexpr int64_t kWrnStemChannels = 16;
constexpr std::array<int64_t, 3> kWrnStageWidths = {16, 32, 64};  // times the width factor
constexpr std::array<int64_t, 3> kWrnStageStrides = {1, 2, 2};
constexpr double kWrnMixAngleDeg = 45.0;

// One convolution: C_in -> C_out, size x size kernel.
struct WRNConv {
  int64_t in, out, size, stride, padding;
  int64_t fan_in() const { return in * size * size; }
};
// One basic block: indices into WRNLayout::convs; shortcut -1 = the identity.
struct WRNBlock {
  int64_t c1, c2, shortcut;
};
struct WRNParams;

// The convolutions in draw order (protocol section 8): the stem, then per block c1, c2 and the
// shortcut convolution when there is one. Layer i < convs.size() is convolution i, the last
// layer (index convs.size()) the head. In one flat vector, in WRNParams::flat() order:
// W_0 [C_out, C_in, s, s], b_0 [C_out], W_1, b_1, ..., W_head [1, 64k], b_head [1].
struct WRNLayout {
  int64_t channels = 0, width = 0;
  std::vector<WRNConv> convs;
  std::vector<WRNBlock> blocks;
  int64_t head_in = 0;                      // 64k
  std::vector<int64_t> w_offset, b_offset;  // per layer (the convolutions, then the head)
  int64_t size = 0;                         // total number of parameters
  int64_t layers() const { return int64_t(convs.size()) + 1; }
  std::vector<int64_t> w_shape(int64_t l) const;
  int64_t fan_out(int64_t l) const { return w_shape(l)[0]; }
  WRNParams views(const at::Tensor& flat) const;  // views into flat [size] (any dtype/device)
  at::Tensor flatten(const WRNParams& p) const;   // a flat [size] copy
  std::vector<ParamSlice> slices() const;         // per layer
};
WRNLayout wrn_layout(int64_t channels, int64_t width);

// W[i], b[i] for the convolutions of wrn_layout (W[i]: [C_out, C_in, s, s], b[i]: [C_out]), then
// the head W: [1, 64k], b: [1].
struct WRNParams : LayeredParams<WRNParams> {
  int64_t width() const { return W.back().size(1) / kWrnStageWidths[2]; }
  int64_t channels() const { return W[0].size(1); }
  WRNLayout layout() const { return wrn_layout(channels(), width()); }
};

// Protocol section 8: on a generator seeded like manual_seed(seed), one float64
// randn(C_out, C_in, s, s) per convolution in layout order, then randn(1, 64k) for the head;
// biases zero without consuming random numbers. Then cast/move to opts.
WRNParams wrn_init(int64_t channels, int64_t width, uint64_t seed,
                   at::TensorOptions opts = at::TensorOptions().dtype(at::kDouble));

// The forward pass with every convolution's pieces kept: z[i] its input, a[i] its output
// (bias included) [n, C_out, H_i, W_i]; pooled = mean over positions of phi(last block) [n, 64k];
// f [n]. Differentiable by autograd.
struct WRNForward {
  std::vector<at::Tensor> z, a;
  at::Tensor pooled, f;
};
WRNForward wrn_forward_layers(const WRNParams& p, const at::Tensor& x, const Activation& act);

// Reference forward: x [n, C, H, W] -> f [n].
at::Tensor wrn_forward_reference(const WRNParams& p, const at::Tensor& x, const Activation& act);

}  // namespace lf
