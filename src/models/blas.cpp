// The BLAS entry point of the CPU float64 kernels (see blas.h).
#include "models/blas.h"

#include <ATen/ATen.h>

#include <dlfcn.h>

#include <cstdlib>
#include <string>

namespace lf {
namespace {

// Column-major dgemm of the loaded BLAS (null where absent), and whether OpenBLAS's threads can be
// set.
using DgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                         const double*, const int*, const double*, const int*, const double*, double*, const int*);
struct Blas {
  DgemmFn dgemm = nullptr;
  bool threads_settable = false;  // OpenBLAS (common/blas_threads.h)
  Blas() {
    // LAZYFEAT_FUSED_ATEN_MM=1: behave as on a LibTorch without dgemm_ (tests/test_train.cpp).
    const char* aten = std::getenv("LAZYFEAT_FUSED_ATEN_MM");
    if (aten && std::string(aten) == "1") return;
    dgemm = reinterpret_cast<DgemmFn>(dlsym(RTLD_DEFAULT, "dgemm_"));
    // LAZYFEAT_FUSED_BLAS_THREADS=fixed: behave as on a BLAS whose threads cannot be set (MKL).
    const char* fixed = std::getenv("LAZYFEAT_FUSED_BLAS_THREADS");
    if (fixed && std::string(fixed) == "fixed") return;
    threads_settable = openblas_threads() > 0;
  }
};
const Blas& blas() {
  static const Blas b;
  return b;
}

}  // namespace

bool blas_has_dgemm() { return blas().dgemm != nullptr; }
bool blas_owns_threads() { return blas().dgemm && blas().threads_settable; }
bool fused_kernels_preferred() { return blas_owns_threads() || !blas_has_dgemm(); }

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (blas().dgemm) {
    const char a = ta ? 'T' : 'N', b = tb ? 'T' : 'N';
    const int m = int(M), n = int(N), k = int(K), la = int(lda), lb = int(ldb), lc = int(ldc);
    blas().dgemm(&a, &b, &m, &n, &k, &alpha, A, &la, B, &lb, &beta, C, &lc);
    return;
  }
  auto o = at::TensorOptions().dtype(at::kDouble);
  auto view = [&](const double* p, int64_t rows, int64_t cols, int64_t ld, bool t) {
    at::Tensor v = at::from_blob(const_cast<double*>(p), {rows, cols}, {1, ld}, o);
    return t ? v.t() : v;
  };
  at::Tensor a = view(A, ta ? K : M, ta ? M : K, lda, ta), b = view(B, tb ? N : K, tb ? K : N, ldb, tb);
  at::Tensor c = at::from_blob(C, {M, N}, {1, ldc}, o);
  at::Tensor r = beta == 0 ? at::mm(a, b).mul_(alpha) : at::addmm(c, a, b, beta, alpha);
  c.copy_(r);
}

}  // namespace lf
