#include "experiment/engine.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <cstring>

#include "common/error.h"
#include "dynamics/momentum.h"
#include "experiment/observables.h"
#include "models/fc.h"

namespace lf {
namespace {

class SequentialEngine final : public Engine {
 public:
  SequentialEngine(int64_t K, bool fused, const Activation& act, const NetLayout& lay, const at::Tensor& x_train,
                   at::TensorOptions opts)
      : fused_(fused && lay.arch == "fc"), n_(x_train.size(0)) {
    for (int64_t k = 0; k < K; ++k) {
      models_.push_back(make_model(fused, act, lay, x_train, opts));
      v_.push_back(at::zeros_like(models_.back()->w));
      w_prev_.push_back(at::empty_like(models_.back()->w));
      v_prev_.push_back(at::empty_like(models_.back()->w));
    }
  }
  at::Tensor w(int64_t k) override { return models_.at(k)->w; }
  at::Tensor v(int64_t k) override { return v_.at(k); }
  at::Tensor g(int64_t k) override { return models_.at(k)->g; }
  at::Tensor prev_w(int64_t k) override { return w_prev_.at(k); }

  void trial(const std::vector<int64_t>& ks, const std::vector<double>& x, const std::vector<double>& dt,
             bool momentum) override {
    c10::NoGradGuard ng;
    for (size_t i = 0; i < ks.size(); ++i) {
      Model& m = *models_[ks[i]];
      at::Tensor &v = v_[ks[i]], &wp = w_prev_[ks[i]], &vp = v_prev_[ks[i]];
      if (m.raw()) {  // one pass over w, v, g (dynamics/momentum.h)
        trial_step(x[i], 1.0 - x[i], dt[i], momentum, m.w.data_ptr<double>(), v.data_ptr<double>(),
                   m.g.data_ptr<double>(), m.w.numel(), wp.data_ptr<double>(), vp.data_ptr<double>());
      } else {  // the same arithmetic as tensor ops (any dtype, any device)
        wp.copy_(m.w);
        vp.copy_(v);
        if (momentum) {
          v.mul_(x[i]).sub_(m.g, 1.0 - x[i]);  // v <- x v - (1 - x) g
          m.w.add_(v, dt[i]);                  // w <- w + dt v
        } else {
          m.w.sub_(m.g, dt[i]);  // gradient flow
        }
      }
    }
  }
  void forward(const std::vector<int64_t>& ks, std::vector<std::vector<double>>& f) override {
    f.resize(ks.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      f[i].resize(size_t(n_));
      models_[ks[i]]->forward_train(f[i].data());
    }
  }
  void restore(const std::vector<int64_t>& ks) override {
    c10::NoGradGuard ng;
    for (int64_t k : ks) {
      models_[k]->w.copy_(w_prev_[k]);
      v_[k].copy_(v_prev_[k]);
    }
  }
  void gradient(const std::vector<int64_t>& ks, const std::vector<const Fit*>& fits) override {
    for (size_t i = 0; i < ks.size(); ++i) models_[ks[i]]->gradient(fits[i]->rows, fits[i]->c);
  }
  void forward_rows(int64_t k, const std::vector<int64_t>& rows, std::vector<double>& f) override {
    f.resize(rows.size());
    models_.at(k)->forward_rows(rows, f.data());
  }
  void gradient_rows(int64_t k, const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    models_.at(k)->gradient_rows(rows, c);
  }
  at::Tensor evaluate(int64_t k, const at::Tensor& x) override { return models_.at(k)->evaluate(x); }
  std::string name() const override { return fused_ ? "fused" : "reference"; }

 private:
  bool fused_;
  int64_t n_;
  std::vector<std::unique_ptr<Model>> models_;
  std::vector<at::Tensor> v_, w_prev_, v_prev_;
};

class BatchedEngine final : public Engine {
 public:
  BatchedEngine(int64_t K, const Activation& act, const FCLayout& lay, const at::Tensor& x_train, at::TensorOptions opts)
      : act_(act), lay_(lay), opts_(opts), x_(x_train.to(opts)), n_(x_train.size(0)) {
    W_ = at::zeros({K, lay.size}, opts);
    V_ = at::zeros_like(W_);
    G_ = at::zeros_like(W_);
    Wp_ = at::zeros_like(W_);
    Vp_ = at::zeros_like(W_);
  }
  at::Tensor w(int64_t k) override { return W_[k]; }
  at::Tensor v(int64_t k) override { return V_[k]; }
  at::Tensor g(int64_t k) override { return G_[k]; }
  at::Tensor prev_w(int64_t k) override { return Wp_[k]; }

  void trial(const std::vector<int64_t>& ks, const std::vector<double>& x, const std::vector<double>& dt,
             bool momentum) override {
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    at::Tensor idx = index(ks);
    at::Tensor W = W_.index_select(0, idx), V = V_.index_select(0, idx), G = G_.index_select(0, idx);  // [K', P]
    Wp_.index_copy_(0, idx, W);
    Vp_.index_copy_(0, idx, V);
    at::Tensor dts = column(dt);
    if (momentum) {
      std::vector<double> y(x.size());
      for (size_t i = 0; i < x.size(); ++i) y[i] = 1.0 - x[i];
      at::Tensor Vn = V * column(x) - G * column(y);  // v <- x v - (1 - x) g
      V_.index_copy_(0, idx, Vn);
      W_.index_copy_(0, idx, W + Vn * dts);           // w <- w + dt v
    } else {
      W_.index_copy_(0, idx, W - G * dts);  // gradient flow
    }
  }
  void forward(const std::vector<int64_t>& ks, std::vector<std::vector<double>>& f) override {
    f.resize(ks.size());
    last_ks_ = ks;
    if (ks.empty()) return;
    c10::AutoGradMode on(true);
    leaf_ = W_.index_select(0, index(ks)).detach().requires_grad_(true);  // [K', P]
    const int64_t K = leaf_.size(0);
    at::Tensor z = x_.unsqueeze(0).expand({K, n_, lay_.d});  // [K', n, d]
    for (int64_t l = 0; l <= lay_.L; ++l) {
      const int64_t fo = lay_.fan_out(l), fi = lay_.fan_in(l);
      at::Tensor W = leaf_.narrow(1, lay_.w_offset[l], fo * fi).view({K, fo, fi});  // [K', fo, fi]
      at::Tensor b = leaf_.narrow(1, lay_.b_offset[l], fo).view({K, 1, fo});        // [K', 1, fo]
      at::Tensor pre = at::baddbmm(b, z, W.transpose(1, 2), 1.0, 1.0 / std::sqrt(double(fi)));  // [K', n, fo]
      z = l < lay_.L ? act_(pre) : pre;
    }
    f_graph_ = z.squeeze(2);  // [K', n]
    at::Tensor fc = f_graph_.detach().to(at::kCPU, at::kDouble).contiguous();
    for (int64_t i = 0; i < K; ++i) f[i].assign(fc.data_ptr<double>() + i * n_, fc.data_ptr<double>() + (i + 1) * n_);
  }
  void restore(const std::vector<int64_t>& ks) override {
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    at::Tensor idx = index(ks);
    W_.index_copy_(0, idx, Wp_.index_select(0, idx));
    V_.index_copy_(0, idx, Vp_.index_select(0, idx));
  }
  void gradient(const std::vector<int64_t>& ks, const std::vector<const Fit*>& fits) override {
    if (ks.empty()) return;
    const int64_t K = int64_t(last_ks_.size());
    at::Tensor C = at::zeros({K, n_}, at::TensorOptions().dtype(at::kDouble));  // dL/df of each member
    std::vector<int64_t> pos;
    for (size_t i = 0; i < ks.size(); ++i) {
      const auto it = std::find(last_ks_.begin(), last_ks_.end(), ks[i]);
      require(it != last_ks_.end(), "batched engine: a gradient of a member that was not in the last forward");
      const int64_t p = int64_t(it - last_ks_.begin());
      pos.push_back(p);
      double* c = C.data_ptr<double>() + p * n_;
      for (size_t r = 0; r < fits[i]->rows.size(); ++r) c[fits[i]->rows[r]] = fits[i]->c[r];
    }
    {
      c10::AutoGradMode on(true);
      (f_graph_ * C.to(opts_)).sum().backward();
    }
    c10::NoGradGuard ng;
    G_.index_copy_(0, index(ks), leaf_.grad().index_select(0, index(pos)));
    leaf_ = at::Tensor();
    f_graph_ = at::Tensor();
  }
  void forward_rows(int64_t, const std::vector<int64_t>&, std::vector<double>&) override { refuse_batches(); }
  void gradient_rows(int64_t, const std::vector<int64_t>&, const std::vector<double>&) override { refuse_batches(); }
  at::Tensor evaluate(int64_t k, const at::Tensor& x) override {
    c10::NoGradGuard ng;
    at::Tensor out = at::empty({x.size(0)}, at::TensorOptions().dtype(at::kDouble));
    FCParams p = lay_.views(W_[k]);
    for (int64_t s = 0; s < x.size(0); s += 8192) {
      const int64_t r = std::min<int64_t>(8192, x.size(0) - s);
      out.narrow(0, s, r).copy_(fc_forward_reference(p, x.narrow(0, s, r).to(opts_), act_).to(at::kCPU));
    }
    return out;
  }
  std::string name() const override { return "batched"; }

 private:
  [[noreturn]] static void refuse_batches() {
    throw UsageError("the batched engine trains full-batch fc ensembles only (not the stochastic dynamics)");
  }
  at::Tensor index(const std::vector<int64_t>& ks) const {
    return at::tensor(ks, at::TensorOptions().dtype(at::kLong)).to(opts_.device());
  }
  at::Tensor column(const std::vector<double>& v) const {  // [K', 1] on the device, the weights' dtype
    return at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(opts_).unsqueeze(1);
  }

  Activation act_;
  FCLayout lay_;
  at::TensorOptions opts_;
  at::Tensor x_;
  int64_t n_;
  at::Tensor W_, V_, G_, Wp_, Vp_;  // [K, P]
  std::vector<int64_t> last_ks_;
  at::Tensor leaf_, f_graph_;
};

}  // namespace

std::unique_ptr<Engine> make_sequential_engine(int64_t K, bool fused, const Activation& act, const NetLayout& lay,
                                               const at::Tensor& x_train, at::TensorOptions opts) {
  return std::make_unique<SequentialEngine>(K, fused, act, lay, x_train, opts);
}

std::unique_ptr<Engine> make_sequential_engine(int64_t K, bool fused, const Activation& act, const FCLayout& lay,
                                               const at::Tensor& x_train, at::TensorOptions opts) {
  NetLayout n;
  n.fc = lay;
  return std::make_unique<SequentialEngine>(K, fused, act, n, x_train, opts);
}

std::unique_ptr<Engine> make_batched_engine(int64_t K, const Activation& act, const FCLayout& lay,
                                            const at::Tensor& x_train, at::TensorOptions opts) {
  return std::make_unique<BatchedEngine>(K, act, lay, x_train, opts);
}

}  // namespace lf
