// The study database (docs/schema.md): one SQLite file a study holding every run's
// configuration, status, checkpoints, final test outputs, kernel statistics and latest resumable
// state. Every write is one transaction; runs are claimed atomically so that any number of
// processes (sweep workers, `train --db`, a second sweep) can share one file safely.
// Deliberately not: training (experiment/), the choice of runs (sweep/), CLI printing.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "experiment/config.h"
#include "experiment/train.h"

namespace lf {

namespace sql {
class Db;
}

constexpr int kSchemaVersion = 3;  // docs/schema.md (2: act_scale, pca_solver, published_seed, weights_seed, softplus_threshold; 3: gradient_evaluations)

struct RunRow {
  int64_t id = -1;
  std::string config_hash, status, error, host, version;
  int64_t pid = 0, attempts = 0;
  std::string created_at, started_at, ended_at, heartbeat_at;
  nlohmann::json config;   // canonical config JSON
  nlohmann::json summary;  // the `train --json` object, or null
  bool finished() const { return status == "converged" || status == "stopped" || status == "diverged"; }
};

struct StoredState {
  int64_t step = 0;
  double t = 0;
  std::string blob;
};

struct StoreOptions {
  bool create = true;     // create the file if absent
  bool readonly = false;  // open without writing (runs, report)
  double busy_timeout_s = -1;  // < 0: $LAZYFEAT_DB_TIMEOUT, else 60 s
};

class Store {
 public:
  // Opens (creating the schema if new) and checks the schema version. Throws UsageError for a
  // corrupt file, a database of a newer schema, a file that is another program's database, or
  // a database locked past the busy timeout.
  explicit Store(const std::string& path, StoreOptions opt = {});
  ~Store();
  const std::string& path() const;

  // Adds the run of a finalized config if its config_hash is absent (status planned). Returns
  // the run's id and whether it was created. plan_all does the whole list in one transaction.
  std::pair<int64_t, bool> plan(const RunConfig& cfg);
  std::vector<std::pair<int64_t, bool>> plan_all(const std::vector<RunConfig>& cfgs);
  // A stopped run (budget exhausted) whose budget (max_wall, max_steps) differs in cfg goes
  // back to planned with cfg's budget, to resume from its state. Returns whether it did.
  bool replan_budget(int64_t id, const RunConfig& cfg);
  std::optional<RunRow> find(const std::string& config_hash);
  RunRow run(int64_t id);

  // Whether a run marked running is abandoned: its pid is gone on this host, or its heartbeat is
  // older than stale_s seconds.
  bool abandoned(const RunRow& r, double stale_s) const;

  // Atomically flips run `id` to running for this process (host, pid, started_at, heartbeat,
  // attempts + 1) if it is planned, abandoned, or (with rerun) stopped/diverged/failed; cfg's
  // budgets (max_wall, max_steps) and data_dir replace the stored ones. Returns false when
  // another live process holds it or it is finished (and not rerun).
  bool claim(int64_t id, const RunConfig& cfg, double stale_s, bool rerun = false);
  // Claims the first run among ids (in order) that is planned or abandoned (or failed with
  // retry_failed), in one transaction. Returns its id, or nullopt when none is left.
  std::optional<int64_t> claim_next(const std::vector<int64_t>& ids, double stale_s,
                                    bool retry_failed = false);
  // Ids among `ids` that are running in a live process right now (not abandoned).
  std::vector<int64_t> running_elsewhere(const std::vector<int64_t>& ids, double stale_s);

  void heartbeat(int64_t id);
  // One checkpoint (INSERT OR REPLACE on (run_id, step)), with a heartbeat.
  void add_checkpoint(int64_t id, const Checkpoint& c);
  // The latest resumable state (replaces the previous one), with a heartbeat.
  void save_state(int64_t id, int64_t step, double t, const std::string& blob);
  std::optional<StoredState> load_state(int64_t id);
  // The runs that have a saved state (in flight, or ended keeping their trained weights).
  std::set<int64_t> with_state();
  // Starting a run afresh (no state): removes its old checkpoints; resuming from a state at
  // `step`: removes the checkpoints after it (the trainer re-emits them).
  void drop_checkpoints_after(int64_t id, int64_t step);

  // Records the end of a run in one transaction: status (converged/stopped/diverged), message,
  // summary columns and JSON, the final test outputs (f - f0, f0, labels y in {-1,+1}) and the
  // kernel statistics (summary["kernel"] style JSON, may be null). Drops the state of a
  // diverged run; keeps the one of a stopped run (a bigger budget resumes from it) and of a
  // converged run (its trained weights, for `lazyfeat ntk --db --run`).
  void finish(int64_t id, const std::string& status, const std::string& message,
              const nlohmann::json& summary, const at::Tensor& f_delta, const at::Tensor& f0,
              const at::Tensor& y, const nlohmann::json& kernel);
  // An interrupted run goes back to planned (its state stays); a failed one records the error.
  void release(int64_t id);
  void fail(int64_t id, const std::string& error);

  // Runs, filtered by a plain expression on the flat columns (see where_sql), ordered by id.
  std::vector<RunRow> runs(const std::string& where = "");
  // The final outputs of a run: f_delta, f0 (float64) and y (float64 in {-1,+1}); nullopt if none.
  struct Outputs {
    at::Tensor f_delta, f0, y;
  };
  std::optional<Outputs> outputs(int64_t id);
  std::vector<Checkpoint> checkpoints(int64_t id);

  // Writes runs.csv, checkpoints.csv and outputs.csv (long format) of the runs matching `where`.
  void export_csv(const std::string& dir, const std::string& where = "");

  sql::Db& db();

 private:
  std::unique_ptr<sql::Db> db_;
  void init_schema(bool readonly);
};

// Checks a --where expression and returns it as SQL: only the runs table's flat columns (and
// id, status, the summary columns), numbers, 'strings', comparisons (= == != <> < <= > >=),
// and/or/not, is [not] null, like, in (...), between, + - * /, parentheses. Anything else
// (semicolons, sub-queries, functions, unknown names) throws UsageError naming it.
std::string where_sql(const std::string& expr);

// The names of the flat config columns of the runs table (docs/schema.md).
const std::vector<std::string>& flat_columns();
// The summary columns of the runs table.
const std::vector<std::string>& summary_columns();

// This machine's host name.
std::string host_name();

}  // namespace lf
