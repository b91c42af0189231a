// `lazyfeat runs --db FILE [--where EXPR] [--json] [--csv DIR]` (cli-contract.md): the runs of a
// study, one line each, or a JSON array of {id, status, config, <summary fields>}, or CSV files.
// Deliberately not: figures or aggregation (report), editing the database.
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "common/error.h"
#include "common/options.h"
#include "common/progress.h"
#include "store/store.h"

namespace {

using json = nlohmann::json;

std::string cell(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return "-";
  const json& v = j[key];
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) return lf::fmt_num(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

int cmd_runs(const lf::cli::Args& args) {
  std::string db, where, csv;
  bool as_json = false;
  lf::OptionParser p("lazyfeat runs --db FILE [--where EXPR] [--json] [--csv DIR]",
                     "Lists the runs of a study database: one line a run, or (--json) a JSON array "
                     "of objects with id, status, config and the summary fields of train --json. "
                     "--where filters on the columns of docs/schema.md, e.g. "
                     "\"h = 64 and sqrt_h_alpha > 1 and status = 'converged'\". --csv DIR writes "
                     "runs.csv, checkpoints.csv and outputs.csv.");
  p.value("db", "FILE", "the study database", [&](const std::string& v) { db = v; });
  p.value("where", "EXPR", "a plain expression on the run columns", [&](const std::string& v) { where = v; });
  p.value("csv", "DIR", "export the selected runs, their checkpoints and outputs as CSV", [&](const std::string& v) { csv = v; });
  p.flag("json", "print a JSON array as the last stdout line", as_json);
  auto pos = p.parse(args);
  lf::require(pos.empty(), "runs takes no positional argument (got '" + (pos.empty() ? "" : pos[0]) + "')");
  lf::require(!db.empty(), "runs needs --db FILE");

  lf::Store store(db, lf::StoreOptions{false, true, -1});
  auto rows = store.runs(where);
  if (!csv.empty()) {
    store.export_csv(csv, where);
    std::cerr << "runs: wrote " << rows.size() << " runs to " << csv << "/{runs,checkpoints,outputs}.csv\n";
  }
  if (as_json) {
    json arr = json::array();
    for (const auto& r : rows) {
      json o = r.summary.is_object() ? r.summary : json::object();
      o["id"] = r.id;
      o["status"] = r.status;  // the row's status (planned/running/...) wins over the summary's
      o["config"] = r.config;
      o["config_hash"] = r.config_hash;
      o["error"] = r.error.empty() ? json() : json(r.error);
      o["host"] = r.host;
      o["pid"] = r.pid;
      o["attempts"] = r.attempts;
      o["started_at"] = r.started_at;
      o["ended_at"] = r.ended_at;
      arr.push_back(o);
    }
    lf::cli::print_json_line(arr.dump());
    return 0;
  }
  if (!csv.empty()) return 0;
  std::printf("%5s %-9s %-5s %-8s %2s %5s %9s %9s %4s %8s %9s %9s %8s\n", "id", "status", "arch",
              "act", "L", "h", "alpha", "sqrt_h_a", "seed", "steps", "t2", "test_err", "wall");
  for (const auto& r : rows) {
    const json& c = r.config;
    const json& s = r.summary;
    std::printf("%5lld %-9s %-5s %-8s %2s %5s %9s %9s %4s %8s %9s %9s %8s\n", static_cast<long long>(r.id),
                r.status.c_str(), cell(c, "arch").c_str(), cell(c, "act").c_str(), cell(c, "L").c_str(),
                cell(c, "h").c_str(), cell(c, "alpha").c_str(), cell(c, "sqrt_h_alpha").c_str(),
                cell(c, "seed_init").c_str(), cell(s, "steps").c_str(), cell(s, "t2").c_str(),
                cell(s, "test_err").c_str(),
                s.is_object() && s.contains("wall_s") && s["wall_s"].is_number()
                    ? lf::fmt_duration(s["wall_s"].get<double>()).c_str()
                    : "-");
    if (r.status == "failed" && !r.error.empty()) std::printf("      error: %s\n", r.error.c_str());
  }
  return 0;
}

lf::cli::Command reg{"runs", "list the runs of a study database (table, JSON, CSV)", cmd_runs};

}  // namespace
