// The grouped CNN engine (experiment/engine.h): K CNNs of setup B (models/cnn.h) as one network of
// K groups, for both dynamics. Member i's weights are row i of W_ [K, P] (CNNLayout's flat
// order). A forward of members ks (K' of them), each on N points of its own:
//   x   [N, K' C, H, W]        member i's images in channels i C ... (i + 1) C - 1
//   z_l = phi(conv(z_{l-1}; W'_l / sqrt(C_in 25), b'_l, stride s_l, padding 1, groups K'))
//         W'_l [K' h, C_in, 5, 5]: the members' W_l one after the other; b'_l [K' h]
//   f   [N, K'] = b_4 + (mean over positions of z_4 [N, K', h]) . W_4 [K', h] / sqrt(h)
// which is cnn_forward_reference of each member (the same products and sums, in another order
// inside a grouped convolution: the numbers agree to rounding). A member with fewer points than
// N is padded with its first point (its outputs there dropped, its coefficients 0). The gradient
// is autograd's through that forward. Cost: one member's launches for the K', and K' times its
// arithmetic; memory bounded by blocks of points (kMemberImages images a block in all).
// Each grouped convolution is models/cnn.h's cnn_conv (groups = K'), by at::conv2d (cuDNN on
// cuda) or as im2col and one batched product over the members (LAZYFEAT_CNN_CONV=im2col). cuDNN is
// the default: at K = 10, h = 32 it ran 250 member-steps/s against im2col's 167 (H100, 2026-12-07,
// docs/benchmarks.md "setup B on the GPU").
// Deliberately not: the CPU's fused CNN kernels (on the CPU, ensembles of CNNs go member by
// member through models/cnn_fused.h, faster there); ConvModel's reuse of a kept walk forward for
// the batch gradient (the gradient makes its own forward here).
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/phase_times.h"
#include "experiment/ensemble_engine.h"
#include "experiment/observables.h"

namespace lf {
namespace {

constexpr int64_t kMemberImages = 2048;  // images a block, over all members of a forward

class GroupedCnnEngine final : public EnsembleEngineBase {
 public:
  GroupedCnnEngine(FitSpec spec, const Activation& act, const CNNLayout& lay, const at::Tensor& x_train,
                   at::TensorOptions opts)
      : EnsembleEngineBase(std::move(spec), lay.size, opts), act_(act), lay_(lay), x_(x_train.to(opts)),
        n_(x_train.size(0)), out_(spec_.alpha.size()), conv_(cnn_conv_wanted()) {}

  void start(const std::vector<int64_t>& ks, std::vector<Fit>& fits) override {
    std::vector<std::vector<double>> f;
    outputs(ks, nullptr, f);
    fits.clear();
    for (size_t i = 0; i < ks.size(); ++i) {
      out_[ks[i]].f = std::move(f[i]);
      fits.push_back(out_[ks[i]].start(spec_, ks[i]));
    }
  }
  Fit set_outputs(int64_t k, const std::vector<double>& f, const std::vector<double>& f0) override {
    return out_.at(k).set(spec_, k, f, f0);
  }
  void outputs(int64_t k, std::vector<double>& f, std::vector<double>& f0) override {
    f = out_.at(k).f;
    f0 = out_.at(k).f0;
  }
  void forward(const std::vector<int64_t>& ks, std::vector<Trial>& trials) override {
    std::vector<std::vector<double>> f;
    outputs(ks, nullptr, f);
    trials.resize(ks.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      out_[ks[i]].f_new = std::move(f[i]);
      trials[i] = out_[ks[i]].trial(spec_, ks[i]);
    }
  }
  void accept(const std::vector<int64_t>& ks) override {
    for (int64_t k : ks) std::swap(out_[k].f, out_[k].f_new);
  }
  void gradient(const std::vector<int64_t>& ks) override {
    if (ks.empty()) return;
    std::vector<std::vector<int64_t>> rows;
    std::vector<std::vector<double>> c;
    for (int64_t k : ks) rows.push_back(out_[k].fit.rows), c.push_back(out_[k].fit.c);
    if (spec_.gradient_history) {
      c10::NoGradGuard ng;
      const at::Tensor idx = index(ks);
      Gp_.index_copy_(0, idx, G_.index_select(0, idx));
    }
    gradient_batches(ks, rows, c);
  }
  void forward_rows(int64_t k, const std::vector<int64_t>& rows, std::vector<double>& f) override {
    std::vector<std::vector<double>> fs;
    forward_batches({k}, {rows}, fs);
    f = std::move(fs[0]);
  }
  void gradient_rows(int64_t k, const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    gradient_batches({k}, {rows}, {c});
  }
  void forward_batches(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>& rows,
                       std::vector<std::vector<double>>& f) override {
    require(rows.size() == ks.size(), "grouped engine: one row list a member");
    outputs(ks, &rows, f);
  }
  void gradient_batches(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>& rows,
                        const std::vector<std::vector<double>>& c) override {
    require(rows.size() == ks.size() && c.size() == ks.size(), "grouped engine: one row list a member");
    if (ks.empty()) return;
    const int64_t most = longest(rows), K = int64_t(ks.size());
    at::Tensor leaf = members(ks).detach().requires_grad_(true);  // [K', P]
    {
      c10::AutoGradMode on(true);
      for (int64_t s = 0; s < most; s += block(K)) {  // the gradients accumulate in leaf.grad()
        const int64_t N = std::min(block(K), most - s);
        std::vector<double> cb(size_t(N * K), 0.0);  // [N, K']: zero on the padding
        for (int64_t i = 0; i < K; ++i)
          for (int64_t j = 0; j < N && s + j < int64_t(c[size_t(i)].size()); ++j) cb[size_t(j * K + i)] = c[size_t(i)][size_t(s + j)];
        const at::Tensor cs = upload(at::tensor(cb, at::TensorOptions().dtype(at::kDouble)).to(opts_.dtype())).view({N, K});
        const at::Tensor loss = (net(leaf, images(&rows, K, s, N)) * cs).sum();
        PhaseTimes::mark("batch gradients: forward");  // bench ensemble --phases (train.cpp's spans)
        loss.backward();
        PhaseTimes::mark("batch gradients: backward");
      }
    }
    c10::NoGradGuard ng;
    const at::Tensor gk = leaf.grad().defined() ? leaf.grad() : at::zeros_like(leaf);
    if (everyone(ks)) G_.copy_(gk);
    else G_.index_copy_(0, index(ks), gk);
  }
  at::Tensor evaluate(int64_t k, const at::Tensor& x) override { return outputs_on({k}, x).at(0); }
  void observe(const std::vector<int64_t>& ks, const at::Tensor& x, std::vector<ChangeNorms>& norms,
               std::vector<at::Tensor>& f) override {
    norms.clear(), f.clear();
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    norms = weight_changes(ks, lay_.slices());
    if (x.size(0) > 0) f = outputs_on(ks, x);
    else f.assign(ks.size(), at::Tensor());
  }
  std::string name() const override { return "grouped"; }

 private:
  static int64_t longest(const std::vector<std::vector<int64_t>>& rows) {
    size_t most = 0;
    for (const auto& r : rows) most = std::max(most, r.size());
    return int64_t(most);
  }
  static int64_t block(int64_t K) { return std::max<int64_t>(1, kMemberImages / std::max<int64_t>(1, K)); }
  // f[i] <- the outputs of member ks[i] on its rows (*rows)[i], or on the whole training set in
  // order when rows is null (full batches).
  void outputs(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>* rows,
               std::vector<std::vector<double>>& f) {
    const int64_t K = int64_t(ks.size());
    auto count = [&](int64_t i) { return rows ? int64_t((*rows)[size_t(i)].size()) : n_; };
    f.assign(ks.size(), {});
    const int64_t most = rows ? longest(*rows) : (K > 0 ? n_ : 0);
    if (most == 0) return;
    c10::NoGradGuard ng;
    const at::Tensor Wk = members(ks);
    for (int64_t i = 0; i < K; ++i) f[size_t(i)].reserve(size_t(count(i)));
    for (int64_t s = 0; s < most; s += block(K)) {
      const int64_t N = std::min(block(K), most - s);
      const at::Tensor out = net(Wk, images(rows, K, s, N)).to(at::kCPU, at::kDouble).contiguous();  // [N, K']
      const double* o = out.data_ptr<double>();
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < N && s + j < count(i); ++j) f[size_t(i)].push_back(o[j * K + i]);
    }
  }
  // [N, K' C, H, W]: member i's points (*rows)[i][s ... s + N) (padded with its first point) in its
  // channels; null rows: points s ... s + N of the training set for every member (no gather).
  at::Tensor images(const std::vector<std::vector<int64_t>>* rows, int64_t K, int64_t s, int64_t N) const {
    if (!rows) return x_.narrow(0, s, N).repeat({1, K, 1, 1});
    std::vector<int64_t> idx(size_t(N * K));  // [N, K'] rows of x_
    for (int64_t i = 0; i < K; ++i) {
      const std::vector<int64_t>& r = (*rows)[size_t(i)];
      for (int64_t j = 0; j < N; ++j) idx[size_t(j * K + i)] = s + j < int64_t(r.size()) ? r[size_t(s + j)] : r.empty() ? 0 : r[0];
    }
    return x_.index_select(0, index(idx)).view({N, K * x_.size(1), x_.size(2), x_.size(3)});
  }
  // f [N, K'] of the members with weights Wk [K', P] on x [N, K' C, H, W] (differentiable in Wk).
  at::Tensor net(const at::Tensor& Wk, const at::Tensor& x) const {
    const int64_t K = Wk.size(0), h = lay_.h;
    at::Tensor z = x;
    for (int64_t l = 0; l < kCnnConvs; ++l) {
      const int64_t c_in = lay_.w_shape[size_t(l)][1], st = kCnnStrides[size_t(l)];
      const at::Tensor W = Wk.narrow(1, lay_.w_offset[size_t(l)], lay_.w_numel(l)).reshape({K * h, c_in, kCnnKernel, kCnnKernel});
      const at::Tensor b = Wk.narrow(1, lay_.b_offset[size_t(l)], h).reshape({K * h});
      z = act_(cnn_conv(z, W / std::sqrt(double(c_in * kCnnKernel * kCnnKernel)), b, st, K, conv_));
    }
    const at::Tensor pooled = z.mean({2, 3}).view({-1, K, h});                       // [N, K', h]
    const at::Tensor W4 = Wk.narrow(1, lay_.w_offset[kCnnConvs], h);                  // [K', h]
    const at::Tensor b4 = Wk.narrow(1, lay_.b_offset[kCnnConvs], 1).reshape({1, K});  // [1, K']
    return (pooled * W4).sum(2).mul(1.0 / std::sqrt(double(h))).add(b4);
  }
  // f of members ks on a CPU float64 set x [N, C, H, W]: [N] CPU float64 each.
  std::vector<at::Tensor> outputs_on(const std::vector<int64_t>& ks, const at::Tensor& x) const {
    c10::NoGradGuard ng;
    const int64_t N = x.size(0), K = int64_t(ks.size());
    const at::Tensor Wk = members(ks);
    const at::Tensor out = at::empty({N, K}, at::TensorOptions().dtype(at::kDouble));
    for (int64_t s = 0; s < N; s += block(K)) {
      const int64_t r = std::min(block(K), N - s);
      out.narrow(0, s, r).copy_(net(Wk, x.narrow(0, s, r).to(opts_).repeat({1, K, 1, 1})).to(at::kCPU, at::kDouble));
    }
    std::vector<at::Tensor> f;
    for (int64_t i = 0; i < K; ++i) f.push_back(out.select(1, i).contiguous());
    return f;
  }

  Activation act_;
  CNNLayout lay_;
  at::Tensor x_;  // [n, C, H, W] on the device
  int64_t n_;
  std::vector<HostOutputs> out_;
  CnnConv conv_;  // LAZYFEAT_CNN_CONV (models/cnn.h)
};

}  // namespace

std::unique_ptr<Engine> make_grouped_cnn_engine(FitSpec spec, const Activation& act, const CNNLayout& lay,
                                                const at::Tensor& x_train, at::TensorOptions opts) {
  return std::make_unique<GroupedCnnEngine>(std::move(spec), act, lay, x_train, opts);
}

}  // namespace lf
