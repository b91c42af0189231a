// Fused CPU float64 CNN kernels (see cnn_fused.h): im2col and one dgemm per chunk of output
// positions (small enough for OpenBLAS's unpacked kernels, positions_per_product), bias before the
// GEMM (beta = 1), activation and phi' in one pass.
// The BLAS runs single-threaded here (BlasOneThread): on the 2 shared cores of the benchmarks its
// second thread made the forward slower, not faster (docs/benchmarks.md, CNN section). Each product
// is split instead over lazyfeat's thread pool (common/pool.h, as the FC kernels) in fixed chunks
// of columns of its result, a single-threaded dgemm each; the forward takes each chunk of output
// positions through im2col, its product and the activation on one thread while it is in cache,
// and col2im and the backward's elementwise passes run in fixed pieces of images: the numbers do
// not depend on the thread count.
#include "models/cnn_fused.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "common/error.h"
#include "common/pool.h"
#include "models/blas.h"
#include "models/fc_fused.h"  // activation_inplace

namespace lf {
namespace {

constexpr int64_t kEvalBlock = 64;  // images per block of a forward that keeps nothing (at least)

// fn(begin, end) over [0, n) in fixed pieces of `grain`, on lazyfeat's thread pool (common/pool.h),
// or on the caller alone with threads = 1.
void for_pieces(int64_t n, int64_t grain, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t pieces = (n + grain - 1) / grain;
  auto piece = [&](int64_t i, int) { fn(i * grain, std::min(n, (i + 1) * grain)); };
  if (threads <= 1) {
    for (int64_t i = 0; i < pieces; ++i) piece(i, 0);
  } else {
    parallel_tasks(pieces, piece);
  }
}

// C [M, N] (column-major) = alpha op(A) op(B) + beta C, as blas.h's gemm, in one dgemm per chunk
// of `chunk` columns, whatever the thread count (a dgemm's rounding may depend on its N, so the
// chunks, not the threads, fix the numbers). Column n of op(B) starts at B + n ldb (B as it is)
// or at B + n (B transposed).
void gemm_columns(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc, int64_t chunk, int threads) {
  for_pieces(N, chunk, threads, [&](int64_t n0, int64_t n1) {
    gemm(ta, tb, M, n1 - n0, K, alpha, A, lda, tb ? B + n0 : B + n0 * ldb, ldb, beta, C + n0 * ldc, ldc);
  });
}

// Images per piece of col2im.
constexpr int64_t kImagesPerPiece = 4;

// Output positions a product takes at once (one dgemm each: the chunks, not the threads, fix
// the numbers, as gemm_columns) for a product of h x n results over k values: the most, in
// multiples of 8 up to 512, under the bounds within which OpenBLAS's AVX-512 builds take their
// small-matrix kernels, which skip packing the patches (22% of a step's samples in a profile at
// 512): h n k <= 1e6 multiply-adds, and for a TN product (the forward's) h n <= 1,200 results
// (measured, docs/benchmarks.md); 512 when not even 8 positions fit (h = 159). At h = 32 that is
// 32 positions: setup B's first 115 steps 1.4-1.5x faster on a Zen 4 machine, no change with
// OpenBLAS's AVX2 kernels. The chunks move the outputs' last bits against 512 (a product's
// rounding may depend on its shape).
int64_t positions_per_product(int64_t h, int64_t k, bool tn) {
  int64_t n = int64_t(1000000) / std::max<int64_t>(h * k, 1);
  if (tn) n = std::min<int64_t>(n, 1200 / std::max<int64_t>(h, 1));
  n = n / 8 * 8;
  return n < 8 ? 512 : std::min<int64_t>(n, 512);
}

// Rows n0 .. n1 - 1 of cols [r Ho Wo, 25 C] (row n: image n / (Ho Wo), output position n % (Ho Wo))
// <- the 5x5 patches (padding 1, stride st) of z [r, H, W, C], columns in (kh, kw, c) order;
// zero outside the image.
void im2col_rows(const double* z, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo, int64_t st, int64_t n0,
                 int64_t n1, double* cols) {
  const int64_t K = kCnnKernel * kCnnKernel * C, P = Ho * Wo;
  for (int64_t n = n0; n < n1; ++n) {
    const int64_t b = n / P, oy = n % P / Wo, ox = n % Wo;
    double* row = cols + n * K;
    const int64_t ix0 = ox * st - kCnnPadding;
    for (int64_t kh = 0; kh < kCnnKernel; ++kh) {
      const int64_t iy = oy * st - kCnnPadding + kh;
      double* dst = row + kh * kCnnKernel * C;
      if (iy < 0 || iy >= H) {
        std::fill_n(dst, kCnnKernel * C, 0.0);
      } else if (ix0 >= 0 && ix0 + kCnnKernel <= W) {  // the kernel's row inside the image: 5 C values in a row
        const double* src = z + ((b * H + iy) * W + ix0) * C;
        std::copy_n(src, kCnnKernel * C, dst);
      } else {
        for (int64_t kw = 0; kw < kCnnKernel; ++kw) {
          const int64_t ix = ix0 + kw;
          if (ix < 0 || ix >= W) std::fill_n(dst + kw * C, C, 0.0);
          else std::copy_n(z + ((b * H + iy) * W + ix) * C, C, dst + kw * C);
        }
      }
    }
  }
}

// dz [r, H, W, C] = col2im(dcols [r Ho Wo, 25 C]): each patch entry added back where im2col took it.
void col2im(const double* dcols, int64_t r, int64_t H, int64_t W, int64_t C, int64_t Ho, int64_t Wo, int64_t st,
            double* dz, int threads) {
  const int64_t K = kCnnKernel * kCnnKernel * C;
  for_pieces(r, kImagesPerPiece, threads, [&](int64_t b0, int64_t b1) {
    std::memset(dz + b0 * H * W * C, 0, sizeof(double) * (b1 - b0) * H * W * C);
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          const double* row = dcols + ((b * Ho + oy) * Wo + ox) * K;
          for (int64_t kh = 0; kh < kCnnKernel; ++kh) {
            const int64_t iy = oy * st - kCnnPadding + kh;
            if (iy < 0 || iy >= H) continue;
            for (int64_t kw = 0; kw < kCnnKernel; ++kw) {
              const int64_t ix = ox * st - kCnnPadding + kw;
              if (ix < 0 || ix >= W) continue;
              const double* src = row + (kh * kCnnKernel + kw) * C;
              double* dst = dz + ((b * H + iy) * W + ix) * C;
              for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
            }
          }
        }
  });
}

}  // namespace

CNNFused::CNNFused(const Activation& act, const CNNLayout& layout, int threads)
    : act_(act), lay_(layout), threads_(blas_owns_threads() ? std::max(1, threads) : 1) {}

void CNNFused::reserve(int64_t r, int64_t rows, int64_t cols) {
  if (r <= cap_ && rows == rows_ && cols == cols_) return;
  cap_ = std::max(r, rows == rows_ && cols == cols_ ? cap_ : int64_t(0));
  rows_ = rows, cols_ = cols;
  const int64_t h = lay_.h;
  auto o = at::TensorOptions().dtype(at::kDouble);
  layers_.assign(size_t(kCnnConvs), Layer{});
  int64_t c = lay_.channels, hi = rows, wi = cols, most = 0;
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    Layer& L = layers_[size_t(l)];
    L.c_in = c, L.hi = hi, L.wi = wi, L.stride = kCnnStrides[size_t(l)];
    L.ho = (hi + 2 * kCnnPadding - kCnnKernel) / L.stride + 1;
    L.wo = (wi + 2 * kCnnPadding - kCnnKernel) / L.stride + 1;
    require(L.ho >= 1 && L.wo >= 1, "CNNFused: images too small for four 5x5 convolutions");
    L.k = kCnnKernel * kCnnKernel * c;
    L.s = 1.0 / std::sqrt(double(L.k));
    L.cols = at::empty({cap_ * L.positions(), L.k}, o);
    L.z = at::empty({cap_ * L.positions(), h}, o);
    L.dphi = at::empty({cap_ * L.positions(), h}, o);
    L.wp = at::empty({h, L.k}, o);
    most = std::max(most, L.k);
    c = h, hi = L.ho, wi = L.wo;
  }
  xin_ = at::empty({cap_, rows, cols, lay_.channels}, o);
  pooled_ = at::empty({cap_, h}, o);
  da_ = at::empty({cap_ * layers_[0].positions(), h}, o);
  db_ = at::empty({cap_ * layers_[0].positions(), h}, o);
  dwp_ = at::empty({h, most}, o);
  kept_ = 0;
}

void CNNFused::forward(const CNNParams& p, const at::Tensor& x, double* f, bool keep) {
  require(x.dim() == 4 && x.size(1) == lay_.channels && x.scalar_type() == at::kDouble && x.device().is_cpu(),
          "CNNFused::forward: x must be CPU float64 [r, C, H, W]");
  const int64_t r = x.size(0);
  kept_ = 0;
  if (r == 0) return;
  BlasOneThread one;
  if (keep) {
    reserve(r, x.size(2), x.size(3));
    run(p, x, f, true);
    kept_ = r;
    return;
  }
  reserve(std::min(r, kEvalBlock), x.size(2), x.size(3));
  const int64_t block = std::min(cap_, kEvalBlock);
  for (int64_t s = 0; s < r; s += block) run(p, x.narrow(0, s, std::min(block, r - s)), f + s, false);
}

void CNNFused::run(const CNNParams& p, const at::Tensor& x, double* f, bool keep) {
  const int64_t r = x.size(0), h = lay_.h;
  // x [r, C, H, W] -> channels-last [r, H, W, C]
  at::Tensor in = xin_.narrow(0, 0, r);
  in.copy_(x.permute({0, 2, 3, 1}));
  const double* z = in.data_ptr<double>();
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    Layer& L = layers_[size_t(l)];
    const int64_t N = r * L.positions();
    // W'_l [h, 5, 5, C] <- W_l [h, C, 5, 5]
    L.wp.view({h, kCnnKernel, kCnnKernel, L.c_in}).copy_(p.W[size_t(l)].permute({0, 2, 3, 1}));
    double* cols = L.cols.data_ptr<double>();
    double* a = L.z.data_ptr<double>();  // [N, h]
    const at::Tensor bias = p.b[size_t(l)].contiguous();
    const double* b = bias.data_ptr<double>();
    const double* wp = L.wp.data_ptr<double>();
    double* dphi = keep ? L.dphi.data_ptr<double>() : nullptr;
    // Chunk by chunk of output positions, each on one thread while its patches are in cache:
    // cols [n0, n1) <- im2col (kept there for the backward), a [n0, n1) <- the bias,
    // a [n0, n1) += s cols [n0, n1) W'^T (column-major a^T [h, n] = s W'(col-major [K, h])^T cols^T),
    // then phi and phi'. Writing the whole block's patches first (50 MB at h = 32 for 64 images)
    // and multiplying afterwards read them back from memory.
    for_pieces(N, positions_per_product(h, L.k, /*tn=*/true), threads_, [&](int64_t n0, int64_t n1) {
      im2col_rows(z, L.hi, L.wi, L.c_in, L.ho, L.wo, L.stride, n0, n1, cols);
      for (int64_t n = n0; n < n1; ++n) std::memcpy(a + n * h, b, sizeof(double) * h);
      gemm(true, false, h, n1 - n0, L.k, L.s, wp, L.k, cols + n0 * L.k, L.k, 1.0, a + n0 * h, h);
      activation_inplace(act_, a + n0 * h, dphi ? dphi + n0 * h : nullptr, (n1 - n0) * h);
    });
    z = a;
  }
  // pooled [r, h] = mean over the last layer's positions; f = b_4 + pooled W_4^T / sqrt(h)
  const Layer& last = layers_.back();
  const int64_t P = last.positions();
  const at::Tensor W4 = p.W[kCnnConvs].contiguous();
  const double* w4 = W4.data_ptr<double>();
  const double b4 = p.b[kCnnConvs].item<double>(), sh = 1.0 / std::sqrt(double(h));
  double* pooled = pooled_.data_ptr<double>();
  for (int64_t i = 0; i < r; ++i) {
    double* pi = pooled + i * h;
    for (int64_t c = 0; c < h; ++c) pi[c] = 0;
    for (int64_t q = 0; q < P; ++q)
      for (int64_t c = 0; c < h; ++c) pi[c] += z[(i * P + q) * h + c];
    double acc = 0;
    for (int64_t c = 0; c < h; ++c) {
      pi[c] /= double(P);
      acc += pi[c] * w4[c];
    }
    f[i] = b4 + sh * acc;
  }
}

void CNNFused::backward(const CNNParams& p, const double* c, CNNParams& grad) {
  require(kept_ > 0, "CNNFused::backward: no kept forward");
  for (const at::Tensor& t : grad.flat())
    require(t.is_contiguous() && t.scalar_type() == at::kDouble && t.device().is_cpu(),
            "CNNFused::backward: grad must be contiguous CPU float64");
  const int64_t r = kept_, h = lay_.h;
  kept_ = 0;
  BlasOneThread one;
  const double sh = 1.0 / std::sqrt(double(h));
  const double* pooled = pooled_.data_ptr<double>();
  const at::Tensor W4 = p.W[kCnnConvs].contiguous();
  const double* w4 = W4.data_ptr<double>();
  // Output layer: dW_4 [1, h] += sh sum_i c_i pooled_i, db_4 += sum_i c_i.
  {
    double* gw = grad.W[kCnnConvs].data_ptr<double>();
    double* gb = grad.b[kCnnConvs].data_ptr<double>();
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t ch = 0; ch < h; ++ch) gw[ch] += sh * c[i] * pooled[i * h + ch];
      gb[0] += c[i];
    }
  }
  // da_3 [r P, h] = phi'(a_3) c_i W_4 sh / P
  double *da = da_.data_ptr<double>(), *dprev = db_.data_ptr<double>();
  {
    const Layer& L = layers_.back();
    const int64_t P = L.positions();
    const double* dphi = L.dphi.data_ptr<double>();
    for (int64_t i = 0; i < r; ++i)
      for (int64_t q = 0; q < P; ++q)
        for (int64_t ch = 0; ch < h; ++ch) {
          const int64_t j = (i * P + q) * h + ch;
          da[j] = dphi[j] * (c[i] * w4[ch] * sh / double(P));
        }
  }
  for (int64_t l = kCnnConvs - 1; l >= 0; --l) {
    Layer& L = layers_[size_t(l)];
    const int64_t N = r * L.positions(), K = L.k;
    double* cols = L.cols.data_ptr<double>();
    // dW'_l [h, K] = s da^T cols: column-major dW'^T [K, h] = s cols^T(col-major [K, N]) da (col-major [h, N])^T
    double* dwp = dwp_.data_ptr<double>();
    gemm_columns(false, true, K, h, N, L.s, cols, K, da, h, 0.0, dwp, K, 16, threads_);  // split over h, not N
    // grad W_l [h, C, 5, 5] += dW'_l [h, 5, 5, C] permuted
    grad.W[size_t(l)].add_(dwp_.view({-1}).narrow(0, 0, h * K).view({h, kCnnKernel, kCnnKernel, L.c_in}).permute({0, 3, 1, 2}));
    // grad b_l [h] += sum over the N positions of da
    double* gb = grad.b[size_t(l)].data_ptr<double>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t ch = 0; ch < h; ++ch) gb[ch] += da[n * h + ch];
    if (l == 0) break;
    // dcols [N, K] = s da [N, h] W'_l [h, K] (into the cols buffer, no longer needed):
    // column-major dcols^T [K, N] = s W'^T(col-major [K, h]) da^T(col-major [h, N])
    gemm_columns(false, false, K, N, h, L.s, L.wp.data_ptr<double>(), K, da, h, 0.0, cols, K,
                 positions_per_product(K, h, /*tn=*/false), threads_);
    col2im(cols, r, L.hi, L.wi, L.c_in, L.ho, L.wo, L.stride, dprev, threads_);  // dz_{l-1} [r, Hi, Wi, h]
    const Layer& B = layers_[size_t(l - 1)];
    const double* dphi = B.dphi.data_ptr<double>();
    const int64_t M = r * B.positions() * h;
    for_pieces(M, 1 << 14, threads_, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) dprev[i] *= dphi[i];
    });
    std::swap(da, dprev);
  }
}

}  // namespace lf
