// The observables of a run (protocol section 5) as the trainer records them:
//  - Fit: the loss side of one set of training outputs (alpha^2 L, training error, the
//    unsatisfied points, and dL/df on the points where it is non-zero);
//  - TestObserver: what a checkpoint measures from the weights (weight change, per layer too,
//    test error, output norms);
//  - zdot: the per-layer preactivation speed over one step of the dynamics.
// Deliberately not: when they are measured (experiment/member.h), where they go (store/).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <vector>

#include "dynamics/loss.h"
#include "experiment/model.h"
#include "experiment/train.h"

namespace lf {

struct Fit {
  double loss2 = kNaN;         // alpha^2 L
  double train_err = kNaN;     // fraction with F y <= 0
  int64_t unsatisfied = 0;     // alpha (f - f0) y < 1
  std::vector<int64_t> rows;   // points with a non-zero loss derivative
  std::vector<double> c;       // dL/df there: l'(m) y / (alpha n)
};
// out <- the fit of outputs f (with f0 at initialisation) to labels y; O(n).
void fit(const Loss& loss, double alpha, const std::vector<double>& f, const std::vector<double>& f0,
         const std::vector<double>& y, Fit& out);

// The squared norms of a member's weight change w - w0 that a checkpoint needs: per layer
// l (W_l and b_l together), then of the whole change (layers + 1 numbers).
using ChangeNorms = std::vector<double>;

class TestObserver {
 public:
  // layers: where each layer (W_l, b_l) sits in w (FCLayout::slices, CNNLayout::slices);
  // w0 [P] the initial weights (any device), y_test and f0_test [pte] CPU float64.
  TestObserver(std::vector<ParamSlice> layers, const at::Tensor& w0, std::vector<double> y_test, at::Tensor f0_test);
  // Fills c's weight_change, w0_norm, layer_change from sq (the engine's ChangeNorms of the
  // weights now) and, when pte > 0, test_err, output_norm, f_norm from the test outputs f_test
  // CPU float64: on all pte test points (kept in f_test()), or on its first f_test.size(0) points
  // only (the stochastic dynamics' intermediate checkpoints; f_test() keeps its previous value).
  void measure(const ChangeNorms& sq, const at::Tensor& f_test, Checkpoint& c);
  const at::Tensor& f_test() const { return f_test_; }  // [pte] at the last measure (f0 before)
  const at::Tensor& f0_test() const { return f0_test_; }

 private:
  std::vector<ParamSlice> layers_;
  at::Tensor f0_test_, f_test_;
  std::vector<double> y_test_;
  double w0_norm_ = 0;
  std::vector<double> w0_layer_norms_;
};

// ChangeNorms of each row of dw [K, P] (the weight changes of K members; layers: where each
// layer sits in w) in one transfer.
std::vector<ChangeNorms> change_norms(const std::vector<ParamSlice>& layers, const at::Tensor& dw);

// |dz/dt| per layer over the step from w_before to w_after of length dt (protocol section 5):
// rms over the points of x and the neurons of (pre_l(w_after) - pre_l(w_before)) / dt, for the
// preactivations l = 1..L and then the output f.
std::vector<double> measure_zdot(const FCLayout& lay, const at::Tensor& w_before, const at::Tensor& w_after,
                                 double dt, const at::Tensor& x, const Activation& act);

std::vector<double> to_vector(const at::Tensor& t);   // CPU float64 copy
at::Tensor to_tensor(const std::vector<double>& v);   // [n] CPU float64

}  // namespace lf
