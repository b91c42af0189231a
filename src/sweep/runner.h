// Executing one run against a study database: claim (or create) the run's row, resume from its
// last saved state if any, stream checkpoints and states into the store, record the result.
// Used by `lazyfeat train --db FILE [--resume]` and by every sweep worker.
#pragma once
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

}  // namespace lf
