// Sweeps end to end (src/sweep, `lazyfeat sweep`, `lazyfeat train --db`): spec parsing and its
// errors, a sweep SIGKILLed mid-flight and restarted, a run interrupted and resumed with the
// same numbers as an uninterrupted one, two sweeps at once on one database, Ctrl-C, and mpirun.
// The end-to-end tests use examples/tiny.toml-like grids (100 training points, h = 8, L = 2).
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "dynamics/momentum.h"
#include "store/store.h"
#include "sweep/sweep.h"
#include "testing.h"


namespace {

using json = nlohmann::json;
using lft::count;
using lft::query;

const char* kTiny =
    "[fixed]\nptr = 100\npte = 200\nL = 2\nh = 8\ndf-min = 1e-2\ndf-max = 1.0\n"
    "[axes]\nsqrt-h-alpha = [1, 10]\nseed-init = [0, 1, 2]\n";
// Ten times more steps a run (about 1e4): long enough to be caught in flight.
const char* kSlow =
    "[fixed]\nptr = 100\npte = 200\nL = 2\nh = 8\ndf-min = 1e-3\ndf-max = 0.1\n"
    "[axes]\nsqrt-h-alpha = [1, 10]\nseed-init = [0, 1, 2]\n";

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

using lft::slurp;
using lft::start;
using lft::wait_exit;

// Every run of the study converged exactly once (testing.h), with its 200 test outputs and its
// final state.
void expect_all_converged_once(const std::string& db, int64_t n) {
  lft::expect_all_converged_once(db, n);
  EXPECT_EQ(count(db, "SELECT count(*) FROM outputs WHERE n = 200"), n);
  EXPECT_EQ(count(db, "SELECT count(*) FROM states"), n) << "each converged run keeps its final state";
}

// Why the trainer cannot run here ("" when it can): the MNIST files, then a tiny training run.
std::string trainer_problem() {
  static std::string problem = [] {
    if (!lft::have_mnist()) return "MNIST files absent under " + lft::data_dir() + "/mnist: run scripts/setup.sh";
    auto r = lft::run_cli({"train", "--ptr", "20", "--pte", "20", "--h", "4", "--L", "1", "--max-steps", "5", "--quiet", "--json"});
    if (r.status != 0) return "a 5-step `lazyfeat train` exits " + std::to_string(r.status) + ": " + r.err;
    return std::string();
  }();
  return problem;
}

// A prerequisite the set-up installs: its absence is a failure, not a skip.
#define NEED_TRAINER() ASSERT_EQ(trainer_problem(), "")

// ---- The spec, no training needed.

// The progress lines' description of a run: L for fc networks only (the cnn and the wrn have
// fixed depths), T for the stochastic dynamics.
TEST(SweepSpec, DescribeRunShowsWhatTheArchitectureHas) {
  lf::RunConfig fc;
  fc.h = 64, fc.L = 3, fc.sqrt_h_alpha = 1e3;
  lf::finalize(fc);
  EXPECT_EQ(lf::describe_run(lf::config_to_json(fc)), "fc softplus L=3 h=64 sqrt_h_alpha=1e+03 seed_init=0");
  lf::RunConfig cnn;
  cnn.arch = "cnn", cnn.h = 32, cnn.temperature = 3e-4, cnn.sqrt_h_alpha = 1e-2, cnn.seed_init = 2;
  lf::finalize(cnn);
  EXPECT_EQ(lf::describe_run(lf::config_to_json(cnn)), "cnn relu h=32 sqrt_h_alpha=0.01 seed_init=2 T=0.0003");
}

TEST(SweepSpec, LogRangeHitsDecadesExactly) {
  EXPECT_EQ(lf::log_range(1e-2, 1e4, 1), (std::vector<double>{0.01, 0.1, 1, 10, 100, 1000, 10000}));
  auto a = lf::log_range(1e-3, 1e5, 3);  // setup A's alpha grid: mantissas 1, 2.2, 4.6
  ASSERT_EQ(a.size(), 25u);
  EXPECT_DOUBLE_EQ(a[0], 1e-3);
  EXPECT_DOUBLE_EQ(a[3], 1e-2);
  EXPECT_DOUBLE_EQ(a[24], 1e5);
  EXPECT_NEAR(a[1], 2.15443469003e-3, 1e-14);
  EXPECT_NEAR(a[2], 4.64158883361e-3, 1e-14);
  EXPECT_EQ(lf::log_range(5, 5, 4), std::vector<double>{5});
}

TEST(SweepSpec, CartesianProductInSortedKeyOrder) {
  auto grid = lf::parse_sweep_spec_text(
      "[fixed]\nptr = 1000\npca = 10\narch = \"fc\"\nL = 3\ndelta-kernel = true\n"
      "[axes]\nh = [64, 128]\nsqrt-h-alpha = { log-range = [1e-2, 1e4], per-decade = 1 }\nseed-init = [0, 1, 2]\n",
      "contract.toml");
  ASSERT_EQ(grid.size(), 2u * 7u * 3u);
  // Keys in sorted order ("h" < "seed-init" < "sqrt-h-alpha"), the last fastest.
  EXPECT_EQ(grid[0].h, 64);
  EXPECT_EQ(grid[0].seed_init, 0u);
  EXPECT_NEAR(grid[0].alpha * 8.0, 1e-2, 1e-15);
  EXPECT_NEAR(grid[1].alpha * 8.0, 1e-1, 1e-14);
  EXPECT_EQ(grid[7].seed_init, 1u);
  EXPECT_EQ(grid[21].h, 128);
  EXPECT_NEAR(grid[41].alpha * std::sqrt(128.0), 1e4, 1e-8);
  for (const auto& c : grid) {
    EXPECT_EQ(c.ptr, 1000);
    EXPECT_EQ(c.L, 3);
    EXPECT_TRUE(c.delta_kernel);
  }
  std::set<std::string> hashes;
  for (const auto& c : grid) hashes.insert(lf::config_hash(c));
  EXPECT_EQ(hashes.size(), grid.size());
}

TEST(SweepSpec, BadSpecsNameTheProblem) {
  auto msg = [](const std::string& text) -> std::string {
    try {
      lf::parse_sweep_spec_text(text, "bad.toml");
    } catch (const lf::UsageError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_NE(msg("[fixed]\nfoo = 1\n").find("unknown run option 'foo'"), std::string::npos);
  EXPECT_NE(msg("[axes]\nh = []\n").find("axis 'h' is empty"), std::string::npos);
  EXPECT_NE(msg("[axes]\nh = [1, 2\n").find("malformed sweep spec bad.toml"), std::string::npos);
  EXPECT_NE(msg("[fixed]\nh = 4\n[axes]\nh = [1]\n").find("'h' is both"), std::string::npos);
  EXPECT_NE(msg("[fixd]\nh = 4\n").find("unknown section or key 'fixd'"), std::string::npos);
  EXPECT_NE(msg("[axes]\nh = [8, -1]\n").find("--h must be >= 1"), std::string::npos);
  EXPECT_EQ(msg("[axes]\nh = [\"x\"]\n"), "sweep spec bad.toml [axes] h: --h: not an integer: 'x'");
  EXPECT_NE(msg("[axes]\nalpha = { log-range = [1, 10] }\n").find("needs log-range = [LOW, HIGH] and per-decade = K"),
            std::string::npos);
  EXPECT_NE(msg("[fixed]\nh = [4, 8]\n").find("[fixed] takes one value"), std::string::npos);
  EXPECT_NE(msg("[fixed]\nact = \"sigmoid\"\n").find("unknown activation"), std::string::npos);

  lft::TempDir tmp;
  std::string spec = write(tmp.file("bad.toml"), "[axes]\nwidth = [1]\n");
  auto r = lft::run_cli({"sweep", spec, "--db", tmp.file("s.sqlite")});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown run option 'width'"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("s.sqlite"))) << "nothing written for a bad spec";
  std::string good = write(tmp.file("good.toml"), kTiny);
  struct Case {
    std::vector<std::string> args;
    std::string msg;
  };
  for (const Case& c : std::vector<Case>{
           {{"sweep", good}, "sweep needs --db FILE"},
           {{"sweep", good, "--db", tmp.file("s.sqlite"), "--shard", "2/2"}, "--shard I/N needs 0 <= I < N, got '2/2'"},
           {{"sweep", good, "--db", tmp.file("s.sqlite"), "--jobs", "0"}, "--jobs must be >= 1"},
           {{"sweep", tmp.file("absent.toml"), "--db", tmp.file("s.sqlite")}, "cannot read sweep spec " + tmp.file("absent.toml")},
       }) {
    auto e = lft::run_cli(c.args);
    EXPECT_EQ(e.status, 2) << c.args.back() << ": " << e.err;
    EXPECT_NE(e.err.find("lazyfeat: error: " + c.msg), std::string::npos) << e.err;
    EXPECT_EQ(std::count(e.err.begin(), e.err.end(), '\n'), 1) << e.err;
  }
}

TEST(SweepSpec, ShardsSplitTheGridByIndex) {
  lft::TempDir tmp;
  auto grid = lf::parse_sweep_spec_text(kTiny, "tiny.toml");
  ASSERT_EQ(grid.size(), 6u);
  std::set<std::string> seen;
  for (int i = 0; i < 2; ++i) {
    lf::SweepOptions o;
    o.db = tmp.file("s.sqlite");
    o.shard_index = i;
    o.shard_count = 2;
    lf::SweepCounts c;
    auto ids = lf::plan_sweep(grid, o, c);
    EXPECT_EQ(c.total, 3);
    EXPECT_EQ(c.planned, 3);
    ASSERT_EQ(ids.size(), 3u);
    for (size_t k = 0; k < 3; ++k)
      seen.insert(query(o.db, "SELECT config_hash FROM runs WHERE id = " + std::to_string(ids[k]))[0][0]);
    // Config index 2k + i of the grid.
    EXPECT_EQ(query(o.db, "SELECT config_hash FROM runs WHERE id = " + std::to_string(ids[1]))[0][0],
              lf::config_hash(grid[2 + i]));
  }
  EXPECT_EQ(seen.size(), 6u);
}

// The runs with a saved state (in flight when an earlier sweep stopped) come first, each part
// in grid order: workers claim and ensembles fill in this order (GroupClaimer).
TEST(SweepSpec, RunsInFlightComeFirst) {
  lft::TempDir tmp;
  auto grid = lf::parse_sweep_spec_text(kTiny, "tiny.toml");
  lf::SweepOptions o;
  o.db = tmp.file("s.sqlite");
  lf::SweepCounts c;
  const std::vector<int64_t> fresh = lf::plan_sweep(grid, o, c);
  ASSERT_EQ(fresh.size(), 6u);
  for (size_t k = 0; k < 6; ++k)
    EXPECT_EQ(query(o.db, "SELECT config_hash FROM runs WHERE id = " + std::to_string(fresh[k]))[0][0],
              lf::config_hash(grid[k])) << "grid order";
  {
    lf::Store store(o.db);
    store.save_state(fresh[4], 10, 0.5, "a state");
    store.save_state(fresh[2], 20, 0.7, "a state");
  }
  lf::SweepCounts again;
  EXPECT_EQ(lf::plan_sweep(grid, o, again), (std::vector<int64_t>{fresh[2], fresh[4], fresh[0], fresh[1], fresh[3], fresh[5]}));
  EXPECT_EQ(again.total, 6);
  EXPECT_EQ(again.planned, 0);
}

TEST(SweepSpec, EveryExampleParses) {
  std::map<std::string, size_t> sizes;
  for (const auto& f : std::filesystem::directory_iterator(std::string(LAZYFEAT_SOURCE_DIR) + "/examples"))
    if (f.path().extension() == ".toml") sizes[f.path().filename()] = lf::parse_sweep_spec(f.path()).size();
  EXPECT_EQ(sizes["tiny.toml"], 6u);
  EXPECT_EQ(sizes["setup-a.toml"], 4u * 25u * 10u);
  EXPECT_EQ(sizes["variance.toml"], 2u * 9u * 26u);
  EXPECT_EQ(sizes["l2.toml"], 2u * 3u * 10u);
  EXPECT_EQ(sizes["setup-b-cnn.toml"], 17u * 6u * 10u);
  EXPECT_EQ(sizes["setup-b-small.toml"], 2u * 2u * 2u);
  EXPECT_EQ(sizes["paper-a-h100.toml"], 19u * 4u);  // the published alphas 1e-3 .. 1e3 at h = 100
  EXPECT_EQ(sizes["paper-b.toml"], 2u * 3u);
  EXPECT_EQ(sizes["paper-a-variance.toml"], 2u * 3u * 6u);
  EXPECT_EQ(sizes["paper-a-l2.toml"], 7u * 2u * 3u);
  // Setup B: the CNN under the stochastic dynamics, every run with the spec's fixed options.
  for (const auto& c : lf::parse_sweep_spec(std::string(LAZYFEAT_SOURCE_DIR) + "/examples/setup-b-cnn.toml")) {
    EXPECT_EQ(c.arch, "cnn");
    EXPECT_EQ(c.act, "relu");
    EXPECT_EQ(c.pca, 0);
    EXPECT_EQ(c.ptr, 5000);
    EXPECT_EQ(c.pte, 50000);
    EXPECT_DOUBLE_EQ(c.tau, 10.0);
    EXPECT_DOUBLE_EQ(c.temperature, 3e-4);
    EXPECT_EQ(c.batch_max, 64);
  }
  EXPECT_GE(sizes.size(), 7u);
}

// ---- End to end.

TEST(Sweep, RunsTheGridOnceAndSkipsItAfterwards) {
  NEED_TRAINER();
  lft::TempDir tmp;
  std::string spec = write(tmp.file("tiny.toml"), kTiny), db = tmp.file("s.sqlite");
  auto r = lft::run_cli({"sweep", spec, "--db", db, "--json", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["planned"], 6);
  EXPECT_EQ(j["done"], 6);
  EXPECT_EQ(j["skipped"], 0);
  EXPECT_EQ(j["failed"], 0);
  expect_all_converged_once(db, 6);
  r = lft::run_cli({"sweep", spec, "--db", db, "--json", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.err;
  j = json::parse(lft::last_line(r.out));
  EXPECT_EQ(j, json({{"planned", 0}, {"done", 0}, {"resumed", 0}, {"waited", 0}, {"left_running", 0}, {"skipped", 6},
                     {"failed", 0}, {"total", 6}, {"interrupted", 0}, {"failed_ids", json::array()},
                     {"left_running_ids", json::array()}}));
  // runs --json: id, status, config and the summary fields of train --json.
  auto list = lft::run_cli({"runs", "--db", db, "--json", "--where", "sqrt_h_alpha > 5"});
  ASSERT_EQ(list.status, 0) << list.err;
  auto arr = json::parse(lft::last_line(list.out));
  ASSERT_EQ(arr.size(), 3u);
  for (const auto& o : arr) {
    EXPECT_EQ(o["status"], "converged");
    EXPECT_NEAR(o["config"]["sqrt_h_alpha"].get<double>(), 10.0, 1e-9);
    EXPECT_EQ(o["train_loss"], 0.0);
    EXPECT_GT(o["test_err"].get<double>(), 0.05);
    EXPECT_LT(o["test_err"].get<double>(), 0.4);
    EXPECT_GT(o["t2"].get<double>(), 0.0);
    EXPECT_GT(o["steps"].get<int64_t>(), 100);
  }
}

TEST(Sweep, SigkillMidFlightThenRestartFinishesEveryRunOnce) {
  NEED_TRAINER();
  lft::TempDir tmp;
  std::string spec = write(tmp.file("slow.toml"), kSlow), db = tmp.file("s.sqlite");
  pid_t pid = start({lft::binary(), "sweep", spec, "--db", db, "--jobs", "2", "--state-every", "0.3"},
                    tmp.file("out1"), tmp.file("err1"), /*new_group=*/true);
  ASSERT_GT(pid, 0);
  // Wait until two runs are in flight and at least one has saved a state.
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(90)) {
    if (count(db, "SELECT count(*) FROM runs WHERE status = 'running'") == 2 &&
        count(db, "SELECT count(*) FROM states") >= 1)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'running'"), 2) << slurp(tmp.file("err1"));
  kill(-pid, SIGKILL);  // the whole process group: the sweep and its workers
  wait_exit(pid);
  int64_t converged_before = count(db, "SELECT count(*) FROM runs WHERE status = 'converged'");
  EXPECT_LT(converged_before, 6);

  auto r = lft::run_cli({"sweep", spec, "--db", db, "--jobs", "2", "--json", "--state-every", "0.3"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["planned"], 0);
  EXPECT_EQ(j["done"].get<int64_t>(), 6 - converged_before);
  EXPECT_EQ(j["skipped"].get<int64_t>(), converged_before);
  expect_all_converged_once(db, 6);
  // The runs in flight at the kill (two, unless one ended just before it) ran again, once.
  EXPECT_GE(count(db, "SELECT count(*) FROM runs WHERE attempts = 2"), 1) << "the killed runs ran again";
  EXPECT_LE(count(db, "SELECT count(*) FROM runs WHERE attempts = 2"), 2);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE attempts > 2"), 0);
  EXPECT_NE(r.err.find("resumed"), std::string::npos) << "at least one run resumed from its state\n" << r.err;
}

TEST(Sweep, InterruptedRunResumesToTheSameNumbers) {
  NEED_TRAINER();
  lft::TempDir tmp;
  std::vector<std::string> run = {"train", "--ptr", "100", "--pte", "200", "--h", "8", "--L", "2",
                                  "--sqrt-h-alpha", "3", "--df-min", "1e-2", "--df-max", "1",
                                  "--seed-init", "7", "--quiet", "--json"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = run;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  auto full = lft::run_cli(with({"--db", tmp.file("b.sqlite")}));
  ASSERT_EQ(full.status, 0) << full.err;
  auto jb = json::parse(lft::last_line(full.out));
  ASSERT_EQ(jb["status"], "converged");
  ASSERT_GT(jb["steps"].get<int64_t>(), 600);

  auto part = lft::run_cli(with({"--db", tmp.file("a.sqlite"), "--max-steps", "500"}));
  ASSERT_EQ(part.status, 0) << part.err;
  auto ja = json::parse(lft::last_line(part.out));
  EXPECT_EQ(ja["status"], "stopped");
  EXPECT_EQ(ja["steps"], 500);
  EXPECT_EQ(count(tmp.file("a.sqlite"), "SELECT count(*) FROM states"), 1);
  auto res = lft::run_cli(with({"--db", tmp.file("a.sqlite"), "--resume"}));
  ASSERT_EQ(res.status, 0) << res.err;
  ja = json::parse(lft::last_line(res.out));
  EXPECT_EQ(ja["status"], "converged");
  EXPECT_EQ(ja["run_id"], 1);
  for (const char* k : {"steps", "t", "t1", "t2", "train_loss", "test_err", "weight_change", "output_norm", "f_norm"})
    EXPECT_EQ(ja[k], jb[k]) << k;
  // The stored series and outputs are identical too (wall clock aside).
  const std::string cols = "step, t, dt, train_loss, train_err, test_err, unsatisfied, weight_change, output_norm";
  auto ca = query(tmp.file("a.sqlite"), "SELECT " + cols + " FROM checkpoints ORDER BY step");
  auto cb = query(tmp.file("b.sqlite"), "SELECT " + cols + " FROM checkpoints ORDER BY step");
  EXPECT_GT(ca.size(), 20u);
  EXPECT_EQ(ca, cb);
  auto oa = query(tmp.file("a.sqlite"), "SELECT hex(f_delta), hex(f0), hex(y) FROM outputs");
  auto ob = query(tmp.file("b.sqlite"), "SELECT hex(f_delta), hex(f0), hex(y) FROM outputs");
  ASSERT_EQ(oa.size(), 1u);
  EXPECT_EQ(oa, ob);
  // The same through a sweep: a spec with a step budget stops the run; the spec without it
  // resumes the stopped run from its state to the same numbers.
  std::string db = tmp.file("c.sqlite");
  std::string base = "[fixed]\nptr = 100\npte = 200\nL = 2\nh = 8\ndf-min = 1e-2\ndf-max = 1.0\n"
                     "sqrt-h-alpha = 3\n";
  std::string capped = write(tmp.file("capped.toml"), base + "max-steps = 400\n[axes]\nseed-init = [7]\n");
  std::string open = write(tmp.file("open.toml"), base + "[axes]\nseed-init = [7]\n");
  auto r = lft::run_cli({"sweep", capped, "--db", db, "--json", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(query(db, "SELECT status, steps FROM runs")[0], (std::vector<std::string>{"stopped", "400"}));
  r = lft::run_cli({"sweep", open, "--db", db, "--json", "--quiet"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(lft::last_line(r.out))["done"], 1);
  EXPECT_EQ(query(db, "SELECT status, steps, test_err, t2 FROM runs")[0],
            query(tmp.file("b.sqlite"), "SELECT status, steps, test_err, t2 FROM runs")[0]);
  EXPECT_EQ(query(db, "SELECT " + cols + " FROM checkpoints ORDER BY step"), cb);

  // A converged config is not run again: the stored result comes back.
  auto again = lft::run_cli(with({"--db", tmp.file("a.sqlite"), "--resume"}));
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(json::parse(lft::last_line(again.out))["steps"], jb["steps"]);
  EXPECT_EQ(count(tmp.file("a.sqlite"), "SELECT attempts FROM runs"), 2);
}

TEST(Sweep, TwoSweepsAtOnceNeverRunAConfigTwice) {
  NEED_TRAINER();
  lft::TempDir tmp;
  std::string spec = write(tmp.file("tiny.toml"), kTiny), db = tmp.file("s.sqlite");
  pid_t a = start({lft::binary(), "sweep", spec, "--db", db, "--json", "--quiet"}, tmp.file("oa"), tmp.file("ea"), false);
  pid_t b = start({lft::binary(), "sweep", spec, "--db", db, "--json", "--quiet"}, tmp.file("ob"), tmp.file("eb"), false);
  ASSERT_EQ(wait_exit(a), 0) << slurp(tmp.file("ea"));
  ASSERT_EQ(wait_exit(b), 0) << slurp(tmp.file("eb"));
  auto ja = json::parse(lft::last_line(slurp(tmp.file("oa"))));
  auto jb = json::parse(lft::last_line(slurp(tmp.file("ob"))));
  EXPECT_EQ(ja["planned"].get<int64_t>() + jb["planned"].get<int64_t>(), 6);
  EXPECT_EQ(ja["done"].get<int64_t>() + jb["done"].get<int64_t>(), 6);
  // Each waited for the other's runs (they were running in a live process), then saw them done.
  EXPECT_EQ(ja["done"].get<int64_t>() + ja["waited"].get<int64_t>() + ja["skipped"].get<int64_t>(), 6);
  EXPECT_EQ(jb["done"].get<int64_t>() + jb["waited"].get<int64_t>() + jb["skipped"].get<int64_t>(), 6);
  EXPECT_EQ(ja["left_running"], 0);
  EXPECT_EQ(jb["left_running"], 0);
  expect_all_converged_once(db, 6);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE attempts = 1"), 6) << "no configuration ran twice";
}

TEST(Sweep, CtrlCPutsRunningRunsBackToPlanned) {
  NEED_TRAINER();
  lft::TempDir tmp;
  std::string spec = write(tmp.file("slow.toml"), kSlow), db = tmp.file("s.sqlite");
  pid_t pid = start({lft::binary(), "sweep", spec, "--db", db, "--json"}, tmp.file("o"), tmp.file("e"), true);
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(90) &&
         count(db, "SELECT count(*) FROM checkpoints") < 30)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(-pid, SIGINT);
  int status = wait_exit(pid);
  EXPECT_EQ(status, 130) << slurp(tmp.file("e"));
  auto j = json::parse(lft::last_line(slurp(tmp.file("o"))));
  EXPECT_EQ(j["interrupted"], 1);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'running'"), 0);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'planned'"), 6 - j["done"].get<int64_t>());
  EXPECT_EQ(count(db, "SELECT count(*) FROM states"), 1) << "the interrupted run saved its state";
}

TEST(Sweep, MpirunCompletesASmallGrid) {
  NEED_TRAINER();
  ASSERT_EQ(system("command -v mpirun > /dev/null 2>&1"), 0)
      << "mpirun not found in PATH: scripts/setup.sh installs it (Debian's openmpi-bin)";
  lft::TempDir tmp;
  std::string spec = write(tmp.file("tiny.toml"), kTiny), db = tmp.file("s.sqlite");
  pid_t pid = start({"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3", lft::binary(), "sweep", spec,
                     "--db", db, "--json"},
                    tmp.file("o"), tmp.file("e"), true);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(wait_exit(pid), 0) << slurp(tmp.file("e"));
  auto j = json::parse(lft::last_line(slurp(tmp.file("o"))));
  EXPECT_EQ(j["planned"], 6);
  EXPECT_EQ(j["done"], 6);
  EXPECT_EQ(j["failed"], 0);
  expect_all_converged_once(db, 6);
  // Same numbers as a plain run of the same config.
  auto plain = lft::run_cli({"train", "--ptr", "100", "--pte", "200", "--h", "8", "--L", "2", "--sqrt-h-alpha", "10",
                             "--df-min", "1e-2", "--df-max", "1", "--seed-init", "2", "--quiet", "--json"});
  ASSERT_EQ(plain.status, 0) << plain.err;
  auto jp = json::parse(lft::last_line(plain.out));
  auto row = query(db, "SELECT steps, test_err FROM runs WHERE seed_init = 2 AND sqrt_h_alpha > 5");
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0], std::to_string(jp["steps"].get<int64_t>()));
  EXPECT_DOUBLE_EQ(std::stod(row[0][1]), jp["test_err"].get<double>());
}

// `mpirun -np 2 ... --ensemble 3`: the one worker rank trains the six runs as two ensembles of
// three; every run once, converged, with the rows of a plain sweep that trained each run alone
// (on two threads, where an MPI rank bound to one core has one: the numbers do not depend on it).
TEST(Sweep, MpirunEnsemblesGiveTheRunsAlone) {
  NEED_TRAINER();
  ASSERT_EQ(system("command -v mpirun > /dev/null 2>&1"), 0)
      << "mpirun not found in PATH: scripts/setup.sh installs it (Debian's openmpi-bin)";
  lft::TempDir tmp;
  std::string spec = write(tmp.file("tiny.toml"), kTiny), db = tmp.file("m.sqlite"), alone = tmp.file("a.sqlite");
  pid_t pid = start({"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", lft::binary(), "sweep", spec,
                     "--db", db, "--ensemble", "3", "--json"},
                    tmp.file("o"), tmp.file("e"), true);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(wait_exit(pid), 0) << slurp(tmp.file("e"));
  const std::string err = slurp(tmp.file("e"));
  size_t starts = 0;
  for (size_t at = err.find("in an ensemble of 3"); at != std::string::npos; at = err.find("in an ensemble of 3", at + 1))
    ++starts;
  EXPECT_EQ(starts, 6u) << err;
  auto j = json::parse(lft::last_line(slurp(tmp.file("o"))));
  EXPECT_EQ(j["done"], 6);
  EXPECT_EQ(j["failed"], 0);
  expect_all_converged_once(db, 6);
  auto plain = lft::run_cli({"sweep", spec, "--db", alone, "--json"});
  ASSERT_EQ(plain.status, 0) << plain.err;
  const char* rows = "SELECT seed_init, sqrt_h_alpha, status, steps, t2, test_err, train_loss FROM runs "
                     "ORDER BY seed_init, sqrt_h_alpha";
  const auto a = query(db, rows), b = query(alone, rows);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(a, b);
  EXPECT_EQ(query(db, "SELECT run_id, step, train_loss, test_err FROM checkpoints ORDER BY run_id, step"),
            query(alone, "SELECT run_id, step, train_loss, test_err FROM checkpoints ORDER BY run_id, step"));
}

}  // namespace
