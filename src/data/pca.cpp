// Whitened PCA (see pca.h), in the operation order of the published code (protocol section 8).
#include "data/pca.h"

#include <cstdio>
#include <string>

#include "common/error.h"

namespace lf {

at::Tensor WhitenedPca::apply(const at::Tensor& x) const {
  at::Tensor u = at::mm(x - mean, components);  // [m, p] @ [p, D] -> [m, D]
  return u.mul_(eigenvalues.rsqrt());           // each component divided by sqrt(lambda_k)
}

WhitenedPca fit_whitened_pca(const at::Tensor& z, int64_t D, at::Tensor* whitened) {
  const int64_t N = z.size(0), p = z.size(1);
  require(D >= 1 && D <= p, "--pca " + std::to_string(D) + " is larger than the " +
                                std::to_string(p) + " pixels of an image");
  require(N >= 2, "the PCA needs at least 2 points to fit on");
  WhitenedPca pca;
  pca.mean = z.mean(0);                                   // [p]
  at::Tensor zc = z - pca.mean;                           // [N, p]
  at::Tensor cov = at::mm(zc.t(), zc).div_(double(N));    // [p, p] = zc^T zc / N
  auto [val, vec] = at::linalg_eigh(cov);                 // ascending: [p], [p, p]
  auto [sorted, order] = val.sort(/*dim=*/0, /*descending=*/true);
  pca.eigenvalues = sorted.slice(0, 0, D).contiguous();                   // [D]
  pca.components = vec.index_select(1, order.slice(0, 0, D)).contiguous();  // [p, D]
  // A component with (numerically) zero variance cannot be whitened: dividing by sqrt of a
  // rounding error would make it noise. The tolerance is far below any real image direction.
  const double top = sorted[0].item<double>();
  const double last = pca.eigenvalues[D - 1].item<double>();
  if (!(last > 1e-12 * top)) {
    int64_t rank = (sorted > 1e-12 * top).sum().item<int64_t>();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g", last);
    throw UsageError("--pca " + std::to_string(D) + " exceeds the rank of the fitting set's covariance (" +
                     std::to_string(rank) + " components of nonzero variance; eigenvalue " +
                     std::to_string(D) + " is " + buf + ")");
  }
  if (whitened) *whitened = at::mm(zc, pca.components).mul_(pca.eigenvalues.rsqrt());  // as apply(z)
  return pca;
}

}  // namespace lf
