// The study database (store.h, docs/schema.md): schema, planning, atomic claims, checkpoints,
// states, results. Every write is one BEGIN IMMEDIATE transaction.
// Deliberately not: the --where parser (where.cpp), CSV export (export.cpp).
#include "store/store.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "store/sqlite.h"

namespace lf {
namespace {

using json = nlohmann::json;

struct FlatCol {
  const char* name;
  const char* type;  // TEXT | INTEGER | REAL
};

// Flat copies of the canonical config JSON (config_to_json keys) for queries; data_dir is left
// out (it does not change the numbers).
const std::vector<FlatCol>& flat_cols() {
  static const std::vector<FlatCol> c = {
      {"dataset", "TEXT"},        {"arch", "TEXT"},          {"act", "TEXT"},
      {"loss", "TEXT"},           {"dtype", "TEXT"},         {"device", "TEXT"},
      {"L", "INTEGER"},           {"h", "INTEGER"},          {"ptr", "INTEGER"},
      {"pte", "INTEGER"},         {"pca", "INTEGER"},        {"pca_train_only", "INTEGER"},
      {"seed_data", "INTEGER"},   {"seed_init", "INTEGER"},  {"seed_batch", "INTEGER"},
      {"alpha", "REAL"},          {"sqrt_h_alpha", "REAL"},  {"softplus_beta", "REAL"},
      {"act_scale", "REAL"},      {"tau", "REAL"},           {"temperature", "REAL"},
      {"batch_max", "INTEGER"},   {"batch_min", "INTEGER"},  {"df_min", "REAL"},
      {"df_max", "REAL"},         {"dt0", "REAL"},           {"max_dt", "REAL"},
      {"max_wall", "REAL"},       {"max_steps", "INTEGER"},  {"kernel_points", "INTEGER"},
      {"init_kernel", "INTEGER"}, {"final_kernel", "INTEGER"}, {"delta_kernel", "INTEGER"},
      {"zdot", "INTEGER"},        {"pca_solver", "TEXT"},    {"published_seed", "INTEGER"},
      {"weights_seed", "INTEGER"}, {"softplus_threshold", "REAL"},
  };
  return c;
}

// Summary columns: keys of RunResult::summary() (cli-contract.md, `train --json`).
const std::vector<FlatCol>& summary_cols() {
  static const std::vector<FlatCol> c = {
      {"steps", "INTEGER"},      {"t", "REAL"},           {"t1", "REAL"},
      {"t2", "REAL"},            {"train_loss", "REAL"},  {"train_err", "REAL"},
      {"test_err", "REAL"},      {"weight_change", "REAL"}, {"output_norm", "REAL"},
      {"f_norm", "REAL"},        {"kernel_change", "REAL"}, {"wall_s", "REAL"},
      {"steps_per_s", "REAL"},   {"gradient_evaluations", "INTEGER"},
  };
  return c;
}

const char* kNow = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

std::string schema_sql() {
  std::string runs =
      "CREATE TABLE IF NOT EXISTS runs (\n"
      "  id INTEGER PRIMARY KEY,\n"
      "  config_hash TEXT NOT NULL UNIQUE,\n"
      "  config TEXT NOT NULL,\n"
      "  status TEXT NOT NULL DEFAULT 'planned' CHECK (status IN "
      "('planned','running','converged','stopped','diverged','failed')),\n"
      "  error TEXT, host TEXT, pid INTEGER, version TEXT,\n"
      "  attempts INTEGER NOT NULL DEFAULT 0,\n"
      "  created_at TEXT, started_at TEXT, ended_at TEXT, heartbeat_at TEXT";
  for (const auto& c : flat_cols()) runs += std::string(",\n  \"") + c.name + "\" " + c.type;
  for (const auto& c : summary_cols()) runs += std::string(",\n  \"") + c.name + "\" " + c.type;
  runs += ",\n  summary TEXT\n);\n";
  return "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);\n" + runs +
         "CREATE INDEX IF NOT EXISTS runs_status ON runs(status);\n"
         "CREATE TABLE IF NOT EXISTS checkpoints (\n"
         "  run_id INTEGER NOT NULL REFERENCES runs(id), step INTEGER NOT NULL,\n"
         "  t REAL, dt REAL, train_loss REAL, train_err REAL, test_err REAL, unsatisfied INTEGER,\n"
         "  weight_change REAL, w0_norm REAL, output_norm REAL, f_norm REAL, wall_s REAL,\n"
         "  layer_change TEXT,\n"
         "  PRIMARY KEY (run_id, step)) WITHOUT ROWID;\n"
         "CREATE TABLE IF NOT EXISTS outputs (\n"
         "  run_id INTEGER NOT NULL REFERENCES runs(id), kind TEXT NOT NULL, n INTEGER,\n"
         "  f_delta BLOB, f0 BLOB, y BLOB, PRIMARY KEY (run_id, kind));\n"
         "CREATE TABLE IF NOT EXISTS kernels (\n"
         "  run_id INTEGER NOT NULL REFERENCES runs(id), which TEXT NOT NULL, stats TEXT, path TEXT,\n"
         "  PRIMARY KEY (run_id, which));\n"
         "CREATE TABLE IF NOT EXISTS states (\n"
         "  run_id INTEGER PRIMARY KEY REFERENCES runs(id), step INTEGER, t REAL, saved_at TEXT,\n"
         "  blob BLOB);\n";
}

// Schema version 1 -> 2: the runs table gains the flat columns added since (act_scale,
// pca_solver, published_seed, weights_seed, softplus_threshold); old rows keep NULL there (act_scale: copied from
// version 1's softplus_scale). 2 -> 3: the summary column gradient_evaluations (NULL in old rows).
// Nothing else changed: every missing flat or summary column is added.
void migrate(sql::Db& db) {
  int v = 0;
  {
    sql::Stmt s(db.get(), db.path(), "SELECT value FROM meta WHERE key = 'schema_version'");
    if (s.step()) v = std::atoi(s.get_text(0).c_str());
  }
  if (v >= kSchemaVersion) return;
  sql::Tx tx(db);
  std::vector<std::string> have;
  {
    sql::Stmt s(db.get(), db.path(), "PRAGMA table_info(runs)");
    while (s.step()) have.push_back(s.get_text(1));
  }
  auto has = [&](const std::string& name) { return std::find(have.begin(), have.end(), name) != have.end(); };
  for (const auto& c : flat_cols())
    if (!has(c.name)) db.exec(std::string("ALTER TABLE runs ADD COLUMN \"") + c.name + "\" " + c.type);
  for (const auto& c : summary_cols())
    if (!has(c.name)) db.exec(std::string("ALTER TABLE runs ADD COLUMN \"") + c.name + "\" " + c.type);
  if (has("softplus_scale")) db.exec("UPDATE runs SET act_scale = softplus_scale WHERE act_scale IS NULL");
  sql::Stmt m(db.get(), db.path(), "UPDATE meta SET value = ? WHERE key = 'schema_version'");
  m.bind(1, std::to_string(kSchemaVersion)).run();
  tx.commit();
}

const std::string kRunCols =
    "id, config_hash, status, error, host, pid, version, attempts, created_at, started_at, "
    "ended_at, heartbeat_at, config, summary";

RunRow read_row(const sql::Stmt& s) {
  RunRow r;
  r.id = s.get_int(0);
  r.config_hash = s.get_text(1);
  r.status = s.get_text(2);
  r.error = s.get_text(3);
  r.host = s.get_text(4);
  r.pid = s.get_int(5);
  r.version = s.get_text(6);
  r.attempts = s.get_int(7);
  r.created_at = s.get_text(8);
  r.started_at = s.get_text(9);
  r.ended_at = s.get_text(10);
  r.heartbeat_at = s.get_text(11);
  r.config = json::parse(s.get_text(12));
  r.summary = s.is_null(13) ? json() : json::parse(s.get_text(13));
  return r;
}

// Binds a JSON value to a flat column (NULL when missing or null).
void bind_json(sql::Stmt& s, int i, const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) {
    s.bind_null(i);
    return;
  }
  const json& v = j[key];
  if (v.is_boolean()) s.bind(i, static_cast<int64_t>(v.get<bool>()));
  else if (v.is_number_unsigned()) s.bind(i, static_cast<int64_t>(v.get<uint64_t>()));
  else if (v.is_number_integer()) s.bind(i, v.get<int64_t>());
  else if (v.is_number()) s.bind(i, v.get<double>());
  else if (v.is_string()) s.bind(i, v.get<std::string>());
  else s.bind(i, v.dump());
}

std::string tensor_bytes(const at::Tensor& t, at::ScalarType type) {
  if (!t.defined()) return {};
  at::Tensor c = t.detach().to(at::kCPU).to(type).contiguous().reshape({-1});
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

at::Tensor bytes_tensor(const std::string& b, at::ScalarType type) {
  int64_t size = at::elementSize(type);
  int64_t n = static_cast<int64_t>(b.size()) / size;
  at::Tensor t = at::empty({n}, at::TensorOptions().dtype(type));
  if (n) std::memcpy(t.data_ptr(), b.data(), n * size);
  return t;
}

double busy_timeout(double opt) {
  if (opt >= 0) return opt;
  if (const char* e = std::getenv("LAZYFEAT_DB_TIMEOUT"); e && *e) return std::atof(e);
  return 60.0;
}

}  // namespace

const std::vector<std::string>& flat_columns() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const auto& c : flat_cols()) v.push_back(c.name);
    return v;
  }();
  return n;
}

const std::vector<std::string>& summary_columns() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const auto& c : summary_cols()) v.push_back(c.name);
    return v;
  }();
  return n;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

Store::Store(const std::string& path, StoreOptions opt) {
  require(!path.empty(), "--db needs a file name");
  db_ = std::make_unique<sql::Db>(path, opt.create && !opt.readonly, opt.readonly,
                                  busy_timeout(opt.busy_timeout_s));
  init_schema(opt.readonly);
}

Store::~Store() = default;
const std::string& Store::path() const { return db_->path(); }
sql::Db& Store::db() { return *db_; }

void Store::init_schema(bool readonly) {
  sql::Db& db = *db_;
  // Reading sqlite_master is the first access: a file that is not a database fails here.
  bool has_meta = false, has_tables = false;
  {
    sql::Stmt s(db.get(), db.path(), "SELECT name FROM sqlite_master WHERE type = 'table'");
    while (s.step()) {
      has_tables = true;
      if (s.get_text(0) == "meta") has_meta = true;
    }
  }
  if (has_tables && !has_meta)
    throw UsageError(db.path() + " is an SQLite database but not a lazyfeat study (no meta table)");
  auto check_version = [&] {
    sql::Stmt s(db.get(), db.path(), "SELECT value FROM meta WHERE key = 'schema_version'");
    require(s.step(), db.path() + " is not a lazyfeat study (no schema_version in meta)");
    int v = std::atoi(s.get_text(0).c_str());
    require(v <= kSchemaVersion,
            "database " + db.path() + " has schema version " + std::to_string(v) +
                ", newer than this lazyfeat understands (" + std::to_string(kSchemaVersion) +
                "); use a newer lazyfeat");
    require(v >= 1, db.path() + " has an invalid schema_version");
  };
  if (has_meta) check_version();
  if (has_meta && !readonly) migrate(db);
  if (readonly) {
    require(has_meta, db.path() + " is not a lazyfeat study (empty database)");
    return;
  }
  {
    std::string mode;
    {
      sql::Stmt s(db.get(), db.path(), "PRAGMA journal_mode");
      mode = s.step() ? s.get_text(0) : "";
    }
    if (mode != "wal") {
      sql::Stmt w(db.get(), db.path(), "PRAGMA journal_mode=WAL");
      w.run();
    }
  }
  if (!has_meta) {
    sql::Tx tx(db);
    db.exec(schema_sql());
    // Another process may have created it between our check and our lock: insert or ignore.
    sql::Stmt m(db.get(), db.path(), "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)");
    m.bind(1, std::string("schema_version")).bind(2, std::to_string(kSchemaVersion)).run();
    m.reset();
    m.bind(1, std::string("lazyfeat_version")).bind(2, std::string(LAZYFEAT_VERSION)).run();
    sql::Stmt c(db.get(), db.path(),
                std::string("INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ") + kNow + ")");
    c.run();
    tx.commit();
    check_version();
  }
}

std::pair<int64_t, bool> Store::plan(const RunConfig& cfg) { return plan_all({cfg}).at(0); }

std::vector<std::pair<int64_t, bool>> Store::plan_all(const std::vector<RunConfig>& cfgs) {
  sql::Db& db = *db_;
  std::string cols = "config_hash, config, status, version, created_at";
  std::string vals = std::string("?, ?, 'planned', ?, ") + kNow;
  for (const auto& c : flat_cols()) {
    cols += std::string(", \"") + c.name + "\"";
    vals += ", ?";
  }
  sql::Tx tx(db);
  sql::Stmt find(db.get(), db.path(), "SELECT id FROM runs WHERE config_hash = ?");
  sql::Stmt ins(db.get(), db.path(), "INSERT INTO runs(" + cols + ") VALUES (" + vals + ")");
  std::vector<std::pair<int64_t, bool>> out;
  for (const auto& cfg : cfgs) {
    std::string hash = config_hash(cfg);
    find.reset();
    find.bind(1, hash);
    if (find.step()) {
      out.emplace_back(find.get_int(0), false);
      continue;
    }
    json j = config_to_json(cfg);
    ins.reset();
    ins.bind(1, hash).bind(2, j.dump()).bind(3, std::string(LAZYFEAT_VERSION));
    int i = 4;
    for (const auto& c : flat_cols()) bind_json(ins, i++, j, c.name);
    ins.run();
    out.emplace_back(sqlite3_last_insert_rowid(db.get()), true);
  }
  tx.commit();
  return out;
}

bool Store::replan_budget(int64_t id, const RunConfig& cfg) {
  sql::Tx tx(*db_);
  RunRow r = run(id);
  if (r.status != "stopped") return false;
  double wall = r.config.value("max_wall", 0.0);
  int64_t steps = r.config.value("max_steps", int64_t{0});
  if (wall == cfg.max_wall && steps == cfg.max_steps) return false;
  json j = r.config;
  j["max_wall"] = cfg.max_wall;
  j["max_steps"] = cfg.max_steps;
  sql::Stmt u(db_->get(), db_->path(),
              "UPDATE runs SET status = 'planned', config = ?, max_wall = ?, max_steps = ? WHERE id = ?");
  u.bind(1, j.dump()).bind(2, cfg.max_wall).bind(3, cfg.max_steps).bind(4, id).run();
  tx.commit();
  return true;
}

std::optional<RunRow> Store::find(const std::string& config_hash) {
  sql::Stmt s(db_->get(), db_->path(), "SELECT " + kRunCols + " FROM runs WHERE config_hash = ?");
  s.bind(1, config_hash);
  if (!s.step()) return std::nullopt;
  return read_row(s);
}

RunRow Store::run(int64_t id) {
  sql::Stmt s(db_->get(), db_->path(), "SELECT " + kRunCols + " FROM runs WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) throw UsageError("no run with id " + std::to_string(id) + " in " + db_->path());
  return read_row(s);
}

namespace {
// A process that has exited but not been reaped ('Z' in /proc/PID/stat): kill(pid, 0) still
// succeeds for it.
bool process_is_zombie(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return false;
  auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() &&
         (text[close + 2] == 'Z' || text[close + 2] == 'X');
}

// Seconds since process pid started (/proc/PID/stat's starttime against the system uptime);
// negative when unknown.
double process_age_s(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(in, text)) return -1;
  auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  unsigned long long start_ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i)  // fields 3 (state) ... 22 (starttime)
    if (i == 22) start_ticks = std::stoull(field);
  double uptime = -1;
  std::ifstream up("/proc/uptime");
  if (!(up >> uptime) || start_ticks == 0) return -1;
  return uptime - static_cast<double>(start_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}
}  // namespace

bool Store::abandoned(const RunRow& r, double stale_s) const {
  if (r.status != "running") return false;
  if (r.host == host_name() && r.pid > 0) {
    if (r.pid == getpid()) return false;  // our own (a sweep's rank 0 holds its workers' runs)
    if (kill(static_cast<pid_t>(r.pid), 0) != 0 && errno == ESRCH) return true;
    if (process_is_zombie(r.pid)) return true;  // dead, not yet reaped (its parent died too)
  }
  sql::Stmt s(db_->get(), db_->path(),
              "SELECT (julianday('now') - julianday(?)) * 86400.0");
  s.bind(1, r.heartbeat_at);
  if (!s.step() || s.is_null(0)) return true;  // no heartbeat at all
  double beat_age = s.get_double(0);
  if (r.host == host_name() && r.pid > 0 && r.pid != getpid()) {
    // The pid was reused: its process started after the holder's last heartbeat (2 s of slack).
    double age = process_age_s(r.pid);
    if (age >= 0 && age + 2.0 < beat_age) return true;
  }
  return beat_age > stale_s;
}

namespace {
// Shared by claim and claim_next (inside a transaction).
void mark_running(sql::Db& db, int64_t id, const RunConfig* cfg) {
  sql::Stmt u(db.get(), db.path(),
              std::string("UPDATE runs SET status = 'running', error = NULL, host = ?, pid = ?, "
                          "version = ?, attempts = attempts + 1, started_at = ") +
                  kNow + ", heartbeat_at = " + kNow + ", ended_at = NULL WHERE id = ?");
  u.bind(1, host_name()).bind(2, static_cast<int64_t>(getpid())).bind(3, std::string(LAZYFEAT_VERSION)).bind(4, id);
  u.run();
  if (cfg) {
    json j = config_to_json(*cfg);
    sql::Stmt c(db.get(), db.path(),
                "UPDATE runs SET config = ?, max_wall = ?, max_steps = ? WHERE id = ?");
    c.bind(1, j.dump()).bind(2, cfg->max_wall).bind(3, cfg->max_steps).bind(4, id);
    c.run();
  }
}
}  // namespace

bool Store::claim(int64_t id, const RunConfig& cfg, double stale_s, bool rerun) {
  sql::Tx tx(*db_);
  RunRow r = run(id);
  bool ok = r.status == "planned" || abandoned(r, stale_s) ||
            (rerun && (r.status == "stopped" || r.status == "diverged" || r.status == "failed"));
  if (!ok) return false;
  mark_running(*db_, id, &cfg);
  tx.commit();
  return true;
}

std::optional<int64_t> Store::claim_next(const std::vector<int64_t>& ids, double stale_s,
                                         bool retry_failed) {
  sql::Tx tx(*db_);
  sql::Stmt s(db_->get(), db_->path(), "SELECT " + kRunCols + " FROM runs WHERE id = ?");
  for (int64_t id : ids) {
    s.reset();
    s.bind(1, id);
    if (!s.step()) continue;
    RunRow r = read_row(s);
    if (r.status == "planned" || abandoned(r, stale_s) || (retry_failed && r.status == "failed")) {
      s.reset();
      mark_running(*db_, id, nullptr);
      tx.commit();
      return id;
    }
  }
  return std::nullopt;
}

std::vector<int64_t> Store::running_elsewhere(const std::vector<int64_t>& ids, double stale_s) {
  std::vector<int64_t> out;
  sql::Stmt s(db_->get(), db_->path(), "SELECT " + kRunCols + " FROM runs WHERE id = ?");
  for (int64_t id : ids) {
    s.reset();
    s.bind(1, id);
    if (s.step()) {
      RunRow r = read_row(s);
      if (r.status == "running" && !abandoned(r, stale_s)) out.push_back(id);
    }
  }
  return out;
}

void Store::heartbeat(int64_t id) {
  sql::Tx tx(*db_);
  sql::Stmt u(db_->get(), db_->path(), std::string("UPDATE runs SET heartbeat_at = ") + kNow + " WHERE id = ?");
  u.bind(1, id).run();
  tx.commit();
}

void Store::add_checkpoint(int64_t id, const Checkpoint& c) {
  sql::Tx tx(*db_);
  sql::Stmt s(db_->get(), db_->path(),
              "INSERT OR REPLACE INTO checkpoints(run_id, step, t, dt, train_loss, train_err, "
              "test_err, unsatisfied, weight_change, w0_norm, output_norm, f_norm, wall_s, "
              "layer_change) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, id).bind(2, c.step).bind(3, c.t).bind(4, c.dt).bind(5, c.train_loss);
  s.bind(6, c.train_err).bind(7, c.test_err).bind(8, c.unsatisfied).bind(9, c.weight_change);
  s.bind(10, c.w0_norm).bind(11, c.output_norm).bind(12, c.f_norm).bind(13, c.wall_s);
  s.bind(14, json(c.layer_change).dump());
  s.run();
  sql::Stmt u(db_->get(), db_->path(), std::string("UPDATE runs SET heartbeat_at = ") + kNow + " WHERE id = ?");
  u.bind(1, id).run();
  tx.commit();
}

void Store::save_state(int64_t id, int64_t step, double t, const std::string& blob) {
  sql::Tx tx(*db_);
  sql::Stmt s(db_->get(), db_->path(),
              std::string("INSERT OR REPLACE INTO states(run_id, step, t, saved_at, blob) VALUES (?,?,?,") +
                  kNow + ",?)");
  s.bind(1, id).bind(2, step).bind(3, t).bind_blob(4, blob.data(), blob.size());
  s.run();
  sql::Stmt u(db_->get(), db_->path(), std::string("UPDATE runs SET heartbeat_at = ") + kNow + " WHERE id = ?");
  u.bind(1, id).run();
  tx.commit();
}

std::optional<StoredState> Store::load_state(int64_t id) {
  sql::Stmt s(db_->get(), db_->path(), "SELECT step, t, blob FROM states WHERE run_id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return StoredState{s.get_int(0), s.get_double(1), s.get_blob(2)};
}

std::set<int64_t> Store::with_state() {
  sql::Stmt s(db_->get(), db_->path(), "SELECT run_id FROM states");
  std::set<int64_t> ids;
  while (s.step()) ids.insert(s.get_int(0));
  return ids;
}

void Store::drop_checkpoints_after(int64_t id, int64_t step) {
  sql::Tx tx(*db_);
  sql::Stmt s(db_->get(), db_->path(), "DELETE FROM checkpoints WHERE run_id = ? AND step > ?");
  s.bind(1, id).bind(2, step).run();
  tx.commit();
}

void Store::finish(int64_t id, const std::string& status, const std::string& message,
                   const json& summary, const at::Tensor& f_delta, const at::Tensor& f0,
                   const at::Tensor& y, const json& kernel) {
  require(status == "converged" || status == "stopped" || status == "diverged",
          "finish: unexpected status '" + status + "'");
  sql::Db& db = *db_;
  sql::Tx tx(db);
  std::string set = std::string("status = ?, error = ?, summary = ?, ended_at = ") + kNow +
                    ", heartbeat_at = " + kNow;
  for (const auto& c : summary_cols()) set += std::string(", \"") + c.name + "\" = ?";
  sql::Stmt u(db.get(), db.path(), "UPDATE runs SET " + set + " WHERE id = ?");
  u.bind(1, status);
  if (message.empty()) u.bind_null(2);
  else u.bind(2, message);
  u.bind(3, summary.dump());
  int i = 4;
  for (const auto& c : summary_cols()) {
    const json* v = summary.contains(c.name) ? &summary[c.name] : nullptr;
    if (!v || !v->is_number()) u.bind_null(i);
    else if (std::string(c.type) == "INTEGER") u.bind(i, v->get<int64_t>());
    else u.bind(i, v->get<double>());
    ++i;
  }
  u.bind(i, id).run();

  if (f_delta.defined() && f_delta.numel() > 0) {
    std::string fd = tensor_bytes(f_delta, at::kDouble);
    std::string fz = tensor_bytes(f0, at::kDouble);
    std::string yb = tensor_bytes(y, at::kChar);
    sql::Stmt o(db.get(), db.path(),
                "INSERT OR REPLACE INTO outputs(run_id, kind, n, f_delta, f0, y) VALUES (?, 'final', ?, ?, ?, ?)");
    o.bind(1, id).bind(2, static_cast<int64_t>(f_delta.numel()));
    o.bind_blob(3, fd.data(), fd.size()).bind_blob(4, fz.data(), fz.size()).bind_blob(5, yb.data(), yb.size());
    o.run();
  }
  if (kernel.is_object()) {
    sql::Stmt k(db.get(), db.path(),
                "INSERT OR REPLACE INTO kernels(run_id, which, stats, path) VALUES (?, ?, ?, NULL)");
    for (const char* which : {"init", "final"}) {
      if (!kernel.contains(which) || kernel[which].is_null()) continue;
      k.reset();
      k.bind(1, id).bind(2, std::string(which)).bind(3, kernel[which].dump()).run();
    }
  }
  if (status == "diverged") {  // a converged run keeps its final state: its trained weights
    sql::Stmt d(db.get(), db.path(), "DELETE FROM states WHERE run_id = ?");
    d.bind(1, id).run();
  }
  tx.commit();
}

void Store::release(int64_t id) {
  sql::Tx tx(*db_);
  sql::Stmt u(db_->get(), db_->path(),
              "UPDATE runs SET status = 'planned', pid = NULL WHERE id = ? AND status = 'running'");
  u.bind(1, id).run();
  tx.commit();
}

void Store::fail(int64_t id, const std::string& error) {
  sql::Tx tx(*db_);
  sql::Stmt u(db_->get(), db_->path(),
              std::string("UPDATE runs SET status = 'failed', error = ?, ended_at = ") + kNow + " WHERE id = ?");
  u.bind(1, error).bind(2, id).run();
  tx.commit();
}

std::vector<RunRow> Store::runs(const std::string& where) {
  std::string q = "SELECT " + kRunCols + " FROM runs";
  if (!where.empty()) q += " WHERE " + where_sql(where);
  q += " ORDER BY id";
  std::unique_ptr<sql::Stmt> st;
  try {
    st = std::make_unique<sql::Stmt>(db_->get(), db_->path(), q);
  } catch (const UsageError&) {
    throw;
  } catch (const std::runtime_error&) {
    if (where.empty()) throw;
    throw UsageError("--where: not a valid expression: '" + where + "' (" + sqlite3_errmsg(db_->get()) + ")");
  }
  sql::Stmt& s = *st;
  std::vector<RunRow> out;
  while (s.step()) out.push_back(read_row(s));
  return out;
}

std::optional<Store::Outputs> Store::outputs(int64_t id) {
  sql::Stmt s(db_->get(), db_->path(),
              "SELECT f_delta, f0, y FROM outputs WHERE run_id = ? AND kind = 'final'");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return Outputs{bytes_tensor(s.get_blob(0), at::kDouble), bytes_tensor(s.get_blob(1), at::kDouble),
                 bytes_tensor(s.get_blob(2), at::kChar).to(at::kDouble)};
}

std::vector<Checkpoint> Store::checkpoints(int64_t id) {
  sql::Stmt s(db_->get(), db_->path(),
              "SELECT step, t, dt, train_loss, train_err, test_err, unsatisfied, weight_change, "
              "w0_norm, output_norm, f_norm, wall_s, layer_change FROM checkpoints WHERE run_id = ? "
              "ORDER BY step");
  s.bind(1, id);
  std::vector<Checkpoint> out;
  while (s.step()) {
    Checkpoint c;
    c.step = s.get_int(0);
    c.t = s.get_double(1);
    c.dt = s.get_double(2);
    c.train_loss = s.get_double(3);
    c.train_err = s.get_double(4);
    c.test_err = s.get_double(5);
    c.unsatisfied = s.get_int(6);
    c.weight_change = s.get_double(7);
    c.w0_norm = s.get_double(8);
    c.output_norm = s.get_double(9);
    c.f_norm = s.get_double(10);
    c.wall_s = s.get_double(11);
    if (!s.is_null(12)) {
      for (const auto& v : json::parse(s.get_text(12)))
        c.layer_change.push_back(v.is_number() ? v.get<double>() : kNaN);
    }
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace lf
