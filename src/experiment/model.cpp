#include "experiment/model.h"

#include <c10/core/GradMode.h>

#include <cstring>

#include "models/fc.h"

namespace lf {
namespace {

class FusedModel final : public Model {
 public:
  FusedModel(const Activation& act, const FCLayout& lay, const at::Tensor& x)
      : net_(act, lay, x.size(0)), x_(x.contiguous()) {
    auto o = at::TensorOptions().dtype(at::kDouble);
    w = at::zeros({lay.size}, o);
    g = at::zeros({lay.size}, o);
    pw_ = lay.views(w);
    pg_ = lay.views(g);
    f_ = at::empty({x.size(0)}, o);
  }
  void forward_train(double* f) override {
    net_.forward(pw_, x_, f_);
    std::memcpy(f, f_.data_ptr<double>(), sizeof(double) * f_.numel());
  }
  void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    net_.backward(pw_, x_, rows.data(), c.data(), int64_t(rows.size()), pg_);
  }
  at::Tensor evaluate(const at::Tensor& x) override { return net_.evaluate(pw_, x.contiguous()); }
  bool raw() const override { return true; }

 private:
  FCFused net_;
  at::Tensor x_, f_;
  FCParams pw_, pg_;
};

class ReferenceModel final : public Model {
 public:
  ReferenceModel(const Activation& act, const FCLayout& lay, const at::Tensor& x, at::TensorOptions opts)
      : act_(act), lay_(lay), opts_(opts), x_(x.to(opts)) {
    w = at::zeros({lay.size}, opts);
    g = at::zeros({lay.size}, opts);
  }
  void forward_train(double* f) override {
    c10::AutoGradMode on(true);
    w.set_requires_grad(true);
    f_graph_ = fc_forward_reference(lay_.views(w), x_, act_);
    at::Tensor fc = f_graph_.detach().to(at::kCPU, at::kDouble).contiguous();
    std::memcpy(f, fc.data_ptr<double>(), sizeof(double) * fc.numel());
  }
  void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    c10::AutoGradMode on(true);
    at::Tensor cf = at::zeros({f_graph_.size(0)}, at::TensorOptions().dtype(at::kDouble));
    double* p = cf.data_ptr<double>();
    for (size_t k = 0; k < rows.size(); ++k) p[rows[k]] = c[k];
    (f_graph_ * cf.to(opts_)).sum().backward();
    c10::NoGradGuard ng;
    g.copy_(w.grad());
    w.mutable_grad() = at::Tensor();
    f_graph_ = at::Tensor();
  }
  at::Tensor evaluate(const at::Tensor& x) override {
    c10::NoGradGuard ng;
    at::Tensor out = at::empty({x.size(0)}, at::TensorOptions().dtype(at::kDouble));
    FCParams p = lay_.views(w.detach());
    for (int64_t s = 0; s < x.size(0); s += 8192) {
      int64_t r = std::min<int64_t>(8192, x.size(0) - s);
      out.narrow(0, s, r).copy_(fc_forward_reference(p, x.narrow(0, s, r).to(opts_), act_).to(at::kCPU));
    }
    return out;
  }
  bool raw() const override { return false; }

 private:
  Activation act_;
  FCLayout lay_;
  at::TensorOptions opts_;
  at::Tensor x_, f_graph_;
};

}  // namespace

std::unique_ptr<Model> make_model(bool fused, const Activation& act, const FCLayout& lay, const at::Tensor& x_train,
                                  at::TensorOptions opts) {
  if (fused) return std::make_unique<FusedModel>(act, lay, x_train);
  return std::make_unique<ReferenceModel>(act, lay, x_train, opts);
}

}  // namespace lf
