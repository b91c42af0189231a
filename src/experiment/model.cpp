#include "experiment/model.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/error.h"
#include "experiment/config.h"
#include "models/cnn_fused.h"
#include "models/fc.h"

namespace lf {
namespace {

// Points per block of the plain-LibTorch forward passes; the wide ResNet keeps some 5 MB of
// autograd graph per point at width 1 (60 feature maps of up to 16 x 28 x 28), hence fewer.
constexpr int64_t kBlock = 256, kWrnBlock = 32;

// The kept forward's reuse rule (ConvModel, CNNFusedModel): c at the kept forward's positions, or
// empty when a new forward and backward is cheaper or needed. A backward over the kept forward's r
// points costs about 2 forwards of r; a new forward and backward over the listed points about 3
// forwards of |rows|: reuse when 3 |rows| > 2 r and every listed point is in the kept forward.
std::vector<double> kept_coefficients(const std::vector<int64_t>& kept_rows, const std::vector<int64_t>& rows,
                                      const std::vector<double>& c) {
  std::vector<double> ck;
  if (kept_rows.empty() || 3 * rows.size() <= 2 * kept_rows.size()) return ck;
  ck.assign(kept_rows.size(), 0.0);
  for (size_t k = 0; k < rows.size() && !ck.empty(); ++k) {
    const auto it = std::find(kept_rows.begin(), kept_rows.end(), rows[k]);
    if (it == kept_rows.end()) ck.clear();  // a point outside the kept forward
    else ck[size_t(it - kept_rows.begin())] += c[k];
  }
  return ck;
}

at::Tensor row_index(const std::vector<int64_t>& rows, at::Device device) {
  return at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(device);
}

void copy_out(const at::Tensor& t, double* f) {
  at::Tensor c = t.detach().to(at::kCPU, at::kDouble).contiguous();
  std::memcpy(f, c.data_ptr<double>(), sizeof(double) * c.numel());
}

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
  void forward_rows(const std::vector<int64_t>& rows, double* f) override {
    copy_out(net_.evaluate(pw_, x_.index_select(0, row_index(rows, at::kCPU))), f);
  }
  void gradient_rows(const std::vector<int64_t>&, const std::vector<double>&) override {
    // The fused backward needs the activations of all n points (forward_train): batch
    // gradients go through the reference model (the trainer picks it for stochastic runs).
    throw std::logic_error("FusedModel::gradient_rows: the fused kernels train full batches only");
  }
  at::Tensor evaluate(const at::Tensor& x) override { return net_.evaluate(pw_, x.contiguous()); }
  bool raw() const override { return true; }

 private:
  FCFused net_;
  at::Tensor x_, f_;
  FCParams pw_, pg_;
};

// The plain-LibTorch models: the network's reference forward over the flat weights, any dtype and
// device. forward_train keeps the autograd graph over all n points (FC) for gradient().
class LibTorchModel : public Model {
 public:
  LibTorchModel(const NetLayout& lay, const Activation& act, const at::Tensor& x, at::TensorOptions opts)
      : lay_(lay), act_(act), opts_(opts), x_(x.to(opts)), block_(lay.arch == "wrn" ? kWrnBlock : kBlock) {
    w = at::zeros({lay.size()}, opts);
    g = at::zeros({lay.size()}, opts);
  }
  void forward_rows(const std::vector<int64_t>& rows, double* f) override {
    c10::NoGradGuard ng;
    if (rows.empty()) return;
    copy_out(net(w, x_.index_select(0, row_index(rows, x_.device()))), f);
  }
  void gradient_rows(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    c10::AutoGradMode on(true);
    at::Tensor leaf = w.detach().requires_grad_(true);
    const at::Tensor cs = at::tensor(c, at::TensorOptions().dtype(at::kDouble)).to(opts_);
    for (size_t s = 0; s < rows.size(); s += size_t(block_)) {  // gradients accumulate in leaf.grad()
      const size_t r = std::min(rows.size() - s, size_t(block_));
      const std::vector<int64_t> part(rows.begin() + long(s), rows.begin() + long(s + r));
      at::Tensor f = net(leaf, x_.index_select(0, row_index(part, x_.device())));  // [r]
      (f * cs.narrow(0, int64_t(s), int64_t(r))).sum().backward();
    }
    c10::NoGradGuard ng;
    if (leaf.grad().defined()) g.copy_(leaf.grad());
    else g.zero_();
  }
  at::Tensor evaluate(const at::Tensor& x) override {
    c10::NoGradGuard ng;
    at::Tensor out = at::empty({x.size(0)}, at::TensorOptions().dtype(at::kDouble));
    for (int64_t s = 0; s < x.size(0); s += block_) {
      const int64_t r = std::min<int64_t>(block_, x.size(0) - s);
      out.narrow(0, s, r).copy_(net(w, x.narrow(0, s, r).to(opts_)).to(at::kCPU, at::kDouble));
    }
    return out;
  }
  bool raw() const override { return false; }

 protected:
  // f(w, x) [N] through the network's reference forward, differentiable in w.
  at::Tensor net(const at::Tensor& flat, const at::Tensor& x) const {
    if (lay_.arch == "cnn") return cnn_forward_reference(lay_.cnn.views(flat), x, act_);
    if (lay_.arch == "wrn") return wrn_forward_reference(lay_.wrn.views(flat), x, act_);
    return fc_forward_reference(lay_.fc.views(flat), x, act_);
  }
  NetLayout lay_;
  Activation act_;
  at::TensorOptions opts_;
  at::Tensor x_;
  const int64_t block_;  // points per block
};

class ReferenceModel final : public LibTorchModel {
 public:
  using LibTorchModel::LibTorchModel;
  void forward_train(double* f) override {
    c10::AutoGradMode on(true);
    w.set_requires_grad(true);
    f_graph_ = net(w, x_);
    copy_out(f_graph_, f);
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

 private:
  at::Tensor f_graph_;
};

// The convolutional networks (the CNN, the wide ResNet): outputs in blocks without a graph;
// gradients through a forward on the listed points only (in a full batch, the unsatisfied ones),
// in blocks, so that memory stays bounded by the block.
// forward_rows on at most one block keeps its autograd graph: when the next gradient_rows asks for
// points of that forward at the same weights (the stochastic dynamics' batch, drawn from the
// chunk just evaluated) and for more than 2/3 of them, the backward runs through it (the listed
// points weighted by c, the others by 0) instead of a second forward.
class ConvModel final : public LibTorchModel {
 public:
  using LibTorchModel::LibTorchModel;
  void forward_train(double* f) override {
    c10::NoGradGuard ng;
    kept_ = at::Tensor();
    const int64_t n = x_.size(0);
    for (int64_t s = 0; s < n; s += block_) copy_out(net(w, x_.narrow(0, s, std::min(block_, n - s))), f + s);
  }
  // The weights have not moved since forward_train (trainer contract): the gradient at w.
  void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) override { gradient_rows(rows, c); }
  void forward_rows(const std::vector<int64_t>& rows, double* f) override {
    kept_ = at::Tensor();
    if (rows.empty()) return;
    if (int64_t(rows.size()) > block_) return LibTorchModel::forward_rows(rows, f);
    c10::AutoGradMode on(true);
    leaf_ = w.detach().requires_grad_(true);
    kept_ = net(leaf_, x_.index_select(0, row_index(rows, x_.device())));  // [r], with its graph
    kept_rows_ = rows;
    kept_version_ = w._version();
    copy_out(kept_, f);
  }
  void gradient_rows(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    const std::vector<double> ck =  // c at the kept forward's positions
        kept_.defined() && w._version() == kept_version_ ? kept_coefficients(kept_rows_, rows, c)
                                                         : std::vector<double>();
    if (ck.empty()) {
      kept_ = at::Tensor();
      return LibTorchModel::gradient_rows(rows, c);
    }
    {
      c10::AutoGradMode on(true);
      (kept_ * at::tensor(ck, at::TensorOptions().dtype(at::kDouble)).to(opts_)).sum().backward();
    }
    c10::NoGradGuard ng;
    g.copy_(leaf_.grad());
    kept_ = at::Tensor();
    leaf_ = at::Tensor();
  }

 private:
  at::Tensor leaf_, kept_;  // the flat weights as an autograd leaf, the outputs of the kept forward
  std::vector<int64_t> kept_rows_;
  int64_t kept_version_ = -1;
};

// The CNN through the fused CPU float64 kernels (models/cnn_fused.h), the same contract as
// ConvModel: outputs in blocks keeping nothing; forward_rows on at most one block keeps what the
// backward needs, and the next gradient_rows at the same weights runs through it when it asks for
// more than 2/3 of those points (the others weighted by 0); otherwise a forward and backward on
// the listed points, in blocks. w is updated through tensor ops (raw() is false), so that its
// version tells whether the weights moved since the kept forward.
class CNNFusedModel final : public Model {
 public:
  CNNFusedModel(const Activation& act, const CNNLayout& lay, const at::Tensor& x) : net_(act, lay), x_(x.contiguous()) {
    auto o = at::TensorOptions().dtype(at::kDouble);
    w = at::zeros({lay.size}, o);
    g = at::zeros({lay.size}, o);
    pw_ = lay.views(w);
    pg_ = lay.views(g);
  }
  void forward_train(double* f) override {
    kept_rows_.clear();
    net_.forward(pw_, x_, f, false);
  }
  // The weights have not moved since forward_train (trainer contract): the gradient at w.
  void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) override { gradient_rows(rows, c); }
  void forward_rows(const std::vector<int64_t>& rows, double* f) override {
    kept_rows_.clear();
    if (rows.empty()) return;
    const bool keep = int64_t(rows.size()) <= kBlock;
    net_.forward(pw_, x_.index_select(0, row_index(rows, at::kCPU)), f, keep);
    if (keep) {
      kept_rows_ = rows;
      kept_version_ = w._version();
    }
  }
  void gradient_rows(const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    const std::vector<double> ck =  // c at the kept forward's positions
        net_.kept() == int64_t(kept_rows_.size()) && w._version() == kept_version_
            ? kept_coefficients(kept_rows_, rows, c)
            : std::vector<double>();
    kept_rows_.clear();
    c10::NoGradGuard ng;
    g.zero_();
    if (!ck.empty()) return net_.backward(pw_, ck.data(), pg_);
    std::vector<double> f(static_cast<size_t>(kEvalRows));
    for (size_t s = 0; s < rows.size(); s += size_t(kEvalRows)) {  // gradients accumulate in g
      const size_t r = std::min(rows.size() - s, size_t(kEvalRows));
      const std::vector<int64_t> part(rows.begin() + long(s), rows.begin() + long(s + r));
      net_.forward(pw_, x_.index_select(0, row_index(part, at::kCPU)), f.data(), true);
      net_.backward(pw_, c.data() + s, pg_);
    }
  }
  at::Tensor evaluate(const at::Tensor& x) override {
    kept_rows_.clear();
    at::Tensor out = at::empty({x.size(0)}, at::TensorOptions().dtype(at::kDouble));
    net_.forward(pw_, x.to(at::kDouble).contiguous(), out.data_ptr<double>(), false);
    return out;
  }
  bool raw() const override { return false; }

 private:
  static constexpr int64_t kEvalRows = 64;  // points per forward + backward of a gradient without a kept forward
  CNNFused net_;
  at::Tensor x_;
  CNNParams pw_, pg_;
  std::vector<int64_t> kept_rows_;
  int64_t kept_version_ = -1;
};

}  // namespace

NetLayout NetLayout::of(const RunConfig& cfg, const at::Tensor& x_train) {
  NetLayout n;
  n.arch = cfg.arch;
  if (cfg.arch == "cnn" || cfg.arch == "wrn") {
    require(x_train.dim() == 4, "--arch " + cfg.arch + " needs images [n, C, rows, cols] (no PCA)");
    if (cfg.arch == "cnn") n.cnn = CNNLayout(x_train.size(1), cfg.h);
    else n.wrn = wrn_layout(x_train.size(1), cfg.h);
  } else {
    require(x_train.dim() == 2, "--arch fc needs inputs [n, d]");
    n.fc = FCLayout(x_train.size(1), cfg.h, cfg.L);
  }
  return n;
}

NetLayout NetLayout::of_shape(const nlohmann::json& shape) {
  NetLayout n;
  n.arch = shape.value("arch", "fc");
  auto get = [&](const char* k) {
    require(shape.contains(k) && shape[k].is_number_integer() && shape[k].get<int64_t>() >= 1,
            "the saved " + n.arch + " network has no valid '" + k + "'");
    return shape[k].get<int64_t>();
  };
  if (n.arch == "cnn") n.cnn = CNNLayout(get("channels"), get("h"));
  else if (n.arch == "wrn") n.wrn = wrn_layout(get("channels"), get("h"));
  else if (n.arch == "fc") n.fc = FCLayout(get("d"), get("h"), get("L"));
  else throw UsageError("the saved network is of an unknown arch '" + n.arch + "'");
  return n;
}

int64_t NetLayout::size() const { return arch == "cnn" ? cnn.size : arch == "wrn" ? wrn.size : fc.size; }

at::Tensor NetLayout::init(uint64_t seed) const {
  if (arch == "cnn") return cnn.flatten(cnn_init(cnn.channels, cnn.h, seed));
  if (arch == "wrn") return wrn.flatten(wrn_init(wrn.channels, wrn.width, seed));
  return fc.flatten(fc_init(fc.d, fc.h, fc.L, seed));
}

std::vector<ParamSlice> NetLayout::slices() const {
  return arch == "cnn" ? cnn.slices() : arch == "wrn" ? wrn.slices() : fc.slices();
}

nlohmann::json NetLayout::shape() const {
  if (arch == "cnn") return {{"arch", "cnn"}, {"channels", cnn.channels}, {"h", cnn.h}};
  if (arch == "wrn") return {{"arch", "wrn"}, {"channels", wrn.channels}, {"h", wrn.width}};
  return {{"arch", "fc"}, {"d", fc.d}, {"h", fc.h}, {"L", fc.L}};
}

Net NetLayout::net(const at::Tensor& w, const Activation& act) const {
  require(w.dim() == 1 && w.numel() == size(), "the " + arch + " network's weights have the wrong size");
  if (arch == "cnn") return Net::cnn(cnn.views(w), act);
  if (arch == "wrn") return Net::wrn(wrn.views(w), act);
  return Net::fc(fc.views(w), act);
}

std::unique_ptr<Model> make_model(bool fused, const Activation& act, const NetLayout& lay, const at::Tensor& x_train,
                                  at::TensorOptions opts) {
  if (lay.arch == "cnn" && fused) return std::make_unique<CNNFusedModel>(act, lay.cnn, x_train);
  if (lay.arch == "cnn" || lay.arch == "wrn") return std::make_unique<ConvModel>(lay, act, x_train, opts);
  if (fused) return std::make_unique<FusedModel>(act, lay.fc, x_train);
  return std::make_unique<ReferenceModel>(lay, act, x_train, opts);
}

std::unique_ptr<Model> make_model(bool fused, const Activation& act, const FCLayout& lay, const at::Tensor& x_train,
                                  at::TensorOptions opts) {
  NetLayout n;
  n.fc = lay;
  return make_model(fused, act, n, x_train, opts);
}

}  // namespace lf
