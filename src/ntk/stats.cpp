// Kernel statistics (see stats.h).
#include "ntk/stats.h"

#include <algorithm>
#include <vector>

#include "common/error.h"

namespace lf {

nlohmann::json kernel_stats(const at::Tensor& K, const at::Tensor& y, const KernelStatsOptions& opt) {
  nlohmann::json j;
  j["n"] = K.size(0);
  j["frobenius"] = at::linalg_norm(K).item<double>();
  j["mean"] = K.mean().item<double>();
  j["std"] = K.std().item<double>();
  if (K.size(0) != K.size(1)) return j;
  at::Tensor d = K.diagonal();
  j["trace"] = d.sum().item<double>();
  j["diag_mean"] = d.mean().item<double>();
  j["diag_min"] = d.min().item<double>();
  j["diag_max"] = d.max().item<double>();
  if (opt.top > 0 && K.size(0) <= opt.max_eigen_n) {
    auto [evals, evecs] = at::linalg_eigh(K);  // ascending; evecs [n, n], columns
    const int64_t n = K.size(0), k = std::min(opt.top, n);
    std::vector<double> top, proj;
    at::Tensor yn;
    if (y.defined()) {
      require(y.numel() == n, "labels and kernel sizes differ");
      yn = y.to(K.scalar_type()).reshape({n});
      yn = yn / at::linalg_norm(yn);
    }
    for (int64_t i = 0; i < k; ++i) {
      top.push_back(evals[n - 1 - i].item<double>());
      if (yn.defined()) proj.push_back(std::pow(at::dot(evecs.select(1, n - 1 - i), yn).item<double>(), 2));
    }
    j["top_eigenvalues"] = top;
    if (yn.defined()) j["label_projection"] = proj;
  }
  return j;
}

double kernel_change(const at::Tensor& A, const at::Tensor& B) {
  require(A.sizes() == B.sizes(), "kernel_change: kernels of different shapes");
  return (at::linalg_norm(A - B) / at::linalg_norm(B)).item<double>();
}

}  // namespace lf
