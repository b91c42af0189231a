// `lazyfeat runs --csv DIR`: runs.csv (every column of runs but the summary JSON),
// checkpoints.csv and outputs.csv (long format: run_id, index, f_delta, f0, y) of the selected
// runs, for analysis outside lazyfeat.
// Deliberately not: the report's CSV series (report/), any aggregation.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace lf {
namespace {

std::string csv_field(const sql::Stmt& s, int c) {
  switch (s.type(c)) {
    case SQLITE_NULL:
      return "";
    case SQLITE_INTEGER:
      return std::to_string(s.get_int(c));
    case SQLITE_FLOAT: {
      std::ostringstream o;
      o.precision(17);
      o << s.get_double(c);
      return o.str();
    }
    default: {
      std::string t = s.get_text(c);
      if (t.find_first_of(",\"\n\r") == std::string::npos) return t;
      std::string q = "\"";
      for (char ch : t) q += (ch == '"') ? std::string("\"\"") : std::string(1, ch);
      return q + "\"";
    }
  }
}

void dump(sql::Db& db, const std::string& query, const std::string& file) {
  std::ofstream out(file);
  if (!out) throw UsageError("cannot write " + file);
  sql::Stmt s(db.get(), db.path(), query);
  bool header = false;
  while (s.step()) {
    if (!header) {
      for (int c = 0; c < s.columns(); ++c) out << (c ? "," : "") << s.name(c);
      out << "\n";
      header = true;
    }
    for (int c = 0; c < s.columns(); ++c) out << (c ? "," : "") << csv_field(s, c);
    out << "\n";
  }
  if (!header) {  // no rows: still write the header
    for (int c = 0; c < s.columns(); ++c) out << (c ? "," : "") << s.name(c);
    out << "\n";
  }
  if (!out) throw std::runtime_error("error writing " + file);
}

}  // namespace

void Store::export_csv(const std::string& dir, const std::string& where) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw UsageError("cannot create folder " + dir + ": " + ec.message());
  std::string sel = "SELECT id FROM runs" + (where.empty() ? std::string() : " WHERE " + where_sql(where));
  try {
    sql::Stmt check(db_->get(), db_->path(), sel);
  } catch (const UsageError&) {
    throw;
  } catch (const std::runtime_error&) {
    throw UsageError("--where: not a valid expression: '" + where + "'");
  }
  std::string cols = "id, config_hash, status, error, host, pid, version, attempts, created_at, "
                     "started_at, ended_at, heartbeat_at";
  for (const auto& c : flat_columns()) cols += ", \"" + c + "\"";
  for (const auto& c : summary_columns()) cols += ", \"" + c + "\"";
  dump(*db_, "SELECT " + cols + " FROM runs WHERE id IN (" + sel + ") ORDER BY id", dir + "/runs.csv");
  dump(*db_,
       "SELECT run_id, step, t, dt, train_loss, train_err, test_err, unsatisfied, weight_change, "
       "w0_norm, output_norm, f_norm, wall_s, layer_change FROM checkpoints WHERE run_id IN (" +
           sel + ") ORDER BY run_id, step",
       dir + "/checkpoints.csv");
  // Outputs: one line per (run, test point).
  std::ofstream out(dir + "/outputs.csv");
  if (!out) throw UsageError("cannot write " + dir + "/outputs.csv");
  out << "run_id,index,f_delta,f0,y\n";
  out.precision(17);
  sql::Stmt ids(db_->get(), db_->path(), sel + " ORDER BY id");
  std::vector<int64_t> run_ids;
  while (ids.step()) run_ids.push_back(ids.get_int(0));
  for (int64_t id : run_ids) {
    auto o = outputs(id);
    if (!o) continue;
    auto fd = o->f_delta.accessor<double, 1>();
    auto fz = o->f0.accessor<double, 1>();
    auto y = o->y.accessor<double, 1>();
    for (int64_t k = 0; k < o->f_delta.size(0); ++k)
      out << id << "," << k << "," << fd[k] << "," << (k < o->f0.size(0) ? fz[k] : 0.0) << ","
          << (k < o->y.size(0) ? static_cast<int>(y[k]) : 0) << "\n";
  }
  if (!out) throw std::runtime_error("error writing " + dir + "/outputs.csv");
}

}  // namespace lf
