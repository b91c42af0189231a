// The BLAS entry point of the CPU float64 kernels (models/fc_fused.h, models/cnn_fused.h): the
// column-major dgemm_ of the loaded library (LibTorch links libblas.so.3: OpenBLAS on Debian),
// looked up once, and OpenBLAS's thread control. Where no dgemm_ is exported (a LibTorch that
// bundles MKL), or with LAZYFEAT_FUSED_ATEN_MM=1 (which emulates that, tests/test_train.cpp),
// the same products go through at::mm / at::addmm.
// Deliberately not: other BLAS routines, other dtypes, a choice of library.
#pragma once
#include <cstdint>

namespace lf {

// True when the products go to the library's dgemm_ (false: the at::mm fallback).
bool blas_has_dgemm();

// Column-major C [M, N] = alpha op(A) op(B) + beta C (op = transpose when ta / tb); with
// beta = 0, C is not read.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// OpenBLAS single-threaded for the scope (for callers that run their own threads), then restored.
// (MKL, as PyTorch's LibTorch bundles it: not yet; see docs/benchmarks.md "ensemble".)
struct BlasOneThread {
  int prev = 1;
  BlasOneThread();
  ~BlasOneThread();
  BlasOneThread(const BlasOneThread&) = delete;
  BlasOneThread& operator=(const BlasOneThread&) = delete;
};

}  // namespace lf
