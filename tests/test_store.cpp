// The study database (src/store): round trip of every table, atomic claims, abandoned runs,
// refusal of newer schemas / corrupt files / locked databases, a full disk rolling back, and
// the --where whitelist. None of these needs the trainer.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "common/error.h"
#include "experiment/config.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "testing.h"

namespace {

using lf::RunConfig;
using lf::Store;
using lf::StoreOptions;

RunConfig tiny(int64_t h, double sqrt_h_alpha, uint64_t seed) {
  RunConfig c;
  c.ptr = 100;
  c.pte = 200;
  c.L = 2;
  c.h = h;
  c.sqrt_h_alpha = sqrt_h_alpha;
  c.seed_init = seed;
  lf::finalize(c);
  return c;
}

lf::Checkpoint ckpt(int64_t step, double loss) {
  lf::Checkpoint c;
  c.step = step;
  c.t = 0.1 * step;
  c.dt = 0.01;
  c.train_loss = loss;
  c.train_err = 0.5;
  c.unsatisfied = 7;
  c.layer_change = {1.0, 2.0, 3.0};
  return c;
}

// Executes SQL on a raw connection (the test's own, not the store's).
void raw_exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST(Store, RoundTrip) {
  lft::TempDir tmp;
  std::string path = tmp.file("study.sqlite");
  Store s(path);
  RunConfig a = tiny(16, 10, 0), b = tiny(16, 10, 1);
  auto [ida, created_a] = s.plan(a);
  EXPECT_TRUE(created_a);
  auto [ida2, created_a2] = s.plan(a);
  EXPECT_EQ(ida2, ida);
  EXPECT_FALSE(created_a2);
  auto [idb, created_b] = s.plan(b);
  EXPECT_TRUE(created_b);
  EXPECT_NE(ida, idb);

  lf::RunRow r = s.run(ida);
  EXPECT_EQ(r.status, "planned");
  EXPECT_EQ(r.config_hash, lf::config_hash(a));
  EXPECT_EQ(r.config["h"], 16);
  EXPECT_NEAR(r.config["sqrt_h_alpha"].get<double>(), 10.0, 1e-12);

  ASSERT_TRUE(s.claim(ida, a, 600));
  r = s.run(ida);
  EXPECT_EQ(r.status, "running");
  EXPECT_EQ(r.pid, getpid());
  EXPECT_EQ(r.host, lf::host_name());
  EXPECT_EQ(r.attempts, 1);
  EXPECT_FALSE(r.heartbeat_at.empty());
  EXPECT_FALSE(s.claim(ida, a, 600)) << "a live run cannot be claimed twice";

  s.add_checkpoint(ida, ckpt(1, 1.0));
  s.add_checkpoint(ida, ckpt(2, 0.9));
  s.add_checkpoint(ida, ckpt(3, 0.4));
  s.add_checkpoint(ida, ckpt(2, 0.9));  // re-emitted after a resume: no duplicate
  auto cps = s.checkpoints(ida);
  ASSERT_EQ(cps.size(), 3u);
  EXPECT_EQ(cps[2].step, 3);
  EXPECT_DOUBLE_EQ(cps[2].train_loss, 0.4);
  EXPECT_DOUBLE_EQ(cps[1].t, 0.2);
  EXPECT_EQ(cps[0].unsatisfied, 7);
  ASSERT_EQ(cps[0].layer_change.size(), 3u);
  EXPECT_DOUBLE_EQ(cps[0].layer_change[2], 3.0);
  EXPECT_TRUE(std::isnan(cps[0].test_err));

  std::string blob("state\0bytes", 11);
  s.save_state(ida, 3, 0.3, blob);
  s.save_state(ida, 3, 0.3, blob + "2");  // replaces
  auto st = s.load_state(ida);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->blob, blob + "2");
  EXPECT_EQ(st->step, 3);
  s.drop_checkpoints_after(ida, 2);
  EXPECT_EQ(s.checkpoints(ida).size(), 2u);

  nlohmann::json summary = {{"status", "converged"}, {"steps", 42}, {"t", 1.5}, {"t1", 0.5},
                            {"t2", 1.5}, {"train_loss", 0.0}, {"test_err", 0.125}, {"kernel_change", nullptr}};
  at::Tensor fd = at::arange(200, at::kDouble) * 0.01;
  at::Tensor f0 = -at::arange(200, at::kDouble);
  at::Tensor y = at::where(at::arange(200) % 2 == 0, at::ones({200}, at::kDouble), -at::ones({200}, at::kDouble));
  nlohmann::json kernel = {{"init", {{"frobenius", 3.0}}}, {"final", {{"frobenius", 4.0}}}};
  s.finish(ida, "converged", "", summary, fd, f0, y, kernel);
  r = s.run(ida);
  EXPECT_EQ(r.status, "converged");
  EXPECT_EQ(r.summary["steps"], 42);
  EXPECT_FALSE(r.ended_at.empty());
  EXPECT_TRUE(s.load_state(ida).has_value()) << "a converged run keeps its final state (its weights)";
  auto o = s.outputs(ida);
  ASSERT_TRUE(o.has_value());
  EXPECT_TRUE(at::equal(o->f_delta, fd));
  EXPECT_TRUE(at::equal(o->f0, f0));
  EXPECT_TRUE(at::equal(o->y, y));

  // Flat and summary columns, through --where.
  auto conv = s.runs("status = 'converged' and test_err < 0.2 and h = 16 and steps = 42");
  ASSERT_EQ(conv.size(), 1u);
  EXPECT_EQ(conv[0].id, ida);
  EXPECT_EQ(s.runs("seed_init = 1").size(), 1u);
  EXPECT_EQ(s.runs("sqrt-h-alpha > 9.99 and sqrt_h_alpha < 10.01").size(), 2u);
  EXPECT_EQ(s.runs("kernel_change is null and status = 'converged'").size(), 1u);
  EXPECT_EQ(s.runs().size(), 2u);

  // Kernels table.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*), sum(json_extract(stats, '$.frobenius')) FROM kernels", -1, &q, nullptr);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), 2);
  EXPECT_DOUBLE_EQ(sqlite3_column_double(q, 1), 7.0);
  sqlite3_finalize(q);
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, nullptr);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(q, 0)), "wal");
  sqlite3_finalize(q);
  sqlite3_close(db);

  // A second connection sees the same, and reopening keeps everything.
  Store again(path, StoreOptions{false, true, -1});
  EXPECT_EQ(again.runs().size(), 2u);
  EXPECT_EQ(again.checkpoints(ida).size(), 2u);
}

TEST(Store, StoppedRunKeepsStateAndReplansForBiggerBudget) {
  lft::TempDir tmp;
  Store s(tmp.file("s.sqlite"));
  RunConfig a = tiny(8, 1, 0);
  a.max_steps = 10;
  auto [id, created] = s.plan(a);
  ASSERT_TRUE(s.claim(id, a, 600));
  s.save_state(id, 10, 1.0, "abc");
  s.finish(id, "stopped", "max steps", {{"status", "stopped"}, {"steps", 10}}, {}, {}, {}, nullptr);
  EXPECT_EQ(s.run(id).status, "stopped");
  EXPECT_EQ(s.load_state(id)->blob, "abc");
  EXPECT_FALSE(s.replan_budget(id, a)) << "same budget: stays stopped";
  RunConfig bigger = a;
  bigger.max_steps = 1000;
  EXPECT_EQ(lf::config_hash(bigger), lf::config_hash(a)) << "the budget is not part of the identity";
  EXPECT_TRUE(s.replan_budget(id, bigger));
  auto r = s.run(id);
  EXPECT_EQ(r.status, "planned");
  EXPECT_EQ(r.config["max_steps"], 1000);
  EXPECT_EQ(s.runs("max_steps = 1000").size(), 1u);
}

TEST(Store, ClaimsAreAtomicAcrossConnections) {
  lft::TempDir tmp;
  std::string path = tmp.file("s.sqlite");
  std::vector<int64_t> ids;
  {
    Store s(path);
    for (int i = 0; i < 4; ++i) ids.push_back(s.plan(tiny(8, 1, i)).first);
  }
  Store a(path), b(path);
  std::vector<int64_t> got;
  for (int k = 0; k < 3; ++k) {
    if (auto id = a.claim_next(ids, 600)) got.push_back(*id);
    if (auto id = b.claim_next(ids, 600)) got.push_back(*id);
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, ids) << "each run claimed exactly once";
  EXPECT_FALSE(a.claim_next(ids, 600).has_value());
  EXPECT_TRUE(a.running_elsewhere(ids, 600).size() == 4u);
}

TEST(Store, AbandonedRunsAreReclaimed) {
  lft::TempDir tmp;
  std::string path = tmp.file("s.sqlite");
  Store s(path);
  auto id = s.plan(tiny(8, 1, 0)).first;
  ASSERT_TRUE(s.claim_next({id}, 600).has_value());
  // A process that is gone: fork a child that exits at once.
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  raw_exec(path, "UPDATE runs SET pid = " + std::to_string(dead) + " WHERE id = " + std::to_string(id));
  EXPECT_TRUE(s.abandoned(s.run(id), 600));
  // Another host, fresh heartbeat: alive; stale heartbeat: abandoned.
  raw_exec(path, "UPDATE runs SET host = 'elsewhere' WHERE id = " + std::to_string(id));
  EXPECT_FALSE(s.abandoned(s.run(id), 600));
  raw_exec(path, "UPDATE runs SET heartbeat_at = '2020-01-01T00:00:00.000Z' WHERE id = " + std::to_string(id));
  EXPECT_TRUE(s.abandoned(s.run(id), 600));
  auto again = s.claim_next({id}, 600);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(s.run(id).attempts, 2);
  EXPECT_EQ(s.run(id).pid, getpid());
  s.release(id);
  EXPECT_EQ(s.run(id).status, "planned");
  s.fail(id, "boom");
  EXPECT_EQ(s.run(id).status, "failed");
  EXPECT_EQ(s.run(id).error, "boom");
  EXPECT_FALSE(s.claim_next({id}, 600).has_value()) << "failed runs are not retried by default";
  EXPECT_TRUE(s.claim_next({id}, 600, /*retry_failed=*/true).has_value());
}

TEST(Store, RefusesNewerSchema) {
  lft::TempDir tmp;
  std::string path = tmp.file("s.sqlite");
  { Store s(path); }
  const std::string newer = std::to_string(lf::kSchemaVersion + 1);
  raw_exec(path, "UPDATE meta SET value = '" + newer + "' WHERE key = 'schema_version'");
  try {
    Store s(path);
    FAIL() << "opened a newer schema";
  } catch (const lf::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version " + newer + ", newer"), std::string::npos) << e.what();
  }
  auto r = lft::run_cli({"runs", "--db", path});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("newer than this lazyfeat"), std::string::npos) << r.err;
}

TEST(Store, RefusesCorruptAndForeignFiles) {
  lft::TempDir tmp;
  std::string junk = tmp.file("junk.sqlite");
  {
    std::ofstream f(junk);
    f << "this is not a database, just some text that is long enough to look like a header......\n";
  }
  EXPECT_THROW(Store s(junk), lf::UsageError);
  auto r = lft::run_cli({"runs", "--db", junk});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("is not a lazyfeat database"), std::string::npos) << r.err;
  {
    std::ifstream f(junk);
    std::string first;
    std::getline(f, first);
    EXPECT_EQ(first.substr(0, 16), "this is not a da") << "the file was left untouched";
  }
  std::string other = tmp.file("other.sqlite");
  raw_exec(other, "CREATE TABLE t(x)");
  try {
    Store s(other);
    FAIL();
  } catch (const lf::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("not a lazyfeat study"), std::string::npos) << e.what();
  }
  auto missing = lft::run_cli({"runs", "--db", tmp.file("absent.sqlite")});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("cannot open database"), std::string::npos) << missing.err;
}

TEST(Store, LockedDatabaseIsAClearError) {
  lft::TempDir tmp;
  std::string path = tmp.file("s.sqlite");
  { Store(path).plan(tiny(8, 1, 0)); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE; UPDATE meta SET value = value WHERE key = 'x';", nullptr, nullptr, nullptr), SQLITE_OK);
  try {
    Store s(path, StoreOptions{true, false, 0.2});
    s.plan(tiny(8, 1, 1));
    FAIL() << "wrote through a write lock";
  } catch (const lf::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("is locked by another process"), std::string::npos) << e.what();
  }
  // Through the CLI: a sweep gives up after the busy timeout with exit 2.
  std::string spec = tmp.file("spec.toml");
  std::ofstream(spec) << "[fixed]\nptr = 100\npte = 200\nL = 2\nh = 8\n[axes]\nseed-init = [0, 1]\n";
  auto r = lft::run_cli({"sweep", spec, "--db", path}, {"LAZYFEAT_DB_TIMEOUT=0.3"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("locked"), std::string::npos) << r.err;
  // Readers are not blocked by a writer (WAL).
  auto list = lft::run_cli({"runs", "--db", path, "--json"}, {"LAZYFEAT_DB_TIMEOUT=0.3"});
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(nlohmann::json::parse(lft::last_line(list.out)).size(), 1u);
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  Store s(path);
  EXPECT_EQ(s.runs().size(), 1u) << "nothing committed was lost";
}

TEST(Store, DiskFullRollsBack) {
  lft::TempDir tmp;
  std::string path = tmp.file("s.sqlite");
  Store s(path);
  auto id = s.plan(tiny(8, 1, 0)).first;
  s.add_checkpoint(id, ckpt(1, 1.0));
  s.save_state(id, 1, 0.1, "small");
  // Cap the file at its current size: the next big write hits SQLITE_FULL.
  sqlite3_stmt* q = nullptr;
  sqlite3_prepare_v2(s.db().get(), "PRAGMA page_count", -1, &q, nullptr);
  sqlite3_step(q);
  int pages = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  s.db().exec("PRAGMA max_page_count = " + std::to_string(pages + 1));
  std::string big(1 << 20, 'x');
  try {
    s.save_state(id, 2, 0.2, big);
    FAIL() << "a 1 MB state fitted in one page";
  } catch (const lf::UsageError&) {
    FAIL() << "disk full is a failure, not a usage error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("disk full"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rolled back"), std::string::npos) << e.what();
  }
  EXPECT_EQ(s.load_state(id)->blob, "small");
  EXPECT_EQ(s.load_state(id)->step, 1);
  s.add_checkpoint(id, ckpt(2, 0.5));  // small writes still work
  EXPECT_EQ(s.checkpoints(id).size(), 2u);
}

TEST(Store, WhereAcceptsPlainExpressionsOnly) {
  EXPECT_EQ(lf::where_sql("h = 64 and sqrt_h_alpha > 1"), "(\"h\" = 64 and \"sqrt_h_alpha\" > 1)");
  EXPECT_EQ(lf::where_sql("sqrt-h-alpha >= 1e-2 OR status = 'failed'"),
            "(\"sqrt_h_alpha\" >= 1e-2 or \"status\" = 'failed')");
  EXPECT_NO_THROW(lf::where_sql("h in (8, 16) and not (L between 2 and 3) and error is not null"));
  for (const char* bad : {"h = 1; drop table runs", "foo = 1", "h = (select 1)", "h = 1)",
                          "(h = 1", "h = 'x", "", "h = 1 -- c", "sqlite_master = 1", "h = abs(1)"}) {
    EXPECT_THROW(lf::where_sql(bad), lf::UsageError) << bad;
  }
  lft::TempDir tmp;
  std::string path = tmp.file("s.sqlite");
  { Store(path).plan(tiny(8, 1, 0)); }
  auto r = lft::run_cli({"runs", "--db", path, "--where", "h = 8; delete from runs"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("--where"), std::string::npos) << r.err;
  r = lft::run_cli({"runs", "--db", path, "--where", "h = = 8"});
  EXPECT_EQ(r.status, 2) << r.err;
  r = lft::run_cli({"runs", "--db", path, "--where", "h = 8 and status = 'planned'", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto arr = nlohmann::json::parse(lft::last_line(r.out));
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0]["status"], "planned");
  EXPECT_EQ(arr[0]["config"]["h"], 8);
  r = lft::run_cli({"runs", "--db", path, "--csv", tmp.file("csv")});
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream runs_csv(tmp.file("csv/runs.csv"));
  std::string header, line;
  std::getline(runs_csv, header);
  std::getline(runs_csv, line);
  EXPECT_EQ(header.substr(0, 26), "id,config_hash,status,erro");
  EXPECT_EQ(line.substr(0, 2), "1,");
}

}  // namespace
