// Fused CPU float64 FC kernels (see fc_fused.h).
// Softplus: one exp per element (inline, below; no library call), e = exp(-|beta z|) in (0, 1],
// gives both
//   phi(z)  = a (max(beta z, 0) + log1p(e)) / beta,   log1p(e) = 2 atanh(s), s = e / (2 + e) <= 1/3
//             (atanh by its series s (1 + s^2/3 + s^4/5 + ...), 17 terms: below 2^-53 for s^2 <= 1/9;
//             within ~2 ulp of log1p over the whole range, measured)
//   phi'(z) = a sigmoid(beta z) = a / (1 + e) for z > 0, a e / (1 + e) otherwise,
// with one division for both 1 / (1 + e) and 1 / (2 + e). That kernel is written once
// (models/activation_simd.inc) and compiled for AVX2+FMA and for AVX-512 in target regions, chosen
// at run time (fused_simd_width), so the default build runs on any x86-64; the AVX-512 kernel
// gives the AVX2 kernel's bits, 1.3x faster on a Zen 4 core (docs/benchmarks.md).
// Threads: lazyfeat's thread pool (common/pool.h: the caller and its workers) runs fixed tasks
// (blocks of rows in the forward, contiguous chunks of the listed points in the backward); the
// BLAS (dgemm_ of the loaded library, looked up once: models/blas.h) runs single-threaded inside
// them. Where its threads cannot be set (no openblas_set_num_threads: MKL inside PyTorch's
// LibTorch) the region runs as an ATen parallel region, inside which MKL starts no threads of its
// own; without a dgemm_ at all the products go through at::mm there.
// Deliberately not: tanh and swish in SIMD (in neither setup),
// threads of its own.
#include "models/fc_fused.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "common/error.h"
#include "common/pool.h"
#include "models/blas.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define LAZYFEAT_FUSED_SIMD 1
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

std::vector<ParamSlice> FCLayout::slices() const {
  std::vector<ParamSlice> out;
  for (int64_t l = 0; l <= L; ++l) out.push_back({w_offset[l], fan_out(l) * fan_in(l), b_offset[l], fan_out(l)});
  return out;
}

at::Tensor FCLayout::flatten(const FCParams& p) const {
  std::vector<at::Tensor> parts;
  for (auto& t : p.flat()) parts.push_back(t.reshape({-1}));
  return at::cat(parts);
}

namespace {

// ---- elementwise kernels -------------------------------------------------------------------

// The widest SIMD activation kernels this CPU runs.
SimdWidth cpu_simd_width() {
#if defined(__x86_64__)
  static const SimdWidth w = !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? SimdWidth::None
                             : (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
                                 ? SimdWidth::Avx512
                                 : SimdWidth::Avx2;
  return w;
#else
  return SimdWidth::None;
#endif
}

// thr: beta z > thr is linear, phi = a z, phi' = a (Activation::threshold; +inf = no cut-off).
void softplus_scalar(double* z, double* dphi, int64_t n, double beta, double a, double thr) {
  const double ab = a / beta;
  for (int64_t i = 0; i < n; ++i) {
    const double x = z[i], bx = beta * x;
    double e = std::exp(-std::fabs(bx));
    z[i] = ((bx > 0 ? bx : 0.0) + std::log1p(e)) * ab;
    if (dphi) {
      double inv = a / (1.0 + e);
      dphi[i] = bx > 0 ? inv : inv * e;
    }
    if (bx > thr) {
      z[i] = a * x;
      if (dphi) dphi[i] = a;
    }
    if (std::isnan(bx)) z[i] = bx;
  }
}

#ifdef LAZYFEAT_FUSED_SIMD
// The SIMD activations: models/activation_simd.inc at two widths, each in its own target region.
// blend(m, a, b) takes b where m is set; greater is the ordered a > b (false on NaN).
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
struct V {
  using T = __m256d;
  using M = __m256d;
  static constexpr int64_t kLanes = 4;
  static T set1(double x) { return _mm256_set1_pd(x); }
  static T load(const double* p) { return _mm256_load_pd(p); }
  static T loadu(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, T x) { _mm256_store_pd(p, x); }
  static void storeu(double* p, T x) { _mm256_storeu_pd(p, x); }
  static T add(T a, T b) { return _mm256_add_pd(a, b); }
  static T mul(T a, T b) { return _mm256_mul_pd(a, b); }
  static T div(T a, T b) { return _mm256_div_pd(a, b); }
  static T fmadd(T a, T b, T c) { return _mm256_fmadd_pd(a, b, c); }
  static T max(T a, T b) { return _mm256_max_pd(a, b); }
  static T bit_or(T a, T b) { return _mm256_or_pd(a, b); }
  static T round(T x) { return _mm256_round_pd(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static M greater(T a, T b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static M is_nan(T a) { return _mm256_cmp_pd(a, a, _CMP_UNORD_Q); }
  static T blend(M m, T a, T b) { return _mm256_blendv_pd(a, b, m); }
  // p 2^n for integral n >= -1076: 2^n1 2^n2, n1 = floor(n / 2), n2 = n - n1, both normal.
  static T times_pow2(T p, T n) {
    __m128i ni = _mm256_cvtpd_epi32(n);
    __m128i n1 = _mm_srai_epi32(ni, 1), n2 = _mm_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi64x(1023);
    T s1 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n1), bias), 52));
    T s2 = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(_mm256_cvtepi32_epi64(n2), bias), 52));
    return _mm256_mul_pd(_mm256_mul_pd(p, s1), s2);
  }
};
#include "models/activation_simd.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx2,fma")
namespace avx512 {
struct V {
  using T = __m512d;
  using M = __mmask8;
  static constexpr int64_t kLanes = 8;
  static T set1(double x) { return _mm512_set1_pd(x); }
  static T load(const double* p) { return _mm512_load_pd(p); }
  static T loadu(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, T x) { _mm512_store_pd(p, x); }
  static void storeu(double* p, T x) { _mm512_storeu_pd(p, x); }
  static T add(T a, T b) { return _mm512_add_pd(a, b); }
  static T mul(T a, T b) { return _mm512_mul_pd(a, b); }
  static T div(T a, T b) { return _mm512_div_pd(a, b); }
  static T fmadd(T a, T b, T c) { return _mm512_fmadd_pd(a, b, c); }
  static T max(T a, T b) { return _mm512_max_pd(a, b); }
  static T bit_or(T a, T b) { return _mm512_or_pd(a, b); }
  static T round(T x) { return _mm512_roundscale_pd(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static M greater(T a, T b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static M is_nan(T a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
  static T blend(M m, T a, T b) { return _mm512_mask_blend_pd(m, a, b); }
  static T times_pow2(T p, T n) {  // as avx2::V's
    __m256i ni = _mm512_cvtpd_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m512i bias = _mm512_set1_epi64(1023);
    T s1 = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(n1), bias), 52));
    T s2 = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(_mm512_cvtepi32_epi64(n2), bias), 52));
    return _mm512_mul_pd(_mm512_mul_pd(p, s1), s2);
  }
};
#include "models/activation_simd.inc"
}  // namespace avx512
#pragma GCC pop_options

// The widest kernel over whole vectors, then AVX2 over what is left of 4 lanes, then the last
// 1-3 values padded to 4 and through the same arithmetic, so that no value depends on its position.
void softplus_simd(double* z, double* dphi, int64_t n, double beta, double a, double thr, SimdWidth width) {
  const int64_t n4 = n & ~int64_t(3);
  int64_t done = 0;
  if (width == SimdWidth::Avx512) {
    done = n & ~int64_t(7);
    avx512::softplus_block(z, dphi, done, beta, a, thr);
  }
  avx2::softplus_block(z + done, dphi ? dphi + done : nullptr, n4 - done, beta, a, thr);
  if (n4 < n) {
    double zt[4] = {0, 0, 0, 0}, dt[4];
    std::memcpy(zt, z + n4, sizeof(double) * (n - n4));
    avx2::softplus_block(zt, dphi ? dt : nullptr, 4, beta, a, thr);
    std::memcpy(z + n4, zt, sizeof(double) * (n - n4));
    if (dphi) std::memcpy(dphi + n4, dt, sizeof(double) * (n - n4));
  }
}
#endif

void activation_serial(const Activation& act, double* z, double* dphi, int64_t n, SimdWidth width) {
  const double a = act.scale;
  const double thr = act.threshold > 0 ? act.threshold : std::numeric_limits<double>::infinity();
  switch (act.kind) {
    case Activation::Kind::Softplus:
#ifdef LAZYFEAT_FUSED_SIMD
      if (width != SimdWidth::None) return softplus_simd(z, dphi, n, act.beta, a, thr, width);
#endif
      return softplus_scalar(z, dphi, n, act.beta, a, thr);
    case Activation::Kind::Relu: {
      int64_t i = 0;
#ifdef LAZYFEAT_FUSED_SIMD
      if (width != SimdWidth::None) {
        i = n & ~int64_t(width == SimdWidth::Avx512 ? 7 : 3);
        if (width == SimdWidth::Avx512) avx512::relu_block(z, dphi, i, a);
        else avx2::relu_block(z, dphi, i, a);
      }
#endif
      for (; i < n; ++i) {  // the scalar kernel (and the vectors' tail): the same values
        double x = z[i];
        z[i] = x > 0 ? a * x : (x == x ? 0.0 : x);
        if (dphi) dphi[i] = x > 0 ? a : 0.0;
      }
      return;
    }
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

// ---- BLAS ----------------------------------------------------------------------------------

// Row-major helpers on the network's shapes.
// out [r, fo] = s in [r, fi] W^T, from Wt = W^T [fi, fo] (W [fo, fi]): column-major out^T [fo, r] =
// Wt(col-major [fo, fi]) in^T(col-major [fi, r]), an NN product. From W itself it would be TN, which
// OpenBLAS's AVX-512 builds multiply at these sizes with packing (~45 GFLOP/s a Zen 4 core at
// r = 88, h = 100) where NN takes their small-matrix kernel (~56; docs/benchmarks.md).
void mm_rows(int64_t r, int64_t fo, int64_t fi, double s, const double* in, const double* Wt, double* out) {
  gemm(false, false, fo, r, fi, s, Wt, fo, in, fi, 0.0, out, fo);
}
// dW [fo, fi] += s delta^T [fo, r] in [r, fi].
void mm_grad(int64_t r, int64_t fo, int64_t fi, double s, const double* delta, const double* in, double* dW) {
  gemm(false, true, fi, fo, r, s, in, fi, delta, fo, 1.0, dW, fi);
}
// prev [r, fi] = s delta [r, fo] W [fo, fi].
void mm_back(int64_t r, int64_t fo, int64_t fi, double s, const double* delta, const double* W, double* prev) {
  gemm(false, false, fi, r, fo, s, W, fi, delta, fo, 0.0, prev, fi);
}

// Rows per block: about 8k values of a layer, a function of h only. The backward reads a block's
// z_l and phi'_l of every layer (2 L rows h values: 0.7 MB at h = 100, L = 5), which then stay in
// a 1 MB L2 cache; 16k values a layer made the backward 17% slower on a Zen 4 core, 4k the forward
// (docs/benchmarks.md, train-step).
int64_t block_rows(int64_t h) { return std::clamp<int64_t>((8192 / std::max<int64_t>(h, 1) + 7) / 8 * 8, 32, 1024); }

}  // namespace

SimdWidth fused_simd_width() {
  static const SimdWidth w = [] {
    const SimdWidth cpu = cpu_simd_width();
    const char* e = std::getenv("LAZYFEAT_SIMD");
    const std::string v = e ? e : "";
    if (v.empty()) return cpu;
    const SimdWidth asked = v == "avx512" ? SimdWidth::Avx512 : v == "avx2" ? SimdWidth::Avx2 : SimdWidth::None;
    require(v == "avx512" || v == "avx2" || v == "none",
            "LAZYFEAT_SIMD must be avx512, avx2 or none (got '" + v + "')");
    return std::min(asked, cpu);
  }();
  return w;
}

std::string simd_name(SimdWidth w) {
  return w == SimdWidth::Avx512 ? "avx512" : w == SimdWidth::Avx2 ? "avx2" : "none";
}

void activation_inplace(const Activation& act, double* z, double* dphi, int64_t n) {
  activation_serial(act, z, dphi, n, fused_simd_width());
}

void activation_inplace(const Activation& act, double* z, double* dphi, int64_t n, SimdWidth width) {
  require(width <= cpu_simd_width(), "activation_inplace: this CPU has no " + simd_name(width));
  activation_serial(act, z, dphi, n, width);
}

// Per-thread buffers of one block of rows.
struct FCFused::Scratch {
  std::vector<double> a, b;                // [rows, h] ping-pong (evaluate) / delta pair (backward)
  std::vector<double> xs;                  // gathered inputs [rows, d]
  std::vector<std::vector<double>> zs, ds; // gathered z_l and phi'_l [rows, h], l = 1..L
};

FCFused::FCFused(const Activation& act, const FCLayout& layout, int64_t n) : act_(act), lay_(layout), n_(n) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  const int64_t h = lay_.h, L = lay_.L, B = block_rows(h);
  for (int64_t l = 0; l < L; ++l) {
    z_.push_back(at::empty({n, h}, o));
    dphi_.push_back(at::empty({n, h}, o));
  }
  for (int t = 0; t < pool_threads(); ++t) {
    auto s = std::make_unique<Scratch>();
    s->a.resize(B * h);
    s->b.resize(B * h);
    s->xs.resize(B * lay_.d);
    s->zs.assign(L, std::vector<double>(B * h));
    s->ds.assign(L, std::vector<double>(B * h));
    scratch_.push_back(std::move(s));
  }
}

FCFused::~FCFused() = default;

// Points r0 .. r0 + r - 1 through all layers: f[r0 + k] = f(w, x_{r0 + k}). With eval_scratch null the
// activations and phi' go to z_ / dphi_ (training forward); otherwise only the activations, to
// eval_scratch's ping-pong buffers (evaluate).
void FCFused::forward_block(const FCParams& p, const double* x, int64_t r0, int64_t r, double* f, Scratch* eval_scratch) {
  const int64_t L = lay_.L, h = lay_.h, d = lay_.d;
  const double sd = 1.0 / std::sqrt(double(d)), sh = 1.0 / std::sqrt(double(h));
  const double* in = x + r0 * d;
  for (int64_t l = 0; l < L; ++l) {
    double* out = eval_scratch ? ((l % 2) ? eval_scratch->b.data() : eval_scratch->a.data()) : z_[l].data_ptr<double>() + r0 * h;
    double* dp = eval_scratch ? nullptr : dphi_[l].data_ptr<double>() + r0 * h;
    // pre_{l+1} [r, h] = in [r, fan_in] W_l^T / sqrt(fan_in) + b_l
    mm_rows(r, h, l == 0 ? d : h, l == 0 ? sd : sh, in, wt_[size_t(l)].data(), out);
    const double* b = p.b[l].data_ptr<double>();
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < h; ++j) out[k * h + j] += b[j];
    activation_serial(act_, out, dp, r * h, simd_);
    in = out;
  }
  // f [r] = z_L [r, h] W_L^T / sqrt(h) + b_L (W_L [1, h] is its own transpose in memory)
  mm_rows(r, 1, h, sh, in, p.W[L].data_ptr<double>(), f + r0);
  const double bL = p.b[L].data_ptr<double>()[0];
  for (int64_t k = 0; k < r; ++k) f[r0 + k] += bL;
}

namespace {
// Contiguous float64 parameters (views of a flat vector already are).
FCParams contiguous(const FCParams& p) {
  FCParams c;
  for (auto& w : p.W) c.W.push_back(w.contiguous());
  for (auto& b : p.b) c.b.push_back(b.contiguous());
  return c;
}
}  // namespace

void FCFused::forward_all(const FCParams& p_, const at::Tensor& x_, double* out, bool keep) {
  const int64_t N = x_.size(0);
  const FCParams p = contiguous(p_);
  const at::Tensor x = x_.contiguous();
  const int64_t B = block_rows(lay_.h), blocks = (N + B - 1) / B;
  const double* xp = x.data_ptr<double>();
  wt_.resize(size_t(lay_.L));
  for (int64_t l = 0; l < lay_.L; ++l) {  // W_l [h, fi] -> W_l^T [fi, h]
    const int64_t fi = l == 0 ? lay_.d : lay_.h, h = lay_.h;
    const double* w = p.W[size_t(l)].data_ptr<double>();
    std::vector<double>& t = wt_[size_t(l)];
    t.resize(size_t(fi * h));
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < fi; ++j) t[size_t(j * h + i)] = w[i * fi + j];
  }
  BlasOneThread one;
  parallel_tasks(
      blocks,
      [&](int64_t k, int t) {
        forward_block(p, xp, k * B, std::min(B, N - k * B), out, keep ? nullptr : scratch_[t].get());
      },
      !blas_owns_threads());
}

void FCFused::forward(const FCParams& p, const at::Tensor& x, at::Tensor& f) {
  require(x.size(0) == n_ && f.numel() == n_ && f.is_contiguous(), "FCFused::forward: wrong number of points");
  forward_all(p, x, f.data_ptr<double>(), /*keep=*/true);
}

void FCFused::backward(const FCParams& p_, const at::Tensor& x_, const int64_t* rows, const double* c, int64_t m,
                       FCParams& grad) {
  const int64_t L = lay_.L, h = lay_.h, d = lay_.d, P = lay_.size;
  if (m == 0) {
    for (auto& t : grad.flat()) t.zero_();
    return;
  }
  const FCParams p = contiguous(p_);
  const at::Tensor x = x_.contiguous();
  const double sd = 1.0 / std::sqrt(double(d)), sh = 1.0 / std::sqrt(double(h));
  const int64_t B = block_rows(h), blocks = (m + B - 1) / B;
  // Fixed contiguous chunks of the listed points, each with its own gradient partial [P],
  // added in chunk order below: a function of m and the layout only.
  const int64_t chunks = std::min<int64_t>(P <= (int64_t(1) << 20) ? 4 : 2, blocks);
  const int64_t per = (blocks + chunks - 1) / chunks * B;  // points per chunk, whole blocks
  if (!partial_.defined() || partial_.size(0) < chunks)
    partial_ = at::empty({chunks, P}, at::TensorOptions().dtype(at::kDouble));
  double* pbase = partial_.data_ptr<double>();
  const double* xp = x.data_ptr<double>();
  const double* wL = p.W[L].data_ptr<double>();

  auto chunk = [&](int64_t ci, int t) {
    Scratch& s = *scratch_[t];
    double* G = pbase + ci * P;
    std::memset(G, 0, sizeof(double) * P);
    const int64_t k1 = std::min(m, (ci + 1) * per);
    for (int64_t kb = ci * per; kb < k1; kb += B) {
      const int64_t r = std::min(B, k1 - kb);
      const int64_t* rw = rows + kb;
      const double* cb = c + kb;
      bool contig = true;
      for (int64_t k = 1; contig && k < r; ++k) contig = (rw[k] == rw[0] + k);
      // The block's inputs, activations and phi' of every hidden layer: [r, d], [r, h] each.
      const double* X;
      std::vector<const double*> Z(L), D(L);
      if (contig) {
        X = xp + rw[0] * d;
        for (int64_t l = 0; l < L; ++l) {
          Z[l] = z_[l].data_ptr<double>() + rw[0] * h;
          D[l] = dphi_[l].data_ptr<double>() + rw[0] * h;
        }
      } else {
        for (int64_t k = 0; k < r; ++k) std::memcpy(s.xs.data() + k * d, xp + rw[k] * d, sizeof(double) * d);
        X = s.xs.data();
        for (int64_t l = 0; l < L; ++l) {
          const double* zl = z_[l].data_ptr<double>();
          const double* dl = dphi_[l].data_ptr<double>();
          for (int64_t k = 0; k < r; ++k) {
            std::memcpy(s.zs[l].data() + k * h, zl + rw[k] * h, sizeof(double) * h);
            std::memcpy(s.ds[l].data() + k * h, dl + rw[k] * h, sizeof(double) * h);
          }
          Z[l] = s.zs[l].data();
          D[l] = s.ds[l].data();
        }
      }
      // Output layer: dW_L [1, h] += c^T [1, r] z_L [r, h] / sqrt(h); db_L += sum c.
      mm_grad(r, 1, h, sh, cb, Z[L - 1], G + lay_.w_offset[L]);
      double csum = 0;
      for (int64_t k = 0; k < r; ++k) csum += cb[k];
      G[lay_.b_offset[L]] += csum;
      // delta [r, h] = d(sum c f)/d pre_L = c_k W_L[j] / sqrt(h) phi'(pre_L)[k, j].
      double* delta = s.a.data();
      double* delta2 = s.b.data();
      for (int64_t k = 0; k < r; ++k) {
        const double ck = cb[k] * sh;
        for (int64_t j = 0; j < h; ++j) delta[k * h + j] = ck * wL[j] * D[L - 1][k * h + j];
      }
      for (int64_t l = L - 1; l >= 0; --l) {
        const int64_t fi = (l == 0) ? d : h;
        const double sl = (l == 0) ? sd : sh;
        mm_grad(r, h, fi, sl, delta, l == 0 ? X : Z[l - 1], G + lay_.w_offset[l]);  // dW_l += s delta^T in
        double* gb = G + lay_.b_offset[l];                                          // db_l += sum_k delta
        for (int64_t k = 0; k < r; ++k)
          for (int64_t j = 0; j < h; ++j) gb[j] += delta[k * h + j];
        if (l >= 1) {  // delta_prev [r, h] = (delta [r, h] W_l [h, h]) s phi'(pre_l)
          mm_back(r, h, h, sl, delta, p.W[l].data_ptr<double>(), delta2);
          const double* dl = D[l - 1];
          for (int64_t i = 0; i < r * h; ++i) delta2[i] *= dl[i];
          std::swap(delta, delta2);
        }
      }
    }
  };
  {
    BlasOneThread one;
    parallel_tasks(chunks, chunk, !blas_owns_threads());
  }
  // grad = sum of the partials in chunk order, written straight into grad's tensors.
  auto add_partials = [&](const at::Tensor& dst, int64_t off) {
    at::Tensor out = dst.is_contiguous() ? dst : at::empty(dst.sizes(), dst.options());
    double* o = out.data_ptr<double>();
    const int64_t len = out.numel();
    std::memcpy(o, pbase + off, sizeof(double) * len);
    for (int64_t ci = 1; ci < chunks; ++ci) {
      const double* q = pbase + ci * P + off;
      for (int64_t i = 0; i < len; ++i) o[i] += q[i];
    }
    if (!dst.is_contiguous()) dst.copy_(out);
  };
  for (int64_t l = 0; l <= L; ++l) {
    add_partials(grad.W[l], lay_.w_offset[l]);
    add_partials(grad.b[l], lay_.b_offset[l]);
  }
}

at::Tensor FCFused::evaluate(const FCParams& p_, const at::Tensor& x_) {
  const int64_t N = x_.size(0);
  at::Tensor out = at::empty({N}, at::TensorOptions().dtype(at::kDouble));
  if (N == 0) return out;
  forward_all(p_, x_, out.data_ptr<double>(), /*keep=*/false);
  return out;
}

}  // namespace lf
