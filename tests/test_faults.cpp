// Sweeps under faults (issue 13): SIGKILL storms at random moments on the sweep's main process
// alone, on one worker alone, on the whole process group (and on an MPI rank, on mpirun); after
// each storm a restart finishes every run exactly once, converged, with numbers identical to an
// uninterrupted sweep, and no process of the killed sweeps is left alive. Also: a restart that
// finds runs held by a live process waits for them (or, with --no-wait, reports them and exits
// 3), and `train --db --resume` after a SIGKILL gives the uninterrupted run's numbers.
// The kill moments come from a fixed-seed generator (printed), so a failure can be replayed.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/sysinfo.h"
#include "dynamics/momentum.h"
#include "testing.h"

namespace {

using json = nlohmann::json;
using lft::count;
using lft::query;
using lft::slurp;
using lft::start;
using lft::wait_exit;
using Clock = std::chrono::steady_clock;

// Four runs of 7e4 to 9e4 steps each (about 2 s of training after a few seconds of start-up):
// long enough to be caught in flight, short enough for several storms.
const char* kSpec =
    "[fixed]\nptr = 100\npte = 200\nL = 2\nh = 8\ndf-min = 1e-4\ndf-max = 0.01\n"
    "[axes]\nsqrt-h-alpha = [1, 10]\nseed-init = [0, 1]\n";
constexpr int64_t kRuns = 4;

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

// One write statement (the test standing in for another process).
void exec(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "") << ": " << sql;
  sqlite3_free(err);
  sqlite3_close(db);
}


// ---- Processes, from /proc.

struct Proc {
  int pid, ppid, pgrp;
  char state;
  std::string comm;
};

std::vector<Proc> processes() {
  std::vector<Proc> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string text;
    if (!std::getline(in, text)) continue;
    auto open = text.find('('), close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    Proc p;
    p.pid = pid;
    p.comm = text.substr(open + 1, close - open - 1);
    std::istringstream rest(text.substr(close + 2));
    rest >> p.state >> p.ppid >> p.pgrp;
    out.push_back(p);
  }
  closedir(d);
  return out;
}

// Live (not zombie) processes of process group pgrp.
std::vector<Proc> live_in_group(int pgrp) {
  std::vector<Proc> out;
  for (const auto& p : processes())
    if (p.pgrp == pgrp && p.state != 'Z' && p.state != 'X') out.push_back(p);
  return out;
}

std::vector<int> live_children(int pid) {
  std::vector<int> out;
  for (const auto& p : processes())
    if (p.ppid == pid && p.state != 'Z' && p.state != 'X') out.push_back(p.pid);
  return out;
}

bool alive(int pid) {
  if (kill(pid, 0) != 0) return false;
  for (const auto& p : processes())
    if (p.pid == pid) return p.state != 'Z' && p.state != 'X';
  return false;
}

// Waits up to limit_s for every process of the groups to be gone; returns those still alive.
std::vector<Proc> wait_groups_gone(const std::set<int>& groups, double limit_s) {
  auto t0 = Clock::now();
  for (;;) {
    std::vector<Proc> left;
    for (int g : groups)
      for (const auto& p : live_in_group(g)) left.push_back(p);
    if (left.empty() || std::chrono::duration<double>(Clock::now() - t0).count() > limit_s) return left;
    sleep_s(0.1);
  }
}

std::string describe(const std::vector<Proc>& ps) {
  std::string s;
  for (const auto& p : ps) s += " " + std::to_string(p.pid) + "(" + p.comm + ", ppid " + std::to_string(p.ppid) + ")";
  return s;
}

// ---- The study's numbers.

// Per config: status, steps and the summary numbers; the checkpoint series; the final outputs.
// Wall-clock columns aside, all must be bit-identical to the uninterrupted sweep's.
std::map<std::string, std::vector<std::vector<std::string>>> numbers(const std::string& db) {
  std::map<std::string, std::vector<std::vector<std::string>>> out;
  for (const auto& r : query(db, "SELECT id, config_hash, status, steps, t, t1, t2, train_loss, train_err, test_err, "
                                 "weight_change, output_norm, f_norm FROM runs")) {
    auto& v = out[r[1]];
    v.push_back(std::vector<std::string>(r.begin() + 1, r.end()));
    for (auto c : query(db, "SELECT step, t, dt, train_loss, train_err, test_err, unsatisfied, weight_change, "
                            "output_norm, f_norm FROM checkpoints WHERE run_id = " + r[0] + " ORDER BY step"))
      v.push_back(c);
    for (auto o : query(db, "SELECT hex(f_delta), hex(f0), hex(y) FROM outputs WHERE run_id = " + r[0])) v.push_back(o);
  }
  return out;
}

void expect_all_converged_once(const std::string& db) { lft::expect_all_converged_once(db, kRuns); }

struct Study {
  lft::TempDir tmp;
  std::string spec = write(tmp.file("spec.toml"), kSpec);
  std::string db = tmp.file("s.sqlite");
  int seq = 0;
  std::vector<std::string> sweep_args(int jobs, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {lft::binary(), "sweep", spec, "--db", db, "--jobs", std::to_string(jobs),
                                  "--state-every", "0.2", "--json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // Starts a sweep in its own process group (pgid = its pid); stdout/stderr into files.
  int start_sweep(int jobs, std::vector<std::string> extra = {}) {
    ++seq;
    return start(sweep_args(jobs, std::move(extra)), out(), err(), /*new_group=*/true);
  }
  std::string out() const { return tmp.file("out" + std::to_string(seq)); }
  std::string err() const { return tmp.file("err" + std::to_string(seq)); }
};

// The uninterrupted sweep: its database and its numbers. Made once per build of the binary
// and kept next to it (test_faults_reference-KEY.sqlite, KEY from the spec, the binary's size
// and mtime and the BLAS kernels, which the sweeps' processes inherit: OPENBLAS_CORETYPE changes
// the numbers), since ctest runs each test in a process of its own.
struct Reference {
  Study study;
  std::map<std::string, std::vector<std::vector<std::string>>> numbers;
};
const Reference& reference_study() {
  static Reference ref;
  static bool made = false;
  if (!made) {
    made = true;
    struct stat st {};
    stat(lft::binary().c_str(), &st);
    std::string bin = lft::binary(), dir = bin.substr(0, bin.rfind('/'));
    std::string key = std::to_string(std::hash<std::string>{}(
        std::string(kSpec) + "|" + std::to_string(st.st_size) + "|" + std::to_string(st.st_mtim.tv_sec) + "." +
        std::to_string(st.st_mtim.tv_nsec) + "|" + lf::blas_core()));
    std::string cached = dir + "/test_faults_reference-" + key + ".sqlite";
    if (access(cached.c_str(), R_OK) == 0 && numbers(cached).size() == static_cast<size_t>(kRuns)) {
      exec(cached, "VACUUM INTO '" + ref.study.db + "'");
    } else {
      auto r = lft::run_cli({"sweep", ref.study.spec, "--db", ref.study.db, "--jobs", "2", "--json", "--quiet"});
      EXPECT_EQ(r.status, 0) << r.err;
      auto j = json::parse(lft::last_line(r.out));
      EXPECT_EQ(j["done"], kRuns);
      EXPECT_EQ(count(ref.study.db, "SELECT count(*) FROM runs WHERE status = 'converged'"), kRuns);
      // Older references go; the new one appears whole (rename) for concurrent test processes.
      if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d))
          if (std::string(e->d_name).rfind("test_faults_reference-", 0) == 0) ::remove((dir + "/" + e->d_name).c_str());
        closedir(d);
      }
      std::string part = cached + ".part" + std::to_string(getpid());
      exec(ref.study.db, "VACUUM INTO '" + part + "'");
      std::rename(part.c_str(), cached.c_str());
    }
    ref.numbers = numbers(ref.study.db);
    EXPECT_EQ(ref.numbers.size(), static_cast<size_t>(kRuns));
  }
  return ref;
}
const std::map<std::string, std::vector<std::vector<std::string>>>& reference() { return reference_study().numbers; }
const std::string& reference_db() { return reference_study().study.db; }

// The restart after a storm: finishes what is left and exits 0; then the study equals the
// uninterrupted one and no process of the killed sweeps (their process groups) is alive.
void restart_and_check(Study& s, const std::set<int>& killed_groups, int64_t kills,
                       std::vector<std::string> extra = {}) {
  int pid = s.start_sweep(2, std::move(extra));
  ASSERT_GT(pid, 0);
  int status = wait_exit(pid);
  ASSERT_EQ(status, 0) << slurp(s.err());
  auto j = json::parse(lft::last_line(slurp(s.out())));
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["left_running"], 0);
  EXPECT_EQ(j["interrupted"], 0);
  EXPECT_EQ(j["total"], kRuns);
  EXPECT_EQ(j["done"].get<int64_t>() + j["waited"].get<int64_t>() + j["skipped"].get<int64_t>(), kRuns) << j;
  EXPECT_LE(j["resumed"].get<int64_t>(), j["done"].get<int64_t>());
  expect_all_converged_once(s.db);
  EXPECT_EQ(numbers(s.db), reference()) << "the numbers differ from an uninterrupted sweep";
  // Killed runs ran again (attempts > 1); no run is attempted more often than there were kills + 1.
  EXPECT_LE(count(s.db, "SELECT max(attempts) FROM runs"), kills + 1);
  auto left = wait_groups_gone(killed_groups, 5);
  EXPECT_TRUE(left.empty()) << "processes of the killed sweeps still alive:" << describe(left);
}

// Kills per storm: 3, or $LAZYFEAT_FAULT_KILLS for a longer soak (e.g. 20).
int storm_kills() {
  const char* e = std::getenv("LAZYFEAT_FAULT_KILLS");
  return e && std::atoi(e) > 0 ? std::atoi(e) : 3;
}

std::mt19937_64 storm_rng(const char* name) {
  uint64_t seed = std::hash<std::string>{}(name) % 100000;
  std::cerr << "[ storm " << name << " ] kill moments from seed " << seed << "\n";
  return std::mt19937_64(seed);
}

double uniform(std::mt19937_64& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

// ---- The storms.

// SIGKILL of the sweep's main process alone, at a random moment, storm_kills() times; each time the sweep is
// started again at once (its orphaned workers may still be stopping: the new sweep waits for
// them). The workers of every killed sweep stop within their grace period.
TEST(Faults, KillingTheMainProcessStopsItsWorkersAndARestartFinishes) {
  reference();
  Study s;
  auto rng = storm_rng("main");
  std::set<int> groups;
  const int kills = storm_kills();
  for (int k = 0; k < kills; ++k) {
    int pid = s.start_sweep(2);
    ASSERT_GT(pid, 0);
    groups.insert(pid);
    sleep_s(uniform(rng, 0.5, 6.0));
    if (!alive(pid)) {  // finished already: nothing left to kill
      wait_exit(pid);
      break;
    }
    auto workers = live_children(pid);
    kill(pid, SIGKILL);
    EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
    std::cerr << "[ storm main ] kill " << k << ": sweep " << pid << " with " << workers.size() << " workers\n";
  }
  // Every orphaned worker ends by itself: SIGTERM at the sweep's death, SIGALRM at the latest
  // kParentGoneGrace_s (20 s) later.
  auto t0 = Clock::now();
  auto left = wait_groups_gone(groups, 25);
  EXPECT_TRUE(left.empty()) << "orphaned workers still alive 25 s after their sweep died:" << describe(left);
  std::cerr << "[ storm main ] orphans gone " << std::chrono::duration<double>(Clock::now() - t0).count()
            << " s after the last kill\n";
  // An orphan put its run back to planned (stopped) or left it running under its dead pid
  // (ended by SIGALRM while still loading its data): either way no live process holds a run.
  for (const auto& row : query(s.db, "SELECT id, pid FROM runs WHERE status = 'running'"))
    EXPECT_FALSE(alive(std::stoi(row[1]))) << "run " << row[0] << " held by live pid " << row[1];
  restart_and_check(s, groups, kills);
}

// SIGKILL of one worker (chosen at random among those in the middle of a run, at a random moment
// up to 1 s after its run saved a state), storm_kills() times, while the sweep runs: the sweep takes the
// killed worker's run over itself, resuming it from its state, and finishes the study.
TEST(Faults, KillingOneWorkerAtATimeTheSweepTakesItsRunOver) {
  reference();
  Study s;
  auto rng = storm_rng("worker");
  int pid = s.start_sweep(2);
  ASSERT_GT(pid, 0);
  int killed = 0;
  std::set<int> killed_pids;  // a killed worker may look alive for a moment (and its row keeps its pid)
  for (int k = 0; k < storm_kills() && alive(pid); ++k) {
    // A worker in the middle of its run (its run saved a state), then a random moment later.
    auto t0 = Clock::now();
    int victim = -1;
    while (victim < 0 && alive(pid) && Clock::now() - t0 < std::chrono::seconds(60)) {
      auto workers = live_children(pid);
      std::shuffle(workers.begin(), workers.end(), rng);
      for (int w : workers)
        if (!killed_pids.count(w) && count(s.db, "SELECT count(*) FROM runs JOIN states ON states.run_id = runs.id WHERE runs.status = "
                        "'running' AND runs.pid = " + std::to_string(w)) > 0) {
          victim = w;
          break;
        }
      if (victim < 0) sleep_s(0.05);
    }
    if (victim < 0) break;
    sleep_s(uniform(rng, 0.0, 1.0));
    kill(victim, SIGKILL);
    killed_pids.insert(victim);
    ++killed;
    std::cerr << "[ storm worker ] kill " << k << ": worker " << victim << " of sweep " << pid << "\n";
  }
  EXPECT_GE(killed, std::min(2, storm_kills())) << "the sweep ended before the storm";
  int status = wait_exit(pid);
  EXPECT_EQ(status, 0) << slurp(s.err());
  auto j = json::parse(lft::last_line(slurp(s.out())));
  EXPECT_EQ(j["done"].get<int64_t>() + j["skipped"].get<int64_t>(), kRuns) << j;
  EXPECT_EQ(j["failed"], 0);
  EXPECT_NE(slurp(s.err()).find("ended abnormally (exit status 137) in run "), std::string::npos) << slurp(s.err());
  // The killed workers' runs resumed from their states.
  EXPECT_GE(j["resumed"].get<int64_t>(), 1) << j;
  restart_and_check(s, {pid}, killed);
  auto again = json::parse(lft::last_line(slurp(s.out())));
  EXPECT_EQ(again["skipped"], kRuns) << "the sweep itself had finished every run";
}

// A storm of SIGKILLs of the whole process group of sweeps started with `jobs` workers and the
// extra options, at moments in [lo_s, 6] s; the groups killed, for restart_and_check.
std::set<int> group_storm(Study& s, const char* name, int jobs, const std::vector<std::string>& extra, double lo_s) {
  auto rng = storm_rng(name);
  std::set<int> groups;
  for (int k = 0; k < storm_kills(); ++k) {
    int pid = s.start_sweep(jobs, extra);
    EXPECT_GT(pid, 0);
    if (pid <= 0) break;
    groups.insert(pid);
    sleep_s(uniform(rng, lo_s, 6.0));
    kill(-pid, SIGKILL);
    wait_exit(pid);
    auto left = wait_groups_gone({pid}, 2);
    EXPECT_TRUE(left.empty()) << describe(left);
    std::cerr << "[ storm " << name << " ] kill " << k << ": group " << pid << "\n";
  }
  return groups;
}

// SIGKILL of the whole process group at random moments, storm_kills() times, then a restart.
TEST(Faults, KillingTheWholeGroupThenARestartFinishes) {
  reference();
  Study s;
  std::set<int> groups = group_storm(s, "group", 2, {}, 0.5);
  restart_and_check(s, groups, storm_kills());
}

// `--ensemble 4`: the four runs of the grid differ in seed and alpha only, so one worker trains
// them as one ensemble. SIGKILL of the whole group at random moments, then a restart (an
// ensemble again, from the four saved states): every run once, converged, and bit for bit the
// numbers of the uninterrupted sweep that trained each run alone.
TEST(Faults, EnsembleSweepKilledThenRestartedGivesTheRunsAlone) {
  reference();
  Study s;
  std::set<int> groups = group_storm(s, "ensemble", 1, {"--ensemble", "4"}, 1.0);
  restart_and_check(s, groups, storm_kills(), {"--ensemble", "4"});
  std::string all_err;
  for (int i = 1; i <= s.seq; ++i) all_err += slurp(s.tmp.file("err" + std::to_string(i)));
  EXPECT_NE(all_err.find("in an ensemble of 4"), std::string::npos) << "no sweep trained the four runs as one ensemble";
}

// Under `mpirun -np 3` (sweep options extra): SIGKILL of a worker rank in the middle of its run,
// then SIGKILL of mpirun itself, each at a random moment; no rank outlives either, and a restart
// under mpirun finishes the study with the uninterrupted numbers. err_all: the calls' stderr.
void mpirun_storm(const char* name, const std::vector<std::string>& extra, std::string* err_all = nullptr) {
  ASSERT_EQ(system("command -v mpirun > /dev/null 2>&1"), 0) << "mpirun (openmpi-bin) is part of the set-up";
  reference();
  Study s;
  auto rng = storm_rng(name);
  auto mpirun = [&] {
    ++s.seq;
    std::vector<std::string> a = {"mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "3", lft::binary(),
                                  "sweep", s.spec, "--db", s.db, "--state-every", "0.2", "--json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return start(a, s.out(), s.err(), /*new_group=*/true);
  };
  std::set<int> ranks_seen;
  for (const char* victim : {"rank", "mpirun"}) {
    int pid = mpirun();
    ASSERT_GT(pid, 0);
    // Ranks run in process groups of their own: follow them by pid.
    auto t0 = Clock::now();
    std::vector<int> ranks;
    int busy = -1;  // a worker rank (not rank 0, which holds the claims) with a run in flight
    while (busy < 0 && alive(pid) && Clock::now() - t0 < std::chrono::seconds(90)) {
      ranks = live_children(pid);
      auto holder = query(s.db, "SELECT pid FROM runs WHERE status = 'running' AND id IN (SELECT run_id FROM states)");
      if (!holder.empty() && ranks.size() == 3)
        for (int r : ranks)
          if (r != std::stoi(holder[0][0])) busy = r;
      if (busy < 0) sleep_s(0.05);
    }
    ASSERT_GT(busy, 0) << slurp(s.err());
    ranks_seen.insert(ranks.begin(), ranks.end());
    sleep_s(uniform(rng, 0.0, 1.0));
    kill(std::string(victim) == "rank" ? busy : pid, SIGKILL);
    std::cerr << "[ storm mpi ] killed the " << victim << " (mpirun " << pid << ", ranks";
    for (int r : ranks) std::cerr << " " << r;
    std::cerr << ")\n";
    EXPECT_NE(wait_exit(pid), 0);
    // No rank outlives the killed one or the killed launcher.
    t0 = Clock::now();
    std::vector<int> left;
    do {
      left.clear();
      for (int r : ranks)
        if (alive(r)) left.push_back(r);
      if (!left.empty()) sleep_s(0.1);
    } while (!left.empty() && Clock::now() - t0 < std::chrono::seconds(40));
    EXPECT_TRUE(left.empty()) << left.size() << " ranks still alive 40 s after the " << victim << " was killed";
    std::cerr << "[ storm mpi ] ranks gone " << std::chrono::duration<double>(Clock::now() - t0).count()
              << " s after the kill\n";
  }
  EXPECT_LT(count(s.db, "SELECT count(*) FROM runs WHERE status = 'converged'"), kRuns);
  int pid = mpirun();
  ASSERT_EQ(wait_exit(pid), 0) << slurp(s.err());
  auto j = json::parse(lft::last_line(slurp(s.out())));
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["left_running"], 0);
  EXPECT_EQ(j["done"].get<int64_t>() + j["skipped"].get<int64_t>(), kRuns) << j;
  EXPECT_GE(j["resumed"].get<int64_t>(), 1) << "a killed run resumed from its state: " << j;
  expect_all_converged_once(s.db);
  EXPECT_EQ(numbers(s.db), reference()) << "the numbers differ from an uninterrupted sweep";
  for (int r : ranks_seen) EXPECT_FALSE(alive(r)) << "rank " << r;
  if (err_all)
    for (int i = 1; i <= s.seq; ++i) *err_all += slurp(s.tmp.file("err" + std::to_string(i)));
}

TEST(Faults, MpirunKilledRankAndKilledMpirunThenARestartFinishes) { mpirun_storm("mpi", {}); }

// The same with `--ensemble 4`: a worker rank trains the grid's four runs as one ensemble, from
// their saved states after each kill; the numbers are those of the runs trained alone.
TEST(Faults, MpirunEnsembleKilledThenARestartFinishes) {
  std::string err;
  mpirun_storm("mpi-ensemble", {"--ensemble", "4"}, &err);
  EXPECT_NE(err.find("in an ensemble of 4"), std::string::npos) << "no rank trained the four runs as one ensemble";
}

// Runs held by live processes that are not part of this sweep are waited for, with progress on
// stderr; with --no-wait they are reported as left running and the exit status is 3 (never
// "skipped" with 0). The holders are simulated in the database (a stopped real process would
// hold SQLite's locks): run 3 by a live process on this host (this test's), run 4 by a process
// on another host with a fresh heartbeat; the study is otherwise the finished reference.
TEST(Faults, RunsHeldElsewhereAreWaitedForOrReported) {
  reference();
  Study s;
  exec(reference_db(), "VACUUM INTO '" + s.db + "'");  // a copy of the finished study
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  auto hold = [&](int id, const std::string& h, int pid) {
    exec(s.db, "UPDATE runs SET status = 'running', host = '" + h + "', pid = " + std::to_string(pid) +
                   ", heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = " + std::to_string(id));
  };
  hold(3, host, getpid());
  hold(4, "another-host", 4242);

  auto r = lft::run_cli({"sweep", s.spec, "--db", s.db, "--jobs", "2", "--json", "--no-wait"});
  EXPECT_EQ(r.status, 3) << r.err;
  auto j = json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["done"], 0);
  EXPECT_EQ(j["left_running"], 2);
  EXPECT_EQ(j["left_running_ids"], json::array({3, 4}));
  EXPECT_EQ(j["skipped"], kRuns - 2);
  EXPECT_EQ(j["waited"], 0);
  EXPECT_NE(r.err.find("0 done (0 resumed), 0 waited for, 2 left running elsewhere, 2 skipped, 0 failed of 4"),
            std::string::npos) << r.err;
  EXPECT_NE(r.err.find("run 3 (pid " + std::to_string(getpid()) + " on " + host), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("run 4 (pid 4242 on another-host"), std::string::npos) << r.err;
  EXPECT_EQ(count(s.db, "SELECT count(*) FROM runs WHERE status = 'running'"), 2) << "left alone";

  // Without --no-wait the sweep waits; the holders finish one after the other meanwhile.
  int sweep = s.start_sweep(2);
  auto t0 = Clock::now();
  while (slurp(s.err()).find("waiting for 2 runs held by other live processes") == std::string::npos &&
         Clock::now() - t0 < std::chrono::seconds(60))
    sleep_s(0.05);
  EXPECT_NE(slurp(s.err()).find("run 4 (pid 4242 on another-host"), std::string::npos) << slurp(s.err());
  sleep_s(2.5);
  EXPECT_TRUE(alive(sweep)) << "still waiting\n" << slurp(s.err());
  exec(s.db, "UPDATE runs SET status = 'converged' WHERE id = 3");
  t0 = Clock::now();
  while (slurp(s.err()).find("waiting for 1 run held") == std::string::npos && Clock::now() - t0 < std::chrono::seconds(30))
    sleep_s(0.05);
  EXPECT_TRUE(alive(sweep)) << "still waiting for run 4\n" << slurp(s.err());
  exec(s.db, "UPDATE runs SET status = 'converged' WHERE id = 4");
  EXPECT_EQ(wait_exit(sweep), 0) << slurp(s.err());
  j = json::parse(lft::last_line(slurp(s.out())));
  EXPECT_EQ(j["waited"], 2) << j;
  EXPECT_EQ(j["done"], 0);
  EXPECT_EQ(j["skipped"], kRuns - 2);
  EXPECT_EQ(j["left_running"], 0);
  EXPECT_EQ(numbers(s.db), reference());

  // Holders on this host that are gone are taken over at once, from the runs' saved states,
  // with the same numbers: run 2's pid exists no more; run 1's pid is now another process, one
  // that started after the holder's last heartbeat (30 s ago).
  exec(s.db, "UPDATE runs SET status = 'running', pid = 2147483000, host = '" + std::string(host) +
                 "', heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = 2");
  int reused = start({"sleep", "120"}, s.tmp.file("sleep.out"), s.tmp.file("sleep.err"));
  ASSERT_GT(reused, 0);
  exec(s.db, "UPDATE runs SET status = 'running', pid = " + std::to_string(reused) + ", host = '" + host +
                 "', heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ','now', '-30 seconds') WHERE id = 1");
  r = lft::run_cli({"sweep", s.spec, "--db", s.db, "--json", "--no-wait"});
  kill(reused, SIGKILL);
  wait_exit(reused);
  EXPECT_EQ(r.status, 0) << r.err;
  j = json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["done"], 2) << j;
  EXPECT_EQ(j["resumed"], 2) << j;
  EXPECT_EQ(j["left_running"], 0);
  EXPECT_EQ(numbers(s.db), reference());
}

// `train --db --resume` after a SIGKILL (once its first state was saved) continues from the
// state: the stored summary, checkpoints and outputs equal an uninterrupted run's.
TEST(Faults, TrainResumeAfterSigkillGivesTheUninterruptedNumbers) {
  lft::TempDir tmp;
  std::vector<std::string> run = {lft::binary(), "train", "--ptr", "100", "--pte", "200", "--h", "8", "--L", "2",
                                  "--sqrt-h-alpha", "3", "--df-min", "1e-4", "--df-max", "0.01", "--seed-init", "7",
                                  "--quiet", "--json", "--state-every", "0.2"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = run;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  std::string full = tmp.file("full.sqlite"), db = tmp.file("killed.sqlite");
  int pid = start(with({"--db", full}), tmp.file("o0"), tmp.file("e0"));
  ASSERT_EQ(wait_exit(pid), 0) << slurp(tmp.file("e0"));
  auto jfull = json::parse(lft::last_line(slurp(tmp.file("o0"))));
  ASSERT_EQ(jfull["status"], "converged");

  pid = start(with({"--db", db}), tmp.file("o1"), tmp.file("e1"));
  auto t0 = Clock::now();
  while (count(db, "SELECT count(*) FROM states") < 1 && Clock::now() - t0 < std::chrono::seconds(60)) sleep_s(0.02);
  sleep_s(0.3);  // a little further than the first state
  kill(pid, SIGKILL);
  EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  ASSERT_EQ(query(db, "SELECT status FROM runs")[0][0], "running") << "killed mid-run";
  int64_t saved_step = count(db, "SELECT step FROM states");
  int64_t stored = count(db, "SELECT max(step) FROM checkpoints");
  EXPECT_GT(stored, 0);

  pid = start(with({"--db", db, "--resume"}), tmp.file("o2"), tmp.file("e2"));
  ASSERT_EQ(wait_exit(pid), 0) << slurp(tmp.file("e2"));
  auto j = json::parse(lft::last_line(slurp(tmp.file("o2"))));
  EXPECT_EQ(j["status"], "converged");
  for (const char* k : {"steps", "t", "t1", "t2", "train_loss", "test_err", "weight_change", "output_norm", "f_norm"})
    EXPECT_EQ(j[k], jfull[k]) << k;
  EXPECT_EQ(count(db, "SELECT attempts FROM runs"), 2);
  // It resumed: the state it started from was past step 0.
  EXPECT_GT(saved_step, 0) << "the first state was saved mid-run";
  EXPECT_EQ(numbers(db), numbers(full));
}

}  // namespace
