// The SQLite RAII layer (sqlite.h): error mapping, statements, connections, write transactions.
// Deliberately not: schema knowledge (store.cpp).
#include "store/sqlite.h"

#include <cmath>
#include <stdexcept>

#include "common/error.h"

namespace lf::sql {

void fail(sqlite3* db, int rc, const std::string& path, const std::string& what) {
  std::string detail = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      throw UsageError("database " + path + " is locked by another process (gave up after the busy "
                       "timeout; set LAZYFEAT_DB_TIMEOUT=SEC to wait longer)");
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      throw UsageError(path + " is not a lazyfeat database (not SQLite, or corrupt): " + detail);
    case SQLITE_CANTOPEN:
      throw UsageError("cannot open database " + path + ": " + detail);
    case SQLITE_READONLY:
      throw UsageError("database " + path + " is read-only: " + detail);
    case SQLITE_FULL:
      throw std::runtime_error("disk full while writing " + path + " (" + what +
                               "); the transaction was rolled back, nothing committed is lost");
    default:
      throw std::runtime_error("database " + path + ": " + what + ": " + detail);
  }
}

Stmt::Stmt(sqlite3* db, const std::string& path, const std::string& sql)
    : db_(db), path_(path), sql_(sql) {
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st_, nullptr);
  if (rc != SQLITE_OK) fail(db_, rc, path_, "prepare '" + sql_.substr(0, 60) + "'");
}

Stmt::~Stmt() { sqlite3_finalize(st_); }

#define LF_CHECK_BIND(expr)                                            \
  do {                                                                 \
    int rc_ = (expr);                                                  \
    if (rc_ != SQLITE_OK) fail(db_, rc_, path_, "bind in '" + sql_.substr(0, 60) + "'"); \
  } while (0)

Stmt& Stmt::bind(int i, int64_t v) {
  LF_CHECK_BIND(sqlite3_bind_int64(st_, i, v));
  return *this;
}
Stmt& Stmt::bind(int i, double v) {
  if (std::isnan(v)) return bind_null(i);
  LF_CHECK_BIND(sqlite3_bind_double(st_, i, v));
  return *this;
}
Stmt& Stmt::bind(int i, const std::string& v) {
  LF_CHECK_BIND(sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  return *this;
}
Stmt& Stmt::bind_blob(int i, const void* data, size_t n) {
  LF_CHECK_BIND(sqlite3_bind_blob64(st_, i, n ? data : "", n, SQLITE_TRANSIENT));
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  LF_CHECK_BIND(sqlite3_bind_null(st_, i));
  return *this;
}
int Stmt::index(const std::string& name) const { return sqlite3_bind_parameter_index(st_, name.c_str()); }

bool Stmt::step() {
  int rc = sqlite3_step(st_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(st_);
  fail(db_, rc, path_, "'" + sql_.substr(0, 60) + "'");
}
void Stmt::run() {
  while (step()) {
  }
}
void Stmt::reset() { sqlite3_reset(st_); }

int Stmt::columns() const { return sqlite3_column_count(st_); }
std::string Stmt::name(int c) const { return sqlite3_column_name(st_, c); }
bool Stmt::is_null(int c) const { return sqlite3_column_type(st_, c) == SQLITE_NULL; }
int Stmt::type(int c) const { return sqlite3_column_type(st_, c); }
int64_t Stmt::get_int(int c) const { return sqlite3_column_int64(st_, c); }
double Stmt::get_double(int c) const {
  return is_null(c) ? std::nan("") : sqlite3_column_double(st_, c);
}
std::string Stmt::get_text(int c) const {
  const unsigned char* p = sqlite3_column_text(st_, c);
  return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(st_, c)) : std::string();
}
std::string Stmt::get_blob(int c) const {
  const void* p = sqlite3_column_blob(st_, c);
  return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(st_, c)) : std::string();
}

Db::Db(const std::string& path, bool create, bool readonly, double busy_timeout_s) : path_(path) {
  int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0));
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    if ((rc & 0xff) == SQLITE_CANTOPEN)
      throw UsageError("cannot open database " + path + (create ? "" : " (does it exist?)") + ": " + msg);
    fail(nullptr, rc, path, "open");
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, static_cast<int>(busy_timeout_s * 1000));
}

Db::~Db() { sqlite3_close_v2(db_); }

void Db::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (err) sqlite3_free(err);
  if (rc != SQLITE_OK) fail(db_, rc, path_, "'" + sql.substr(0, 60) + "'");
}

Tx::Tx(Db& db) : db_(db) {
  db_.exec("BEGIN IMMEDIATE");
  open_ = true;
}

Tx::~Tx() {
  if (open_) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Tx::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace lf::sql
