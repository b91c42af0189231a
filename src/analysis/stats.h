// Statistics behind the report's figures (figures.md, protocol section 5): means and standard
// errors over seeds, rescaling of error curves to [0,1] (F1d), t1 and t2 of a loss curve,
// averaging curves on a common grid, and log-log power-law exponents with bootstrap errors
// over seeds (F3a, F6, T1).
// Pure functions over plain vectors; deliberately not: reading the database (report/db.h),
// plotting (report/plot.h), ensembles of test outputs (analysis/ensemble.h).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace lf::analysis {

constexpr double NaN = std::numeric_limits<double>::quiet_NaN();

// Mean and standard error of the mean (sample std / sqrt(n)); NaN entries are skipped. With one
// value the standard error is NaN (unknown), not 0: a single seed has no error bar.
struct MeanSem {
  double mean = NaN, sem = NaN;
  int n = 0;
};
MeanSem mean_sem(const std::vector<double>& v);

// (v - min) / (max - min) over the finite entries (F1d: one error curve per width mapped to
// [0,1]); all NaN when the curve is flat or has fewer than two finite values.
std::vector<double> rescale_unit(const std::vector<double>& v);

// t1 = first time with alpha^2 L < 0.5, t2 = first time with alpha^2 L == 0 (protocol
// section 5), from a loss curve sampled at increasing times; NaN where never reached.
struct CharTimes {
  double t1 = NaN, t2 = NaN;
};
CharTimes characteristic_times(const std::vector<double>& t, const std::vector<double>& loss);

// The value of a piecewise-constant curve (t_k, v_k) at time s: v_k of the last t_k <= s.
// Before the first sample: NaN. After the last one: v_last if hold_last, else NaN.
double step_value(const std::vector<double>& t, const std::vector<double>& v, double s,
                  bool hold_last);

// n points log-spaced from lo to hi (lo, hi > 0, n >= 2).
std::vector<double> log_grid(double lo, double hi, int n);

// One point of a log-log fit: the abscissa x (e.g. sqrt(h) alpha), the group it belongs to
// (e.g. the width h: each group has its own intercept), and the per-seed values of the
// observable there (seed, value).
struct PowerPoint {
  int group = 0;
  double x = NaN;
  std::vector<std::pair<uint64_t, double>> seed_values;
};

// Least-squares slope of log(mean over seeds of y) against log x, with one intercept per group
// (a common slope), over the points with lo <= x <= hi and a positive mean. The error is the
// standard deviation of the slope over `boot` bootstrap resamplings of the seeds (seeds drawn
// with replacement from all seeds present; each point then averages its values over the drawn
// seeds), deterministic for a given rng_seed.
struct PowerFit {
  double slope = NaN, slope_err = NaN;  // O ~ x^slope
  double intercept = NaN;               // of the first group present, in log space
  double lo = NaN, hi = NaN;            // the range asked for
  int points = 0, groups = 0, seeds = 0, boot = 0;
  std::string why;                      // non-empty when no slope could be fitted
};
PowerFit fit_power_law(const std::vector<PowerPoint>& pts, double lo, double hi, int boot = 200,
                       uint64_t rng_seed = 0);

}  // namespace lf::analysis
