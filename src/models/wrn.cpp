// The Wide ResNet 28 without batch norm: layout, seed-compatible init, forward (see wrn.h).
#include "models/wrn.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <cmath>

#include "common/error.h"

namespace lf {

WRNLayout wrn_layout(int64_t channels, int64_t width) {
  require(channels >= 1 && width >= 1, "the wide ResNet needs >= 1 input channel and width factor >= 1");
  WRNLayout L;
  L.convs.push_back({channels, kWrnStemChannels, 3, 1, 1});  // the stem
  int64_t in = kWrnStemChannels;
  for (size_t s = 0; s < kWrnStageWidths.size(); ++s) {
    const int64_t out = kWrnStageWidths[s] * width;
    for (int64_t j = 0; j < kWrnBlocksPerStage; ++j) {
      const int64_t stride = j == 0 ? kWrnStageStrides[s] : 1;
      WRNBlock b;
      b.c1 = int64_t(L.convs.size());
      L.convs.push_back({in, out, 3, 1, 1});
      b.c2 = int64_t(L.convs.size());
      L.convs.push_back({out, out, 3, stride, 1});
      b.shortcut = -1;
      if (stride != 1 || in != out) {
        b.shortcut = int64_t(L.convs.size());
        L.convs.push_back({in, out, 1, stride, 0});
      }
      L.blocks.push_back(b);
      in = out;
    }
  }
  L.head_in = in;
  L.channels = channels;
  L.width = width;
  int64_t off = 0;
  for (int64_t l = 0; l < L.layers(); ++l) {
    int64_t numel = 1;
    for (int64_t s : L.w_shape(l)) numel *= s;
    L.w_offset.push_back(off);
    off += numel;
    L.b_offset.push_back(off);
    off += L.fan_out(l);
  }
  L.size = off;
  return L;
}

std::vector<int64_t> WRNLayout::w_shape(int64_t l) const {
  if (l == int64_t(convs.size())) return {1, head_in};
  const WRNConv& c = convs.at(size_t(l));
  return {c.out, c.in, c.size, c.size};
}

WRNParams WRNLayout::views(const at::Tensor& flat) const {
  WRNParams p;
  for (int64_t l = 0; l < layers(); ++l) {
    p.W.push_back(flat.narrow(0, w_offset[l], b_offset[l] - w_offset[l]).view(w_shape(l)));
    p.b.push_back(flat.narrow(0, b_offset[l], fan_out(l)));
  }
  return p;
}

at::Tensor WRNLayout::flatten(const WRNParams& p) const {
  std::vector<at::Tensor> parts;
  for (const at::Tensor& t : p.flat()) parts.push_back(t.reshape({-1}));
  return at::cat(parts);
}

std::vector<ParamSlice> WRNLayout::slices() const {
  std::vector<ParamSlice> out;
  for (int64_t l = 0; l < layers(); ++l)
    out.push_back({w_offset[l], b_offset[l] - w_offset[l], b_offset[l], fan_out(l)});
  return out;
}

WRNParams wrn_init(int64_t channels, int64_t width, uint64_t seed, at::TensorOptions opts) {
  const WRNLayout L = wrn_layout(channels, width);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto cpu = at::TensorOptions().dtype(at::kDouble);
  WRNParams p;
  for (const WRNConv& c : L.convs) {
    p.W.push_back(at::randn({c.out, c.in, c.size, c.size}, gen, cpu));  // one call per convolution
    p.b.push_back(at::zeros({c.out}, cpu));
  }
  p.W.push_back(at::randn({1, L.head_in}, gen, cpu));
  p.b.push_back(at::zeros({1}, cpu));
  return p.to(opts);
}

WRNForward wrn_forward_layers(const WRNParams& p, const at::Tensor& x, const Activation& act) {
  const WRNLayout L = p.layout();
  require(p.W.size() == L.convs.size() + 1, "wide ResNet parameters do not match its layout");
  require(x.dim() == 4 && x.size(1) == p.channels(), "the wide ResNet takes images [n, C, H, W]");
  WRNForward r;
  r.z.resize(L.convs.size());
  r.a.resize(L.convs.size());
  auto conv = [&](int64_t i, const at::Tensor& in) {
    const WRNConv& c = L.convs[i];
    r.z[i] = in;
    // W * (1 / sqrt(fan_in)), the published order of the scaling (not W / sqrt(fan_in)).
    r.a[i] = at::conv2d(in, p.W[i] * (1.0 / std::sqrt(double(c.fan_in()))), p.b[i], {c.stride, c.stride},
                        {c.padding, c.padding});
    return r.a[i];
  };
  // The mixing weights as the published code evaluated them: a = 45 pi / 180, cos(a), sin(a)
  // (they differ in the last bit).
  const double angle = kWrnMixAngleDeg * M_PI / 180.0;
  const double cs = std::cos(angle), sn = std::sin(angle);
  at::Tensor z = conv(0, x);
  for (const WRNBlock& b : L.blocks) {
    at::Tensor out = conv(b.c2, act(conv(b.c1, act(z))));
    at::Tensor cut = b.shortcut >= 0 ? conv(b.shortcut, z) : z;
    z = cut * cs + out * sn;
  }
  r.pooled = act(z).mean({2, 3});  // [n, 64k]
  r.f = at::addmm(p.b.back(), r.pooled, (p.W.back() * (1.0 / std::sqrt(double(L.head_in)))).t()).squeeze(1);
  return r;
}

at::Tensor wrn_forward_reference(const WRNParams& p, const at::Tensor& x, const Activation& act) {
  return wrn_forward_layers(p, x, act).f;
}

}  // namespace lf
