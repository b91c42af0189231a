// Registry of `lazyfeat bench NAME` benchmarks. Each src/cli/bench_*.cpp registers itself:
//   static lf::cli::Benchmark reg{"train-step", "accepted steps/s of setup A", bench_train_step};
// A benchmark parses its own options (args after NAME) and prints its figures; with --json the
// last stdout line is one JSON object (cli-contract.md). Speed is measured here, never in tests.
#pragma once
#include "cli/command.h"

namespace lf::cli {

struct Benchmark {
  Benchmark(std::string name, std::string summary, Fn fn);
};
std::vector<Entry>& bench_registry();

}  // namespace lf::cli
