// Ensembles of networks over seeds at a fixed configuration (protocol section 5, Fig. 2):
// the mean output f_bar(x) of alpha (f_i - f0_i), its test error (sign of f_bar vs y), the
// variance < (alpha (f_i(x) - f0_i(x)) - f_bar(x))^2 > over seeds i and test points x, and the
// single-network errors for comparison.
// Pure tensor functions; deliberately not: choosing which runs form an ensemble (report/).
#pragma once
#include <ATen/ATen.h>

#include "analysis/stats.h"

namespace lf::analysis {

struct EnsembleStats {
  int seeds = 0;                 // S
  int64_t points = 0;            // n test points
  double ensemble_err = NaN;     // fraction of x with f_bar(x) y(x) <= 0
  double variance = NaN;         // mean over i and x of (F_i(x) - f_bar(x))^2 (no n/(n-1))
  MeanSem single_err;            // over seeds of the fraction with F_i(x) y(x) <= 0
  at::Tensor f_bar;              // [n]
};

// F: [S, n] float64, the model outputs alpha (f_i - f0_i) of S seeds on the same n test points;
// y: [n] labels in {-1, +1} (any dtype). A point with F y <= 0 counts as an error (protocol
// section 3: training error counts F y <= 0). Throws std::invalid_argument on bad shapes.
EnsembleStats ensemble_stats(const at::Tensor& F, const at::Tensor& y);

}  // namespace lf::analysis
