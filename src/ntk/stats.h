// Statistics of a kernel Gram matrix (protocol section 5, Fig. 5): Frobenius norm, mean, std,
// diagonal, trace, top eigenvalues and the projection of the labels on their eigenvectors; and
// the relative change between two kernels. Deliberately not: computing kernels (ntk/ntk.h).
#pragma once
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

namespace lf {

struct KernelStatsOptions {
  int64_t top = 10;          // eigenvalues reported (0: none)
  int64_t max_eigen_n = 3000;  // no eigendecomposition above this size (O(n^3))
};

// {"n","frobenius","mean","std","trace","diag_mean","diag_min","diag_max",
//  "top_eigenvalues":[...], "label_projection":[...]} ; label_projection[k] = (v_k . y)^2 / |y|^2
// for the k-th largest eigenvector v_k (needs y [n], square K only).
nlohmann::json kernel_stats(const at::Tensor& K, const at::Tensor& y = at::Tensor(),
                            const KernelStatsOptions& opt = {});

// ||A - B||_F / ||B||_F (the kernel change with A = Theta(w_end), B = Theta(w0)).
double kernel_change(const at::Tensor& A, const at::Tensor& B);

}  // namespace lf
