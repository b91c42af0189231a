// Whitened PCA (protocol sections 1.7 and 8): centre by the fitting set's mean, covariance
// (z - mean)^T (z - mean) / N in float64, symmetric eigendecomposition, eigenvalues in
// decreasing order, projection on the top D eigenvectors divided by sqrt(eigenvalue).
// Two eigensolvers behind one name (PcaSolver):
//  - Dsyev (default): LAPACK's dsyev (tridiagonal QR iteration), the driver of the published
//    code's symeig, called directly from the LAPACK loaded with LibTorch, on the column-major
//    upper triangle as symeig passed it. Eigenvector signs, and so the signs of the whitened
//    coordinates, are then the published ones; O(p^3) with p = pixels (784: ~0.3 s).
//  - Evd: ATen's linalg_eigh (LAPACK dsyevd, divide and conquer). Same eigenvalues; an
//    eigenvector may come out negated (and differ in the last bits), so a coordinate flips.
// The tensor operations around the solver follow the published code's order (sort, column
// gather, slice, product, then the rsqrt scaling), so that the whitened pool is bit-identical
// to the published one where the same LibTorch and LAPACK run.
// Deliberately not: choosing the fitting set (data/dataset.cpp does), unwhitened PCA.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace lf {

enum class PcaSolver { Dsyev, Evd };
PcaSolver pca_solver_from_name(const std::string& name);  // "dsyev" | "evd", else UsageError

struct WhitenedPca {
  at::Tensor mean;         // [p]     mean of the fitting set
  at::Tensor components;   // [p, D]  top-D eigenvectors of the covariance, as columns
  at::Tensor eigenvalues;  // [D]     their eigenvalues, decreasing

  // (x - mean) @ components * eigenvalues^(-1/2): [m, p] -> [m, D]
  at::Tensor apply(const at::Tensor& x) const;
};

// Fits on z [N, p] (float64). Throws UsageError if D > p or if the covariance has fewer than
// D eigenvalues clearly above zero (the components could not be whitened), or if dsyev is
// asked for and no LAPACK providing it is loaded. If whitened is given, it receives apply(z).
WhitenedPca fit_whitened_pca(const at::Tensor& z, int64_t D, PcaSolver solver, at::Tensor* whitened = nullptr);

// Eigen-decomposition of a symmetric [p, p] float64 matrix by LAPACK's dsyev on its upper
// triangle (row i <= column j): eigenvalues ascending [p], eigenvectors as columns [p, p]
// (column-major strides, as symeig returned them). Throws if LAPACK's dsyev is unavailable.
std::pair<at::Tensor, at::Tensor> symmetric_eigen_dsyev(const at::Tensor& a);

}  // namespace lf
