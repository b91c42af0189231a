// Whitened PCA (protocol sections 1.7 and 8): centre by the fitting set's mean, covariance
// (z - mean)^T (z - mean) / N in float64, symmetric eigendecomposition, eigenvalues in
// decreasing order, projection on the top D eigenvectors divided by sqrt(eigenvalue).
// Deliberately not: choosing the fitting set (data/dataset.cpp does), unwhitened PCA.
#pragma once
#include <ATen/ATen.h>

namespace lf {

struct WhitenedPca {
  at::Tensor mean;         // [p]     mean of the fitting set
  at::Tensor components;   // [p, D]  top-D eigenvectors of the covariance, as columns
  at::Tensor eigenvalues;  // [D]     their eigenvalues, decreasing

  // (x - mean) @ components / sqrt(eigenvalues): [m, p] -> [m, D]
  at::Tensor apply(const at::Tensor& x) const;
};

// Fits on z [N, p] (float64). Throws UsageError if D > p or if the covariance has fewer than
// D eigenvalues clearly above zero (the components could not be whitened). If whitened is
// given, it receives apply(z) [N, D] (computed from the centred z the fit already holds).
WhitenedPca fit_whitened_pca(const at::Tensor& z, int64_t D, at::Tensor* whitened = nullptr);

}  // namespace lf
