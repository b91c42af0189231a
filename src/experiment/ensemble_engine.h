// What the engines that compute K members together share (experiment/engine.h): the members'
// weights as the rows of [K, P] tensors on one device, and the dynamics' parameter updates on a
// subset ks of them as [K', P] tensor operations (protocol section 4):
//   trial      v <- x v - (1 - x) g,  w <- w + dt v   (gradient flow: w <- w - dt g), keeping w, v
//   trial_exp  eab2's exponential step (dynamics/integrator.h)
//   restore    w, v <- those before the trial
// Two engines derive from it: the batched FC engine (experiment/engine.cpp) and the grouped CNN
// engine (experiment/cnn_ensemble.cpp). Also the host-side outputs of a member of a full-batch
// ensemble (HostOutputs), shared by the sequential and the grouped engines.
// Deliberately not: a network, the step rule, a public header (only engine.cpp and
// cnn_ensemble.cpp include it).
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "experiment/engine.h"

namespace lf {

class EnsembleEngineBase : public Engine {
 public:
  EnsembleEngineBase(FitSpec spec, int64_t P, at::TensorOptions opts);
  at::Tensor w(int64_t k) override { return W_[k]; }
  at::Tensor v(int64_t k) override { return V_[k]; }
  at::Tensor g(int64_t k) override { return G_[k]; }
  at::Tensor prev_w(int64_t k) override { return Wp_[k]; }
  at::Tensor w0(int64_t k) override { return W0_[k]; }
  at::Tensor g_prev(int64_t k) override { return history()[k]; }
  at::Tensor g_extrap(int64_t k) override {
    history();
    return Gx_[k];
  }
  void trial(const std::vector<int64_t>& ks, const std::vector<double>& x, const std::vector<double>& dt,
             bool momentum) override;
  void trial_exp(const std::vector<int64_t>& ks, const std::vector<ExpStep>& c) override;
  void restore(const std::vector<int64_t>& ks) override;

 protected:
  // Whether ks is every member, in order (then no gathers and scatters by index).
  bool everyone(const std::vector<int64_t>& ks) const;
  // A small host tensor on the device. On cuda through pinned memory and an asynchronous copy: a
  // copy from pageable memory would wait for the device to finish its queue, several times a step.
  at::Tensor upload(const at::Tensor& host) const;
  at::Tensor index(const std::vector<int64_t>& ks) const;  // [K'] long on the device
  at::Tensor column(const std::vector<double>& v) const;   // [K', 1] on the device, the weights' dtype
  at::Tensor& history();                                   // Gp_ (FitSpec::gradient_history)
  at::Tensor members(const std::vector<int64_t>& ks) const;  // W_'s rows ks [K', P]
  // The ChangeNorms of w - w0 of members ks (layers: where each layer sits in w), one transfer.
  std::vector<ChangeNorms> weight_changes(const std::vector<int64_t>& ks, const std::vector<ParamSlice>& layers) const;

  FitSpec spec_;
  at::TensorOptions opts_;
  at::Tensor W_, V_, G_, Wp_, Vp_, W0_;  // [K, P]
  at::Tensor Gp_, Gx_;                   // [K, P] eab2 (FitSpec::gradient_history)
};

// A full-batch member's outputs on the host (the sequential and the grouped engines): f now, f0
// at w0 and f_new of the last trial ([n] each), and the fit of the last forward's outputs.
struct HostOutputs {
  std::vector<double> f, f0, f_new;
  Fit fit;
  // The first forward's outputs (in f) become f0 too; the fit of f.
  Fit start(const FitSpec& spec, int64_t k);
  // Saved outputs (a resumed member): f and f0; the fit of f.
  Fit set(const FitSpec& spec, int64_t k, std::vector<double> f_now, std::vector<double> f_init);
  // The trial outputs (in f_new): df against f, their fit, Trial's host views.
  Trial trial(const FitSpec& spec, int64_t k);
};

}  // namespace lf
