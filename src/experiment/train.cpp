// Placeholder until the train issue lands.
#include "experiment/train.h"

#include "common/error.h"

namespace lf {
nlohmann::json Checkpoint::to_json() const { return {}; }
nlohmann::json RunResult::summary() const { return {}; }
RunResult train_run(const RunConfig&, const Dataset&, const TrainHooks&) {
  throw UsageError("training is not available yet");
}
}  // namespace lf
