// `lazyfeat report`: the paper's figures (figures.md) from a study database: for each figure
// whose runs are present, the CSV behind it, PNG and SVG drawn by gnuplot, and fitted exponents
// next to the paper's predictions; one self-contained index.html showing them all; a summary
// object (figures made, figures absent with the sweep that would make them, fits).
// Deliberately not: running anything (sweep/), statistics (analysis/), drawing (report/plot.h).
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/plot.h"

namespace lf::report {

struct ReportOptions {
  std::vector<std::string> db;  // one study: its databases (report/db.h)
  std::string out;
  // Ranges of sqrt(h) alpha for the log-log fits (figures.md: chosen and printed by the tool).
  double fit_lo = 1e-3, fit_hi = 0.2;     // feature regime (sqrt(h) alpha << 1)
  double lazy_lo = 1e2, lazy_hi = 1e12;   // lazy regime (sqrt(h) alpha >> 1)
  int boot = 200;                         // bootstrap resamplings of the seeds
};

// Writes OUT/<ID>.{csv,png,svg,gp}, OUT/fits.csv and OUT/index.html; returns the summary:
// {"db" (the databases, comma-separated),"out","runs":{"total","converged","dropped":{status:count},"reasons":{...}},
//  "figures":[ids],"absent":[{"id","needs","sweep"}],"fits":[...],"fit_range":[lo,hi],
//  "lazy_range":[lo,hi],"bootstrap":N,"index":path}.
// Throws UsageError for an unusable database, std::runtime_error when gnuplot fails.
nlohmann::json make_report(const ReportOptions& opt);

// index.html: every figure's PNG embedded as a data: URI, the fits table, run counts, what was
// dropped and why, the configuration of each family of runs. Self-contained (no external files).
void write_index(const std::string& path, const std::vector<Figure>& figures,
                 const nlohmann::json& summary, const nlohmann::json& families);

}  // namespace lf::report
