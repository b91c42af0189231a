#include "experiment/observables.h"

#include <c10/core/GradMode.h>

#include <cmath>

namespace lf {
namespace {

// Preactivations pre_1 .. pre_L [n, h] and the output f [n, 1] (CPU float64).
std::vector<at::Tensor> preactivations(const FCParams& p, const at::Tensor& x, const Activation& act) {
  std::vector<at::Tensor> out;
  at::Tensor z = x;
  for (int64_t l = 0; l <= p.L(); ++l) {
    double s = 1.0 / std::sqrt(double(p.W[l].size(1)));
    at::Tensor pre = at::addmm(p.b[l], z, p.W[l].t(), 1.0, s);
    out.push_back(pre);
    if (l < p.L()) z = act(pre);
  }
  return out;
}

at::Tensor cpu64(const at::Tensor& t) { return t.detach().to(at::kCPU, at::kDouble); }

}  // namespace

void fit(const Loss& loss, double alpha, const std::vector<double>& f, const std::vector<double>& f0,
         const std::vector<double>& y, Fit& out) {
  const size_t n = f.size();
  out.rows.clear();
  out.c.clear();
  double sum = 0;
  int64_t errs = 0, unsat = 0;
  const double cscale = 1.0 / (alpha * double(n));  // dL/df = l'(m) y / (alpha n), loss.h
  for (size_t i = 0; i < n; ++i) {
    double m = alpha * (f[i] - f0[i]) * y[i];  // margin F y
    sum += loss.value(m);
    errs += (m <= 0);
    unsat += (m < 1);
    double s = loss.slope(m);
    if (s != 0) {
      out.rows.push_back(int64_t(i));
      out.c.push_back(s * y[i] * cscale);
    }
  }
  out.loss2 = sum / double(n);
  out.train_err = double(errs) / double(n);
  out.unsatisfied = unsat;
}

namespace {

// Per layer, the squared norm of (W_l, b_l) in the flat w [P]: [layers] on w's device.
std::vector<at::Tensor> layer_squares(const std::vector<ParamSlice>& layers, const at::Tensor& w) {
  std::vector<at::Tensor> sq;
  for (const ParamSlice& s : layers)
    sq.push_back(w.narrow(0, s.w_offset, s.w_numel).pow(2).sum() + w.narrow(0, s.b_offset, s.b_numel).pow(2).sum());
  return sq;
}

}  // namespace

TestObserver::TestObserver(std::vector<ParamSlice> layers, const at::Tensor& w0, std::vector<double> y_test,
                           at::Tensor f0_test)
    : layers_(std::move(layers)), f0_test_(f0_test), f_test_(f0_test), y_test_(std::move(y_test)) {
  c10::NoGradGuard ng;
  w0_norm_ = w0.norm().item<double>();
  for (double s : to_vector(at::stack(layer_squares(layers_, cpu64(w0))))) w0_layer_norms_.push_back(std::sqrt(s));
}

std::vector<ChangeNorms> change_norms(const std::vector<ParamSlice>& layers, const at::Tensor& dw) {
  c10::NoGradGuard ng;
  std::vector<at::Tensor> sq;  // [K] each
  for (const ParamSlice& s : layers)
    sq.push_back(dw.narrow(1, s.w_offset, s.w_numel).pow(2).sum(1) + dw.narrow(1, s.b_offset, s.b_numel).pow(2).sum(1));
  sq.push_back(dw.pow(2).sum(1));
  const at::Tensor all = at::stack(sq, 1).to(at::kCPU, at::kDouble).contiguous();  // [K, layers + 1]: one transfer
  std::vector<ChangeNorms> out;
  const int64_t m = all.size(1);
  for (int64_t k = 0; k < all.size(0); ++k)
    out.emplace_back(all.data_ptr<double>() + k * m, all.data_ptr<double>() + (k + 1) * m);
  return out;
}

void TestObserver::measure(const ChangeNorms& s, const at::Tensor& f_test, Checkpoint& c) {
  c10::NoGradGuard ng;
  c.w0_norm = w0_norm_;
  c.weight_change = std::sqrt(s.back()) / w0_norm_;
  c.layer_change.clear();
  for (size_t l = 0; l < layers_.size(); ++l) c.layer_change.push_back(std::sqrt(s[l]) / w0_layer_norms_[l]);
  const int64_t pte = f_test.defined() ? f_test.size(0) : 0;
  if (pte == 0) return;
  if (pte == int64_t(y_test_.size())) f_test_ = f_test;
  const at::Tensor delta = f_test - f0_test_.narrow(0, 0, pte);  // f - f0 on the test points
  const double* dp = delta.data_ptr<double>();
  int64_t errs = 0;
  for (int64_t i = 0; i < pte; ++i) errs += (dp[i] * y_test_[i] <= 0);  // F y <= 0
  c.test_err = double(errs) / double(pte);
  c.output_norm = delta.pow(2).mean().sqrt().item<double>();
  c.f_norm = f_test.pow(2).mean().sqrt().item<double>();
}

std::vector<double> measure_zdot(const FCLayout& lay, const at::Tensor& w_before, const at::Tensor& w_after,
                                 double dt, const at::Tensor& x, const Activation& act) {
  c10::NoGradGuard ng;
  auto before = preactivations(lay.views(cpu64(w_before)), x, act);
  auto after = preactivations(lay.views(cpu64(w_after)), x, act);
  std::vector<double> out(lay.L + 1, 0.0);
  for (int64_t l = 0; l <= lay.L; ++l) out[l] = ((after[l] - before[l]) / dt).pow(2).mean().sqrt().item<double>();
  return out;
}

std::vector<double> to_vector(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}
at::Tensor to_tensor(const std::vector<double>& v) {
  return at::from_blob(const_cast<double*>(v.data()), {int64_t(v.size())}, at::TensorOptions().dtype(at::kDouble))
      .clone();
}

}  // namespace lf
