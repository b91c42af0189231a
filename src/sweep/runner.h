// Executing one run against a study database: claim (or create) the run's row, resume from its
// last saved state if any, stream checkpoints and states into the store, record the result.
// Used by `lazyfeat train --db FILE [--resume]` and by every sweep worker.
#pragma once
#include <functional>
#include <string>

#include "experiment/train.h"

namespace lf {

struct StoredRunOutcome {
  int64_t run_id = -1;
  RunResult result;
  bool resumed = false;  // continued from a saved state
};

// Runs cfg (finalized) with its results in the database at db_path (created if absent).
// resume: continue from the run's saved state when the database holds one (a config already
// converged is not run again: its stored summary is returned). Throws UsageError for a corrupt,
// locked or newer-schema database; a training failure is recorded as status "failed" and rethrown.
StoredRunOutcome run_in_store(const RunConfig& cfg, const std::string& db_path, bool resume,
                              TrainHooks hooks = {});

class Store;

// Seconds without a heartbeat after which a "running" run counts as abandoned (another host's
// process that died): $LAZYFEAT_STALE_S, else 600. Running processes beat every 30 s.
double default_stale_seconds();

// One training of cfg outside any database, with its checkpoints and states streamed to the
// callbacks (used by run_in_store and by MPI worker ranks). `interrupted`: hooks.should_stop
// ended it (the caller puts the run back to planned). y_test: the test labels of the dataset.
struct ExecutedRun {
  RunResult result;
  at::Tensor y_test;
  bool interrupted = false;
};
ExecutedRun execute_run(const RunConfig& cfg, TrainHooks hooks,
                        const std::function<void(const Checkpoint&)>& on_checkpoint,
                        const std::function<void(int64_t step, double t, const std::string&)>& on_state);
// The same for an ensemble (experiment/train.h, train_ensemble: configs that differ in seed_init
// and alpha only; MPI worker ranks under --ensemble K): member k's checkpoints and states reach
// the callbacks with its index k; a stop request interrupts every member still running.
std::vector<ExecutedRun> execute_ensemble(
    const std::vector<RunConfig>& cfgs, std::vector<TrainHooks> hooks,
    const std::function<void(size_t k, const Checkpoint&)>& on_checkpoint,
    const std::function<void(size_t k, int64_t step, double t, const std::string&)>& on_state);

// Runs the already claimed run `id` of the store (sweep workers): resumes from its saved state
// when resume and one exists, records checkpoints, states, the result (or "failed" and
// rethrows). An interrupted run goes back to planned. A heartbeat thread keeps the row fresh.
StoredRunOutcome run_claimed(Store& store, int64_t id, const RunConfig& cfg, bool resume,
                             TrainHooks hooks);
// The same for claimed runs ids trained as one ensemble (experiment/train.h, train_ensemble: the
// configs differ in seed_init and alpha only): each run streams its own checkpoints and states
// and gets its own result row, exactly the rows it would write alone. A stop request puts every
// unfinished run back to planned; an exception marks every run failed and is rethrown.
std::vector<StoredRunOutcome> run_claimed_ensemble(Store& store, const std::vector<int64_t>& ids,
                                                   const std::vector<RunConfig>& cfgs, bool resume,
                                                   const TrainHooks& hooks);

// The checkpoints to keep when resuming from a state saved at checkpoint `step`: those up to the
// largest step of the log-spaced schedule (protocol §4) <= step. The off-schedule checkpoint a
// run writes when it stops is dropped, so that a resumed run's series equals an uninterrupted one.
int64_t schedule_floor(int64_t step);

// A RunResult rebuilt from a stored summary JSON and outputs (for runs already converged).
RunResult result_from_summary(const nlohmann::json& summary);

}  // namespace lf
