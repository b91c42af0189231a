// Runs as the analysis sees them (one row of the database's `runs` table, docs/schema.md) and
// their grouping: an ensemble = the runs of one configuration minus the seeds; a family = the
// runs that differ only in h, alpha and the seeds (one sweep of a figure), ignoring options that
// only add measurements. Only converged runs count (protocol section 5); the others are
// dropped with their status as the reason.
// Deliberately not: SQL (report/db.h), statistics (analysis/stats.h).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/stats.h"

namespace lf::analysis {

struct RunRecord {
  int64_t id = -1;
  std::string status, error;                      // runs.status, runs.error
  std::string dataset, arch, act, loss;
  int64_t L = -1, h = -1, ptr = -1, pte = -1, pca = -1;
  double alpha = NaN, sqrt_h_alpha = NaN, tau = NaN, temperature = NaN;
  uint64_t seed_data = 0, seed_init = 0, seed_batch = 0;
  int64_t steps = -1;
  double t = NaN, t1 = NaN, t2 = NaN, train_loss = NaN, train_err = NaN, test_err = NaN;
  double weight_change = NaN, output_norm = NaN, f_norm = NaN, kernel_change = NaN;
  double wall_s = NaN, steps_per_s = NaN;
  nlohmann::json config;   // runs.config parsed (object; empty object when absent)
  nlohmann::json summary;  // runs.summary parsed (object; empty object when absent)
};

// sqrt(h) alpha (the regime parameter, protocol section 3) from the flat columns.
double regime(const RunRecord& r);

// The configuration minus the seeds (and minus budgets/paths that cannot change numbers), as
// canonical text: runs with equal keys form one ensemble over seeds.
std::string ensemble_key(const RunRecord& r);
// ensemble_key further minus h, alpha, sqrt(h) alpha and measurement-only options
// (delta_kernel, init_kernel, final_kernel, zdot, kernel_points, device).
std::string family_key(const RunRecord& r);
// A short human label of a family, e.g. "fc softplus L=5 mnist n=5000 hinge mu=1000" or
// "cnn relu mnist n=5000 hinge tau=10 T=0.0003" (no L: the CNN has four convolutions).
std::string family_label(const RunRecord& r);

// Rounds a positive number to `digits` significant digits as text ("0.0316"), for grouping
// values computed in floating point (alpha = X / sqrt(h)).
std::string value_key(double x, int digits = 4);

struct Selection {
  std::vector<RunRecord> kept;                 // converged
  std::map<std::string, int> dropped;          // status -> count
  std::map<std::string, std::string> reasons;  // status -> one example message
};
// Keeps the converged runs and counts the others by status.
Selection select_converged(const std::vector<RunRecord>& runs);

// Groups indices of runs by a key function, in order of first appearance.
template <class KeyFn>
std::vector<std::pair<std::string, std::vector<size_t>>> group_by(const std::vector<RunRecord>& runs,
                                                                  KeyFn key) {
  std::vector<std::pair<std::string, std::vector<size_t>>> out;
  std::map<std::string, size_t> where;
  for (size_t i = 0; i < runs.size(); ++i) {
    std::string k = key(runs[i]);
    auto it = where.find(k);
    if (it == where.end()) {
      where[k] = out.size();
      out.push_back({k, {i}});
    } else {
      out[it->second].second.push_back(i);
    }
  }
  return out;
}

}  // namespace lf::analysis
