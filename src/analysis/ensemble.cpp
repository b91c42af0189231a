// Ensembles over seeds: see ensemble.h. Deliberately no I/O.
#include "analysis/ensemble.h"

#include <stdexcept>

namespace lf::analysis {

EnsembleStats ensemble_stats(const at::Tensor& F_in, const at::Tensor& y_in) {
  if (F_in.dim() != 2 || y_in.dim() != 1 || F_in.size(1) != y_in.size(0) || F_in.size(0) < 1)
    throw std::invalid_argument("ensemble_stats: F must be [S, n] and y [n]");
  at::Tensor F = F_in.to(at::kDouble);   // [S, n]
  at::Tensor y = y_in.to(at::kDouble);   // [n]
  EnsembleStats r;
  r.seeds = static_cast<int>(F.size(0));
  r.points = F.size(1);
  r.f_bar = F.mean(0);                                           // [n]
  r.ensemble_err = (r.f_bar * y <= 0).to(at::kDouble).mean().item<double>();
  r.variance = (F - r.f_bar.unsqueeze(0)).pow(2).mean().item<double>();  // protocol §5
  at::Tensor single = (F * y.unsqueeze(0) <= 0).to(at::kDouble).mean(1);  // [S]
  std::vector<double> v(single.data_ptr<double>(), single.data_ptr<double>() + r.seeds);
  r.single_err = mean_sem(v);
  return r;
}

}  // namespace lf::analysis
