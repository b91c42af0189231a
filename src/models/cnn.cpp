// The CNN of setup B: parameters, seed-compatible init, reference forward (see cnn.h).
#include "models/cnn.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "common/error.h"

namespace lf {

CNNLayout::CNNLayout(int64_t channels_, int64_t h_) : channels(channels_), h(h_) {
  int64_t c_in = channels, off = 0;
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    w_shape.push_back({h, c_in, kCnnKernel, kCnnKernel});
    c_in = h;
  }
  w_shape.push_back({1, h});
  for (int64_t l = 0; l <= kCnnConvs; ++l) {
    w_offset.push_back(off);
    off += w_numel(l);
    b_offset.push_back(off);
    off += fan_out(l);
  }
  size = off;
}

int64_t CNNLayout::w_numel(int64_t l) const {
  int64_t n = 1;
  for (int64_t s : w_shape[l]) n *= s;
  return n;
}

CNNParams CNNLayout::views(const at::Tensor& flat) const {
  CNNParams p;
  for (int64_t l = 0; l <= kCnnConvs; ++l) {
    p.W.push_back(flat.narrow(0, w_offset[l], w_numel(l)).view(w_shape[l]));
    p.b.push_back(flat.narrow(0, b_offset[l], fan_out(l)));
  }
  return p;
}

at::Tensor CNNLayout::flatten(const CNNParams& p) const {
  std::vector<at::Tensor> parts;
  for (const at::Tensor& t : p.flat()) parts.push_back(t.reshape({-1}));
  return at::cat(parts);
}

std::vector<ParamSlice> CNNLayout::slices() const {
  std::vector<ParamSlice> out;
  for (int64_t l = 0; l <= kCnnConvs; ++l) out.push_back({w_offset[l], w_numel(l), b_offset[l], fan_out(l)});
  return out;
}

CNNParams cnn_init(int64_t channels, int64_t h, uint64_t seed, at::TensorOptions opts) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto cpu = at::TensorOptions().dtype(at::kDouble);
  CNNParams p;
  int64_t c_in = channels;
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    // Protocol section 8: one randn(C_in, 5, 5) per output channel (PyTorch's sampler fills
    // blocks of 16 values, so a single randn(h, C_in, 5, 5) would draw a different stream).
    std::vector<at::Tensor> rows;
    for (int64_t c = 0; c < h; ++c) rows.push_back(at::randn({c_in, kCnnKernel, kCnnKernel}, gen, cpu));
    p.W.push_back(at::stack(rows));  // [h, C_in, 5, 5]
    p.b.push_back(at::zeros({h}, cpu));
    c_in = h;
  }
  p.W.push_back(at::randn({h}, gen, cpu).view({1, h}));
  p.b.push_back(at::zeros({1}, cpu));
  return p.to(opts);
}

CnnConv cnn_conv_wanted() {
  const char* e = std::getenv("LAZYFEAT_CNN_CONV");
  const std::string v = e ? e : "";
  if (v.empty() || v == "cudnn") return CnnConv::Direct;
  if (v == "cudnn-benchmark") {  // for the whole process: cuDNN times its algorithms at each new shape
    at::globalContext().setBenchmarkCuDNN(true);
    return CnnConv::Direct;
  }
  require(v == "im2col", "LAZYFEAT_CNN_CONV must be cudnn, cudnn-benchmark or im2col, not '" + v + "'");
  return CnnConv::Im2col;
}

at::Tensor cnn_conv(const at::Tensor& z, const at::Tensor& W, const at::Tensor& b, int64_t st, int64_t groups,
                    CnnConv how) {
  if (how == CnnConv::Direct) return at::conv2d(z, W, b, {st, st}, {kCnnPadding, kCnnPadding}, {1, 1}, groups);
  const int64_t N = z.size(0), G = groups, h = W.size(0) / G, c = W.size(1) * kCnnKernel * kCnnKernel;
  const int64_t Ho = (z.size(2) + 2 * kCnnPadding - kCnnKernel) / st + 1;
  const int64_t Wo = (z.size(3) + 2 * kCnnPadding - kCnnKernel) / st + 1;
  const at::Tensor cols = at::im2col(z, {kCnnKernel, kCnnKernel}, {1, 1}, {kCnnPadding, kCnnPadding}, {st, st})
                              .view({N, G, c, Ho * Wo})
                              .permute({1, 2, 0, 3})
                              .reshape({G, c, N * Ho * Wo});                              // [G, c, N L]
  const at::Tensor y = at::baddbmm(b.view({G, h, 1}), W.reshape({G, h, c}), cols);          // [G, h, N L]
  return y.view({G, h, N, Ho, Wo}).permute({2, 0, 1, 3, 4}).reshape({N, G * h, Ho, Wo});
}

CNNForward cnn_forward_layers(const CNNParams& p, const at::Tensor& x, const Activation& act) {
  CNNForward r;
  at::Tensor z = x;
  const CnnConv how = cnn_conv_wanted();
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    const double fan_in = double(p.W[l].size(1) * kCnnKernel * kCnnKernel);  // C_in * 25
    r.z.push_back(z);
    auto a = cnn_conv(z, p.W[l] / std::sqrt(fan_in), p.b[l], kCnnStrides[l], 1, how);
    r.a.push_back(a);
    z = act(a);
  }
  r.pooled = z.mean({2, 3});  // [n, h]
  const double h = double(p.h());
  r.f = at::addmm(p.b[kCnnConvs], r.pooled, p.W[kCnnConvs].t(), 1.0, 1.0 / std::sqrt(h)).squeeze(1);
  return r;
}

at::Tensor cnn_forward_reference(const CNNParams& p, const at::Tensor& x, const Activation& act) {
  return cnn_forward_layers(p, x, act).f;
}

}  // namespace lf
