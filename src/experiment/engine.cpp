#include "experiment/engine.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>

#include "common/cuda_graph.h"
#include "common/error.h"
#include "common/phase_times.h"
#include "dynamics/momentum.h"
#include "experiment/ensemble_engine.h"
#include "experiment/observables.h"
#include "models/fc.h"
#include "models/fc_cuda.h"

#ifdef LAZYFEAT_WITH_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#endif

namespace lf {
namespace {

// alpha max_mu |f_new - f|, NaN as soon as one difference is not a number (protocol section 4).
double output_change(const std::vector<double>& f_new, const std::vector<double>& f, double alpha) {
  double df = 0;
  for (size_t i = 0; i < f_new.size(); ++i) {
    const double a = std::fabs(f_new[i] - f[i]);
    if (!(a <= df)) df = (a > df) ? a : std::numeric_limits<double>::quiet_NaN();
    if (std::isnan(df)) break;
  }
  return df * std::fabs(alpha);
}

// A fit's numbers without its per-point rows and coefficients (which stay in the engine).
Fit scalars(const Fit& f) {
  Fit s;
  s.loss2 = f.loss2;
  s.train_err = f.train_err;
  s.unsatisfied = f.unsatisfied;
  return s;
}

class SequentialEngine final : public Engine {
 public:
  SequentialEngine(FitSpec spec, bool fused, const Activation& act, const NetLayout& lay, const at::Tensor& x_train,
                   at::TensorOptions opts)
      : spec_(std::move(spec)), fused_(fused), slices_(lay.slices()), n_(x_train.size(0)) {
    const size_t K = spec_.alpha.size();
    out_.resize(K);
    for (size_t k = 0; k < K; ++k) {
      models_.push_back(make_model(fused, act, lay, x_train, opts));
      w0_.push_back(at::zeros_like(models_.back()->w));
      v_.push_back(at::zeros_like(models_.back()->w));
      w_prev_.push_back(at::empty_like(models_.back()->w));
      v_prev_.push_back(at::empty_like(models_.back()->w));
      if (spec_.gradient_history) {
        g_prev_.push_back(at::zeros_like(models_.back()->w));
        g_extrap_.push_back(at::zeros_like(models_.back()->w));
      }
    }
  }
  at::Tensor w(int64_t k) override { return models_.at(k)->w; }
  at::Tensor v(int64_t k) override { return v_.at(k); }
  at::Tensor g(int64_t k) override { return models_.at(k)->g; }
  at::Tensor prev_w(int64_t k) override { return w_prev_.at(k); }
  at::Tensor w0(int64_t k) override { return w0_.at(k); }
  at::Tensor g_prev(int64_t k) override { return history().at(k); }
  at::Tensor g_extrap(int64_t k) override {
    history();
    return g_extrap_.at(k);
  }

  void start(const std::vector<int64_t>& ks, std::vector<Fit>& fits) override {
    fits.resize(ks.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      HostOutputs& o = out_[ks[i]];
      o.f.resize(size_t(n_));
      models_[ks[i]]->forward_train(o.f.data());
      fits[i] = o.start(spec_, ks[i]);
    }
  }
  Fit set_outputs(int64_t k, const std::vector<double>& f, const std::vector<double>& f0) override {
    return out_.at(k).set(spec_, k, f, f0);
  }
  void outputs(int64_t k, std::vector<double>& f, std::vector<double>& f0) override {
    f = out_.at(k).f;
    f0 = out_.at(k).f0;
  }

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
  void trial_exp(const std::vector<int64_t>& ks, const std::vector<ExpStep>& c) override {
    c10::NoGradGuard ng;
    history();
    for (size_t i = 0; i < ks.size(); ++i) {
      Model& m = *models_[ks[i]];
      at::Tensor &v = v_[ks[i]], &gp = g_prev_[ks[i]], &gx = g_extrap_[ks[i]];
      if (m.raw()) {  // one pass over w, v, g, g_prev (dynamics/integrator.h)
        exp_trial_step(c[i], m.w.data_ptr<double>(), v.data_ptr<double>(), m.g.data_ptr<double>(),
                       gp.data_ptr<double>(), m.w.numel(), w_prev_[ks[i]].data_ptr<double>(),
                       v_prev_[ks[i]].data_ptr<double>(), gx.data_ptr<double>());
      } else {  // the same combination as tensor ops
        w_prev_[ks[i]].copy_(m.w);
        v_prev_[ks[i]].copy_(v);
        m.w.add_(v, c[i].wv).add_(m.g, c[i].wg);
        v.mul_(c[i].vv).add_(m.g, c[i].vg);
        gx.copy_(m.g);
        if (c[i].r > 0) {
          m.w.add_(gp, c[i].wp);
          v.add_(gp, c[i].vp);
          gx.add_(m.g - gp, c[i].r);
        }
      }
    }
  }
  void forward(const std::vector<int64_t>& ks, std::vector<Trial>& trials) override {
    trials.resize(ks.size());
    for (size_t i = 0; i < ks.size(); ++i) {
      HostOutputs& o = out_[ks[i]];
      o.f_new.resize(size_t(n_));
      models_[ks[i]]->forward_train(o.f_new.data());
      trials[i] = o.trial(spec_, ks[i]);
    }
  }
  void accept(const std::vector<int64_t>& ks) override {
    for (int64_t k : ks) std::swap(out_[k].f, out_[k].f_new);
  }
  void restore(const std::vector<int64_t>& ks) override {
    c10::NoGradGuard ng;
    for (int64_t k : ks) {
      models_[k]->w.copy_(w_prev_[k]);
      v_[k].copy_(v_prev_[k]);
    }
  }
  void gradient(const std::vector<int64_t>& ks) override {
    for (int64_t k : ks) {
      if (spec_.gradient_history) {
        c10::NoGradGuard ng;
        g_prev_[k].copy_(models_[k]->g);
      }
      models_[k]->gradient(out_[k].fit.rows, out_[k].fit.c);
    }
  }
  void forward_rows(int64_t k, const std::vector<int64_t>& rows, std::vector<double>& f) override {
    f.resize(rows.size());
    models_.at(k)->forward_rows(rows, f.data());
  }
  void gradient_rows(int64_t k, const std::vector<int64_t>& rows, const std::vector<double>& c) override {
    models_.at(k)->gradient_rows(rows, c);
  }
  at::Tensor evaluate(int64_t k, const at::Tensor& x) override { return models_.at(k)->evaluate(x); }
  void observe(const std::vector<int64_t>& ks, const at::Tensor& x, std::vector<ChangeNorms>& norms,
               std::vector<at::Tensor>& f) override {
    norms.clear(), f.clear();
    for (int64_t k : ks) {
      norms.push_back(change_norms(slices_, (models_[k]->w.detach() - w0_[k]).unsqueeze(0)).at(0));
      f.push_back(x.size(0) > 0 ? models_[k]->evaluate(x) : at::Tensor());
    }
  }
  std::string name() const override { return fused_ ? "fused" : "reference"; }

 private:

  std::vector<at::Tensor>& history() {
    require(spec_.gradient_history, "engine: no gradient history (FitSpec::gradient_history)");
    return g_prev_;
  }

  FitSpec spec_;
  bool fused_;
  std::vector<ParamSlice> slices_;  // per layer (W_l, b_l) in w
  int64_t n_;
  std::vector<std::unique_ptr<Model>> models_;
  std::vector<at::Tensor> w0_, v_, w_prev_, v_prev_;
  std::vector<at::Tensor> g_prev_, g_extrap_;  // eab2 (FitSpec::gradient_history)
  std::vector<HostOutputs> out_;
};

// The batched forward and backward of K' FC networks (protocol section 2) on one training set:
//   pre_l = b_l + m_l z_{l-1} W_l^T       [K', n, fo_l]   (z_{-1} = x [n, d], shared)
//   z_l   = phi(pre_l)                     [K', n, fo_l]   (l < L);  f = pre_L [K', n]
// with m_l = 1/sqrt(fan_in). For softplus, z_l is the unscaled softplus and the activation's
// prefactor a moves into m_{l+1} = a/sqrt(fan_in): one elementwise pass a layer. Backward of
// sum_mu C_mu f_mu:  gpre_L = C;  gW_l = m_l gpre_l^T z_{l-1};  gb_l = sum_mu gpre_l;
//   gpre_{l-1} = phi'(pre_{l-1}) * (m_l gpre_l W_l)   (one fused softplus_backward pass).
// With the CUDA kernels (models/fc_cuda.h) the forward keeps z_l only, written over the product
// (scale, bias and softplus in one pass); the backward takes phi' from z (sigmoid(beta x) =
// 1 - exp(-beta z)), with gb_{l-1} summed in the same pass, and the top layer's outer product
// gpre_L W_L made in it too. Per hidden layer, besides the products: 2 passes over [K', n, h]
// forward (read the product, write z over it) and 3 backward (read gz and z, write gpre), where
// the LibTorch composition takes 4 (baddbmm's bias expanded to [K', n, h], softplus) and 4
// (softplus_backward, the bias sum).
class BatchedEngine final : public EnsembleEngineBase {
 public:
  BatchedEngine(FitSpec spec, const Activation& act, const FCLayout& lay, const at::Tensor& x_train,
                at::TensorOptions opts)
      : EnsembleEngineBase(std::move(spec), lay.size, opts), act_(act), lay_(lay), x_(x_train.to(opts)),
        n_(x_train.size(0)) {
    const int64_t K = int64_t(spec_.alpha.size());
    const auto d64 = at::TensorOptions().dtype(at::kDouble).device(opts.device());
    F_ = at::zeros({K, n_}, d64);
    F0_ = at::zeros({K, n_}, d64);
    Y_ = at::tensor(spec_.y, at::TensorOptions().dtype(at::kDouble)).to(d64);
    alpha_ = at::tensor(spec_.alpha, at::TensorOptions().dtype(at::kDouble)).to(d64);
    softplus_ = act_.kind == Activation::Kind::Softplus;
    cuda_kernels_ = cuda_kernels_available() && softplus_ && opts.device().is_cuda() && opts.dtype() == at::kDouble;
    aligned_weights_ = opts.device().is_cuda() && !env_equals("LAZYFEAT_ALIGNED_WEIGHTS", "0");
  }

  void start(const std::vector<int64_t>& ks, std::vector<Fit>& fits) override {
    fits.clear();
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    const at::Tensor idx = index(ks);
    run_forward(ks, idx);
    F_.index_copy_(0, idx, Fn_);
    F0_.index_copy_(0, idx, Fn_);
    std::vector<Trial> t;
    fit_trials(idx, t);
    for (Trial& x : t) fits.push_back(x.fit);
  }
  Fit set_outputs(int64_t k, const std::vector<double>& f, const std::vector<double>& f0) override {
    c10::NoGradGuard ng;
    F_[k].copy_(at::tensor(f, at::TensorOptions().dtype(at::kDouble)));
    F0_[k].copy_(at::tensor(f0, at::TensorOptions().dtype(at::kDouble)));
    Fit out;
    lf::fit(spec_.loss, spec_.alpha[k], f, f0, spec_.y, out);
    return out;
  }
  void outputs(int64_t k, std::vector<double>& f, std::vector<double>& f0) override {
    f = to_vector(F_[k]);
    f0 = to_vector(F0_[k]);
  }

  void forward(const std::vector<int64_t>& ks, std::vector<Trial>& trials) override {
    trials.clear();
    last_ks_ = ks;
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    const at::Tensor idx = index(ks);
    run_forward(ks, idx);
    fit_trials(idx, trials);
  }
  void accept(const std::vector<int64_t>& ks) override {
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    if (everyone(ks) && everyone(last_ks_)) F_.copy_(Fn_);
    else F_.index_copy_(0, index(ks), Fn_.index_select(0, index(positions(ks))));
  }
  void gradient(const std::vector<int64_t>& ks) override {
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    const int64_t K = int64_t(last_ks_.size());
    const std::vector<int64_t> pos = positions(ks);
    std::vector<double> keep(size_t(K), 0.0);  // the members that want their gradient
    for (int64_t p : pos) keep[size_t(p)] = 1.0;
    if (spec_.gradient_history) Gp_.index_copy_(0, index(ks), G_.index_select(0, index(ks)));
    const bool direct = everyone(ks) && everyone(last_ks_);  // the gradients straight into G_
    at::Tensor Gk = direct ? G_ : at::empty({K, lay_.size}, opts_);
    backward(direct ? C_ : C_ * column(keep), Gk);
    if (!direct) G_.index_copy_(0, index(ks), Gk.index_select(0, index(pos)));
    z_.clear(), pre_.clear(), Wl_.clear();
  }
  bool rounds_supported() const override { return true; }
  void rounds(const std::vector<int64_t>& ks, const RuleParams& rule, int64_t R, std::vector<RuleState>& st) override;
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
  void observe(const std::vector<int64_t>& ks, const at::Tensor& x, std::vector<ChangeNorms>& norms,
               std::vector<at::Tensor>& f) override {
    norms.clear(), f.clear();
    if (ks.empty()) return;
    c10::NoGradGuard ng;
    norms = weight_changes(ks, lay_.slices());
    const at::Tensor Wk = members(ks);  // [K', P]
    const int64_t N = x.size(0), K = Wk.size(0);
    if (N == 0) {
      f.assign(ks.size(), at::Tensor());
      return;
    }
    // The batched forward in chunks of points: [K', chunk, h] temporaries of at most ~256 MB.
    const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(N, (int64_t(1) << 25) / std::max<int64_t>(1, K * lay_.h)));
    const at::Tensor out = at::empty({K, N}, at::TensorOptions().dtype(at::kDouble));
    for (int64_t s = 0; s < N; s += chunk) {
      const int64_t r = std::min(chunk, N - s);
      out.narrow(1, s, r).copy_(batched_outputs(Wk, x.narrow(0, s, r).to(opts_)).to(at::kCPU, at::kDouble));
    }
    for (int64_t i = 0; i < K; ++i) f.push_back(out[i]);
  }
  std::string name() const override { return "batched"; }

 private:
  double threshold() const { return act_.threshold > 0 ? act_.threshold : 600.0; }  // models/activation.cpp
  // The hand-written CUDA kernels (models/fc_cuda.h): where they were built, unless
  // LAZYFEAT_CUDA_KERNELS=0 asks for the plain LibTorch composition (tests, benchmarks).
  static bool cuda_kernels_available() {
#ifdef LAZYFEAT_WITH_CUDA_KERNELS
    return !env_equals("LAZYFEAT_CUDA_KERNELS", "0");
#else
    return false;
#endif
  }
  static bool env_equals(const char* name, const char* value) {
    const char* e = std::getenv(name);
    return e && std::string(e) == value;
  }
  // pre [K', N, fo] <- softplus(m pre + b) in place (b [K', fo], rows at Wk's stride).
  void bias_softplus(const at::Tensor& b, double m, at::Tensor& pre) const {
#ifdef LAZYFEAT_WITH_CUDA_KERNELS
    double* p = pre.data_ptr<double>();
    cuda::bias_softplus(b.data_ptr<double>(), b.stride(0), m, p, p, pre.size(0), pre.size(1), pre.size(2), act_.beta,
                        threshold(), at::cuda::getCurrentCUDAStream().stream());
#else
    (void)b, (void)m, (void)pre;
    no_kernels();
#endif
  }
  // gpre [K', n, fi] <- phi'(x_{l-1}) * (m_l gpre_l W_l) from z_{l-1}, and Gk's gb_{l-1} <- the
  // sum of gpre over the points, for layer l (1 <= l <= L) with gpre_l = g [K', n, fo_l]: the
  // product by cuBLAS below the top, the outer product in the kernel at the top (fo_L = 1).
  at::Tensor backward_kernel(int64_t l, const at::Tensor& g, at::Tensor& Gk) const {
#ifdef LAZYFEAT_WITH_CUDA_KERNELS
    const int64_t K = g.size(0), fi = lay_.fan_in(l);
    const at::Tensor& z = z_[size_t(l - 1)];  // [K', n, fi], contiguous
    require(Gk.stride(1) == 1 && z.is_contiguous() && Wl_[size_t(l)].stride(2) == 1, "batched engine: strides");
    at::Tensor work = at::empty({cuda::bias_work_size(K, n_, fi)}, opts_);
    double* gb = Gk.data_ptr<double>() + lay_.b_offset[l - 1];
    void* stream = at::cuda::getCurrentCUDAStream().stream();
    if (l == lay_.L) {
      const at::Tensor c = g.squeeze(2).contiguous();  // [K', n]
      at::Tensor gpre = at::empty({K, n_, fi}, opts_);
      cuda::outer_softplus_backward_bias(c.data_ptr<double>(), Wl_[size_t(l)].data_ptr<double>(),
                                         Wl_[size_t(l)].stride(0), mult_[size_t(l)], z.data_ptr<double>(), true,
                                         gpre.data_ptr<double>(), gb, Gk.stride(0), work.data_ptr<double>(), K, n_, fi,
                                         act_.beta, threshold(), stream);
      PhaseTimes::mark("gradient epilogues");
      return gpre;
    }
    at::Tensor gz = at::baddbmm(g.new_empty({K, n_, fi}), g, Wl_[size_t(l)], 0.0, mult_[size_t(l)]);
    PhaseTimes::mark("gradient products (inputs)");
    cuda::softplus_backward_bias(gz.data_ptr<double>(), z.data_ptr<double>(), true, gz.data_ptr<double>(), gb,
                                 Gk.stride(0), work.data_ptr<double>(), K, n_, fi, act_.beta, threshold(), stream);
    PhaseTimes::mark("gradient epilogues");
    return gz;
#else
    (void)l, (void)g, (void)Gk;
    no_kernels();
#endif
  }
  [[noreturn]] static void no_kernels() { throw std::logic_error("batched engine: the CUDA kernels were not built"); }
  // Gk [K', P] <- sum_mu C[k, mu] df(w_k, x_mu)/dw for the members of the last forward (its
  // inputs, preactivations and weights, kept), C [K', n] (dL/df, zero rows for members whose
  // gradient is not wanted).
  void backward(const at::Tensor& C, at::Tensor& Gk) {
    const int64_t K = C.size(0);
    at::Tensor gpre = C.to(opts_).unsqueeze(2);  // [K', n, 1]
    for (int64_t l = lay_.L; l >= 0; --l) {
      const int64_t fo = lay_.fan_out(l), fi = lay_.fan_in(l);
      const at::Tensor gW = l == 0 ? at::matmul(gpre.transpose(1, 2), x_)          // [K', fo, d]
                                   : at::bmm(gpre.transpose(1, 2), z_[l - 1]);  // [K', fo, fi]
      PhaseTimes::mark("gradient products (weights)");
      Gk.narrow(1, lay_.w_offset[l], fo * fi).view({K, fo, fi}).copy_(gW.mul_(mult_[l]));
      if (l == lay_.L || !cuda_kernels_) Gk.narrow(1, lay_.b_offset[l], fo).copy_(gpre.sum(1));  // else summed below
      PhaseTimes::mark("gradient copies");
      if (l == 0) break;
      if (cuda_kernels_) {
        gpre = backward_kernel(l, gpre, Gk);
        continue;
      }
      // gz = m_l gpre W_l [K', n, fi]: the factor inside the product (beta = 0: the first
      // argument is not read), not one more pass over [K', n, fi].
      at::Tensor gz = at::baddbmm(gpre.new_empty({K, n_, fi}), gpre, Wl_[l], 0.0, mult_[l]);
      PhaseTimes::mark("gradient products (inputs)");
      gpre = softplus_ ? at::softplus_backward(gz, pre_[l - 1], act_.beta, threshold())
                       : gz.mul_(act_.derivative(pre_[l - 1]));
      PhaseTimes::mark("gradient epilogues");
    }
  }
  // f of the members with weights Wk [K', P] on the points x [N, d] (the device): [K', N]. With
  // keep, the layers' inputs, preactivations and weights are kept for the backward.
  at::Tensor batched_outputs(const at::Tensor& Wk, const at::Tensor& x, bool keep = false) {
    const int64_t K = Wk.size(0), N = x.size(0);
    if (keep) z_.clear(), pre_.clear(), Wl_.assign(size_t(lay_.L + 1), at::Tensor());
    mult_.assign(size_t(lay_.L + 1), 0.0);
    at::Tensor z = x.unsqueeze(0).expand({K, N, lay_.d});  // [K', N, d]
    for (int64_t l = 0;; ++l) {
      const int64_t fo = lay_.fan_out(l), fi = lay_.fan_in(l);
      at::Tensor W = Wk.narrow(1, lay_.w_offset[l], fo * fi).view({K, fo, fi});  // [K', fo, fi]
      // On cuda, a copy of its own (unless LAZYFEAT_ALIGNED_WEIGHTS=0): W's rows are P apart in
      // Wk, and P is odd (41,601 at h = 100, L = 5), so every other member's matrix starts 8 bytes
      // off a 16-byte boundary, and cuBLAS's batched products then leave out their fast kernels.
      // Measured on an H100 (docs/benchmarks.md, 2026-12-07): the forward product on such views
      // at 18.3 TFLOP/s against 28.8 on their copies, the loop at K = 100 7,814 member-steps/s on
      // views and 8,919 on copies. The copy is 8 MB a hidden layer at K = 100.
      if (aligned_weights_ && K > 1) {
        W = W.contiguous();
        PhaseTimes::mark("weight copies");
      }
      const at::Tensor b = Wk.narrow(1, lay_.b_offset[l], fo).view({K, 1, fo});        // [K', 1, fo]
      mult_[l] = (l > 0 && softplus_ ? act_.scale : 1.0) / std::sqrt(double(fi));
      if (keep) Wl_[l] = W;
      if (l < lay_.L && cuda_kernels_) {  // the product, then scale, bias and softplus over it in one pass
        z = at::bmm(z, W.transpose(1, 2));  // [K', N, fo]
        PhaseTimes::mark("forward products");
        bias_softplus(Wk.narrow(1, lay_.b_offset[l], fo), mult_[l], z);
        PhaseTimes::mark("forward epilogues");
        if (keep) z_.push_back(z);  // no preactivation: the backward takes phi' from z
        continue;
      }
      const at::Tensor pre = at::baddbmm(b, z, W.transpose(1, 2), 1.0, mult_[l]);  // [K', N, fo]
      PhaseTimes::mark("forward products");
      if (l == lay_.L) return pre.squeeze(2);  // [K', N]
      z = softplus_ ? at::softplus(pre, act_.beta, threshold()) : act_(pre);
      PhaseTimes::mark("forward epilogues");
      if (keep) pre_.push_back(pre), z_.push_back(z);
    }
  }
  // Fn_ [K', n] <- the outputs of members ks at their weights; keeps what the backward needs.
  void run_forward(const std::vector<int64_t>& ks, const at::Tensor& idx) {
    last_ks_ = ks;
    Fn_ = batched_outputs(everyone(ks) ? W_ : W_.index_select(0, idx), x_, true).to(at::kDouble);
  }
  // The fit of outputs Fn [K', n] on the device: df = alpha max |Fn - F| (NaN when a difference is
  // not a number), loss2 = mean l(m), the error and unsatisfied fractions and counts, and dL/df
  // (C [K', n]), for members with outputs F before, F0 at w0 and alpha [K'] (dynamics/loss.h).
  struct DeviceFit {
    at::Tensor df, loss2, err, unsat, C;  // [K'] float64 each; C [K', n]
  };
  DeviceFit device_fit(const at::Tensor& Fn, const at::Tensor& F, const at::Tensor& F0, const at::Tensor& alpha_k) const {
    const at::Tensor alpha = alpha_k.unsqueeze(1);  // [K', 1]
    const at::Tensor d = (Fn - F).abs();
    DeviceFit out;
    out.df = at::where(d.isnan().any(1), at::full_like(alpha_k, kNaN), d.amax(1)) * alpha_k;
    const at::Tensor m = alpha * (Fn - F0) * Y_;  // margins F y [K', n]
    const at::Tensor r = 1.0 - m;
    at::Tensor value, slope;  // l(m) and dl/dm, dynamics/loss.h
    switch (spec_.loss.kind) {
      case Loss::Kind::Hinge: value = at::relu(r), slope = -(r > 0).to(at::kDouble); break;
      case Loss::Kind::SoftHinge:
        value = at::softplus(r, Loss::kSoftBeta, 600.0), slope = -at::sigmoid(Loss::kSoftBeta * r);
        break;
      case Loss::Kind::QHinge: value = 0.5 * at::relu(r).square(), slope = -at::relu(r); break;
    }
    out.C = slope * Y_ / (alpha * double(n_));  // dL/df [K', n]
    out.loss2 = value.mean(1);
    out.err = (m <= 0).sum(1).to(at::kDouble) / double(n_);
    out.unsat = (m < 1).sum(1).to(at::kDouble);
    return out;
  }
  // trials[i] <- df and the fit of Fn_ for the members idx of the last forward; C_ <- dL/df.
  void fit_trials(const at::Tensor& idx, std::vector<Trial>& trials) {
    const bool all = everyone(last_ks_);
    DeviceFit fit = device_fit(Fn_, all ? F_ : F_.index_select(0, idx), all ? F0_ : F0_.index_select(0, idx),
                               all ? alpha_ : alpha_.index_select(0, idx));
    C_ = fit.C;
    const at::Tensor stats =
        at::stack({fit.df, fit.loss2, fit.err, fit.unsat}, 1).to(at::kCPU).contiguous();  // [K', 4]: one transfer
    const double* s = stats.data_ptr<double>();
    trials.resize(size_t(stats.size(0)));
    if (spec_.host_outputs) {  // [3, K', n]: before, after, at w0
      host_ = at::stack({all ? F_ : F_.index_select(0, idx), Fn_, all ? F0_ : F0_.index_select(0, idx)})
                  .to(at::kCPU)
                  .contiguous();
      const double* h = host_.data_ptr<double>();
      const int64_t K = host_.size(1);
      for (int64_t i = 0; i < K; ++i) {
        trials[size_t(i)].f = h + i * n_;
        trials[size_t(i)].f_new = h + (K + i) * n_;
        trials[size_t(i)].f0 = h + (2 * K + i) * n_;
      }
    }
    for (size_t i = 0; i < trials.size(); ++i) {
      trials[i].df = s[4 * i];
      trials[i].fit.loss2 = s[4 * i + 1];
      trials[i].fit.train_err = s[4 * i + 2];
      trials[i].fit.unsatisfied = int64_t(s[4 * i + 3]);
    }
  }
  std::vector<int64_t> positions(const std::vector<int64_t>& ks) const {  // in the last forward
    std::vector<int64_t> pos;
    for (int64_t k : ks) {
      const auto it = std::find(last_ks_.begin(), last_ks_.end(), k);
      require(it != last_ks_.end(), "batched engine: a member that was not in the last forward");
      pos.push_back(int64_t(it - last_ks_.begin()));
    }
    return pos;
  }
  [[noreturn]] static void refuse_batches() {
    throw UsageError("the batched engine trains full-batch fc ensembles only (not the stochastic dynamics)");
  }
  Activation act_;
  FCLayout lay_;
  at::Tensor x_;
  int64_t n_;
  bool softplus_ = false;
  bool cuda_kernels_ = false;  // the forward's and backward's epilogues through models/fc_cuda.h
  bool aligned_weights_ = false;  // the products' weights copied out of Wk (batched_outputs; cuda)
  at::Tensor F_, F0_, Y_, alpha_;   // [K, n] outputs now and at w0 (float64), [n] labels, [K]
  std::vector<int64_t> last_ks_;    // the members of the last forward, in its order
  at::Tensor Fn_, C_;               // [K', n] of the last forward: outputs, dL/df
  at::Tensor host_;                 // [3, K', n] CPU: Trial's host views (FitSpec::host_outputs)
  std::vector<at::Tensor> z_, pre_, Wl_;  // of the last forward: layer inputs, preactivations (none
                                          // with the CUDA kernels), weights
  std::vector<double> mult_;

  // Engine::rounds: the members' state on the device between rounds, at fixed addresses (a CUDA
  // graph's inputs and outputs): weights, velocity, gradient [K', P], outputs now and at w0
  // [K', n], alpha [K'], and RuleState's numbers as the rows of S [kRows, K'] (the first kOut
  // go back to the host; park stays).
  struct RoundState {
    static constexpr int64_t kRows = 11, kOut = 10;
    at::Tensor W, V, G, F, F0, alpha, S;
    at::Tensor t, dt, t1, step, rejected, gevals, loss2, err, unsat, stop, park;  // S's rows, in this order
  };
  // Rounds a call needs for its rounds to run as a graph's replays (fewer: eagerly).
  static constexpr int64_t kGraphRounds = 4;
  void round(RoundState& s, const RuleParams& rule);
  // Wt (and Vt, momentum) <- the trial step of the live members from s (models/fc_cuda.h: one
  // pass, bit for bit the composition in round()); x [K'] the decay (momentum only).
  void trial_kernel(const RoundState& s, const at::Tensor& x, const at::Tensor& live, at::Tensor& Wt,
                    at::Tensor& Vt) const {
#ifdef LAZYFEAT_WITH_CUDA_KERNELS
    const bool momentum = Vt.defined();
    const at::Tensor xc = momentum ? x.contiguous() : at::Tensor(), dtc = s.dt.contiguous(), lc = live.contiguous();
    cuda::trial_step(s.W.data_ptr<double>(), momentum ? s.V.data_ptr<double>() : nullptr, s.G.data_ptr<double>(),
                     momentum ? xc.data_ptr<double>() : nullptr, dtc.data_ptr<double>(), lc.data_ptr<bool>(),
                     Wt.data_ptr<double>(), momentum ? Vt.data_ptr<double>() : nullptr, s.W.size(0), s.W.size(1),
                     at::cuda::getCurrentCUDAStream().stream());
#else
    (void)s, (void)x, (void)live, (void)Wt, (void)Vt;
    no_kernels();
#endif
  }
  // s.G <- Gk where keep, s.W <- Wt and (momentum) s.V <- Vt where acc (models/fc_cuda.h).
  void keep_kernel(const at::Tensor& acc, const at::Tensor& keep, const at::Tensor& Gk, const at::Tensor& Wt,
                   const at::Tensor& Vt, RoundState& s) const {
#ifdef LAZYFEAT_WITH_CUDA_KERNELS
    const bool momentum = Vt.defined();
    const at::Tensor ac = acc.contiguous(), kc = keep.contiguous();
    cuda::keep_trials(ac.data_ptr<bool>(), kc.data_ptr<bool>(), Gk.data_ptr<double>(), Wt.data_ptr<double>(),
                      momentum ? Vt.data_ptr<double>() : nullptr, s.G.data_ptr<double>(), s.W.data_ptr<double>(),
                      momentum ? s.V.data_ptr<double>() : nullptr, s.W.size(0), s.W.size(1),
                      at::cuda::getCurrentCUDAStream().stream());
#else
    (void)acc, (void)keep, (void)Gk, (void)Wt, (void)Vt, (void)s;
    no_kernels();
#endif
  }
  RoundState rs_;
  std::vector<int64_t> rs_ks_;  // the members rs_ holds, and the rule of the graph
  RuleParams rs_rule_;
  CudaGraph graph_;  // of one round on rs_ (kept while rs_ks_ and rs_rule_ hold)
};

// The rounds of the paper's rule on the device (Engine::rounds). Per round, for the members
// still live (Running, fewer accepted steps than park_at), as Member with the sequential loop of
// experiment/train.cpp: the trial step (v <- x v - (1 - x) g, w <- w + dt v; gradient flow
// w <- w - dt g), the forward and its fit, the verdict (StepControl::judge: NaN df diverges,
// df >= df_max rejects and divides dt by 10, df <= df_min multiplies it by 10 when df = 0 and by
// 1.1 otherwise, capped by max_dt), the gradient at the accepted trials with an unsatisfied
// point, the rejected (and diverging) trials restored. The members' state stays in s (fixed
// addresses): one round reads it and writes it back, so that a CUDA graph of one round replays
// the rest (common/cuda_graph.h). Nothing goes to the host until the last round.
void BatchedEngine::round(RoundState& s, const RuleParams& rule) {
  PhaseTimes::begin(opts_.device());  // bench ensemble --phases: where a round's time goes
  const at::Tensor live = (s.stop == 0) & (s.step < s.park);
  const at::Tensor &t = s.t, &dt = s.dt;
  // The decay x of Momentum::decay, on every member (tau = t/mu: 0 at t = 0).
  at::Tensor x;
  if (rule.tau > 0) x = at::exp(-dt / rule.tau);
  else if (rule.tau < 0) x = at::where(t > 0, at::exp(-rule.tau * (at::log(t) - at::log(t + dt))), at::zeros_like(t));
  auto col = [&](const at::Tensor& v) { return v.to(opts_.dtype()).unsqueeze(1); };  // [K', 1]
  const at::Tensor lc = live.unsqueeze(1), dtc = col(dt);
  at::Tensor W, V = s.V;  // the trial's weights and velocity; s.W and s.V stay those before it
  const bool momentum = Momentum{rule.tau}.enabled();
  if (cuda_kernels_) {  // one pass (models/fc_cuda.h), the same bits as the composition below
    W = at::empty_like(s.W);
    V = momentum ? at::empty_like(s.V) : at::Tensor();
    trial_kernel(s, x, live, W, V);
  } else if (momentum) {
    V = at::where(lc, s.V * col(x) - s.G * col(1.0 - x), s.V);
    W = at::where(lc, s.W + V * dtc, s.W);
  } else {
    W = at::where(lc, s.W - s.G * dtc, s.W);
  }
  PhaseTimes::mark("trial step");
  const at::Tensor Fn = batched_outputs(W, x_, /*keep=*/true).to(at::kDouble);  // [K', n]
  const DeviceFit fit = device_fit(Fn, s.F, s.F0, s.alpha);
  const at::Tensor nan = fit.df.isnan();
  const at::Tensor acc = live & ~nan & (fit.df < rule.df_max), rej = live & ~nan & ~(fit.df < rule.df_max);
  at::Tensor grown = dt * at::where(fit.df == 0, at::full_like(dt, 10.0), at::full_like(dt, 1.1));
  if (rule.max_dt > 0) grown = at::clamp_max(grown, rule.max_dt);
  const at::Tensor dt_next = at::where(rej, dt / 10.0, at::where(acc & (fit.df <= rule.df_min), grown, dt));
  const at::Tensor t_next = at::where(acc, t + dt, t);
  const at::Tensor finite = fit.loss2.isfinite() & t_next.isfinite() & dt_next.isfinite();
  // The gradient at the accepted trial weights (the kept forward), for members with a point left.
  const at::Tensor keep = acc & finite & (fit.unsat > 0);
  at::Tensor Gk = at::empty_like(s.G);
  PhaseTimes::mark("fit and rule");
  backward(fit.C * keep.to(at::kDouble).unsqueeze(1), Gk);
  // Why members stop (Member::settle and accept): the first reason only.
  auto code = [](RuleState::Stop r) { return double(int(r)); };
  at::Tensor why = at::where(live & nan, code(RuleState::Stop::NanStep), 0.0);
  why = at::where(rej & ~(dt_next > 0), code(RuleState::Stop::StepUnderflow), why);
  why = at::where(acc & ~finite, code(RuleState::Stop::NonFinite), why);
  why = at::where(acc & finite & (fit.unsat == 0), code(RuleState::Stop::Converged), why);
  const at::Tensor next = at::stack({t_next, dt_next,
                                     at::where(s.t1.isnan() & acc & finite & (fit.loss2 < 0.5), t_next, s.t1),
                                     s.step + acc.to(at::kDouble), s.rejected + rej.to(at::kDouble),
                                     s.gevals + keep.to(at::kDouble), at::where(acc, fit.loss2, s.loss2),
                                     at::where(acc, fit.err, s.err), at::where(acc, fit.unsat, s.unsat),
                                     at::where(s.stop == 0, why, s.stop)});  // RoundState::S's rows
  // Every new value is computed from the old ones above; now they replace them.
  if (cuda_kernels_) {
    keep_kernel(acc, keep, Gk, W, V, s);
  } else {
    s.G.copy_(at::where(keep.unsqueeze(1), Gk, s.G));
    s.W.copy_(at::where(acc.unsqueeze(1), W, s.W));
    s.V.copy_(at::where(acc.unsqueeze(1), V, s.V));
  }
  s.F.copy_(at::where(acc.unsqueeze(1), Fn, s.F));
  s.S.narrow(0, 0, RoundState::kOut).copy_(next);
  PhaseTimes::mark("state update");
}

void BatchedEngine::rounds(const std::vector<int64_t>& ks, const RuleParams& rule, int64_t R,
                           std::vector<RuleState>& st) {
  require(st.size() == ks.size(), "engine rounds: one state a member");
  if (ks.empty() || R <= 0) return;
  c10::NoGradGuard ng;
  const int64_t K = int64_t(ks.size());
  const bool all = everyone(ks);
  const at::Tensor idx = all ? at::Tensor() : index(ks);
  auto pick = [&](const at::Tensor& A) { return all ? A : A.index_select(0, idx); };
  // A graph of one round when there are enough rounds to pay for its capture (an eager round and
  // the instantiation: about two rounds' host time), kept while the members and the rule stay.
  // Not while the phases are timed (a replay makes no marks: common/phase_times.h).
  const bool graph = R >= kGraphRounds && CudaGraph::wanted(opts_.device()) && !PhaseTimes::enabled();
  std::optional<CudaGraph::OnStream> on;
  if (graph) on.emplace(graph_);
  const bool same = rs_.S.defined() && rs_ks_ == ks && rs_rule_.df_min == rule.df_min &&
                    rs_rule_.df_max == rule.df_max && rs_rule_.max_dt == rule.max_dt && rs_rule_.tau == rule.tau;
  if (!same) {
    graph_.reset();
    const auto d64 = at::TensorOptions().dtype(at::kDouble).device(opts_.device());
    rs_.W = at::empty({K, lay_.size}, opts_), rs_.V = at::empty_like(rs_.W), rs_.G = at::empty_like(rs_.W);
    rs_.F = at::empty({K, n_}, d64), rs_.F0 = at::empty({K, n_}, d64), rs_.alpha = at::empty({K}, d64);
    rs_.S = at::empty({RoundState::kRows, K}, d64);
    at::Tensor* rows[] = {&rs_.t, &rs_.dt, &rs_.t1, &rs_.step, &rs_.rejected, &rs_.gevals,
                          &rs_.loss2, &rs_.err, &rs_.unsat, &rs_.stop, &rs_.park};
    for (int64_t r = 0; r < RoundState::kRows; ++r) *rows[r] = rs_.S[r];
    rs_ks_ = ks, rs_rule_ = rule;
  }
  rs_.W.copy_(pick(W_)), rs_.V.copy_(pick(V_)), rs_.G.copy_(pick(G_)), rs_.F.copy_(pick(F_));
  rs_.F0.copy_(pick(F0_)), rs_.alpha.copy_(pick(alpha_));
  std::vector<double> in;  // [kRows, K']: one upload
  in.reserve(size_t(RoundState::kRows * K));
  for (const RuleState& q : st) in.push_back(q.t);
  for (const RuleState& q : st) in.push_back(q.dt);
  for (const RuleState& q : st) in.push_back(q.t1);
  for (const RuleState& q : st) in.push_back(double(q.step));
  for (const RuleState& q : st) in.push_back(double(q.rejected));
  for (const RuleState& q : st) in.push_back(double(q.gradient_evaluations));
  for (const RuleState& q : st) in.push_back(q.fit.loss2);
  for (const RuleState& q : st) in.push_back(q.fit.train_err);
  for (const RuleState& q : st) in.push_back(double(q.fit.unsatisfied));
  in.insert(in.end(), size_t(K), 0.0);  // stop: Running
  for (const RuleState& q : st) in.push_back(double(q.park_at));
  rs_.S.copy_(upload(at::tensor(in, at::TensorOptions().dtype(at::kDouble)).view({RoundState::kRows, K})));
  int64_t r = 0;
  if (graph) {
    if (!graph_.captured()) {
      round(rs_, rule);  // the first round eagerly: it also makes the stream's cuBLAS workspace
      ++r;
      graph_.capture([&] { round(rs_, rule); });
    }
    for (; r < R; ++r) graph_.replay();
  }
  for (; r < R; ++r) round(rs_, rule);
  PhaseTimes::collect();
  z_.clear(), pre_.clear(), Wl_.clear();
  if (all) {
    W_.copy_(rs_.W), V_.copy_(rs_.V), G_.copy_(rs_.G), F_.copy_(rs_.F);
  } else {
    W_.index_copy_(0, idx, rs_.W), V_.index_copy_(0, idx, rs_.V), G_.index_copy_(0, idx, rs_.G);
    F_.index_copy_(0, idx, rs_.F);
  }
  // [K', kOut]: one transfer
  const at::Tensor out = rs_.S.narrow(0, 0, RoundState::kOut).t().to(at::kCPU).contiguous();
  const double* o = out.data_ptr<double>();
  for (int64_t i = 0; i < K; ++i, o += RoundState::kOut) {
    RuleState& q = st[size_t(i)];
    q.t = o[0], q.dt = o[1], q.t1 = o[2];
    q.step = int64_t(o[3]), q.rejected = int64_t(o[4]), q.gradient_evaluations = int64_t(o[5]);
    q.fit.loss2 = o[6], q.fit.train_err = o[7], q.fit.unsatisfied = int64_t(o[8]);
    q.stop = RuleState::Stop(int(o[9]));
  }
}

}  // namespace

EnsembleEngineBase::EnsembleEngineBase(FitSpec spec, int64_t P, at::TensorOptions opts)
    : spec_(std::move(spec)), opts_(opts) {
  const int64_t K = int64_t(spec_.alpha.size());
  W_ = at::zeros({K, P}, opts);
  V_ = at::zeros_like(W_);
  G_ = at::zeros_like(W_);
  Wp_ = at::zeros_like(W_);
  Vp_ = at::zeros_like(W_);
  W0_ = at::zeros_like(W_);
  if (spec_.gradient_history) Gp_ = at::zeros_like(W_), Gx_ = at::zeros_like(W_);
}

void EnsembleEngineBase::trial(const std::vector<int64_t>& ks, const std::vector<double>& x,
                               const std::vector<double>& dt, bool momentum) {
  if (ks.empty()) return;
  c10::NoGradGuard ng;
  const at::Tensor dts = column(dt);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = 1.0 - x[i];
  if (everyone(ks)) {  // in place, the same arithmetic
    Wp_.copy_(W_);
    Vp_.copy_(V_);
    if (momentum) {
      V_.mul_(column(x)).sub_(G_ * column(y));  // v <- x v - (1 - x) g
      W_.add_(V_ * dts);                        // w <- w + dt v
    } else {
      W_.sub_(G_ * dts);  // gradient flow
    }
    return;
  }
  at::Tensor idx = index(ks);
  at::Tensor W = W_.index_select(0, idx), V = V_.index_select(0, idx), G = G_.index_select(0, idx);  // [K', P]
  Wp_.index_copy_(0, idx, W);
  Vp_.index_copy_(0, idx, V);
  if (momentum) {
    at::Tensor Vn = V * column(x) - G * column(y);  // v <- x v - (1 - x) g
    V_.index_copy_(0, idx, Vn);
    W_.index_copy_(0, idx, W + Vn * dts);  // w <- w + dt v
  } else {
    W_.index_copy_(0, idx, W - G * dts);  // gradient flow
  }
}

void EnsembleEngineBase::trial_exp(const std::vector<int64_t>& ks, const std::vector<ExpStep>& c) {
  if (ks.empty()) return;
  c10::NoGradGuard ng;
  history();
  std::vector<double> vv, vg, vp, wv, wg, wp, r;
  for (const ExpStep& s : c)
    vv.push_back(s.vv), vg.push_back(s.vg), vp.push_back(s.vp), wv.push_back(s.wv), wg.push_back(s.wg),
        wp.push_back(s.wp), r.push_back(s.r);
  const at::Tensor idx = index(ks);
  const at::Tensor W = W_.index_select(0, idx), V = V_.index_select(0, idx), G = G_.index_select(0, idx),
                   Gp = Gp_.index_select(0, idx);  // [K', P]
  Wp_.index_copy_(0, idx, W);
  Vp_.index_copy_(0, idx, V);
  W_.index_copy_(0, idx, W + V * column(wv) + G * column(wg) + Gp * column(wp));
  V_.index_copy_(0, idx, V * column(vv) + G * column(vg) + Gp * column(vp));
  Gx_.index_copy_(0, idx, G + (G - Gp) * column(r));
}

void EnsembleEngineBase::restore(const std::vector<int64_t>& ks) {
  if (ks.empty()) return;
  c10::NoGradGuard ng;
  at::Tensor idx = index(ks);
  W_.index_copy_(0, idx, Wp_.index_select(0, idx));
  V_.index_copy_(0, idx, Vp_.index_select(0, idx));
}

bool EnsembleEngineBase::everyone(const std::vector<int64_t>& ks) const {
  if (int64_t(ks.size()) != W_.size(0)) return false;
  for (size_t i = 0; i < ks.size(); ++i)
    if (ks[i] != int64_t(i)) return false;
  return true;
}

at::Tensor EnsembleEngineBase::upload(const at::Tensor& host) const {
  if (!opts_.device().is_cuda()) return host.to(opts_.device());
  return host.pin_memory().to(at::TensorOptions().device(opts_.device()), /*non_blocking=*/true, /*copy=*/false);
}

at::Tensor EnsembleEngineBase::index(const std::vector<int64_t>& ks) const {
  return upload(at::tensor(ks, at::TensorOptions().dtype(at::kLong)));
}

at::Tensor EnsembleEngineBase::column(const std::vector<double>& v) const {
  return upload(at::tensor(v, at::TensorOptions().dtype(at::kDouble)).to(opts_.dtype())).unsqueeze(1);
}

at::Tensor EnsembleEngineBase::members(const std::vector<int64_t>& ks) const {
  return everyone(ks) ? W_ : W_.index_select(0, index(ks));
}

std::vector<ChangeNorms> EnsembleEngineBase::weight_changes(const std::vector<int64_t>& ks,
                                                            const std::vector<ParamSlice>& layers) const {
  return change_norms(layers, members(ks) - (everyone(ks) ? W0_ : W0_.index_select(0, index(ks))));
}

at::Tensor& EnsembleEngineBase::history() {
  require(spec_.gradient_history, "engine: no gradient history (FitSpec::gradient_history)");
  return Gp_;
}

Fit HostOutputs::start(const FitSpec& spec, int64_t k) { return set(spec, k, f, f); }

Fit HostOutputs::set(const FitSpec& spec, int64_t k, std::vector<double> f_now, std::vector<double> f_init) {
  f = std::move(f_now);
  f0 = std::move(f_init);
  lf::fit(spec.loss, spec.alpha[size_t(k)], f, f0, spec.y, fit);
  return scalars(fit);
}

Trial HostOutputs::trial(const FitSpec& spec, int64_t k) {
  Trial t;
  t.df = output_change(f_new, f, spec.alpha[size_t(k)]);
  lf::fit(spec.loss, spec.alpha[size_t(k)], f_new, f0, spec.y, fit);
  t.fit = scalars(fit);
  t.f = f.data();
  t.f_new = f_new.data();
  t.f0 = f0.data();
  return t;
}

void Engine::forward_batches(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>& rows,
                             std::vector<std::vector<double>>& f) {
  f.resize(ks.size());
  for (size_t i = 0; i < ks.size(); ++i) forward_rows(ks[i], rows[i], f[i]);
}

void Engine::gradient_batches(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>& rows,
                              const std::vector<std::vector<double>>& c) {
  for (size_t i = 0; i < ks.size(); ++i) gradient_rows(ks[i], rows[i], c[i]);
}

void Engine::rounds(const std::vector<int64_t>&, const RuleParams&, int64_t, std::vector<RuleState>&) {
  throw std::logic_error("this engine runs no rounds on the device (Engine::rounds_supported)");
}

std::unique_ptr<Engine> make_sequential_engine(FitSpec spec, bool fused, const Activation& act, const NetLayout& lay,
                                               const at::Tensor& x_train, at::TensorOptions opts) {
  return std::make_unique<SequentialEngine>(std::move(spec), fused, act, lay, x_train, opts);
}

std::unique_ptr<Engine> make_batched_engine(FitSpec spec, const Activation& act, const FCLayout& lay,
                                            const at::Tensor& x_train, at::TensorOptions opts) {
  return std::make_unique<BatchedEngine>(std::move(spec), act, lay, x_train, opts);
}

}  // namespace lf
