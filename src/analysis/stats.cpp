// Statistics behind the report's figures: see stats.h. Deliberately no I/O.
#include "analysis/stats.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

namespace lf::analysis {

MeanSem mean_sem(const std::vector<double>& v) {
  MeanSem r;
  double s = 0;
  for (double x : v)
    if (std::isfinite(x)) s += x, r.n++;
  if (r.n == 0) return r;
  r.mean = s / r.n;
  if (r.n < 2) return r;  // one value: no standard error (NaN: no error bar, an empty CSV cell)
  double ss = 0;
  for (double x : v)
    if (std::isfinite(x)) ss += (x - r.mean) * (x - r.mean);
  r.sem = std::sqrt(ss / (r.n - 1) / r.n);
  return r;
}

std::vector<double> rescale_unit(const std::vector<double>& v) {
  double lo = INFINITY, hi = -INFINITY;
  int n = 0;
  for (double x : v)
    if (std::isfinite(x)) lo = std::min(lo, x), hi = std::max(hi, x), n++;
  std::vector<double> r(v.size(), NaN);
  if (n < 2 || !(hi > lo)) return r;
  for (size_t i = 0; i < v.size(); ++i)
    if (std::isfinite(v[i])) r[i] = (v[i] - lo) / (hi - lo);
  return r;
}

CharTimes characteristic_times(const std::vector<double>& t, const std::vector<double>& loss) {
  CharTimes c;
  for (size_t i = 0; i < t.size() && i < loss.size(); ++i) {
    if (std::isnan(c.t1) && loss[i] < 0.5) c.t1 = t[i];  // protocol §5: alpha^2 L < 0.5
    if (std::isnan(c.t2) && loss[i] == 0.0) c.t2 = t[i];
  }
  return c;
}

double step_value(const std::vector<double>& t, const std::vector<double>& v, double s,
                  bool hold_last) {
  if (t.empty() || s < t.front()) return NaN;
  if (s > t.back()) return hold_last ? v.back() : NaN;
  auto it = std::upper_bound(t.begin(), t.end(), s);
  return v[static_cast<size_t>(it - t.begin()) - 1];
}

std::vector<double> log_grid(double lo, double hi, int n) {
  std::vector<double> g(n);
  double a = std::log(lo), b = std::log(hi);
  for (int i = 0; i < n; ++i) g[i] = std::exp(a + (b - a) * i / (n - 1));
  return g;
}

namespace {

// Slope of log y on log x with one intercept per group: de-mean within each group, then
// slope = sum dx dy / sum dx^2.  xs, ys already in log space.
struct Ols {
  double slope = NaN, intercept = NaN;
  int groups = 0;
};
Ols ols_grouped(const std::vector<int>& g, const std::vector<double>& lx,
                const std::vector<double>& ly) {
  std::map<int, std::pair<double, double>> sum;  // group -> (sum lx, sum ly)
  std::map<int, int> cnt;
  for (size_t i = 0; i < g.size(); ++i) {
    sum[g[i]].first += lx[i];
    sum[g[i]].second += ly[i];
    cnt[g[i]]++;
  }
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    double mx = sum[g[i]].first / cnt[g[i]], my = sum[g[i]].second / cnt[g[i]];
    sxy += (lx[i] - mx) * (ly[i] - my);
    sxx += (lx[i] - mx) * (lx[i] - mx);
  }
  Ols r;
  r.groups = static_cast<int>(cnt.size());
  if (!(sxx > 0)) return r;
  r.slope = sxy / sxx;
  if (!g.empty()) {
    int g0 = g.front();
    r.intercept = sum[g0].second / cnt[g0] - r.slope * sum[g0].first / cnt[g0];
  }
  return r;
}

// Fits the points in range with per-seed weights w (seed -> multiplicity; empty = all once).
Ols fit_weighted(const std::vector<const PowerPoint*>& pts, const std::map<uint64_t, int>* w,
                 int* used) {
  std::vector<int> g;
  std::vector<double> lx, ly;
  for (const PowerPoint* p : pts) {
    double s = 0;
    int n = 0;
    for (const auto& [seed, v] : p->seed_values) {
      if (!std::isfinite(v)) continue;
      int m = 1;
      if (w) {
        auto it = w->find(seed);
        m = it == w->end() ? 0 : it->second;
      }
      s += m * v, n += m;
    }
    if (n == 0 || !(s / n > 0)) continue;
    g.push_back(p->group);
    lx.push_back(std::log(p->x));
    ly.push_back(std::log(s / n));
  }
  if (used) *used = static_cast<int>(g.size());
  return ols_grouped(g, lx, ly);
}

}  // namespace

PowerFit fit_power_law(const std::vector<PowerPoint>& pts, double lo, double hi, int boot,
                       uint64_t rng_seed) {
  PowerFit f;
  f.lo = lo, f.hi = hi;
  std::vector<const PowerPoint*> in;
  std::set<uint64_t> seeds;
  for (const auto& p : pts) {
    if (!(p.x >= lo && p.x <= hi && p.x > 0)) continue;
    in.push_back(&p);
    for (const auto& sv : p.seed_values)
      if (std::isfinite(sv.second)) seeds.insert(sv.first);
  }
  Ols o = fit_weighted(in, nullptr, &f.points);
  f.groups = o.groups;
  f.seeds = static_cast<int>(seeds.size());
  if (std::isnan(o.slope)) {
    f.why = f.points < 2 ? "fewer than 2 points with positive values in range"
                         : "no spread in x within any group";
    f.points = f.points;
    return f;
  }
  f.slope = o.slope, f.intercept = o.intercept;
  if (seeds.size() < 2 || boot < 2) return f;  // no error estimate from one seed
  std::vector<uint64_t> sv(seeds.begin(), seeds.end());
  std::mt19937_64 rng(rng_seed);
  std::uniform_int_distribution<size_t> pick(0, sv.size() - 1);
  std::vector<double> slopes;
  for (int b = 0; b < boot; ++b) {
    std::map<uint64_t, int> w;
    for (size_t k = 0; k < sv.size(); ++k) w[sv[pick(rng)]]++;
    Ols ob = fit_weighted(in, &w, nullptr);
    if (std::isfinite(ob.slope)) slopes.push_back(ob.slope);
  }
  f.boot = static_cast<int>(slopes.size());
  if (slopes.size() >= 2) {
    double m = 0;
    for (double s : slopes) m += s;
    m /= slopes.size();
    double ss = 0;
    for (double s : slopes) ss += (s - m) * (s - m);
    f.slope_err = std::sqrt(ss / (slopes.size() - 1));
  }
  return f;
}

}  // namespace lf::analysis
