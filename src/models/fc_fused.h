// The fused CPU float64 training kernels of the fully connected network (models/fc.h):
// a forward pass that keeps what the backward needs (z_l and phi'(pre_l), one exp per element
// for softplus, SIMD when the CPU has AVX2+FMA or AVX-512), and a hand-written backward that runs
// on a subset of the points only (protocol section 7: with the hinge loss the satisfied points have
// exactly zero gradient). Points are processed in fixed blocks of rows that run through all
// layers at once (cache-resident), shared by the threads of lazyfeat's pool (common/pool.h), with
// the BLAS single-threaded inside; the block split depends on n only, and per-chunk gradient
// partials are added in a fixed order, so results do not depend on the thread count or on
// which thread ran what (with the same BLAS kernels: protocol section 8). All buffers are
// allocated once.
// Deliberately not: autograd, other dtypes or devices (the reference trainer covers those),
// the loss (experiment/), parameter updates (dynamics/), threads of its own.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/activation.h"
#include "models/fc.h"

namespace lf {

// Layout of all parameters in one flat vector, in FCParams::flat() order
// (W_0 [h, d], b_0 [h], W_1 [h, h], b_1, ..., W_L [1, h], b_L [1]).
struct FCLayout {
  int64_t d = 0, h = 0, L = 0;
  std::vector<int64_t> w_offset, b_offset;  // L+1 each
  int64_t size = 0;                         // total number of parameters
  FCLayout() = default;
  FCLayout(int64_t d, int64_t h, int64_t L);
  int64_t fan_out(int64_t l) const { return l == L ? 1 : h; }
  int64_t fan_in(int64_t l) const { return l == 0 ? d : h; }
  // FCParams whose tensors are views into flat [size] (any dtype/device).
  FCParams views(const at::Tensor& flat) const;
  // A flat [size] copy of p.
  at::Tensor flatten(const FCParams& p) const;
  std::vector<ParamSlice> slices() const;  // layer l = 0..L
};

// The activation kernels' vector width (softplus, relu): None (scalar loops, std::exp and
// std::log1p), Avx2 (4 lanes, inline exp), Avx512 (8 lanes, AVX-512F/DQ: the same operations, bit
// for bit the Avx2 values; relu's are the scalar loop's at every width).
enum class SimdWidth { None, Avx2, Avx512 };
// The width in use: the widest this CPU has, narrowed by LAZYFEAT_SIMD=avx2|none (benchmarks
// compare the widths in one call; any other value is a UsageError).
SimdWidth fused_simd_width();
std::string simd_name(SimdWidth w);  // "avx512", "avx2", "none"

// Elementwise kernels, exposed for tests: z <- phi(z) in place over n values; when dphi is not
// null it receives phi'(z) (computed from the same exp as phi for softplus). The second form
// runs the SIMD activations at a given width (at most the CPU's; a UsageError otherwise).
void activation_inplace(const Activation& act, double* z, double* dphi, int64_t n);
void activation_inplace(const Activation& act, double* z, double* dphi, int64_t n, SimdWidth width);

class FCFused {
 public:
  // Buffers for up to n points of a network with this layout.
  FCFused(const Activation& act, const FCLayout& layout, int64_t n);
  ~FCFused();
  FCFused(const FCFused&) = delete;
  FCFused& operator=(const FCFused&) = delete;

  // f [n] (contiguous float64) = f(w, x) for x [n, d]; keeps z_l and phi'(pre_l) of these
  // points for backward(). n must equal the size given at construction.
  void forward(const FCParams& p, const at::Tensor& x, at::Tensor& f);

  // grad <- sum_{k < m} c[k] * d f(w, x_{rows[k]}) / dw, at the weights and points of the last
  // forward(); grad has the layout's shapes (e.g. FCLayout::views of a flat buffer). Points not
  // listed contribute nothing (their c is zero). m = 0 gives a zero gradient.
  void backward(const FCParams& p, const at::Tensor& x, const int64_t* rows, const double* c, int64_t m,
                FCParams& grad);

  // f(w, x) for any number of points, in chunks, keeping nothing (test sets): [N] float64.
  at::Tensor evaluate(const FCParams& p, const at::Tensor& x);

 private:
  struct Scratch; // per-thread block buffers (fc_fused.cpp), one per thread of common/pool.h
  // Every row of x through all layers in blocks shared by the threads; keep: into the buffers
  // backward() reads (x must be the n training points), else into per-thread scratch.
  void forward_all(const FCParams& p, const at::Tensor& x, double* out, bool keep);
  void forward_block(const FCParams& p, const double* x, int64_t r0, int64_t r, double* f, Scratch* eval_scratch);
  Activation act_;
  SimdWidth simd_ = fused_simd_width();
  FCLayout lay_;
  int64_t n_;
  std::vector<at::Tensor> z_, dphi_;        // [n, h] each, l = 1..L (index l-1)
  at::Tensor partial_;                      // [chunks, P] per-chunk gradient partials
  std::vector<std::vector<double>> wt_;     // W_l^T [fan_in, h], l < L, for the forward's products
  std::vector<std::unique_ptr<Scratch>> scratch_;  // one per thread
};

}  // namespace lf
