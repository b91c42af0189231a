// `lazyfeat report`: which runs make which figure (figures.md) and the fits of exponents; see
// report.h. Deliberately not: the statistics themselves (analysis/), gnuplot (plot.cpp), HTML
// (html.cpp).
#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "analysis/ensemble.h"
#include "analysis/runs.h"
#include "analysis/stats.h"
#include "common/error.h"
#include "report/db.h"

namespace lf::report {

namespace fs = std::filesystem;
using analysis::MeanSem;
using analysis::NaN;
using analysis::RunRecord;
using analysis::value_key;
using json = nlohmann::json;

namespace {

using Runs = std::vector<const RunRecord*>;
using Get = std::function<double(const RunRecord&)>;

uint64_t seed_id(const RunRecord& r) {
  return r.seed_init ^ (r.seed_data << 21) ^ (r.seed_batch << 42);
}

double sqrt_h(const RunRecord& r) { return std::sqrt(static_cast<double>(r.h)); }

// Mean +- standard error of y over the runs sharing a value of x, as a series sorted by x.
Series mean_series(const Runs& rs, const Get& x, const Get& y, const std::string& title) {
  std::map<double, std::vector<double>> by;  // keyed by x rounded to 4 digits
  for (const RunRecord* r : rs) {
    double xv = x(*r), yv = y(*r);
    if (!std::isfinite(xv) || !std::isfinite(yv)) continue;
    by[std::stod(value_key(xv, 4))].push_back(yv);
  }
  Series s;
  s.title = title;
  for (auto& [xv, ys] : by) {
    MeanSem m = analysis::mean_sem(ys);
    s.x.push_back(xv), s.y.push_back(m.mean), s.err.push_back(m.sem), s.n.push_back(m.n);
  }
  return s;
}

// Runs split by a label (e.g. "h=100"), ordered by the numeric value behind the label.
std::vector<std::pair<double, Runs>> split(const Runs& rs, const Get& by) {
  std::map<double, Runs> m;
  for (const RunRecord* r : rs)
    if (std::isfinite(by(*r))) m[std::stod(value_key(by(*r), 4))].push_back(r);
  return {m.begin(), m.end()};
}

int distinct(const Runs& rs, const Get& x) {
  std::set<std::string> s;
  for (const RunRecord* r : rs)
    if (std::isfinite(x(*r))) s.insert(value_key(x(*r), 4));
  return static_cast<int>(s.size());
}

// Points for fit_power_law: one per (group, x), with the per-seed values of y.
std::vector<analysis::PowerPoint> power_points(const Runs& rs, const Get& x, const Get& y,
                                               const Get& group) {
  std::map<std::pair<double, double>, analysis::PowerPoint> m;
  for (const RunRecord* r : rs) {
    double xv = x(*r), yv = y(*r);
    if (!std::isfinite(xv) || !std::isfinite(yv)) continue;
    auto key = std::make_pair(group(*r), std::stod(value_key(xv, 4)));
    auto& p = m[key];
    p.group = static_cast<int>(std::lround(group(*r)));
    p.x = key.second;
    p.seed_values.push_back({seed_id(*r), yv});
  }
  std::vector<analysis::PowerPoint> out;
  for (auto& [k, p] : m) out.push_back(std::move(p));
  return out;
}

std::string fmt(double v, int digits = 3) { return std::isfinite(v) ? value_key(v, digits) : "n/a"; }

// The frozen-kernel result a run recorded (ntk/measure.h: summary.kernel.<which>.test_err).
double kernel_run_err(const RunRecord& r, const char* which) {
  const json& s = r.summary;
  if (!s.contains("kernel") || !s["kernel"].is_object()) return NaN;
  const json& k = s["kernel"];
  if (!k.contains(which) || !k[which].is_object()) return NaN;
  const json& w = k[which];
  // Only frozen-kernel runs that fit the training set count, like the networks (protocol §5).
  if (w.contains("status") && w["status"].is_string() && w["status"] != "converged") return NaN;
  return w.contains("test_err") && w["test_err"].is_number() ? w["test_err"].get<double>() : NaN;
}

struct Family {
  std::string key, label;
  json config;  // the representative's config minus h, alpha, seeds
  Runs runs;
  const RunRecord& rep() const { return *runs.front(); }
};

// One ensemble (configuration minus the seeds) with its statistics.
struct Ensemble {
  int64_t h = 0;
  double alpha = NaN, regime = NaN;
  analysis::EnsembleStats stats;
  std::vector<std::pair<uint64_t, double>> seed_var;  // per-seed contribution to Var
};

class Builder {
 public:
  // cnn_dropped: CNN runs of the database that did not converge (named when F1b, F2d are absent).
  Builder(const StudyDb& db, const ReportOptions& opt, int cnn_dropped)
      : db_(db), opt_(opt), cnn_dropped_(cnn_dropped) {}

  std::vector<Figure> figures;
  json fits = json::array(), absent = json::array(), families = json::array();

  void run(const std::vector<Family>& fams);

 private:
  const StudyDb& db_;
  const ReportOptions& opt_;
  const int cnn_dropped_;
  std::map<std::string, std::vector<Ensemble>> ens_cache_;

  void add(Figure f, const std::string& needs_if_empty, const std::string& sweep) {
    bool any = false;
    for (const auto& p : f.panels) any = any || p.has_points();
    if (!any) {
      mark_absent(f.id, needs_if_empty, sweep);
      return;
    }
    figures.push_back(std::move(f));
  }
  void mark_absent(const std::string& id, const std::string& needs, const std::string& sweep) {
    for (const auto& a : absent)
      if (a["id"] == id) return;
    absent.push_back({{"id", id}, {"needs", needs}, {"sweep", sweep}});
  }
  json fit(const std::string& fig, const Family& fam, const std::string& quantity,
           const std::string& regime, const Runs& rs, const Get& x, const Get& y, double lo,
           double hi, double prediction, double paper, Figure& f, const Get& group = nullptr);

  const std::vector<Ensemble>& ensembles(const Family& fam);

  void error_vs_h(const Family& fam, const std::string& id, bool cnn);
  void fc_setup_a(const Family& fam);
  void ensemble_figures(const Family& fam, bool cnn);
  void loss_curves(const Family& fam);
  void output_growth(const Family& fam);
  void zdot(const Family& fam);
  void relu_kernel(const Family& fam);
  void frozen_kernels(const std::vector<Family>& fams);
  void table1(const std::vector<Family>& fams);
};

json Builder::fit(const std::string& fig, const Family& fam, const std::string& quantity,
                  const std::string& regime, const Runs& rs, const Get& x, const Get& y,
                  double lo, double hi, double prediction, double paper, Figure& f,
                  const Get& group) {
  Get g = group ? group : Get([](const RunRecord& r) { return static_cast<double>(r.h); });
  auto pf = analysis::fit_power_law(power_points(rs, x, y, g), lo, hi, opt_.boot);
  json j = {{"figure", fig},
            {"family", fam.label},
            {"quantity", quantity},
            {"regime", regime},
            {"range", {lo, hi}},
            {"slope", std::isfinite(pf.slope) ? json(pf.slope) : json(nullptr)},
            {"slope_err", std::isfinite(pf.slope_err) ? json(pf.slope_err) : json(nullptr)},
            {"points", pf.points},
            {"groups", pf.groups},
            {"seeds", pf.seeds},
            {"prediction", std::isfinite(prediction) ? json(prediction) : json(nullptr)},
            {"paper", std::isfinite(paper) ? json(paper) : json(nullptr)}};
  if (!pf.why.empty()) j["why"] = pf.why;
  fits.push_back(j);
  f.notes.push_back(quantity + ", " + regime + " (" + fmt(lo) + " ≤ √h α ≤ " + fmt(hi) +
                    "): slope " + fmt(pf.slope) + " ± " + fmt(pf.slope_err, 2) + " over " +
                    std::to_string(pf.points) + " points" +
                    (std::isfinite(prediction) ? ", prediction " + fmt(prediction) : "") +
                    (pf.why.empty() ? "" : " (" + pf.why + ")"));
  return j;
}

const std::vector<Ensemble>& Builder::ensembles(const Family& fam) {
  auto it = ens_cache_.find(fam.key);
  if (it != ens_cache_.end()) return it->second;
  std::vector<Ensemble>& out = ens_cache_[fam.key];
  std::vector<RunRecord> copies;
  for (const RunRecord* r : fam.runs) copies.push_back(*r);
  for (const auto& [key, idx] : analysis::group_by(copies, analysis::ensemble_key)) {
    std::vector<at::Tensor> F;
    std::vector<uint64_t> seeds;
    at::Tensor y;
    const RunRecord& r0 = copies[idx.front()];
    for (size_t i : idx) {
      OutputRow o;
      if (!db_.outputs(copies[i].id, o)) continue;
      if (y.defined() && (o.n != y.size(0) || !at::equal(o.y, y))) continue;  // other test set
      y = o.y;
      F.push_back(o.f_delta * copies[i].alpha);  // the model's output alpha (f - f0), protocol §3
      seeds.push_back(seed_id(copies[i]));
    }
    if (F.size() < 2) continue;
    Ensemble e;
    e.h = r0.h, e.alpha = r0.alpha, e.regime = analysis::regime(r0);
    at::Tensor Fs = at::stack(F);  // [S, n]
    e.stats = analysis::ensemble_stats(Fs, y);
    at::Tensor per_seed = (Fs - e.stats.f_bar.unsqueeze(0)).pow(2).mean(1);  // [S]
    for (size_t s = 0; s < seeds.size(); ++s)
      e.seed_var.push_back({seeds[s], per_seed[static_cast<int64_t>(s)].item<double>()});
    out.push_back(std::move(e));
  }
  return out;
}

// The sweep that makes the setup-B figures (F1b, F2d), named where they are absent.
const char* const kSweepB =
    "examples/setup-b-cnn.toml (examples/setup-b-small.toml in miniature): arch=\"cnn\", act=\"relu\", "
    "tau=10, temperature=3e-4, batch-max=64; axes h (10..159, 17 values), alpha [1e-4,1e-2,1e-1,1,10,100], "
    "seed-init 0..9";

const Get kH = [](const RunRecord& r) { return static_cast<double>(r.h); };
const Get kAlpha = [](const RunRecord& r) { return r.alpha; };
const Get kRegime = [](const RunRecord& r) { return analysis::regime(r); };
const Get kTestErr = [](const RunRecord& r) { return r.test_err; };

// A quantity's two log-log panels, against alpha and against sqrt(h) alpha (the regime): one
// series a width and quantity (label prefix, getter), in that order.
std::vector<Panel> vs_alpha_and_regime(const std::vector<std::pair<double, Runs>>& by_h, const std::string& ylabel,
                                       const std::vector<std::pair<std::string, Get>>& quantities) {
  Panel pa{"vs α", "α", ylabel, true, true, {}};
  Panel pb{"vs √h α", "√h α", ylabel, true, true, {}};
  for (auto& [h, rs] : by_h)
    for (auto& [prefix, get] : quantities) {
      pa.series.push_back(mean_series(rs, kAlpha, get, prefix + "h=" + value_key(h, 4)));
      pb.series.push_back(mean_series(rs, kRegime, get, prefix + "h=" + value_key(h, 4)));
    }
  return {pa, pb};
}

void Builder::error_vs_h(const Family& fam, const std::string& id, bool cnn) {
  Figure f;
  f.id = id;
  f.title = std::string("Test error vs h, one curve per α (") + fam.label + ")";
  f.finding = cnn ? "Same as F1a for the CNN; the gap between feature and lazy is larger."
                  : "Error falls with h; larger α is worse; α ≳ 1e2 reaches the frozen-NTK curve (lazy limit).";
  Panel p;
  p.title = cnn ? "CNN" : "fully connected";
  p.xlabel = "h";
  p.ylabel = "test error ε";
  p.logx = p.logy = true;
  for (auto& [a, rs] : split(fam.runs, kAlpha)) {
    if (distinct(rs, kH) < 2) continue;
    p.series.push_back(mean_series(rs, kH, kTestErr, "α=" + value_key(a, 3)));
  }
  Runs frozen;
  for (const RunRecord* r : fam.runs)
    if (std::isfinite(kernel_run_err(*r, "init_kernel_run"))) frozen.push_back(r);
  if (!frozen.empty()) {
    Series s = mean_series(frozen, kH, [](const RunRecord& r) { return kernel_run_err(r, "init_kernel_run"); },
                           "frozen NTK at init");
    s.dashed = true;
    p.series.push_back(s);
  } else if (cnn) {
    f.notes.push_back("No frozen-NTK-at-init line: frozen-kernel training (--init-kernel) is measured for fc runs only.");
  } else {
    f.notes.push_back("No frozen-NTK-at-init runs (train with --init-kernel) in this family: the black line is missing.");
  }
  f.panels.push_back(p);
  add(f, cnn ? "CNN runs (setup B) at ≥2 widths per α" : "FC runs at ≥2 widths h for some α",
      cnn ? kSweepB
          : "arch=\"fc\", L=5; axes h [100,200,400,800], alpha {log-range=[1e-3,1e5], per-decade=3}, seed-init 0..9");
}

void Builder::fc_setup_a(const Family& fam) {
  const RunRecord& rep = fam.rep();
  const std::string sweep_a =
      "arch=\"fc\", act=\"softplus\", L=5, delta-kernel=true; axes h [100,200,400,800], "
      "alpha {log-range=[1e-3,1e5], per-decade=3}, seed-init 0..9";
  auto by_h = split(fam.runs, kH);

  // F1c: test error vs alpha, one curve per h; F1d: rescaled to [0,1] per h vs sqrt(h) alpha.
  {
    Figure c, d;
    c.id = "F1c", d.id = "F1d";
    c.title = "Test error vs α, one curve per h (" + fam.label + ")";
    d.title = "Test error rescaled to [0,1] per h vs √h α (" + fam.label + ")";
    c.finding = "Two plateaus: feature learning (small α) below lazy learning (large α).";
    d.finding = "The curves collapse: the crossover sits at α* ~ 1/√h.";
    Panel pc{"", "α", "test error ε", true, false, {}};
    Panel pd{"", "√h α", "(ε - ε_min) / (ε_max - ε_min)", true, false, {}};
    for (auto& [h, rs] : by_h) {
      if (distinct(rs, kAlpha) < 2) continue;
      Series s = mean_series(rs, kAlpha, kTestErr, "h=" + value_key(h, 4));
      pc.series.push_back(s);
      Series r = mean_series(rs, kRegime, kTestErr, s.title);
      std::vector<double> scaled = analysis::rescale_unit(r.y);
      double lo = *std::min_element(r.y.begin(), r.y.end()), hi = *std::max_element(r.y.begin(), r.y.end());
      for (size_t k = 0; k < r.y.size(); ++k) r.err[k] = hi > lo ? r.err[k] / (hi - lo) : NaN;
      r.y = scaled;
      pd.series.push_back(r);
    }
    c.panels.push_back(pc);
    d.panels.push_back(pd);
    add(c, "FC runs at ≥2 values of α for some h", sweep_a);
    add(d, "FC runs at ≥2 values of α for some h", sweep_a);
  }

  // F3a: kernel change vs alpha and vs sqrt(h) alpha; lazy slope -1, feature slope -a.
  {
    Figure f;
    f.id = "F3a";
    f.title = "Relative kernel change ‖Θ(w) - Θ(w_0)‖ / ‖Θ(w_0)‖ (" + fam.label + ")";
    f.finding = "Collapse in √h α; slope -1 in the lazy regime, about -1.7 in the feature regime (L=5).";
    Get kc = [](const RunRecord& r) { return r.kernel_change; };
    f.panels = vs_alpha_and_regime(by_h, "‖Θ - Θ_0‖ / ‖Θ_0‖", {{"", kc}});
    if (f.panels[0].has_points()) {
      double L = static_cast<double>(rep.L);
      fit("F3a", fam, "kernel change", "lazy", fam.runs, kRegime, kc, opt_.lazy_lo, opt_.lazy_hi,
          -1.0, -1.0, f);
      fit("F3a", fam, "kernel change", "feature", fam.runs, kRegime, kc, opt_.fit_lo, opt_.fit_hi,
          -2.0 / (1.0 + 1.0 / L), rep.L == 5 ? -1.7 : (rep.L == 2 ? -1.25 : NaN), f);
    }
    add(f, "FC runs with the kernel change measured (--delta-kernel)", sweep_a);
  }

  // F3c: t1 and t2 vs alpha and vs sqrt(h) alpha; feature regime t1 ~ sqrt(h) alpha.
  {
    Figure f;
    f.id = "F3c";
    f.title = "Characteristic times t_1 (α^2 L = 0.5) and t_2 (L = 0) (" + fam.label + ")";
    f.finding = "Feature regime: t_1 ~ √h α.";
    Get t1 = [](const RunRecord& r) { return r.t1; };
    Get t2 = [](const RunRecord& r) { return r.t2; };
    f.panels = vs_alpha_and_regime(by_h, "t", {{"t₁ ", t1}, {"t₂ ", t2}});
    if (f.panels[0].has_points())
      fit("F3c", fam, "t1", "feature", fam.runs, kRegime, t1, opt_.fit_lo, opt_.fit_hi, 1.0, 1.0, f);
    add(f, "converged FC runs (t1, t2 are in every run's summary)", sweep_a);
  }

  // F6: sqrt(h) ||w - w0|| / ||w0||; lazy ~ 1/(h alpha), feature ~ (sqrt(h) alpha)^-b / sqrt(h).
  {
    Figure f;
    f.id = "F6";
    f.title = "Relative weight change √h ‖w - w_0‖ / ‖w_0‖ (" + fam.label + ")";
    f.finding = "Lazy: ~ 1/(h α); feature: ~ (√h α)^{-b} / √h with b ≈ 0.23 for L=5.";
    Get wc = [](const RunRecord& r) { return sqrt_h(r) * r.weight_change; };
    f.panels = vs_alpha_and_regime(by_h, "√h ‖w - w_0‖ / ‖w_0‖", {{"", wc}});
    if (f.panels[0].has_points()) {
      double L = static_cast<double>(rep.L);
      fit("F6", fam, "weight change", "lazy", fam.runs, kRegime, wc, opt_.lazy_lo, opt_.lazy_hi,
          -1.0, -1.0, f);
      fit("F6", fam, "weight change", "feature", fam.runs, kRegime, wc, opt_.fit_lo, opt_.fit_hi,
          -1.0 / (1.0 + L), rep.L == 5 ? -0.23 : (rep.L == 2 ? -0.35 : NaN), f);
    }
    add(f, "converged FC runs with weight_change", sweep_a);
  }
}

void Builder::ensemble_figures(const Family& fam, bool cnn) {
  const auto& ens = ensembles(fam);
  const std::string sweep_var =
      cnn ? kSweepB
          : "arch=\"fc\", L=5; axes h [50,71,100,141,200,283,400,566,800], sqrt-h-alpha [1e-2,1e6], seed-init 0..25";
  // Series of one quantity vs one abscissa, split by another key.
  auto ens_series = [&](const std::vector<const Ensemble*>& es, auto x, auto y, auto err,
                        const std::string& title) {
    std::map<double, const Ensemble*> by;
    for (const Ensemble* e : es) by[x(*e)] = e;
    Series s;
    s.title = title;
    for (auto& [xv, e] : by) {
      s.x.push_back(xv), s.y.push_back(y(*e)), s.err.push_back(err(*e)), s.n.push_back(e->stats.seeds);
    }
    return s;
  };
  auto split_ens = [&](auto key) {
    std::map<double, std::vector<const Ensemble*>> m;
    for (const Ensemble& e : ens)
      if (std::isfinite(key(e))) m[std::stod(value_key(key(e), 3))].push_back(&e);
    return m;
  };
  auto eh = [](const Ensemble& e) { return static_cast<double>(e.h); };
  auto ereg = [](const Ensemble& e) { return std::stod(value_key(e.regime, 4)); };
  auto single = [](const Ensemble& e) { return e.stats.single_err.mean; };
  auto single_err = [](const Ensemble& e) { return e.stats.single_err.sem; };
  auto ensemble = [](const Ensemble& e) { return e.stats.ensemble_err; };
  auto none = [](const Ensemble&) { return NaN; };
  // Fixed parameter across h: sqrt(h) alpha for FC (F2a, F2c), alpha for the CNN (F2d).
  auto fixed = [&](const Ensemble& e) { return cnn ? e.alpha : e.regime; };
  std::string fixed_sym = cnn ? "α" : "√h α";

  if (!cnn) {
    // F2a: Var vs h at fixed sqrt(h) alpha, with the exponent (Var ~ 1/h).
    Figure f;
    f.id = "F2a";
    f.title = "Variance of α(f - f_0) across seeds vs h (" + fam.label + ")";
    f.finding = "Var ~ 1/h in both regimes.";
    Panel p{"", "h", "Var α(f - f_0)", true, true, {}};
    std::vector<analysis::PowerPoint> pts;
    for (auto& [xv, es] : split_ens(fixed)) {
      if (es.size() < 2) continue;
      p.series.push_back(ens_series(es, eh, [](const Ensemble& e) { return e.stats.variance; }, none,
                                    "√h α=" + value_key(xv, 3)));
      std::vector<analysis::PowerPoint> pp;
      for (const Ensemble* e : es) pp.push_back({0, static_cast<double>(e->h), e->seed_var});
      auto pf = analysis::fit_power_law(pp, 0, INFINITY, opt_.boot);
      fits.push_back({{"figure", "F2a"}, {"family", fam.label}, {"quantity", "variance vs h"},
                      {"regime", "√h α=" + value_key(xv, 3)}, {"range", nullptr},
                      {"slope", std::isfinite(pf.slope) ? json(pf.slope) : json(nullptr)},
                      {"slope_err", std::isfinite(pf.slope_err) ? json(pf.slope_err) : json(nullptr)},
                      {"points", pf.points}, {"groups", pf.groups}, {"seeds", pf.seeds},
                      {"prediction", -1.0}, {"paper", -1.0}});
      f.notes.push_back("Var vs h at √h α=" + value_key(xv, 3) + ": slope " + fmt(pf.slope) + " ± " +
                        fmt(pf.slope_err, 2) + " (prediction -1)");
    }
    f.panels.push_back(p);
    add(f, "stored test outputs of ≥2 seeds at one √h α for ≥2 widths", sweep_var);

    // F2b: single-net and ensemble error vs sqrt(h) alpha, per h.
    Figure b;
    b.id = "F2b";
    b.title = "Single-network and ensemble-averaged test error vs √h α (" + fam.label + ")";
    b.finding = "Ensemble averaging lowers the error in both regimes.";
    Panel pb{"", "√h α", "test error ε", true, false, {}};
    for (auto& [h, es] : split_ens(eh)) {
      if (es.size() < 2) continue;
      pb.series.push_back(ens_series(es, ereg, single, single_err, "single, h=" + value_key(h, 4)));
      Series s = ens_series(es, ereg, ensemble, none, "ensemble, h=" + value_key(h, 4));
      s.dashed = false;
      pb.series.push_back(s);
    }
    b.panels.push_back(pb);
    add(b, "stored test outputs of ≥2 seeds at ≥2 values of √h α for one width", sweep_var);
  }

  // F2c (FC, fixed sqrt(h) alpha) / F2d (CNN, fixed alpha): single and ensemble error vs h.
  Figure c;
  c.id = cnn ? "F2d" : "F2c";
  c.title = "Single-network and ensemble test error vs h at fixed " + fixed_sym + " (" + fam.label + ")";
  c.finding = cnn ? "ε_lazy / ε_feature ≈ 1.7 once ensemble averaged."
                  : "Ensemble error flat in h; ε_lazy / ε_feature ≈ 1.02.";
  Panel pc{"", "h", "test error ε", true, false, {}};
  auto groups = split_ens(fixed);
  for (auto& [xv, es] : groups) {
    if (es.size() < 2) continue;
    pc.series.push_back(ens_series(es, eh, single, single_err, "single, " + fixed_sym + "=" + value_key(xv, 3)));
    pc.series.push_back(ens_series(es, eh, ensemble, none, "ensemble, " + fixed_sym + "=" + value_key(xv, 3)));
  }
  c.panels.push_back(pc);
  if (pc.has_points() && groups.size() >= 2) {
    // The ratio of ensemble errors at the largest and smallest fixed value, each averaged over
    // the widths that both have.
    std::map<int64_t, double> at_lazy, at_feature;
    for (const Ensemble* e : groups.rbegin()->second) at_lazy[e->h] = e->stats.ensemble_err;
    for (const Ensemble* e : groups.begin()->second) at_feature[e->h] = e->stats.ensemble_err;
    double lazy = 0, feature = 0;
    int widths = 0;
    for (auto& [h, err] : at_lazy)
      if (at_feature.count(h)) lazy += err, feature += at_feature[h], ++widths;
    double ratio = widths > 0 ? lazy / feature : NaN;
    fits.push_back({{"figure", c.id}, {"family", fam.label}, {"quantity", "ε_lazy / ε_feature (ensemble)"},
                    {"regime", fixed_sym + "=" + value_key(groups.rbegin()->first, 3) + " over " +
                                   value_key(groups.begin()->first, 3)},
                    {"ratio", std::isfinite(ratio) ? json(ratio) : json(nullptr)},
                    {"points", widths},
                    {"paper", cnn ? 1.7 : 1.02}});
    c.notes.push_back("ε_lazy / ε_feature (ensemble, mean over " + std::to_string(widths) + " widths) = " +
                      fmt(ratio) + " (paper " + (cnn ? "1.7" : "1.02") + ")");
  }
  add(c, "stored test outputs of ≥2 seeds at one fixed " + fixed_sym + " for ≥2 widths", sweep_var);
}

// Mean over seeds of a checkpoint curve on a log grid; converged runs hold their last value.
Series average_curve(const std::vector<std::vector<CheckpointRow>>& curves,
                     const std::vector<bool>& converged, const std::vector<double>& scale,
                     const std::function<double(const CheckpointRow&)>& y, const std::string& title,
                     double lo, double hi) {
  Series s;
  s.title = title;
  for (double g : analysis::log_grid(lo, hi, 60)) {
    std::vector<double> vals;
    for (size_t i = 0; i < curves.size(); ++i) {
      std::vector<double> t, v;
      for (const auto& c : curves[i]) t.push_back(c.t / scale[i]), v.push_back(y(c));
      vals.push_back(analysis::step_value(t, v, g, converged[i]));
    }
    MeanSem m = analysis::mean_sem(vals);
    if (m.n == 0) continue;
    s.x.push_back(g), s.y.push_back(m.mean), s.err.push_back(m.sem), s.n.push_back(m.n);
  }
  return s;
}

// At most k values spread evenly over the sorted list.
template <class T>
std::vector<T> thin(const std::vector<T>& v, size_t k) {
  if (v.size() <= k) return v;
  std::vector<T> out;
  for (size_t i = 0; i < k; ++i) out.push_back(v[i * (v.size() - 1) / (k - 1)]);
  return out;
}

void Builder::loss_curves(const Family& fam) {
  Figure f;
  f.id = "F3b";
  f.title = "Rescaled loss α^2 L(t) vs t and vs t/(√h α) (" + fam.label + ")";
  f.finding = "Lazy: independent of α and h; feature: collapses in t/(√h α).";
  Panel pa{"vs t", "t", "α^2 L", true, true, {}};
  Panel pb{"vs t/(√h α)", "t / (√h α)", "α^2 L", true, true, {}};
  // The width with most runs, every alpha (at most 8); the other widths at the extreme alphas.
  auto by_h = split(fam.runs, kH);
  size_t best = 0;
  for (size_t i = 0; i < by_h.size(); ++i)
    if (by_h[i].second.size() > by_h[best].second.size()) best = i;
  std::vector<std::pair<double, Runs>> curves;  // (h, runs at one alpha)
  for (size_t i = 0; i < by_h.size(); ++i) {
    auto by_a = split(by_h[i].second, kAlpha);
    if (i != best && by_a.size() > 2) by_a = {by_a.front(), by_a.back()};
    for (auto& a : thin(by_a, 8)) curves.push_back({by_h[i].first, a.second});
  }
  for (auto& [h, rs] : curves) {
    std::vector<std::vector<CheckpointRow>> cs;
    std::vector<bool> conv;
    std::vector<double> one, reg;
    double tmin = INFINITY, tmax = 0, rmin = INFINITY, rmax = 0;
    for (const RunRecord* r : rs) {
      auto c = db_.checkpoints(r->id);
      if (c.empty()) continue;
      for (const auto& k : c)
        if (k.t > 0) tmin = std::min(tmin, k.t), tmax = std::max(tmax, k.t);
      cs.push_back(std::move(c));
      conv.push_back(true);
      one.push_back(1.0);
      reg.push_back(analysis::regime(*r));
    }
    if (cs.empty() || !(tmax > tmin)) continue;
    // The first steps are tiny (dt starts at 1e-50, protocol §4) and the loss is flat there:
    // show six decades below the end.
    tmin = std::max(tmin, 1e-6 * tmax);
    for (double x : reg) rmin = std::min(rmin, x), rmax = std::max(rmax, x);
    std::string title = "h=" + value_key(h, 4) + " α=" + value_key(rs.front()->alpha, 3);
    auto loss = [](const CheckpointRow& c) { return c.train_loss; };
    pa.series.push_back(average_curve(cs, conv, one, loss, title, tmin, tmax));
    pb.series.push_back(average_curve(cs, conv, reg, loss, title, tmin / rmax, tmax / rmin));
  }
  f.panels = {pa, pb};
  add(f, "checkpoints of converged FC runs", "any setup-A sweep (checkpoints are stored with every run)");
}

void Builder::output_growth(const Family& fam) {
  Figure f;
  f.id = "F7";
  f.title = "Output growth ‖f(w_t) - f(w_0)‖ and √h ‖f(w_t)‖ vs t/t_1 (" + fam.label + ")";
  f.finding = "Linear in t for t ≪ t_1; the output grows by ~√h at t ~ t_1.";
  Panel pa{"", "t / t_1", "‖f(w_t) - f(w_0)‖", true, true, {}};
  Panel pb{"", "t / t_1", "√h ‖f(w_t)‖", true, true, {}};
  std::vector<std::pair<std::string, Runs>> sets;
  for (auto& [h, rs] : split(fam.runs, kH))
    for (auto& [a, ra] : thin(split(rs, kAlpha), 4))
      sets.push_back({"h=" + value_key(h, 4) + " α=" + value_key(a, 3), ra});
  sets = thin(sets, 8);
  for (auto& [title, rs] : sets) {
    std::vector<std::vector<CheckpointRow>> cs;
    std::vector<bool> conv;
    std::vector<double> t1s;
    double sh = sqrt_h(*rs.front());
    for (const RunRecord* r : rs) {
      auto c = db_.checkpoints(r->id);
      double t1 = r->t1;
      if (!std::isfinite(t1)) {
        std::vector<double> t, l;
        for (const auto& k : c) t.push_back(k.t), l.push_back(k.train_loss);
        t1 = analysis::characteristic_times(t, l).t1;
      }
      if (c.empty() || !(t1 > 0)) continue;
      cs.push_back(std::move(c));
      conv.push_back(true);
      t1s.push_back(t1);
    }
    if (cs.empty()) continue;
    pa.series.push_back(average_curve(cs, conv, t1s, [](const CheckpointRow& c) { return c.output_norm; },
                                      title, 1e-3, 1e2));
    pb.series.push_back(average_curve(cs, conv, t1s,
                                      [sh](const CheckpointRow& c) { return sh * c.f_norm; }, title,
                                      1e-3, 1e2));
  }
  f.panels = {pa, pb};
  add(f, "checkpoints of FC softplus L=2 runs",
      "arch=\"fc\", act=\"softplus\", L=2; axes h [100,400,1600], sqrt-h-alpha [1e-2,1e5], seed-init 0..9");
}

void Builder::zdot(const Family& fam) {
  Runs rs;
  for (const RunRecord* r : fam.runs)
    if (r->summary.contains("zdot") && r->summary["zdot"].is_array() && !r->summary["zdot"].empty())
      rs.push_back(r);
  Figure f;
  f.id = "F8";
  f.title = "|dz/dt| at t = 0 vs h, per layer (" + fam.label + ")";
  f.finding = "~ 1/(α √h): the assumption behind the scaling argument.";
  Panel p{"", "h", "α |ż_l| at t=0", true, true, {}};
  size_t layers = 0;
  for (const RunRecord* r : rs) layers = std::max(layers, r->summary["zdot"].size());
  for (size_t l = 0; l < layers; ++l) {
    Get z = [l](const RunRecord& r) {
      const json& a = r.summary["zdot"];
      return l < a.size() && a[l].is_number() ? r.alpha * a[l].get<double>() : NaN;
    };
    p.series.push_back(mean_series(rs, kH, z, "layer " + std::to_string(l + 1)));
    if (l == 0 && distinct(rs, kH) >= 2)
      fit("F8", fam, "α |ż_1|", "all", rs, kH, z, 0, INFINITY, -0.5, -0.5, f,
          [](const RunRecord& r) { return std::round(std::log10(r.alpha) * 1000); });
  }
  f.panels.push_back(p);
  add(f, "runs with --zdot", "arch=\"fc\", L=5, zdot=true; axes h [100,200,400,800,1600], alpha [1e-2,1,1e2], seed-init 0..4");
}

void Builder::relu_kernel(const Family& fam) {
  Figure f;
  f.id = "F9";
  f.title = "Relative kernel change vs √h α for ReLU (" + fam.label + ")";
  f.finding = "Three power laws: slopes -1 (lazy), -1/2 (intermediate) and a steeper one.";
  Get kc = [](const RunRecord& r) { return r.kernel_change; };
  Panel p{"", "√h α", "‖Θ - Θ_0‖ / ‖Θ_0‖", true, true, {}};
  for (auto& [h, rs] : split(fam.runs, kH))
    p.series.push_back(mean_series(rs, kRegime, kc, "h=" + value_key(h, 4)));
  f.panels.push_back(p);
  if (p.has_points())
    fit("F9", fam, "kernel change", "lazy", fam.runs, kRegime, kc, opt_.lazy_lo, opt_.lazy_hi, -1.0, -1.0, f);
  add(f, "FC ReLU runs with --delta-kernel",
      "arch=\"fc\", act=\"relu\", L=5, delta-kernel=true; axes h (4..1577), alpha {log-range=[1e-3,1e3]}, seed-init 0..2");
}

void Builder::frozen_kernels(const std::vector<Family>& fams) {
  Figure f;
  f.id = "F5";
  f.title = "Test error of the network and of frozen-kernel training (kernel at init, at the end)";
  f.finding = "The end-of-training kernel reaches the network's own error (the Gram-matrix images are not drawn by this report).";
  Panel p{"", "h", "test error ε", true, false, {}};
  for (const Family& fam : fams) {
    Runs rs;
    for (const RunRecord* r : fam.runs)
      if (std::isfinite(kernel_run_err(*r, "final_kernel_run"))) rs.push_back(r);
    if (rs.empty()) continue;
    std::string l = " (" + fam.rep().arch + " L=" + std::to_string(fam.rep().L) + ")";
    p.series.push_back(mean_series(rs, kH, kTestErr, "network" + l));
    p.series.push_back(mean_series(rs, kH, [](const RunRecord& r) { return kernel_run_err(r, "init_kernel_run"); },
                                   "frozen kernel at init" + l));
    p.series.push_back(mean_series(rs, kH, [](const RunRecord& r) { return kernel_run_err(r, "final_kernel_run"); },
                                   "frozen kernel at the end" + l));
  }
  f.panels.push_back(p);
  f.notes.push_back("The Gram matrices themselves (kernels.path) are not drawn by this report.");
  add(f, "runs with --init-kernel and --final-kernel (frozen-kernel training)",
      "arch=\"fc\" (or cnn), alpha=1, init-kernel=true, final-kernel=true; axes h [100,200,400,800], seed-init 0..4");
}

void Builder::table1(const std::vector<Family>& fams) {
  // T1 is made of the F3a and F6 feature-regime fits of every FC softplus family.
  bool any = false;
  for (const auto& j : fits)
    if ((j["figure"] == "F3a" || j["figure"] == "F6") && j["regime"] == "feature" && !j["slope"].is_null())
      any = true;
  (void)fams;
  if (!any)
    mark_absent("T1", "feature-regime kernel and weight changes of FC softplus runs (L=5 and L=2)",
                "arch=\"fc\", act=\"softplus\", L=2 and L=5, delta-kernel=true; axes h [100,400,1600], sqrt-h-alpha {log-range=[1e-3,1e5]}, seed-init 0..9");
}

void Builder::run(const std::vector<Family>& fams) {
  // Setup A: the FC softplus family with most runs (preferring L=5); other FC softplus families
  // get the same figures, under ids suffixed with their depth ("F3a L=2").
  const Family* primary = nullptr;
  auto score = [](const Family& f) {
    return (f.rep().L == 5 ? 1000000 : 0) + static_cast<int>(f.runs.size());
  };
  for (const Family& f : fams)
    if (f.rep().arch == "fc" && f.rep().act == "softplus" && f.rep().temperature <= 0)
      if (!primary || score(f) > score(*primary)) primary = &f;
  const Family* cnn = nullptr;
  for (const Family& f : fams)
    if (f.rep().arch == "cnn" && (!cnn || f.runs.size() > cnn->runs.size())) cnn = &f;
  const Family* relu = nullptr;
  for (const Family& f : fams)
    if (f.rep().arch == "fc" && f.rep().act == "relu" && (!relu || f.runs.size() > relu->runs.size()))
      relu = &f;
  const Family* l2 = nullptr;
  for (const Family& f : fams)
    if (f.rep().arch == "fc" && f.rep().act == "softplus" && f.rep().L == 2 &&
        (!l2 || f.runs.size() > l2->runs.size()))
      l2 = &f;

  const std::string sweep_a = "arch=\"fc\", L=5 (setup A); see docs/report.md";
  if (primary) {
    error_vs_h(*primary, "F1a", false);
    fc_setup_a(*primary);
    ensemble_figures(*primary, false);
    loss_curves(*primary);
    zdot(*primary);
  } else {
    for (const char* id : {"F1a", "F1c", "F1d", "F2a", "F2b", "F2c", "F3a", "F3b", "F3c", "F6", "F8"})
      mark_absent(id, "converged FC softplus runs (setup A)",
                  "arch=\"fc\", act=\"softplus\", L=5, delta-kernel=true; axes h [100,200,400,800], alpha {log-range=[1e-3,1e5], per-decade=3}, seed-init 0..9");
  }
  // A second softplus depth (Table 1's L=2 runs): its kernel and weight exponents.
  if (l2 && l2 != primary) {
    Figure f;
    f.id = "F3a-L2";
    f.title = "Kernel and weight change vs √h α, L=2 (" + l2->label + ")";
    f.finding = "Table 1: exponents 2/(1+1/L) = 4/3 and 1/(1+L) = 1/3 for L=2.";
    Get kc = [](const RunRecord& r) { return r.kernel_change; };
    Get wc = [](const RunRecord& r) { return sqrt_h(r) * r.weight_change; };
    Panel pa{"kernel", "√h α", "‖Θ - Θ_0‖ / ‖Θ_0‖", true, true, {}};
    Panel pb{"weights", "√h α", "√h ‖w - w_0‖ / ‖w_0‖", true, true, {}};
    for (auto& [h, rs] : split(l2->runs, kH)) {
      pa.series.push_back(mean_series(rs, kRegime, kc, "h=" + value_key(h, 4)));
      pb.series.push_back(mean_series(rs, kRegime, wc, "h=" + value_key(h, 4)));
    }
    f.panels = {pa, pb};
    fit("F3a", *l2, "kernel change", "feature", l2->runs, kRegime, kc, opt_.fit_lo, opt_.fit_hi,
        -2.0 / 1.5, -1.25, f);
    fit("F6", *l2, "weight change", "feature", l2->runs, kRegime, wc, opt_.fit_lo, opt_.fit_hi,
        -1.0 / 3.0, -0.35, f);
    add(f, "FC softplus L=2 runs", "");
  }
  if (l2) output_growth(*l2);
  else mark_absent("F7", "checkpoints of FC softplus L=2 runs",
                   "arch=\"fc\", act=\"softplus\", L=2; axes h [100,400,1600], sqrt-h-alpha [1e-2,1e5], seed-init 0..9");
  if (cnn) {
    error_vs_h(*cnn, "F1b", true);
    ensemble_figures(*cnn, true);
  } else {
    std::string why = cnn_dropped_ > 0 ? " (" + std::to_string(cnn_dropped_) + " CNN runs in the database did not converge)"
                                       : " (the database has no CNN runs)";
    mark_absent("F1b", "converged CNN runs (setup B) at ≥2 widths per α" + why, kSweepB);
    mark_absent("F2d", "converged CNN runs (setup B) with stored test outputs of ≥2 seeds per (h, α)" + why, kSweepB);
  }
  if (relu) relu_kernel(*relu);
  else mark_absent("F9", "FC ReLU runs with --delta-kernel",
                   "arch=\"fc\", act=\"relu\", L=5, delta-kernel=true; axes h (4..1577), alpha {log-range=[1e-3,1e3]}, seed-init 0..2");
  frozen_kernels(fams);
  table1(fams);
  (void)sweep_a;
}

// The T1 table (CSV) from the fits: exponents a = -slope of the kernel change, b = -slope of
// the weight change, feature regime, per family.
json table1_rows(const json& fits) {
  json rows = json::array();
  for (const auto& j : fits) {
    if (j["regime"] != "feature" || (j["figure"] != "F3a" && j["figure"] != "F6")) continue;
    if (j["slope"].is_null()) continue;
    rows.push_back({{"family", j["family"]},
                    {"exponent", j["figure"] == "F3a" ? "a (kernel)" : "b (weights)"},
                    {"measured", -j["slope"].get<double>()},
                    {"error", j["slope_err"]},
                    {"prediction", j["prediction"].is_null() ? json(nullptr) : json(-j["prediction"].get<double>())},
                    {"paper", j["paper"].is_null() ? json(nullptr) : json(-j["paper"].get<double>())},
                    {"range", j["range"]}});
  }
  return rows;
}

std::string num_or_blank(const json& v) {
  return v.is_number() ? value_key(v.get<double>(), 6) : "";
}

}  // namespace

json make_report(const ReportOptions& opt) {
  require(opt.fit_lo > 0 && opt.fit_hi > opt.fit_lo, "--fit-range: need 0 < LOW < HIGH");
  require(opt.lazy_lo > 0 && opt.lazy_hi > opt.lazy_lo, "--lazy-range: need 0 < LOW < HIGH");
  require(opt.boot >= 0, "--bootstrap: need N >= 0");
  StudyDb db(opt.db);
  std::error_code ec;
  fs::create_directories(opt.out, ec);
  require(fs::is_directory(opt.out), "--out: cannot create folder '" + opt.out + "'");

  std::vector<RunRecord> all = db.runs();
  analysis::Selection sel = analysis::select_converged(all);
  // Families of runs (one sweep each), in order of first appearance.
  std::vector<Family> fams;
  json families = json::array();
  for (auto& [key, idx] : analysis::group_by(sel.kept, analysis::family_key)) {
    Family f;
    f.key = key;
    for (size_t i : idx) f.runs.push_back(&sel.kept[i]);
    f.label = analysis::family_label(f.rep());
    json c = f.rep().config;
    for (const char* k : {"h", "alpha", "sqrt_h_alpha", "seed_init", "seed_data", "seed_batch", "data_dir"})
      c.erase(k);
    f.config = c;
    std::set<std::string> hs, as, seeds;
    for (const RunRecord* r : f.runs) {
      hs.insert(std::to_string(r->h));
      as.insert(value_key(r->alpha, 3));
      seeds.insert(std::to_string(r->seed_init));
    }
    families.push_back({{"label", f.label}, {"runs", f.runs.size()}, {"widths", hs.size()},
                        {"alphas", as.size()}, {"seeds", seeds.size()}, {"config", c}});
    fams.push_back(std::move(f));
  }

  int cnn_dropped = 0;
  for (const RunRecord& r : all) cnn_dropped += r.arch == "cnn" && r.status != "converged";
  Builder b(db, opt, cnn_dropped);
  b.run(fams);
  for (const Figure& f : b.figures) {
    write_csv(f, opt.out);
    draw(f, opt.out);
  }
  json t1 = table1_rows(b.fits);
  json made = json::array();
  for (const Figure& f : b.figures) made.push_back(f.id);
  if (!t1.empty()) {
    std::ofstream out(opt.out + "/T1.csv");
    out << "family,exponent,measured,error,prediction,paper,range_low,range_high\n";
    for (const auto& r : t1)
      out << "\"" << r["family"].get<std::string>() << "\"," << r["exponent"].get<std::string>() << ","
          << num_or_blank(r["measured"]) << "," << num_or_blank(r["error"]) << ","
          << num_or_blank(r["prediction"]) << "," << num_or_blank(r["paper"]) << ","
          << num_or_blank(r["range"][0]) << "," << num_or_blank(r["range"][1]) << "\n";
    made.push_back("T1");
  }
  {
    std::ofstream out(opt.out + "/fits.csv");
    out << "figure,family,quantity,regime,range_low,range_high,slope_or_ratio,slope_err,points,seeds,prediction,paper\n";
    for (const auto& j : b.fits) {
      bool r2 = j.contains("range") && j["range"].size() == 2;
      out << j["figure"].get<std::string>() << ",\"" << j["family"].get<std::string>() << "\",\""
          << j["quantity"].get<std::string>() << "\",\"" << j["regime"].get<std::string>() << "\","
          << (r2 ? num_or_blank(j["range"][0]) : "") << "," << (r2 ? num_or_blank(j["range"][1]) : "")
          << "," << num_or_blank(j.contains("ratio") ? j["ratio"] : j.value("slope", json(nullptr))) << ","
          << num_or_blank(j.value("slope_err", json(nullptr))) << "," << j.value("points", 0) << ","
          << j.value("seeds", 0) << "," << num_or_blank(j.value("prediction", json(nullptr))) << ","
          << num_or_blank(j.value("paper", json(nullptr))) << "\n";
    }
  }

  json dropped = json::object(), reasons = json::object();
  for (auto& [st, n] : sel.dropped) dropped[st] = n;
  {  // the run counts behind every figure: all runs, those that count, the others by status
    std::ofstream out(opt.out + "/runs.csv");
    out << "status,runs\ntotal," << all.size() << "\nconverged," << sel.kept.size() << "\n";
    for (auto& [st, n] : sel.dropped) out << st << "," << n << "\n";
  }
  for (auto& [st, m] : sel.reasons) reasons[st] = m;
  std::string index = opt.out + "/index.html";
  std::string dbs;
  for (const std::string& d : opt.db) dbs += (dbs.empty() ? "" : ", ") + d;
  json summary = {{"db", dbs},
                  {"out", opt.out},
                  {"runs", {{"total", all.size()}, {"converged", sel.kept.size()},
                            {"dropped", dropped}, {"reasons", reasons}}},
                  {"figures", made},
                  {"absent", b.absent},
                  {"fits", b.fits},
                  {"table1", t1},
                  {"fit_range", {opt.fit_lo, opt.fit_hi}},
                  {"lazy_range", {opt.lazy_lo, opt.lazy_hi}},
                  {"bootstrap", opt.boot},
                  {"index", index}};
  write_index(index, b.figures, summary, families);
  return summary;
}

}  // namespace lf::report
