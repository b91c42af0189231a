// Whitened PCA (see pca.h), in the operation order of the published code (protocol section 8).
#include "data/pca.h"

#include <ATen/TensorIndexing.h>
#include <dlfcn.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/blas_threads.h"
#include "common/error.h"

namespace lf {
namespace {

// LAPACK's Fortran entry point (hidden string lengths passed as size_t, gfortran's ABI).
using DsyevFn = void (*)(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                         double* work, const int* lwork, int* info, size_t, size_t);

// dsyev_ from the process (LibTorch's LAPACK: OpenBLAS on Debian), else from a LAPACK library
// loaded here. nullptr when none provides it.
DsyevFn find_dsyev() {
  static DsyevFn fn = [] {
    if (void* s = dlsym(RTLD_DEFAULT, "dsyev_")) return reinterpret_cast<DsyevFn>(s);
    for (const char* lib : {"liblapack.so.3", "libopenblas.so.0", "libmkl_rt.so", "libmkl_rt.so.2"}) {
      if (void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL))
        if (void* s = dlsym(h, "dsyev_")) return reinterpret_cast<DsyevFn>(s);
    }
    return DsyevFn(nullptr);
  }();
  return fn;
}

}  // namespace

PcaSolver pca_solver_from_name(const std::string& name) {
  if (name == "dsyev") return PcaSolver::Dsyev;
  if (name == "evd") return PcaSolver::Evd;
  throw UsageError("unknown PCA solver '" + name + "' (expected dsyev or evd)");
}

std::pair<at::Tensor, at::Tensor> symmetric_eigen_dsyev(const at::Tensor& a) {
  DsyevFn dsyev = find_dsyev();
  require(dsyev != nullptr,
          "LAPACK's dsyev is not available in this process (no LAPACK loaded with LibTorch, no liblapack.so.3): "
          "use --pca-solver evd");
  require(a.dim() == 2 && a.size(0) == a.size(1) && a.scalar_type() == at::kDouble,
          "dsyev: a square float64 matrix is needed");
  const int n = static_cast<int>(a.size(0));
  // Column-major copy: buf[i + j n] = a[i][j]. dsyev reads the upper triangle (i <= j).
  at::Tensor buf = a.t().contiguous();  // [n, n] row-major of a^T = column-major of a
  at::Tensor w = at::empty({n}, a.options());
  int info = 0, lwork = -1;
  double query = 0;
  dsyev("V", "U", &n, buf.data_ptr<double>(), &n, w.data_ptr<double>(), &query, &lwork, &info, 1, 1);
  lwork = std::max(1, static_cast<int>(query));
  std::vector<double> work(static_cast<size_t>(lwork));
  dsyev("V", "U", &n, buf.data_ptr<double>(), &n, w.data_ptr<double>(), work.data(), &lwork, &info, 1, 1);
  require(info == 0, "dsyev failed (info " + std::to_string(info) + ")");
  return {w, buf.t()};  // eigenvector k = column k: vec[i][k] = buf[k n + i]
}

// The PCA's products run on a fixed number of OpenBLAS threads: the thread count decides how the
// covariance's sums are split, so the data's last bits (then the trajectories) would otherwise
// depend on the machine's core count. Two: the published runs' PCA, made on this machine class
// (2 cores, OpenBLAS's default of one thread a core), replays bit for bit (tests/test_replay.cpp).
constexpr int kPcaBlasThreads = 2;

at::Tensor WhitenedPca::apply(const at::Tensor& x) const {
  OpenBlasThreads threads(kPcaBlasThreads);  // as in fit_whitened_pca
  return at::mm(x - mean, components) * eigenvalues.rsqrt();  // [m, p] @ [p, D] -> [m, D]
}

WhitenedPca fit_whitened_pca(const at::Tensor& z, int64_t D, PcaSolver solver, at::Tensor* whitened) {
  using at::indexing::Slice;
  const int64_t N = z.size(0), p = z.size(1);
  require(D >= 1 && D <= p, "--pca " + std::to_string(D) + " is larger than the " +
                                std::to_string(p) + " pixels of an image");
  require(N >= 2, "the PCA needs at least 2 points to fit on");
  // The published order: mu = z.mean(0); cov = (z - mu)^T (z - mu) / N; eigh; sort
  // descending; vec[:, order]; u = (z - mu) @ vec[:, :D] * val[:D].rsqrt().
  OpenBlasThreads threads(kPcaBlasThreads);
  WhitenedPca pca;
  pca.mean = z.mean(0);                                  // [p]
  at::Tensor zc = z - pca.mean;                          // [N, p]
  at::Tensor cov = at::mm(zc.t(), zc) / double(N);       // [p, p]
  at::Tensor val, vec;                                   // ascending [p]; columns [p, p]
  if (solver == PcaSolver::Dsyev) std::tie(val, vec) = symmetric_eigen_dsyev(cov);
  else std::tie(val, vec) = at::linalg_eigh(cov);
  auto [sorted, order] = val.sort(/*dim=*/0, /*descending=*/true);
  at::Tensor vec_sorted = vec.index({Slice(), order});   // [p, p], columns by decreasing eigenvalue
  pca.eigenvalues = sorted.slice(0, 0, D);               // [D]
  pca.components = vec_sorted.slice(1, 0, D);            // [p, D] (a view, as published)
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
  if (whitened) *whitened = at::mm(zc, pca.components) * pca.eigenvalues.rsqrt();  // as apply(z)
  return pca;
}

}  // namespace lf
