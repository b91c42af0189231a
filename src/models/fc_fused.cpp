// Fused CPU float64 FC kernels (see fc_fused.h). The softplus pass computes e = exp(-|beta z|)
// once per element and derives both phi(z) = a (max(beta z, 0) + log1p(e)) / beta and
// phi'(z) = a sigmoid(beta z) (= a / (1 + e) for z > 0, a e / (1 + e) otherwise) from it.
// AVX2+FMA code is compiled per function (__attribute__((target))) and chosen at run time
// with __builtin_cpu_supports, so the default build runs on any x86-64; scalar otherwise.
// Deliberately not: other activations in SIMD (relu is cheap, tanh/swish are not in setup A).
#include "models/fc_fused.h"

#include <cmath>
#include <cstring>
#include <thread>

#include "common/error.h"

#if defined(LAZYFEAT_WITH_SLEEF) && defined(__x86_64__)
#include <immintrin.h>
#define LAZYFEAT_FUSED_SIMD 1
// SLEEF's AVX2 entry points (libsleef), declared here because sleef.h hides them unless the
// whole translation unit is compiled with -mavx.
extern "C" {
__attribute__((target("avx2,fma"))) __m256d Sleef_expd4_u10avx2(__m256d);
__attribute__((target("avx2,fma"))) __m256d Sleef_log1pd4_u10avx2(__m256d);
}
#endif

namespace lf {

FCLayout::FCLayout(int64_t d_, int64_t h_, int64_t L_) : d(d_), h(h_), L(L_) {
  int64_t off = 0;
  for (int64_t l = 0; l <= L; ++l) {
    w_offset.push_back(off);
    off += fan_out(l) * fan_in(l);
    b_offset.push_back(off);
    off += fan_out(l);
  }
  size = off;
}

FCParams FCLayout::views(const at::Tensor& flat) const {
  FCParams p;
  for (int64_t l = 0; l <= L; ++l) {
    p.W.push_back(flat.narrow(0, w_offset[l], fan_out(l) * fan_in(l)).view({fan_out(l), fan_in(l)}));
    p.b.push_back(flat.narrow(0, b_offset[l], fan_out(l)));
  }
  return p;
}

at::Tensor FCLayout::flatten(const FCParams& p) const {
  std::vector<at::Tensor> parts;
  for (auto& t : p.flat()) parts.push_back(t.reshape({-1}));
  return at::cat(parts);
}

namespace {

void softplus_scalar(double* z, double* dphi, int64_t n, double beta, double a) {
  const double ab = a / beta;
  for (int64_t i = 0; i < n; ++i) {
    double bx = beta * z[i];
    double e = std::exp(-std::fabs(bx));
    z[i] = ((bx > 0 ? bx : 0.0) + std::log1p(e)) * ab;
    if (dphi) {
      double inv = a / (1.0 + e);
      dphi[i] = bx > 0 ? inv : inv * e;
    }
    if (std::isnan(bx)) z[i] = bx;
  }
}

#ifdef LAZYFEAT_FUSED_SIMD
__attribute__((target("avx2,fma"))) void softplus_avx2(double* z, double* dphi, int64_t n, double beta,
                                                      double a) {
  const __m256d vb = _mm256_set1_pd(beta), va = _mm256_set1_pd(a), vab = _mm256_set1_pd(a / beta);
  const __m256d one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd(), sign = _mm256_set1_pd(-0.0);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m256d bx = _mm256_mul_pd(vb, _mm256_loadu_pd(z + i));
    __m256d e = Sleef_expd4_u10avx2(_mm256_or_pd(bx, sign));  // exp(-|beta z|)
    __m256d l = Sleef_log1pd4_u10avx2(e);
    __m256d pos = _mm256_max_pd(zero, bx);                     // NaN propagates through l anyway
    _mm256_storeu_pd(z + i, _mm256_mul_pd(_mm256_add_pd(pos, l), vab));
    if (dphi) {
      __m256d inv = _mm256_div_pd(va, _mm256_add_pd(one, e));  // a / (1 + e)
      __m256d m = _mm256_cmp_pd(bx, zero, _CMP_GT_OQ);
      _mm256_storeu_pd(dphi + i, _mm256_blendv_pd(_mm256_mul_pd(inv, e), inv, m));
    }
  }
  if (i < n) softplus_scalar(z + i, dphi ? dphi + i : nullptr, n - i, beta, a);
}
#endif

bool cpu_has_avx2() {
#if defined(__x86_64__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

void activation_serial(const Activation& act, double* z, double* dphi, int64_t n) {
  const double a = act.scale;
  switch (act.kind) {
    case Activation::Kind::Softplus:
#ifdef LAZYFEAT_FUSED_SIMD
      if (cpu_has_avx2()) return softplus_avx2(z, dphi, n, act.beta, a);
#endif
      return softplus_scalar(z, dphi, n, act.beta, a);
    case Activation::Kind::Relu:
      for (int64_t i = 0; i < n; ++i) {
        double x = z[i];
        z[i] = x > 0 ? a * x : (x == x ? 0.0 : x);
        if (dphi) dphi[i] = x > 0 ? a : 0.0;
      }
      return;
    case Activation::Kind::Tanh:
      for (int64_t i = 0; i < n; ++i) {
        double t = std::tanh(z[i]);
        z[i] = a * t;
        if (dphi) dphi[i] = a * (1.0 - t * t);
      }
      return;
    case Activation::Kind::Swish:
      for (int64_t i = 0; i < n; ++i) {
        double x = z[i], s = 1.0 / (1.0 + std::exp(-x));
        z[i] = a * x * s;
        if (dphi) dphi[i] = a * (s + x * s * (1.0 - s));
      }
      return;
  }
}

}  // namespace

bool fused_simd_available() {
#ifdef LAZYFEAT_FUSED_SIMD
  return cpu_has_avx2();
#else
  return false;
#endif
}

void activation_inplace(const Activation& act, double* z, double* dphi, int64_t n) {
  // Large passes are split over two threads (the elementwise work otherwise runs on one core
  // while the matrix products use both); each element's result does not depend on the split.
  constexpr int64_t kSplit = 1 << 16;
  if (n < kSplit) return activation_serial(act, z, dphi, n);
  int64_t half = (n / 2) & ~int64_t(7);
  std::thread other([&] { activation_serial(act, z + half, dphi ? dphi + half : nullptr, n - half); });
  activation_serial(act, z, dphi, half);
  other.join();
}

FCFused::FCFused(const Activation& act, const FCLayout& layout, int64_t n) : act_(act), lay_(layout), n_(n) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t h = lay_.h, L = lay_.L;
  for (int64_t l = 0; l < L; ++l) {
    z_.push_back(at::empty({n, h}, o));
    dphi_.push_back(at::empty({n, h}, o));
    zs_.push_back(at::empty({n, h}, o));
    dphis_.push_back(at::empty({n, h}, o));
  }
  xs_ = at::empty({n, lay_.d}, o);
  delta_ = at::empty({n, h}, o);
  delta2_ = at::empty({n, h}, o);
  cbuf_ = at::empty({n}, o);
}

void FCFused::forward(const FCParams& p, const at::Tensor& x, at::Tensor& f) {
  const int64_t L = lay_.L, h = lay_.h;
  require(x.size(0) == n_ && f.numel() == n_, "FCFused::forward: wrong number of points");
  const double sd = 1.0 / std::sqrt(double(lay_.d)), sh = 1.0 / std::sqrt(double(h));
  // pre_1 [n, h] = x [n, d] W_0^T [d, h] / sqrt(d) + b_0, then z_1 = phi(pre_1) in place.
  at::addmm_out(z_[0], p.b[0], x, p.W[0].t(), 1.0, sd);
  activation_inplace(act_, z_[0].data_ptr<double>(), dphi_[0].data_ptr<double>(), n_ * h);
  for (int64_t l = 1; l < L; ++l) {  // pre_{l+1} = z_l W_l^T / sqrt(h) + b_l
    at::addmm_out(z_[l], p.b[l], z_[l - 1], p.W[l].t(), 1.0, sh);
    activation_inplace(act_, z_[l].data_ptr<double>(), dphi_[l].data_ptr<double>(), n_ * h);
  }
  at::Tensor f2 = f.view({n_, 1});  // f [n, 1] = z_L W_L^T / sqrt(h) + b_L
  at::addmm_out(f2, p.b[L], z_[L - 1], p.W[L].t(), 1.0, sh);
}

void FCFused::backward(const FCParams& p, const at::Tensor& x, const int64_t* rows, const double* c, int64_t m,
                       FCParams& grad) {
  const int64_t L = lay_.L, h = lay_.h, d = lay_.d;
  if (m == 0) {
    for (auto& t : grad.flat()) t.zero_();
    return;
  }
  const double sd = 1.0 / std::sqrt(double(d)), sh = 1.0 / std::sqrt(double(h));
  bool all = (m == n_);
  for (int64_t k = 0; all && k < m; ++k) all = (rows[k] == k);
  // The rows of the listed points: inputs, activations and phi' of every hidden layer.
  std::vector<at::Tensor> Z(L), D(L);
  at::Tensor X;
  if (all) {
    X = x;
    Z = z_;
    D = dphi_;
  } else {
    auto gather = [&](const at::Tensor& src, at::Tensor& dst, int64_t width) {
      const double* s = src.data_ptr<double>();
      double* o = dst.data_ptr<double>();
      for (int64_t k = 0; k < m; ++k) std::memcpy(o + k * width, s + rows[k] * width, sizeof(double) * width);
      return dst.narrow(0, 0, m);
    };
    X = gather(x, xs_, d);
    for (int64_t l = 0; l < L; ++l) {
      Z[l] = gather(z_[l], zs_[l], h);
      D[l] = gather(dphi_[l], dphis_[l], h);
    }
  }
  at::Tensor cm = cbuf_.narrow(0, 0, m);
  std::memcpy(cm.data_ptr<double>(), c, sizeof(double) * m);

  // Output layer: dW_L [1, h] = c^T [1, m] z_L [m, h] / sqrt(h); db_L = sum c.
  at::addmm_out(grad.W[L], grad.W[L], cm.view({1, m}), Z[L - 1], 0.0, sh);
  double csum = 0;
  for (int64_t k = 0; k < m; ++k) csum += c[k];
  grad.b[L].fill_(csum);
  // delta [m, h] = d(sum c f)/d pre_L = c_k W_L[j] / sqrt(h) phi'(pre_L)[k, j].
  at::Tensor delta = delta_.narrow(0, 0, m), delta2 = delta2_.narrow(0, 0, m);
  {
    double* dl = delta.data_ptr<double>();
    const double* ph = D[L - 1].data_ptr<double>();
    const double* wl = p.W[L].contiguous().data_ptr<double>();
    for (int64_t k = 0; k < m; ++k) {
      double ck = c[k] * sh;
      for (int64_t j = 0; j < h; ++j) dl[k * h + j] = ck * wl[j] * ph[k * h + j];
    }
  }
  for (int64_t l = L - 1; l >= 0; --l) {
    const at::Tensor& in = (l == 0) ? X : Z[l - 1];  // [m, fan_in]
    double s = (l == 0) ? sd : sh;
    at::addmm_out(grad.W[l], grad.W[l], delta.t(), in, 0.0, s);  // dW_l [h, fan_in] = delta^T in * s
    at::sum_out(grad.b[l], delta, {0});                          // db_l [h]
    if (l >= 1) {
      // delta_prev [m, h] = (delta [m, h] W_l [h, h]) * s * phi'(pre_l)
      at::addmm_out(delta2, delta2, delta, p.W[l], 0.0, s);
      delta2.mul_(D[l - 1]);
      std::swap(delta, delta2);
    }
  }
}

at::Tensor FCFused::evaluate(const FCParams& p, const at::Tensor& x) {
  const int64_t N = x.size(0), L = lay_.L, h = lay_.h;
  constexpr int64_t kChunk = 4096;
  at::Tensor out = at::empty({N}, at::TensorOptions().dtype(at::kDouble));
  if (N == 0) return out;
  const int64_t rows = std::min(kChunk, N);
  if (!eval_a_.defined() || eval_a_.size(0) < rows) {
    eval_a_ = at::empty({rows, h}, out.options());
    eval_b_ = at::empty({rows, h}, out.options());
  }
  const double sd = 1.0 / std::sqrt(double(lay_.d)), sh = 1.0 / std::sqrt(double(h));
  for (int64_t start = 0; start < N; start += kChunk) {
    int64_t r = std::min(kChunk, N - start);
    at::Tensor a = eval_a_.narrow(0, 0, r), b = eval_b_.narrow(0, 0, r);
    at::addmm_out(a, p.b[0], x.narrow(0, start, r), p.W[0].t(), 1.0, sd);
    activation_inplace(act_, a.data_ptr<double>(), nullptr, r * h);
    for (int64_t l = 1; l < L; ++l) {
      at::addmm_out(b, p.b[l], a, p.W[l].t(), 1.0, sh);
      activation_inplace(act_, b.data_ptr<double>(), nullptr, r * h);
      std::swap(a, b);
    }
    at::Tensor o = out.narrow(0, start, r).view({r, 1});
    at::addmm_out(o, p.b[L], a, p.W[L].t(), 1.0, sh);
  }
  return out;
}

}  // namespace lf
