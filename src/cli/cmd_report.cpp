// `lazyfeat report --db FILE [--db FILE ...] --out DIR [--fit-range LOW:HIGH] [--lazy-range LOW:HIGH]
// [--bootstrap N] [--json]`: the paper's figures from a study database (report/report.h).
// Deliberately only option parsing and output; the work is in src/report.
#include <iostream>
#include <tuple>

#include "cli/command.h"
#include "common/error.h"
#include "common/options.h"
#include "report/report.h"

namespace lf::cli {
namespace {

// "LOW:HIGH" with 0 < LOW < HIGH.
std::pair<double, double> parse_range(const std::string& option, const std::string& text) {
  auto colon = text.find(':');
  require(colon != std::string::npos, option + ": expected LOW:HIGH, got '" + text + "'");
  double lo = parse_double(option, text.substr(0, colon));
  double hi = parse_double(option, text.substr(colon + 1));
  require(lo > 0 && hi > lo, option + ": need 0 < LOW < HIGH, got '" + text + "'");
  return {lo, hi};
}

int cmd_report(const Args& args) {
  report::ReportOptions opt;
  bool json_out = false;
  OptionParser p("lazyfeat report --db FILE [--db FILE ...] --out DIR [options]",
                 "The paper's figures (docs/report.md lists them) from a study database: for each "
                 "figure whose runs are present, the CSV behind it, PNG and SVG (gnuplot), fitted "
                 "exponents next to the paper's predictions, and one self-contained index.html. "
                 "Only converged runs count; the report says how many were dropped and why.");
  p.value("db", "FILE",
          "study database (read only); again for each further database of the same study (its "
          "blocks), read as one",
          [&](const std::string& v) { opt.db.push_back(v); });
  p.value("out", "DIR", "output folder (created)", [&](const std::string& v) { opt.out = v; });
  p.value("fit-range", "LOW:HIGH", "sqrt(h) alpha range of the feature-regime fits (default 1e-3:0.2)",
          [&](const std::string& v) { std::tie(opt.fit_lo, opt.fit_hi) = parse_range("--fit-range", v); });
  p.value("lazy-range", "LOW:HIGH", "sqrt(h) alpha range of the lazy-regime fits (default 100:1e12)",
          [&](const std::string& v) { std::tie(opt.lazy_lo, opt.lazy_hi) = parse_range("--lazy-range", v); });
  p.value("bootstrap", "N", "bootstrap resamplings of the seeds for fit errors (default 200)",
          [&](const std::string& v) {
            int64_t n = parse_int("--bootstrap", v);
            require(n >= 0 && n <= 100000, "--bootstrap: need 0 <= N <= 100000");
            opt.boot = static_cast<int>(n);
          });
  p.flag("json", "print a summary object as the last stdout line", json_out);
  auto pos = p.parse(args);
  require(pos.empty(), "report: unexpected argument '" + (pos.empty() ? "" : pos[0]) + "'");
  require(!opt.db.empty(), "report: --db FILE is required");
  require(!opt.out.empty(), "report: --out DIR is required");

  nlohmann::json s = report::make_report(opt);
  std::cerr << "report: " << s["figures"].size() << " figures, " << s["absent"].size()
            << " absent; " << s["runs"]["converged"] << " of " << s["runs"]["total"]
            << " runs converged; " << s["index"].get<std::string>() << "\n";
  if (json_out) {
    print_json_line(s.dump());
  } else {
    std::cout << "figures:";
    for (const auto& f : s["figures"]) std::cout << " " << f.get<std::string>();
    std::cout << "\nabsent:";
    for (const auto& a : s["absent"]) std::cout << " " << a["id"].get<std::string>();
    std::cout << "\n" << s["index"].get<std::string>() << "\n";
  }
  return 0;
}

Command reg{"report", "the paper's figures, fits and index.html from a study database", cmd_report};

}  // namespace
}  // namespace lf::cli
