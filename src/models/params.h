// The parameters of a layered network: one weight tensor and one bias vector per layer, in
// forward order. FCParams (models/fc.h), CNNParams (models/cnn.h) and WRNParams (models/wrn.h)
// are these plus their shape accessors. Deliberately not: shapes, initialisation (each network's own).
#pragma once
#include <ATen/ATen.h>

#include <vector>

namespace lf {

// Where layer l's weight and bias sit in a flat parameter vector [P] (FCLayout, CNNLayout, WRNLayout):
// the observables' per-layer slices (protocol section 5: theta_l = (W_l, b_l)).
struct ParamSlice {
  int64_t w_offset = 0, w_numel = 0, b_offset = 0, b_numel = 0;
};

template <class Derived>
struct LayeredParams {
  std::vector<at::Tensor> W;  // W[l], forward order
  std::vector<at::Tensor> b;  // b[l], forward order

  Derived clone() const { return map([](const at::Tensor& t) { return t.clone(); }); }
  Derived to(at::TensorOptions opts) const { return map([&](const at::Tensor& t) { return t.to(opts); }); }
  // All parameters in the order W_0, b_0, W_1, b_1, ...
  std::vector<at::Tensor> flat() const {
    std::vector<at::Tensor> out;
    for (size_t l = 0; l < W.size(); ++l) {
      out.push_back(W[l]);
      out.push_back(b[l]);
    }
    return out;
  }

 private:
  template <class F>
  Derived map(F f) const {
    Derived p;
    for (const auto& t : W) p.W.push_back(f(t));
    for (const auto& t : b) p.b.push_back(f(t));
    return p;
  }
};

}  // namespace lf
