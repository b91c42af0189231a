// Sweeps (sweep.h): the TOML spec's grid, planning into the study database, the worker loop that
// claims runs atomically, and the local fan-out to N worker processes (fork/exec of this binary
// as `lazyfeat sweep --worker`), with Ctrl-C putting running runs back to planned.
// Deliberately not: MPI (mpi.cpp), storage details (store/).
#include "sweep/sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <toml.hpp>

#include "common/error.h"
#include "common/progress.h"
#include "experiment/train.h"
#include "store/store.h"
#include "sweep/runner.h"

extern char** environ;

namespace lf {

std::atomic<bool> g_stop_requested{false};

namespace {

// The parent a worker must not outlive (die_with_parent, watch_parent); 0: none.
std::atomic<long> g_parent{0};
volatile sig_atomic_t g_grace_armed = 0;

extern "C" void on_stop_signal(int) {
  g_stop_requested.store(true);
  // Orphaned: stop like Ctrl-C, but end for sure kParentGoneGrace_s later (SIGALRM's default
  // action terminates; the run's last saved state makes that safe).
  long p = g_parent.load();
  if (p > 0 && getppid() != p && !g_grace_armed) {
    g_grace_armed = 1;
    alarm(kParentGoneGrace_s);
  }
}

using Table = toml::basic_value<toml::discard_comments, std::map, std::vector>;

std::string fmt_g(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// A TOML scalar as the text set_run_option expects.
std::string scalar_text(const Table& v, const std::string& where) {
  if (v.is_boolean()) return v.as_boolean() ? "true" : "false";
  if (v.is_integer()) return std::to_string(v.as_integer());
  if (v.is_floating()) return fmt_g(v.as_floating());
  if (v.is_string()) return v.as_string().str;
  throw UsageError(where + ": expected a number, a string or true/false");
}

double number(const Table& v, const std::string& where) {
  if (v.is_integer()) return static_cast<double>(v.as_integer());
  if (v.is_floating()) return v.as_floating();
  throw UsageError(where + ": expected a number");
}

// { decades = [LOW, HIGH], mantissas = [M1, M2, ...] }: the values "M e k" for every power of
// ten 10^k from LOW to HIGH (HIGH itself only with mantissa 1), as decimal text, so that each
// value is the double nearest to the decimal literal: the published grids (protocol section 6)
// were typed as 1e-3, 2.2e-3, 4.6e-3, ..., and hash(alpha) of a replay needs those very bits.
std::vector<std::string> mantissa_axis(const Table& v, const std::string& where) {
  const auto& t = v.as_table();
  for (const auto& [k, _] : t)
    if (k != "decades" && k != "mantissas")
      throw UsageError(where + ": unknown key '" + k + "' (expected decades and mantissas)");
  if (!t.count("mantissas")) throw UsageError(where + ": needs mantissas = [M1, M2, ...] with decades");
  const auto& r = t.at("decades");
  if (!r.is_array() || r.as_array().size() != 2) throw UsageError(where + ": decades must be [LOW, HIGH]");
  const double lo = number(r.as_array()[0], where + " decades"), hi = number(r.as_array()[1], where + " decades");
  auto exponent = [&](double x) {
    const double e = std::round(std::log10(x));
    if (!(x > 0) || std::fabs(x / std::pow(10.0, e) - 1) > 1e-12)
      throw UsageError(where + ": decades must be powers of ten, got " + fmt_g(x));
    return static_cast<int>(e);
  };
  const int k0 = exponent(lo), k1 = exponent(hi);
  if (k1 < k0) throw UsageError(where + ": decades needs LOW <= HIGH");
  const auto& ms = t.at("mantissas");
  if (!ms.is_array() || ms.as_array().empty()) throw UsageError(where + ": mantissas must be a non-empty list");
  std::vector<std::string> mant;
  double prev = 0;
  for (const auto& m : ms.as_array()) {
    const double x = number(m, where + " mantissas");
    if (!(x >= 1 && x < 10 && x > prev)) throw UsageError(where + ": mantissas must increase within [1, 10)");
    prev = x;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.15g", x);
    mant.push_back(buf);
  }
  std::vector<std::string> out;
  for (int k = k0; k <= k1; ++k)
    for (size_t i = 0; i < mant.size(); ++i) {
      if (k == k1 && i > 0) break;  // the grid ends at HIGH
      out.push_back(mant[i] + "e" + std::to_string(k));
    }
  return out;
}

std::vector<std::string> axis_values(const std::string& key, const Table& v, const std::string& where) {
  std::vector<std::string> out;
  if (v.is_array()) {
    for (const auto& e : v.as_array()) out.push_back(scalar_text(e, where));
  } else if (v.is_table()) {
    const auto& t = v.as_table();
    if (t.count("decades")) return mantissa_axis(v, where);
    for (const auto& [k, _] : t)
      if (k != "log-range" && k != "per-decade")
        throw UsageError(where + ": unknown key '" + k + "' (expected log-range and per-decade, or decades and mantissas)");
    if (!t.count("log-range") || !t.count("per-decade"))
      throw UsageError(where + ": needs log-range = [LOW, HIGH] and per-decade = K");
    const auto& r = t.at("log-range");
    if (!r.is_array() || r.as_array().size() != 2)
      throw UsageError(where + ": log-range must be [LOW, HIGH]");
    double lo = number(r.as_array()[0], where + " log-range"), hi = number(r.as_array()[1], where + " log-range");
    const auto& k = t.at("per-decade");
    if (!k.is_integer() || k.as_integer() < 1) throw UsageError(where + ": per-decade must be an integer >= 1");
    if (!(lo > 0 && hi >= lo)) throw UsageError(where + ": log-range needs 0 < LOW <= HIGH");
    for (double x : log_range(lo, hi, k.as_integer())) out.push_back(fmt_g(x));
  } else {
    out.push_back(scalar_text(v, where));  // a single value: an axis of one
  }
  if (out.empty()) throw UsageError(where + ": axis '" + key + "' is empty");
  return out;
}

}  // namespace

std::string describe_run(const nlohmann::json& c) {
  std::ostringstream o;
  const std::string arch = c.value("arch", "");
  o << arch << " " << c.value("act", "");
  if (arch == "fc") o << " L=" << c.value("L", 0);  // the cnn and the wrn have fixed depths
  o << " h=" << c.value("h", 0) << " sqrt_h_alpha=" << fmt_num(c.value("sqrt_h_alpha", 0.0))
    << " seed_init=" << c.value("seed_init", uint64_t{0});
  if (c.value("temperature", 0.0) > 0) o << " T=" << fmt_num(c.value("temperature", 0.0));
  return o.str();
}

namespace {

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find the lazyfeat binary (/proc/self/exe)");
  buf[n] = 0;
  return buf;
}

}  // namespace

std::vector<double> log_range(double low, double high, int64_t per_decade) {
  std::vector<double> out;
  double span = std::log10(high / low) * per_decade;
  int64_t n = static_cast<int64_t>(std::floor(span + 1e-9));
  for (int64_t k = 0; k <= n; ++k) {
    double x = low * std::pow(10.0, static_cast<double>(k) / per_decade);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.12g", x);
    out.push_back(std::atof(buf));
  }
  return out;
}

std::vector<RunConfig> parse_sweep_spec_text(const std::string& text, const std::string& name) {
  Table spec;
  try {
    std::istringstream in(text);
    spec = toml::parse<toml::discard_comments, std::map, std::vector>(in, name);
  } catch (const std::exception& e) {
    std::string msg = e.what();
    throw UsageError("malformed sweep spec " + name + ": " + msg.substr(0, msg.find('\n')) +
                     (msg.find('\n') != std::string::npos ? " (" + msg.substr(msg.find('\n') + 1, 200) + ")" : ""));
  }
  if (!spec.is_table()) throw UsageError("malformed sweep spec " + name);
  std::vector<std::pair<std::string, std::string>> fixed;
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  for (const auto& [section, body] : spec.as_table()) {
    if (section != "fixed" && section != "axes")
      throw UsageError("sweep spec " + name + ": unknown section or key '" + section +
                       "' (expected [fixed] and [axes])");
    if (!body.is_table()) throw UsageError("sweep spec " + name + ": '" + section + "' must be a table");
    for (const auto& [key, v] : body.as_table()) {
      std::string where = "sweep spec " + name + " [" + section + "] " + key;
      if (!is_run_option(key)) throw UsageError(where + ": unknown run option '" + key + "'");
      if (section == "fixed") {
        if (v.is_array() || v.is_table())
          throw UsageError(where + ": [fixed] takes one value (put lists under [axes])");
        fixed.emplace_back(key, scalar_text(v, where));
      } else {
        axes.emplace_back(key, axis_values(key, v, where));
      }
    }
  }
  for (const auto& [k, _] : axes)
    for (const auto& [f, __] : fixed)
      if (k == f) throw UsageError("sweep spec " + name + ": '" + k + "' is both in [fixed] and in [axes]");

  RunConfig base;
  for (const auto& [k, v] : fixed) {
    try {
      set_run_option(base, k, v);
    } catch (const UsageError& e) {
      throw UsageError("sweep spec " + name + " [fixed] " + k + ": " + e.what());
    }
  }
  std::vector<RunConfig> out;
  std::vector<size_t> idx(axes.size(), 0);
  for (;;) {
    RunConfig c = base;
    std::string point;
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& [k, vals] = axes[a];
      try {
        set_run_option(c, k, vals[idx[a]]);
      } catch (const UsageError& e) {
        throw UsageError("sweep spec " + name + " [axes] " + k + ": " + e.what());
      }
      point += (point.empty() ? "" : ", ") + k + " = " + vals[idx[a]];
    }
    try {
      finalize(c);
    } catch (const UsageError& e) {
      throw UsageError("sweep spec " + name + (point.empty() ? "" : " at " + point) + ": " + e.what());
    }
    out.push_back(std::move(c));
    // Odometer over the axes, last key fastest.
    size_t a = axes.size();
    while (a > 0) {
      --a;
      if (++idx[a] < axes[a].second.size()) break;
      idx[a] = 0;
      if (a == 0) return out;
    }
    if (axes.empty()) return out;
  }
}

std::vector<RunConfig> parse_sweep_spec(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("cannot read sweep spec " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_sweep_spec_text(ss.str(), path);
}

nlohmann::json SweepCounts::to_json() const {
  return {{"planned", planned},
          {"done", done},
          {"resumed", resumed},
          {"waited", waited},
          {"left_running", left_running},
          {"skipped", skipped},
          {"failed", failed},
          {"total", total},
          {"interrupted", interrupted},
          {"failed_ids", failed_ids},
          {"left_running_ids", left_running_ids}};
}

SweepCounts& SweepCounts::operator+=(const SweepCounts& o) {
  total += o.total;
  planned += o.planned;
  done += o.done;
  skipped += o.skipped;
  failed += o.failed;
  interrupted += o.interrupted;
  resumed += o.resumed;
  waited += o.waited;
  left_running += o.left_running;
  failed_ids.insert(failed_ids.end(), o.failed_ids.begin(), o.failed_ids.end());
  left_running_ids.insert(left_running_ids.end(), o.left_running_ids.begin(), o.left_running_ids.end());
  return *this;
}

void die_with_parent(long parent_pid) {
  g_parent.store(parent_pid);
  // Before the check: a parent dying after it signals us; one dead before it is seen by it.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (parent_pid <= 1 || getppid() != parent_pid) {
    std::cerr << "sweep: worker " << getpid() << ": its sweep (pid " << parent_pid
              << ") is gone; exiting\n";
    _exit(1);
  }
}

void watch_parent(long parent_pid) {
  g_parent.store(parent_pid);
  if (parent_pid <= 1 || getppid() != parent_pid) {
    std::cerr << "lazyfeat: process " << getpid() << ": its launcher (pid " << parent_pid
              << ") is gone; exiting\n";
    _exit(1);
  }
  std::thread([] {
    while (!parent_gone()) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    kill(getpid(), SIGTERM);  // the stop handler: stop, and SIGALRM after the grace period
  }).detach();
}

bool parent_gone() {
  long p = g_parent.load();
  return p > 0 && getppid() != p;
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a waiting parent wakes up to forward the stop
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

std::vector<int64_t> plan_sweep(const std::vector<RunConfig>& grid, const SweepOptions& opts,
                                SweepCounts& counts) {
  require(opts.shard_count >= 1 && opts.shard_index >= 0 && opts.shard_index < opts.shard_count,
          "--shard I/N needs 0 <= I < N");
  std::vector<RunConfig> mine;
  for (size_t i = 0; i < grid.size(); ++i)
    if (static_cast<int>(i % opts.shard_count) == opts.shard_index) mine.push_back(grid[i]);
  Store store(opts.db);
  auto planned = store.plan_all(mine);
  std::vector<int64_t> ids;
  std::set<int64_t> seen;
  for (size_t i = 0; i < planned.size(); ++i) {
    auto [id, created] = planned[i];
    if (!seen.insert(id).second) continue;
    if (created) ++counts.planned;
    else store.replan_budget(id, mine[i]);
    ids.push_back(id);
  }
  const std::set<int64_t> saved = store.with_state();
  std::stable_partition(ids.begin(), ids.end(), [&](int64_t id) { return saved.count(id) > 0; });
  counts.total = static_cast<int64_t>(ids.size());
  return ids;
}

SweepCounts run_worker(const std::vector<int64_t>& ids, const SweepOptions& opts) {
  SweepCounts c;
  Store store(opts.db);
  // --worker processes report each outcome at once on stdout (the sweep keeps the counts of a
  // worker that is killed later).
  auto event = [&](const char* what, int64_t id, bool resumed) {
    if (opts.worker_events)
      std::cout << nlohmann::json{{"event", what}, {"id", id}, {"resumed", resumed}}.dump() << std::endl;
  };
  GroupClaimer claimer(store, opts.ensemble, opts.stale_s);
  while (!g_stop_requested.load()) {
    auto first = store.claim_next(ids, opts.stale_s, opts.retry_failed);
    if (!first) break;
    ClaimedGroup g = claimer.complete(*first, ids);  // --ensemble K: up to K runs
    const std::vector<int64_t>& group = g.ids;
    const std::vector<RunConfig>& cfgs = g.cfgs;
    std::vector<std::string> what;
    if (!g.error.empty()) {
      for (int64_t id : group) {
        ++c.failed;
        c.failed_ids.push_back(id);
        event("failed", id, false);
      }
      std::cerr << "sweep: failed to start run " << *first << ": " << g.error << "\n";
      continue;
    }
    for (size_t k = 0; k < group.size(); ++k) {
      what.push_back("run " + std::to_string(group[k]) + " (" + describe_run(config_to_json(cfgs[k])) + ")");
      if (opts.progress) std::cerr << "sweep: start " << what[k] << (group.size() > 1 ? " in an ensemble of " + std::to_string(group.size()) : "") << "\n";
      event("start", group[k], false);
    }
    try {
      TrainHooks hooks;
      hooks.state_every_s = opts.state_every_s;
      hooks.should_stop = [] { return g_stop_requested.load(); };
      hooks.progress = opts.progress && opts.jobs <= 1;
      auto outs = run_claimed_ensemble(store, group, cfgs, /*resume=*/true, hooks);
      for (size_t k = 0; k < outs.size(); ++k) {
        const RunResult& r = outs[k].result;
        if (g_stop_requested.load() && r.status == "stopped") {
          ++c.interrupted;
          event("interrupted", group[k], outs[k].resumed);
          if (opts.progress) std::cerr << "sweep: interrupted " << what[k] << " (back to planned)\n";
        } else {
          ++c.done;
          if (outs[k].resumed) ++c.resumed;
          event("done", group[k], outs[k].resumed);
          if (opts.progress)
            std::cerr << "sweep: " << r.status << " " << what[k] << (outs[k].resumed ? " resumed" : "")
                      << "  test_err " << fmt_num(r.test_err) << "  t2 " << fmt_num(r.t2) << "  "
                      << fmt_duration(r.wall_s) << "\n";
        }
      }
    } catch (const std::exception& e) {
      for (size_t k = 0; k < group.size(); ++k) {
        ++c.failed;
        c.failed_ids.push_back(group[k]);
        event("failed", group[k], false);
        std::cerr << "sweep: failed " << what[k] << ": " << e.what() << "\n";
      }
      // A failing database (locked, full) fails the next claim too, which ends the worker.
    }
  }
  return c;
}

RunConfig GroupClaimer::config_of(int64_t id) {
  RunConfig cfg = config_from_json(store_.run(id).config);
  if (cfg.data_dir.empty()) cfg.data_dir = default_data_dir();
  return cfg;
}

const std::string& GroupClaimer::key_of(int64_t id) {
  auto it = keys_.find(id);
  if (it == keys_.end()) it = keys_.emplace(id, lockstep_key(config_of(id))).first;
  return it->second;
}

ClaimedGroup GroupClaimer::complete(int64_t first, const std::vector<int64_t>& ids) {
  ClaimedGroup g;
  g.ids = {first};
  try {
    g.cfgs.push_back(config_of(first));
    for (size_t i = 0; i < ids.size() && int64_t(g.ids.size()) < k_; ++i) {
      const int64_t id = ids[i];
      if (id == first || key_of(id) != key_of(first)) continue;
      RunConfig cfg = config_of(id);
      if (store_.claim(id, cfg, stale_s_)) {
        g.ids.push_back(id);
        g.cfgs.push_back(cfg);
      }
    }
  } catch (const std::exception& e) {
    g.error = e.what();
    for (int64_t id : g.ids) {
      try {
        store_.fail(id, g.error);
      } catch (...) {
      }
    }
  }
  return g;
}

RunsStanding runs_standing(const std::vector<int64_t>& ids, const SweepOptions& opts,
                           const std::set<int64_t>& ours) {
  RunsStanding st;
  Store store(opts.db);
  for (int64_t id : ids) {
    if (ours.count(id)) continue;
    RunRow r = store.run(id);
    if (r.status == "planned" || (opts.retry_failed && r.status == "failed")) {
      st.claimable.push_back(id);
    } else if (r.status == "running") {
      if (store.abandoned(r, opts.stale_s)) st.claimable.push_back(id);
      else st.elsewhere.push_back({id, r.host, r.pid, r.heartbeat_at});
    }
  }
  return st;
}

void WaitingNote::print(const std::vector<HeldRun>& held, bool progress) {
  const std::string note = describe_held(held);
  const auto now = std::chrono::steady_clock::now();
  if (progress && (note != last_ || now - at_ > std::chrono::seconds(30))) {
    std::cerr << "sweep: waiting for " << held.size() << " run" << (held.size() > 1 ? "s" : "")
              << " held by other live processes: " << note << " (--no-wait: report them instead)\n";
    last_ = note;
    at_ = now;
  }
}

std::string describe_held(const std::vector<HeldRun>& runs) {
  std::ostringstream o;
  for (size_t i = 0; i < runs.size() && i < 8; ++i)
    o << (i ? ", " : "") << "run " << runs[i].id << " (pid " << runs[i].pid << " on " << runs[i].host
      << ", heartbeat " << runs[i].heartbeat_at << " UTC)";
  if (runs.size() > 8) o << ", and " << runs.size() - 8 << " more";
  return o.str();
}

namespace {

// One round of opts.jobs worker processes over ids (fork/exec of this binary as `sweep
// --worker --parent PID`), until none of them finds a run to claim or a stop is requested.
// A worker that died of a signal or an unexpected exit status, and the run it was on (-1: none).
struct WorkerDeath {
  int64_t run = -1;
  int code = 0;
};
SweepCounts run_worker_processes(const std::vector<int64_t>& ids, const SweepOptions& opts, int jobs,
                                 std::vector<WorkerDeath>& deaths) {
  SweepCounts ran;
  std::string exe = self_exe();
  std::string id_list;
  for (int64_t id : ids) id_list += (id_list.empty() ? "" : ",") + std::to_string(id);
  struct Child {
    pid_t pid;
    int out_fd;
  };
  std::vector<Child> children;
  std::string me = std::to_string(getpid());
  for (int j = 0; j < jobs; ++j) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    std::vector<std::string> args = {exe, "sweep", "--worker", "--parent", me, "--db", opts.db, "--ids", id_list,
                                     "--state-every", fmt_g(opts.state_every_s), "--stale",
                                     fmt_g(opts.stale_s), "--json"};
    if (opts.retry_failed) args.push_back("--retry-failed");
    if (opts.ensemble > 1) {
      args.push_back("--ensemble");
      args.push_back(std::to_string(opts.ensemble));
    }
    if (!opts.progress) args.push_back("--quiet");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      for (auto& o : children) kill(o.pid, SIGTERM);  // they stop and put their runs back
      throw std::runtime_error("cannot start a sweep worker: " + std::string(strerror(rc)));
    }
    // The read end must not leak into the next workers (their copies would hold it open).
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    children.push_back({pid, fds[0]});
  }
  bool forwarded = false;
  auto forward_stop = [&] {
    if (g_stop_requested.load() && !forwarded) {
      for (auto& o : children) kill(o.pid, SIGTERM);
      forwarded = true;
    }
  };
  for (auto& ch : children) {
    std::string text;
    char buf[4096];
    for (;;) {
      ssize_t n = read(ch.out_fd, buf, sizeof buf);
      if (n > 0) {
        text.append(buf, n);
        continue;
      }
      if (n < 0 && errno == EINTR) {
        forward_stop();
        continue;
      }
      break;
    }
    close(ch.out_fd);
    int st = 0;
    while (waitpid(ch.pid, &st, 0) < 0 && errno == EINTR) forward_stop();
    // The worker's outcomes: one {"event": ...} line each (the last line holds its totals).
    std::istringstream lines(text);
    std::string line;
    int64_t current = -1;  // the run started and not ended yet
    while (std::getline(lines, line)) {
      if (line.empty() || line[0] != '{') continue;
      try {
        auto j = nlohmann::json::parse(line);
        if (!j.contains("event")) continue;
        std::string ev = j["event"];
        current = ev == "start" ? j["id"].get<int64_t>() : -1;
        if (ev == "done") {
          ++ran.done;
          if (j.value("resumed", false)) ++ran.resumed;
        } else if (ev == "failed") {
          ++ran.failed;
          ran.failed_ids.push_back(j["id"].get<int64_t>());
        } else if (ev == "interrupted") {
          ++ran.interrupted;
        }
      } catch (...) {
        // A line cut short by a killed worker.
      }
    }
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (code != 0 && code != 1 && code != 130) {
      deaths.push_back({current, code});
      std::cerr << "sweep: worker " << ch.pid << " ended abnormally (exit status " << code << ")"
                << (current >= 0 ? " in run " + std::to_string(current) + "; the run is taken over" : "") << "\n";
    }
  }
  return ran;
}

}  // namespace

void settle_counts(SweepCounts& counts, const std::set<int64_t>& waited_on,
                   const std::vector<HeldRun>& held, const SweepOptions& opts) {
  std::set<int64_t> left;
  counts.left_running_ids.clear();
  for (const auto& h : held)
    if (left.insert(h.id).second) counts.left_running_ids.push_back(h.id);
  counts.left_running = static_cast<int64_t>(left.size());
  counts.waited = 0;
  Store store(opts.db);
  for (int64_t id : waited_on) {
    if (left.count(id)) continue;
    RunRow r = store.run(id);
    if (r.finished() || r.status == "failed") ++counts.waited;
  }
  counts.skipped = std::max<int64_t>(0, counts.total - counts.done - counts.failed - counts.interrupted -
                                            counts.waited - counts.left_running);
  if (opts.progress && !held.empty())
    std::cerr << "sweep: " << held.size() << " run" << (held.size() > 1 ? "s are" : " is")
              << " still running in other processes, not finished here: " << describe_held(held)
              << "; start the sweep again to finish them\n";
}

SweepCounts run_sweep(const std::vector<RunConfig>& grid, const SweepOptions& opts) {
  SweepCounts counts;
  std::vector<int64_t> ids = plan_sweep(grid, opts, counts);
  if (opts.progress)
    std::cerr << "sweep: " << counts.total << " configs in " << opts.db << " (" << counts.planned
              << " newly planned), " << opts.jobs << " worker" << (opts.jobs > 1 ? "s" : "") << "\n";
  // Rounds: run what can be claimed (planned, abandoned: a killed worker's or a dead process's
  // run, taken over at once); then, while other live processes hold runs of the grid, wait for
  // them (they may end, or die and leave their runs to us) or report them.
  SweepCounts ran;
  std::set<int64_t> failed_here, waited_on;
  std::vector<HeldRun> held;
  int dying_rounds = 0;
  std::map<int64_t, int> run_deaths;  // worker deaths in each run (a crash loop ends in "failed")
  WaitingNote waiting;
  while (!g_stop_requested.load()) {
    std::vector<int64_t> todo;
    for (int64_t id : ids)
      if (!failed_here.count(id)) todo.push_back(id);
    RunsStanding st = runs_standing(todo, opts, {});
    held = st.elsewhere;
    for (int64_t id : st.claimable) waited_on.erase(id);
    if (!st.claimable.empty()) {
      SweepCounts r;
      std::vector<WorkerDeath> deaths;
      if (opts.jobs <= 1) r = run_worker(todo, opts);
      else r = run_worker_processes(todo, opts, std::min<int>(opts.jobs, static_cast<int>(st.claimable.size())), deaths);
      bool progressed = r.done + r.failed + r.interrupted > 0;
      bool outside_runs = false;
      for (const auto& d : deaths) {
        if (d.run < 0) {
          outside_runs = true;
        } else if (++run_deaths[d.run] >= kMaxWorkerDeaths) {
          // A run that kills its worker every time (a crash in it): recorded as failed.
          std::string why = "its sweep worker died " + std::to_string(kMaxWorkerDeaths) +
                            " times in it (last exit status " + std::to_string(d.code) + ")";
          Store(opts.db).fail(d.run, why);
          std::cerr << "sweep: failed run " << d.run << ": " << why << "\n";
          ++r.failed;
          r.failed_ids.push_back(d.run);
        }
      }
      for (int64_t id : r.failed_ids) failed_here.insert(id);
      ran += r;
      // Workers dying before they claim anything (at start-up), round after round.
      if (outside_runs && !progressed) {
        if (++dying_rounds >= 3)
          throw std::runtime_error("sweep workers keep dying before they start a run (3 rounds); see the messages above");
      } else {
        dying_rounds = 0;
      }
      continue;
    }
    if (held.empty()) break;
    for (const auto& h : held) waited_on.insert(h.id);
    if (!opts.wait_elsewhere) break;
    waiting.print(held, opts.progress);
    for (double slept = 0; slept < opts.poll_s && !g_stop_requested.load(); slept += 0.1)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (g_stop_requested.load()) {
    std::vector<int64_t> todo;
    for (int64_t id : ids)
      if (!failed_here.count(id)) todo.push_back(id);
    held = runs_standing(todo, opts, {}).elsewhere;
  }
  counts.done = ran.done;
  counts.resumed = ran.resumed;
  counts.failed = ran.failed;
  counts.failed_ids = ran.failed_ids;
  counts.interrupted = ran.interrupted;
  settle_counts(counts, waited_on, held, opts);
  return counts;
}

}  // namespace lf
