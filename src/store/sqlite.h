// A thin RAII layer over the SQLite C API for the study database: a connection, prepared
// statements with typed binds/reads, and a write transaction that rolls back unless committed.
// SQLite result codes become lazyfeat errors with the file's name in them (busy/locked, not a
// database, newer schema, read-only -> UsageError; disk full, I/O -> runtime_error).
// Deliberately not: an ORM or a query builder; the schema lives in store.cpp and docs/schema.md.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lf::sql {

// Throws the error for SQLite result code rc (anything but OK/ROW/DONE) on database `path`.
[[noreturn]] void fail(sqlite3* db, int rc, const std::string& path, const std::string& what);

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& path, const std::string& sql);
  ~Stmt();
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds are 1-based like SQLite's; these return *this for chaining.
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, double v);        // NaN is bound as NULL
  Stmt& bind(int i, const std::string& v);
  Stmt& bind_blob(int i, const void* data, size_t n);
  Stmt& bind_null(int i);
  int index(const std::string& name) const;  // ":name" parameter index (0 = absent)

  bool step();   // true: a row is ready; false: done
  void run();    // step to completion
  void reset();  // for reuse (bindings stay)

  int columns() const;
  std::string name(int c) const;
  bool is_null(int c) const;
  int type(int c) const;  // SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT, SQLITE_BLOB, SQLITE_NULL
  int64_t get_int(int c) const;
  double get_double(int c) const;  // NULL -> NaN
  std::string get_text(int c) const;
  std::string get_blob(int c) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* st_ = nullptr;
  std::string path_, sql_;
};

class Db {
 public:
  // Opens (and with create, creates) the file; busy_timeout_s bounds waits on other writers.
  Db(const std::string& path, bool create, bool readonly, double busy_timeout_s);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }
  void exec(const std::string& sql);

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// BEGIN IMMEDIATE (takes the write lock at once, so two writers never deadlock); rolls back in
// the destructor unless commit() was called.
class Tx {
 public:
  explicit Tx(Db& db);
  ~Tx();
  void commit();

 private:
  Db& db_;
  bool open_ = false;
};

}  // namespace lf::sql
