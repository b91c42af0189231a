// Read-only study database access: see db.h. Deliberately no writes and no schema creation.
#include "report/db.h"

#include "store/store.h"  // kSchemaVersion: the store writes, the report reads, one version

#include <sqlite3.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <stdexcept>

#include "common/error.h"

namespace lf::report {

namespace {


// One prepared statement with its columns addressable by name.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s_, nullptr) != SQLITE_OK)
      throw std::runtime_error("database query failed (" + std::string(sqlite3_errmsg(db)) +
                               "): " + sql);
    for (int i = 0; i < sqlite3_column_count(s_); ++i) col_[sqlite3_column_name(s_, i)] = i;
  }
  ~Stmt() { sqlite3_finalize(s_); }
  void bind(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw std::runtime_error("database read failed: " + std::string(sqlite3_errstr(rc)));
  }
  int idx(const char* name) const {
    auto it = col_.find(name);
    return it == col_.end() ? -1 : it->second;
  }
  bool null(const char* name) const {
    int i = idx(name);
    return i < 0 || sqlite3_column_type(s_, i) == SQLITE_NULL;
  }
  double real(const char* name) const {
    return null(name) ? analysis::NaN : sqlite3_column_double(s_, idx(name));
  }
  int64_t integer(const char* name, int64_t dflt = -1) const {
    return null(name) ? dflt : sqlite3_column_int64(s_, idx(name));
  }
  std::string text(const char* name) const {
    if (null(name)) return "";
    const unsigned char* p = sqlite3_column_text(s_, idx(name));
    return p ? reinterpret_cast<const char*>(p) : "";
  }
  std::string blob(const char* name) const {
    if (null(name)) return "";
    const void* p = sqlite3_column_blob(s_, idx(name));
    int n = sqlite3_column_bytes(s_, idx(name));
    return std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  std::map<std::string, int> col_;
};

nlohmann::json parse_object(const std::string& text) {
  if (text.empty()) return nlohmann::json::object();
  auto j = nlohmann::json::parse(text, nullptr, false);
  return j.is_object() ? j : nlohmann::json::object();
}

// One row of the runs table, its flat columns and JSON.
analysis::RunRecord run_row(const Stmt& s) {
  analysis::RunRecord r;
  r.id = s.integer("id");
  r.status = s.text("status");
  r.error = s.text("error");
  r.dataset = s.text("dataset");
  r.arch = s.text("arch");
  r.act = s.text("act");
  r.loss = s.text("loss");
  r.L = s.integer("L");
  r.h = s.integer("h");
  r.ptr = s.integer("ptr");
  r.pte = s.integer("pte");
  r.pca = s.integer("pca");
  r.alpha = s.real("alpha");
  r.sqrt_h_alpha = s.real("sqrt_h_alpha");
  r.tau = s.real("tau");
  r.temperature = s.real("temperature");
  r.seed_data = static_cast<uint64_t>(s.integer("seed_data", 0));
  r.seed_init = static_cast<uint64_t>(s.integer("seed_init", 0));
  r.seed_batch = static_cast<uint64_t>(s.integer("seed_batch", 0));
  r.steps = s.integer("steps");
  r.t = s.real("t");
  r.t1 = s.real("t1");
  r.t2 = s.real("t2");
  r.train_loss = s.real("train_loss");
  r.train_err = s.real("train_err");
  r.test_err = s.real("test_err");
  r.weight_change = s.real("weight_change");
  r.output_norm = s.real("output_norm");
  r.f_norm = s.real("f_norm");
  r.kernel_change = s.real("kernel_change");
  r.wall_s = s.real("wall_s");
  r.steps_per_s = s.real("steps_per_s");
  r.config = parse_object(s.text("config"));
  r.summary = parse_object(s.text("summary"));
  // Flat columns left NULL by an older writer: take them from the config JSON.
  auto fill_text = [&](std::string& f, const char* k) {
    if (f.empty() && r.config.contains(k) && r.config[k].is_string()) f = r.config[k].get<std::string>();
  };
  auto fill_int = [&](int64_t& f, const char* k) {
    if (f < 0 && r.config.contains(k) && r.config[k].is_number()) f = r.config[k].get<int64_t>();
  };
  auto fill_real = [&](double& f, const char* k) {
    if (std::isnan(f) && r.config.contains(k) && r.config[k].is_number()) f = r.config[k].get<double>();
  };
  fill_text(r.dataset, "dataset"), fill_text(r.arch, "arch"), fill_text(r.act, "act");
  fill_text(r.loss, "loss");
  fill_int(r.L, "L"), fill_int(r.h, "h"), fill_int(r.ptr, "ptr"), fill_int(r.pte, "pte");
  fill_int(r.pca, "pca");
  fill_real(r.alpha, "alpha"), fill_real(r.tau, "tau"), fill_real(r.temperature, "temperature");
  return r;
}

bool has_table(sqlite3* db, const std::string& name) {
  Stmt s(db, "select count(*) as n from sqlite_master where type = 'table' and name = '" + name + "'");
  return s.step() && s.integer("n", 0) > 0;
}

}  // namespace

StudyDb::StudyDb(const std::vector<std::string>& paths) {
  require(!paths.empty(), "--db: no database given");
  try {
    int64_t offset = 0;  // the largest id so far
    for (const std::string& path : paths) {
      files_.emplace_back();
      files_.back().offset = offset;
      open(path, files_.back());
      offset += files_.back().max_id;
    }
  } catch (...) {
    for (File& f : files_) sqlite3_close(f.db);
    throw;
  }
}

void StudyDb::open(const std::string& path, File& f) {
  require(std::filesystem::is_regular_file(path), "--db: no database file '" + path + "'");
  if (sqlite3_open_v2(path.c_str(), &f.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string msg = f.db ? sqlite3_errmsg(f.db) : "out of memory";
    throw UsageError("--db: cannot open '" + path + "': " + msg);
  }
  sqlite3_busy_timeout(f.db, 5000);
  // A file that is not SQLite fails on its first query.
  bool ok = false;
  try {
    ok = has_table(f.db, "runs");
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok) throw UsageError("--db: '" + path + "' is not a lazyfeat study database (no runs table)");
  int version = kSchemaVersion;
  if (has_table(f.db, "meta")) {
    Stmt s(f.db, "select value from meta where key = 'schema_version'");
    if (s.step()) version = static_cast<int>(std::stoll("0" + s.text("value")));
  }
  if (version > kSchemaVersion)
    throw UsageError("--db: schema version " + std::to_string(version) + " of '" + path +
                     "' is newer than this lazyfeat reads (" + std::to_string(kSchemaVersion) + ")");
  Stmt s(f.db, "select coalesce(max(id), 0) as m from runs");
  f.max_id = s.step() ? s.integer("m", 0) : 0;
}

StudyDb::~StudyDb() {
  for (File& f : files_) sqlite3_close(f.db);
}

const StudyDb::File& StudyDb::file_of(int64_t run_id) const {
  for (const File& f : files_)
    if (run_id > f.offset && run_id <= f.offset + f.max_id) return f;
  throw std::runtime_error("no run " + std::to_string(run_id) + " in the study's databases");
}

std::vector<analysis::RunRecord> StudyDb::runs() const {
  std::vector<analysis::RunRecord> out;
  for (const File& f : files_) {
    Stmt s(f.db, "select * from runs order by id");
    while (s.step()) {
      out.push_back(run_row(s));
      out.back().id += f.offset;
    }
  }
  return out;
}

std::vector<CheckpointRow> StudyDb::checkpoints(int64_t run_id) const {
  std::vector<CheckpointRow> out;
  const File& f = file_of(run_id);
  if (!has_table(f.db, "checkpoints")) return out;
  Stmt s(f.db, "select * from checkpoints where run_id = ? order by step");
  s.bind(1, run_id - f.offset);
  while (s.step()) {
    CheckpointRow c;
    c.step = s.integer("step", 0);
    c.t = s.real("t");
    c.train_loss = s.real("train_loss");
    c.test_err = s.real("test_err");
    c.weight_change = s.real("weight_change");
    c.output_norm = s.real("output_norm");
    c.f_norm = s.real("f_norm");
    out.push_back(c);
  }
  return out;
}

bool StudyDb::outputs(int64_t run_id, OutputRow& out) const {
  const File& f = file_of(run_id);
  if (!has_table(f.db, "outputs")) return false;
  Stmt s(f.db, "select * from outputs where run_id = ? and kind = 'final'");
  s.bind(1, run_id - f.offset);
  if (!s.step()) return false;
  int64_t n = s.integer("n", 0);
  std::string fd = s.blob("f_delta"), f0 = s.blob("f0"), y = s.blob("y");
  // Blobs: n float64 little-endian (this machine is little-endian), n int8 labels.
  if (n <= 0 || fd.size() != static_cast<size_t>(n) * 8 || y.size() != static_cast<size_t>(n))
    throw std::runtime_error("outputs of run " + std::to_string(run_id) + " have inconsistent sizes");
  out.n = n;
  out.f_delta = at::empty({n}, at::kDouble);
  std::memcpy(out.f_delta.data_ptr<double>(), fd.data(), fd.size());
  out.f0 = at::full({n}, analysis::NaN, at::kDouble);
  if (f0.size() == fd.size()) std::memcpy(out.f0.data_ptr<double>(), f0.data(), f0.size());
  out.y = at::empty({n}, at::kChar);
  std::memcpy(out.y.data_ptr<int8_t>(), y.data(), y.size());
  return true;
}

}  // namespace lf::report
