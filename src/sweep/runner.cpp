// Placeholder until the store issue lands.
#include "sweep/runner.h"

#include "common/error.h"

namespace lf {
StoredRunOutcome run_in_store(const RunConfig&, const std::string&, bool, TrainHooks) {
  throw UsageError("--db is not available yet");
}
}  // namespace lf
