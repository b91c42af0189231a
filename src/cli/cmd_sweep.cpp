// `lazyfeat sweep SPEC.toml --db FILE [--jobs N] [--shard I/N] [--json]` (cli-contract.md):
// every run of the spec's grid that the database does not hold yet, resuming interrupted ones;
// also under mpirun. `--worker --ids ... --parent PID` is the internal mode of the worker
// processes. Runs held by other live processes are waited for (--no-wait: reported, exit 3);
// docs/sweep-faults.md.
// Deliberately not: the sweep logic itself (src/sweep/).
#include <unistd.h>

#include <iostream>

#include "cli/command.h"
#include "common/error.h"
#include "common/options.h"
#include "sweep/runner.h"
#include "sweep/sweep.h"

namespace {

std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    ids.push_back(lf::parse_int("--ids", text.substr(pos, end - pos)));
    pos = end + 1;
  }
  return ids;
}

int cmd_sweep(const lf::cli::Args& args) {
  lf::SweepOptions opts;
  opts.stale_s = lf::default_stale_seconds();
  bool json = false, worker = false, quiet = false, no_wait = false;
  std::string shard, ids;
  long parent = 0;
  lf::OptionParser p("lazyfeat sweep SPEC.toml --db FILE [options]",
                     "Runs every configuration of the grid in SPEC.toml ([fixed] and [axes], keys are "
                     "run options without dashes) that the study database does not already hold, "
                     "resuming interrupted runs from their saved states. Safe to start several "
                     "times on one database, and under mpirun -np K (rank 0 writes the database).");
  p.value("db", "FILE", "the study database (created if absent)", [&](const std::string& v) { opts.db = v; });
  p.value("jobs", "N", "worker processes on this machine (default 1)",
          [&](const std::string& v) { opts.jobs = static_cast<int>(lf::parse_int("--jobs", v)); });
  p.value("shard", "I/N", "only the configs whose index mod N == I", [&](const std::string& v) { shard = v; });
  p.value("state-every", "SEC", "save a resumable state every SEC seconds of a run (default 300)",
          [&](const std::string& v) { opts.state_every_s = lf::parse_double("--state-every", v); });
  p.value("stale", "SEC", "a running run without heartbeat for SEC seconds is abandoned (default 600)",
          [&](const std::string& v) { opts.stale_s = lf::parse_double("--stale", v); });
  p.flag("retry-failed", "run again the runs that failed before", opts.retry_failed);
  p.value("ensemble", "K",
          "train up to K runs that differ in seed-init and alpha only as one ensemble (default 1); each is still "
          "its own run in the database",
          [&](const std::string& v) { opts.ensemble = lf::parse_int("--ensemble", v); });
  p.flag("no-wait",
         "do not wait for runs that other live processes hold (another host, another sweep): report "
         "them as left running and exit with status 3",
         no_wait);
  p.flag("quiet", "no progress on stderr", quiet);
  p.flag("json",
         "print {\"planned\",\"done\",\"resumed\",\"waited\",\"left_running\",\"skipped\",\"failed\",...} as the "
         "last stdout line",
         json);
  p.flag("worker", "internal: a worker process of a --jobs sweep (with --ids)", worker);
  p.value("ids", "LIST", "internal: the run ids a worker may claim", [&](const std::string& v) { ids = v; });
  p.value("parent", "PID", "internal: the sweep process a worker must not outlive",
          [&](const std::string& v) { parent = static_cast<long>(lf::parse_int("--parent", v)); });
  auto pos = p.parse(args);

  lf::require(!opts.db.empty(), "sweep needs --db FILE");
  lf::require(opts.jobs >= 1, "--jobs must be >= 1");
  lf::require(opts.ensemble >= 1, "--ensemble must be >= 1");
  lf::require(opts.state_every_s > 0, "--state-every must be > 0 seconds");
  lf::require(opts.stale_s > 0, "--stale must be > 0 seconds");
  opts.progress = !quiet;
  opts.wait_elsewhere = !no_wait;
  if (!shard.empty()) {
    auto slash = shard.find('/');
    lf::require(slash != std::string::npos, "--shard expects I/N, got '" + shard + "'");
    opts.shard_index = static_cast<int>(lf::parse_int("--shard", shard.substr(0, slash)));
    opts.shard_count = static_cast<int>(lf::parse_int("--shard", shard.substr(slash + 1)));
    lf::require(opts.shard_count >= 1 && opts.shard_index >= 0 && opts.shard_index < opts.shard_count,
                "--shard I/N needs 0 <= I < N, got '" + shard + "'");
  }
  lf::install_stop_handlers();

  lf::SweepCounts counts;
  if (worker) {
    lf::require(pos.empty(), "sweep --worker takes no spec");
    lf::require(!ids.empty(), "sweep --worker needs --ids");
    // A worker never outlives its sweep: SIGTERM when the sweep dies (however it dies), which
    // stops the current run with its state saved and puts it back to planned.
    if (parent > 0) lf::die_with_parent(parent);
    opts.jobs = 2;  // a worker among others: no per-step progress line
    opts.worker_events = true;
    counts = lf::run_worker(parse_ids(ids), opts);
  } else {
    lf::require(pos.size() == 1, "sweep needs exactly one SPEC.toml (got " + std::to_string(pos.size()) + ")");
    auto grid = lf::parse_sweep_spec(pos[0]);
    if (lf::mpi_launched()) {
      // A rank never outlives its launcher (mpirun, orted): see watch_parent.
      lf::watch_parent(static_cast<long>(getppid()));
      bool is_root = false;
      counts = lf::run_sweep_mpi(grid, opts, is_root);
      if (!is_root) return 0;
    } else {
      counts = lf::run_sweep(grid, opts);
    }
    if (opts.progress)
      std::cerr << "sweep: " << counts.done << " done (" << counts.resumed << " resumed), " << counts.waited
                << " waited for, " << counts.left_running << " left running elsewhere, " << counts.skipped
                << " skipped, " << counts.failed << " failed"
                << (counts.interrupted ? ", " + std::to_string(counts.interrupted) + " interrupted" : "")
                << " of " << counts.total << "\n";
  }
  if (json) lf::cli::print_json_line(counts.to_json().dump());
  // 1: runs failed; 130: stopped (Ctrl-C); 3: runs still running in other processes, unfinished.
  if (counts.failed > 0) return 1;
  if (lf::g_stop_requested.load()) return 130;
  return counts.left_running > 0 ? 3 : 0;
}

lf::cli::Command reg{"sweep", "run a grid of runs into a study database (resumable, parallel, MPI)", cmd_sweep};

}  // namespace
