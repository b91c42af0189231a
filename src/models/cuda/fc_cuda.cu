// CUDA kernels of models/fc_cuda.h (see there). Plain CUDA C++: no LibTorch header, so that this
// file builds with nvcc alone (its own static library in CMakeLists.txt).
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../fc_cuda.h"

namespace lf::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// The values a thread loads before it stores any (the kernels below): with one load in flight a
// thread, the backward's epilogue waited on memory's latency; with four it runs at 74% of an
// H100's bandwidth (2.75 to 2.34 ms of a K = 100 round's epilogues, `bench ensemble --phases`,
// 2026-12-08; the forward's is bound by its instructions instead). Each value's arithmetic is
// unchanged: the same bits.
constexpr int kUnroll = 4;

// One member a block row (blockIdx.y = k, striding over K past the grid's y limit), and within
// it a grid-stride loop over its N H values, each thread taking kUnroll values `stride` apart per
// pass (a warp's loads of one pass stay contiguous). A thread's column j = i mod H is found once a
// member and then stepped (+ stride mod H, one subtraction), so a value costs no integer division:
// with a division by N H and one by H a value (the kernel before 2026-12-08), Nsight Compute
// counted ~200 instructions a value, 48 of them integer, the SMs 79% busy and DRAM 38%: the pass
// was bound by issuing instructions, not by memory. Index (the offset within a member) is 32-bit
// when N H + kUnroll stride < 2^32. InPlace: z is pre (no __restrict__ then), and only z is written.
template <typename Index, bool InPlace>
__global__ void bias_softplus_kernel(const double* __restrict__ b, int64_t b_stride, double m, double* pre, double* z,
                                     int64_t K, Index NH, Index H, double beta, double threshold) {
  const Index t = Index(blockIdx.x) * blockDim.x + threadIdx.x, stride = Index(gridDim.x) * blockDim.x;
  const Index step_j = stride % H;  // the column's step from one pass's value to the next's
  for (int64_t k = blockIdx.y; k < K; k += gridDim.y) {
    const double* bk = b + k * b_stride;
    double* pk = pre + k * int64_t(NH);
    double* zk = z + k * int64_t(NH);
    Index j = t % H;  // the column of value t
    for (Index i0 = t; i0 < NH; i0 += kUnroll * stride) {
      double x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const Index i = i0 + Index(u) * stride;
        if (i < NH) {
          // m pre + b as two roundings (no fused multiply-add), as the composition m * pre + b.
          x[u] = __dadd_rn(__dmul_rn(m, pk[i]), bk[j]);
        }
        j += step_j;
        if (j >= H) j -= H;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const Index i = i0 + Index(u) * stride;
        if (i < NH) {
          if (!InPlace) pk[i] = x[u];
          // ATen's softplus (its CUDA kernel, opmath double): the same expression, the same rounding.
          zk[i] = (x[u] * beta) > threshold ? x[u] : ::log1p(::exp(x[u] * beta)) / beta;
        }
      }
    }
  }
}

// The backward's epilogue (softplus_backward_bias, outer_softplus_backward_bias). A block of
// 32 x 8 threads covers 32 columns of one member and `rows` rows of it: thread (tx, ty) takes
// column j = 32 tile + tx (a warp reads 256 contiguous bytes) and rows ty, ty + 8, ...; its sum,
// then the block's 8 sums of a column in order, go to work[k, chunk, j] (chunk = blockIdx.y).
// Outer: gz = m c w made here (no gz read). FromZ: a is z = softplus(x), else x.
constexpr int kTileCols = 32, kTileRows = 8;

template <typename Index, bool Outer, bool FromZ>
__global__ void softplus_backward_bias_kernel(const double* gz, const double* __restrict__ c,
                                              const double* __restrict__ w, Index w_stride, double m,
                                              const double* __restrict__ a, double* gpre, double* __restrict__ work,
                                              Index N, Index H, Index tiles, Index rows, double beta,
                                              double threshold) {
  const Index k = Index(blockIdx.x) / tiles, j = (Index(blockIdx.x) % tiles) * kTileCols + threadIdx.x;
  const Index r0 = Index(blockIdx.y) * rows, r1 = r0 + rows < N ? r0 + rows : N;
  double sum = 0.0;
  if (j < H) {
    const double wj = Outer ? __dmul_rn(m, w[k * w_stride + j]) : 0.0;
    // Rows ty, ty + 8, ...: kUnroll of them loaded, then made and summed in the same order.
    for (Index i0 = r0 + threadIdx.y; i0 < r1; i0 += kTileRows * kUnroll) {
      double g[kUnroll], x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const Index i = i0 + Index(u * kTileRows);
        if (i < r1) {
          const Index e = (k * N + i) * H + j;
          g[u] = Outer ? __dmul_rn(c[k * N + i], wj) : gz[e];
          x[u] = a[e];
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const Index i = i0 + Index(u * kTileRows);
        if (i < r1) {
          double v;
          if (FromZ) {  // phi'(x) = sigmoid(beta x) = 1 - exp(-beta z), z = log1p(exp(beta x)) / beta
            v = (x[u] * beta) > threshold ? g[u] : __dmul_rn(g[u], -::expm1(-x[u] * beta));
          } else {  // ATen's softplus_backward (its CUDA kernel): the same expression, the same rounding
            const double ex = ::exp(x[u] * beta);
            v = (x[u] * beta) > threshold ? g[u] : g[u] * ex / (ex + 1.0);
          }
          gpre[(k * N + i) * H + j] = v;
          sum += v;
        }
      }
    }
  }
  __shared__ double part[kTileRows][kTileCols + 1];
  part[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && j < H) {
    double s = part[0][threadIdx.x];
    for (int y = 1; y < kTileRows; ++y) s += part[y][threadIdx.x];
    work[(k * Index(gridDim.y) + blockIdx.y) * H + j] = s;
  }
}

// gb[k * gb_stride + j] <- sum over the chunks c, in order, of work[k, c, j].
template <typename Index>
__global__ void chunk_sums_kernel(const double* __restrict__ work, Index chunks, Index H, Index KH,
                                  double* __restrict__ gb, Index gb_stride) {
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < KH; i += Index(gridDim.x) * blockDim.x) {
    const Index k = i / H, j = i % H;
    const double* p = work + k * chunks * H + j;
    double s = 0.0;
    for (Index c = 0; c < chunks; ++c) s += p[c * H];
    gb[k * gb_stride + j] = s;
  }
}

// The chunks of rows of the backward's epilogue: 64 rows (8 a thread), more where N would need
// over 65,535 chunks (the grid's y limit).
int64_t rows_per_chunk(int64_t N) { return std::max<int64_t>(64, (N + 65534) / 65535); }
int64_t chunks_of(int64_t N) {
  const int64_t r = rows_per_chunk(N);
  return (N + r - 1) / r;
}

template <typename Index, bool Outer, bool FromZ>
void launch_backward(const double* gz, const double* c, const double* w, int64_t w_stride, double m, const double* a,
                     double* gpre, double* gb, int64_t gb_stride, double* work, int64_t K, int64_t N, int64_t H,
                     double beta, double threshold, cudaStream_t s) {
  const int64_t tiles = (H + kTileCols - 1) / kTileCols, rows = rows_per_chunk(N), chunks = chunks_of(N);
  if (K * tiles >= (int64_t(1) << 31)) throw std::runtime_error("softplus_backward_bias: too many members");
  const dim3 grid(unsigned(K * tiles), unsigned(chunks)), block(kTileCols, kTileRows);
  softplus_backward_bias_kernel<Index, Outer, FromZ><<<grid, block, 0, s>>>(
      gz, c, w, Index(w_stride), m, a, gpre, work, Index(N), Index(H), Index(tiles), Index(rows), beta, threshold);
  check(cudaGetLastError(), "softplus_backward_bias launch");
  const int64_t KH = K * H;
  const int64_t blocks = std::min<int64_t>((KH + 255) / 256, 132 * 32);
  chunk_sums_kernel<Index><<<unsigned(blocks), 256, 0, s>>>(work, Index(chunks), Index(H), Index(KH), gb,
                                                           Index(gb_stride));
  check(cudaGetLastError(), "softplus_backward_bias sums launch");
}

template <bool Outer>
void backward(const double* gz, const double* c, const double* w, int64_t w_stride, double m, const double* a,
              bool from_z, double* gpre, double* gb, int64_t gb_stride, double* work, int64_t K, int64_t N, int64_t H,
              double beta, double threshold, void* stream) {
  if (K * N * H == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const bool narrow = K * N * H < (int64_t(1) << 32) && K * std::max(w_stride, gb_stride) < (int64_t(1) << 32);
  if (narrow && from_z)
    launch_backward<uint32_t, Outer, true>(gz, c, w, w_stride, m, a, gpre, gb, gb_stride, work, K, N, H, beta,
                                           threshold, s);
  else if (narrow)
    launch_backward<uint32_t, Outer, false>(gz, c, w, w_stride, m, a, gpre, gb, gb_stride, work, K, N, H, beta,
                                            threshold, s);
  else if (from_z)
    launch_backward<uint64_t, Outer, true>(gz, c, w, w_stride, m, a, gpre, gb, gb_stride, work, K, N, H, beta,
                                           threshold, s);
  else
    launch_backward<uint64_t, Outer, false>(gz, c, w, w_stride, m, a, gpre, gb, gb_stride, work, K, N, H, beta,
                                            threshold, s);
}

// The [K, P] passes of a round's bookkeeping: blockIdx.y a member (striding over K past the
// grid's y limit), blockIdx.x and the threads striding over its P parameters. A member's masks
// and scalars are read once a block. The trial step holds kUnroll loads in flight a thread; the
// keeping of the trials skips a member neither accepted nor given a gradient.
template <bool Momentum>
__global__ void trial_step_kernel(const double* __restrict__ W, const double* __restrict__ V,
                                  const double* __restrict__ G, const double* __restrict__ x,
                                  const double* __restrict__ dt, const bool* __restrict__ live,
                                  double* __restrict__ Wt, double* __restrict__ Vt, int64_t K, int64_t P) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.y; k < K; k += gridDim.y) {
    const bool on = live[k];
    const double xk = Momentum ? x[k] : 0.0, omx = Momentum ? __dsub_rn(1.0, xk) : 0.0, dk = dt[k];
    const int64_t row = k * P;
    for (int64_t p0 = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p0 < P; p0 += kUnroll * stride) {
      double w[kUnroll], v[kUnroll], g[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t p = p0 + u * stride;
        if (p < P) {
          w[u] = W[row + p];
          if (Momentum) v[u] = V[row + p];
          if (on) g[u] = G[row + p];
        }
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t p = p0 + u * stride;
        if (p < P) {
          if (Momentum) {
            const double vt = on ? __dsub_rn(__dmul_rn(v[u], xk), __dmul_rn(g[u], omx)) : v[u];
            Vt[row + p] = vt;
            Wt[row + p] = on ? __dadd_rn(w[u], __dmul_rn(vt, dk)) : w[u];
          } else {
            Wt[row + p] = on ? __dsub_rn(w[u], __dmul_rn(g[u], dk)) : w[u];
          }
        }
      }
    }
  }
}

__global__ void keep_trials_kernel(const bool* __restrict__ acc, const bool* __restrict__ keep,
                                   const double* __restrict__ Gk, const double* __restrict__ Wt,
                                   const double* __restrict__ Vt, double* __restrict__ G, double* __restrict__ W,
                                   double* __restrict__ V, int64_t K, int64_t P) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t k = blockIdx.y; k < K; k += gridDim.y) {
    const bool a = acc[k], g = keep[k];
    if (!a && !g) continue;
    const int64_t row = k * P;
    for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < P; p += stride) {
      if (g) G[row + p] = Gk[row + p];
      if (a) {
        W[row + p] = Wt[row + p];
        if (V) V[row + p] = Vt[row + p];
      }
    }
  }
}

// A member's blocks (the grid's x; y: the members, at most 65,535, the kernels striding over the
// rest): enough for its P values at kUnroll a thread, at most what fills the card ~4 times over
// with K members.
dim3 member_grid(int64_t K, int64_t P, int threads) {
  const int64_t per_member = std::max<int64_t>(1, std::min<int64_t>((P + threads * kUnroll - 1) / (threads * kUnroll),
                                                                    (132 * 32 + K - 1) / K));
  return dim3(unsigned(per_member), unsigned(std::min<int64_t>(K, 65535)));
}

}  // namespace

void trial_step(const double* W, const double* V, const double* G, const double* x, const double* dt,
                const bool* live, double* Wt, double* Vt, int64_t K, int64_t P, void* stream) {
  if (K * P == 0) return;
  if ((V == nullptr) != (Vt == nullptr)) throw std::runtime_error("trial_step: V and Vt together or neither");
  constexpr int kThreads = 256;
  auto s = static_cast<cudaStream_t>(stream);
  if (V)
    trial_step_kernel<true><<<member_grid(K, P, kThreads), kThreads, 0, s>>>(W, V, G, x, dt, live, Wt, Vt, K, P);
  else
    trial_step_kernel<false><<<member_grid(K, P, kThreads), kThreads, 0, s>>>(W, V, G, x, dt, live, Wt, Vt, K, P);
  check(cudaGetLastError(), "trial_step launch");
}

void keep_trials(const bool* acc, const bool* keep, const double* Gk, const double* Wt, const double* Vt, double* G,
                 double* W, double* V, int64_t K, int64_t P, void* stream) {
  if (K * P == 0) return;
  if ((V == nullptr) != (Vt == nullptr)) throw std::runtime_error("keep_trials: V and Vt together or neither");
  constexpr int kThreads = 256;
  keep_trials_kernel<<<member_grid(K, P, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      acc, keep, Gk, Wt, Vt, G, W, V, K, P);
  check(cudaGetLastError(), "keep_trials launch");
}

void bias_softplus(const double* b, int64_t b_stride, double m, double* pre, double* z, int64_t K, int64_t N,
                   int64_t H, double beta, double threshold, void* stream) {
  const int64_t NH = N * H;
  if (K * NH == 0) return;
  constexpr int kThreads = 256;
  const dim3 grid = member_grid(K, NH, kThreads);
  auto s = static_cast<cudaStream_t>(stream);
  const bool narrow = NH + int64_t(kUnroll) * grid.x * kThreads < (int64_t(1) << 32);
  if (narrow && z == pre) {
    bias_softplus_kernel<uint32_t, true>
        <<<grid, kThreads, 0, s>>>(b, b_stride, m, pre, z, K, uint32_t(NH), uint32_t(H), beta, threshold);
  } else if (narrow) {
    bias_softplus_kernel<uint32_t, false>
        <<<grid, kThreads, 0, s>>>(b, b_stride, m, pre, z, K, uint32_t(NH), uint32_t(H), beta, threshold);
  } else if (z == pre) {
    bias_softplus_kernel<uint64_t, true>
        <<<grid, kThreads, 0, s>>>(b, b_stride, m, pre, z, K, uint64_t(NH), uint64_t(H), beta, threshold);
  } else {
    bias_softplus_kernel<uint64_t, false>
        <<<grid, kThreads, 0, s>>>(b, b_stride, m, pre, z, K, uint64_t(NH), uint64_t(H), beta, threshold);
  }
  check(cudaGetLastError(), "bias_softplus launch");
}

void softplus_backward_bias(const double* gz, const double* a, bool from_z, double* gpre, double* gb,
                            int64_t gb_stride, double* work, int64_t K, int64_t N, int64_t H, double beta,
                            double threshold, void* stream) {
  backward<false>(gz, nullptr, nullptr, 0, 0.0, a, from_z, gpre, gb, gb_stride, work, K, N, H, beta, threshold,
                  stream);
}

void outer_softplus_backward_bias(const double* c, const double* w, int64_t w_stride, double m, const double* a,
                                  bool from_z, double* gpre, double* gb, int64_t gb_stride, double* work, int64_t K,
                                  int64_t N, int64_t H, double beta, double threshold, void* stream) {
  backward<true>(nullptr, c, w, w_stride, m, a, from_z, gpre, gb, gb_stride, work, K, N, H, beta, threshold, stream);
}

int64_t bias_work_size(int64_t K, int64_t N, int64_t H) { return K * chunks_of(N) * H; }

}  // namespace lf::cuda
