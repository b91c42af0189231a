// OpenBLAS's thread count, where the process's BLAS is OpenBLAS (LibTorch links libblas.so.3:
// OpenBLAS on Debian; its openblas_get/set_num_threads found by dlsym). Elsewhere (MKL inside
// PyTorch's LibTorch, whose threads cannot be set safely: docs/benchmarks.md "ensemble") nothing.
// Used where a result must not depend on the machine's thread count (the PCA of data/pca.cpp:
// OpenBLAS's thread count changes how a product's sums are split, so its last bits) and by the
// CPU kernels that run threads of their own (models/blas.h, BlasOneThread).
// Deliberately not: MKL, other libraries' threads, ATen's intra-op threads.
#pragma once

namespace lf {

// The current OpenBLAS thread count; 0 where the BLAS is not OpenBLAS.
int openblas_threads();

// OpenBLAS on `threads` threads for the scope, then restored; a no-op where it is not OpenBLAS
// or when `active` is false.
class OpenBlasThreads {
 public:
  explicit OpenBlasThreads(int threads, bool active = true);
  ~OpenBlasThreads();
  OpenBlasThreads(const OpenBlasThreads&) = delete;
  OpenBlasThreads& operator=(const OpenBlasThreads&) = delete;

 private:
  int prev_ = 0;  // the count to restore; 0: nothing to restore
};

}  // namespace lf
