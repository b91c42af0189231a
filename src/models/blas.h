// The BLAS entry point of the CPU float64 kernels (models/fc_fused.h, models/cnn_fused.h): the
// column-major dgemm_ of the loaded library (LibTorch links libblas.so.3: OpenBLAS on Debian),
// looked up once, and OpenBLAS's thread control. Where no dgemm_ is exported (a LibTorch that
// bundles MKL), or with LAZYFEAT_FUSED_ATEN_MM=1 (which emulates that, tests/test_train.cpp),
// the same products go through at::mm / at::addmm. LAZYFEAT_FUSED_BLAS_THREADS=fixed emulates a
// dgemm_ whose threads cannot be set (MKL inside PyTorch's LibTorch exports dgemm_).
// Deliberately not: other BLAS routines, other dtypes, a choice of library.
#pragma once
#include <cstdint>

#include "common/blas_threads.h"

namespace lf {

// True when the products go to the library's dgemm_ (false: the at::mm fallback).
bool blas_has_dgemm();
// True when dgemm_ is called directly and its threads can be set (OpenBLAS): callers that run
// their own threads keep it single-threaded with BlasOneThread; otherwise (MKL, at::mm) they run
// their threads as an ATen parallel region, inside which the library starts no threads of its own.
bool blas_owns_threads();
// Whether the CPU float64 kernels (models/fc_fused.h, models/cnn_fused.h) are the trainer's default
// here: where dgemm_ is OpenBLAS's (threads settable) or absent (at::mm). With MKL's dgemm_ inside
// PyTorch's LibTorch they measured slower than the LibTorch paths on 16 cores (FC 6 against 69
// steps/s, CNN 6.1 against 7.3: docs/benchmarks.md "ensemble"), so the reference trainer is.
bool fused_kernels_preferred();

// Column-major C [M, N] = alpha op(A) op(B) + beta C (op = transpose when ta / tb); with
// beta = 0, C is not read.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// OpenBLAS single-threaded for the scope (for callers that run their own threads), then restored.
// (A no-op where blas_owns_threads() is false.)
struct BlasOneThread : OpenBlasThreads {
  BlasOneThread() : OpenBlasThreads(1, blas_owns_threads()) {}
};

}  // namespace lf
