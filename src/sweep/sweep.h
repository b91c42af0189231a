// Sweeps (cli-contract.md "Sweep specification"): the grid of a TOML spec, planned into a study
// database and run by this process, by N local worker processes, or by MPI ranks; resumable
// after a crash or Ctrl-C, safe with several sweeps on one database; workers never outlive
// their sweep, and a restart takes over or waits for what others left (docs/sweep-faults.md).
// Deliberately not: the training (experiment/), the storage format (store/).
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "experiment/config.h"

namespace lf {

// Parses SPEC.toml: [fixed] one value per run option, [axes] lists or
// { log-range = [LOW, HIGH], per-decade = K }; keys are run options without dashes. Returns the
// finalized configs of the cartesian product, axes in sorted key order (last key fastest).
// Throws UsageError naming the problem (malformed TOML, unknown option, empty axis, bad value).
std::vector<RunConfig> parse_sweep_spec(const std::string& path);
std::vector<RunConfig> parse_sweep_spec_text(const std::string& text, const std::string& name);

// LOW * 10^(k/K) for k = 0, 1, ... up to HIGH (included when it falls on the grid), rounded to
// 12 significant digits so that decades are exact.
std::vector<double> log_range(double low, double high, int64_t per_decade);

struct SweepOptions {
  std::string db;
  int jobs = 1;
  int shard_index = 0, shard_count = 1;
  double state_every_s = 300;   // TrainHooks::state_every_s
  double stale_s = 600;         // heartbeat age after which a running run is abandoned
  bool retry_failed = false;
  int64_t ensemble = 1;         // --ensemble K: train up to K compatible runs as one ensemble
  bool progress = true;
  // Runs held by a live process elsewhere (another host, or another sweep on this one): wait
  // until they end (polling every poll_s, progress on stderr), or, without wait, report them as
  // left running (SweepCounts::left_running; `lazyfeat sweep` then exits 3).
  bool wait_elsewhere = true;
  double poll_s = 2;
  bool worker_events = false;  // internal (--worker): one JSON line per run outcome on stdout
};

struct SweepCounts {
  int64_t total = 0;        // configs of the grid (this shard)
  int64_t planned = 0;      // configs newly added to the database by this invocation
  int64_t done = 0;         // runs this invocation finished (converged, stopped, diverged)
  int64_t skipped = 0;      // configs this invocation did not run: already finished or failed
                            // before it started (not those waited for or left running)
  int64_t failed = 0;       // runs that failed in this invocation
  int64_t interrupted = 0;  // runs put back to planned by Ctrl-C
  int64_t resumed = 0;      // of done: runs that continued from a saved state (a killed or
                            // interrupted earlier attempt)
  int64_t waited = 0;       // runs another live process held; this invocation waited until it
                            // finished them
  int64_t left_running = 0; // runs still held by another live process when this invocation
                            // ended (not waited for, or Ctrl-C while waiting): not finished
  std::vector<int64_t> failed_ids, left_running_ids;
  nlohmann::json to_json() const;
  SweepCounts& operator+=(const SweepCounts& o);
};

// Set by SIGINT/SIGTERM once install_stop_handlers() ran; polled by TrainHooks::should_stop.
extern std::atomic<bool> g_stop_requested;
void install_stop_handlers();

// A process that must not outlive its parent (a sweep worker: parent = the sweep that spawned
// it, passed as `--parent PID`): the kernel sends SIGTERM when the parent dies
// (PR_SET_PDEATHSIG), which stops the current run like Ctrl-C (state saved, run put back to
// planned); kParentGoneGrace_s later SIGALRM ends the process outright if it is still there.
// Exits at once (status 1) when the parent is already gone. Call after install_stop_handlers.
constexpr unsigned kParentGoneGrace_s = 20;
void die_with_parent(long parent_pid);
// The same for a process whose parent is a launcher that may fork from a short-lived thread
// (MPI ranks under mpirun/orted): a thread polls getppid() every 0.5 s instead of the kernel's
// PR_SET_PDEATHSIG. Returns at once; parent_pid 1 (already orphaned) exits.
void watch_parent(long parent_pid);
// Whether the parent recorded by die_with_parent/watch_parent has died.
bool parent_gone();

// The whole sweep: plan the grid (this shard), then run what is left with opts.jobs workers
// (or the MPI ranks when launched by mpirun).
SweepCounts run_sweep(const std::vector<RunConfig>& grid, const SweepOptions& opts);

// Worker deaths (a signal, an unexpected exit status) in one run within one sweep invocation
// after which that run is recorded as failed instead of taken over again.
constexpr int kMaxWorkerDeaths = 10;

// A worker: claims runs among ids one at a time until none is left (or a stop is requested).
SweepCounts run_worker(const std::vector<int64_t>& ids, const SweepOptions& opts);

// MPI (sweep/mpi.cpp): whether this process was started by mpirun with more than one rank.
bool mpi_launched();
// Rank 0 owns the database and hands out runs among ids; the other ranks train. Every rank
// returns; rank 0's counts are the sweep's, the others return zero counts with is_root false.
SweepCounts run_sweep_mpi(const std::vector<RunConfig>& grid, const SweepOptions& opts, bool& is_root);

// A run held by a live process other than this one (another host's, or another sweep's).
struct HeldRun {
  int64_t id = -1;
  std::string host;
  int64_t pid = 0;
  std::string heartbeat_at;
};
struct RunsStanding {
  std::vector<int64_t> claimable;  // planned, abandoned (its process is gone), failed with retry_failed
  std::vector<HeldRun> elsewhere;  // running in a live process (not among `ours`)
};
// Where the runs among ids stand now; `ours`: ids this process holds itself (skipped).
RunsStanding runs_standing(const std::vector<int64_t>& ids, const SweepOptions& opts,
                           const std::set<int64_t>& ours);
std::string describe_held(const std::vector<HeldRun>& runs);
// A run in the sweep's progress lines, from its config JSON: arch, act, L (fc only), h,
// sqrt_h_alpha, seed_init, and T for the stochastic dynamics.
std::string describe_run(const nlohmann::json& config);
// The line on stderr while a sweep waits for runs held elsewhere: when the set changes, and
// every 30 s otherwise.
class WaitingNote {
 public:
  void print(const std::vector<HeldRun>& held, bool progress);

 private:
  std::string last_;
  std::chrono::steady_clock::time_point at_ = std::chrono::steady_clock::now();
};
// The closing counts: left_running (held), waited (runs of waited_on that others finished
// meanwhile), skipped (the rest of total not done, failed, interrupted here); with progress, a
// line naming the runs left to other processes.
void settle_counts(SweepCounts& counts, const std::set<int64_t>& waited_on,
                   const std::vector<HeldRun>& held, const SweepOptions& opts);

// Shared by run_sweep and run_sweep_mpi: plans the grid's configs of this shard, re-plans
// stopped runs whose budget the spec changed, and returns the ids to run and the counts so far
// (total, planned). The ids, without duplicates: the runs with a saved state (in flight when an
// earlier sweep stopped) first, then the others, each part in grid order. Workers claim in that
// order and ensembles are filled in it (GroupClaimer), so a sweep finishes what was started
// before it starts more runs (which also bounds the states a study carries between machines).
std::vector<int64_t> plan_sweep(const std::vector<RunConfig>& grid, const SweepOptions& opts,
                                SweepCounts& counts);

class Store;

// --ensemble K, shared by the sweep's workers and rank 0 under mpirun: after `first` is claimed,
// up to K - 1 more runs of `ids` that differ from it in seed_init and alpha only (lockstep_key),
// claimed one by one (another process may take some first). A config that cannot be read ends
// the group with `error` set: the caller fails the runs claimed so far (`ids`).
struct ClaimedGroup {
  std::vector<int64_t> ids;      // first first
  std::vector<RunConfig> cfgs;   // their stored configs (data_dir filled in)
  std::string error;
};
class GroupClaimer {
 public:
  GroupClaimer(Store& store, int64_t ensemble, double stale_s) : store_(store), k_(ensemble), stale_s_(stale_s) {}
  ClaimedGroup complete(int64_t first, const std::vector<int64_t>& ids);

 private:
  RunConfig config_of(int64_t id);
  const std::string& key_of(int64_t id);
  Store& store_;
  int64_t k_;
  double stale_s_;
  std::map<int64_t, std::string> keys_;  // lockstep_key of each id, read once
};

}  // namespace lf
