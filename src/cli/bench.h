// Registry of `lazyfeat bench NAME` benchmarks. Each src/cli/bench_*.cpp registers itself:
//   static lf::cli::Benchmark reg{"train-step", "accepted steps/s of setup A", bench_train_step};
// A benchmark parses its own options (args after NAME) and prints its figures; with --json the
// last stdout line is one JSON object (cli-contract.md). Speed is measured here, never in tests.
#pragma once
#include "cli/command.h"
#include "data/dataset.h"

namespace lf::cli {

struct Benchmark {
  Benchmark(std::string name, std::string summary, Fn fn);
};
std::vector<Entry>& bench_registry();

// The benchmarks' training set: x ~ N(0,1) [ptr, 10] (seeded), labels the sign of a fixed random
// linear function, no test set. No point is satisfied in the first steps of a run on it.
Dataset bench_dataset(int64_t ptr);
// Setup B's (bench_train_cnn.cpp): images x ~ N(0,1) [ptr, 1, 28, 28] (seeded) rescaled to norm 28
// as the real data, labels the sign of a fixed smooth pattern, no test set.
Dataset bench_images(int64_t ptr);
double median(std::vector<double> v);  // of a non-empty list
// The numbers of a comma-separated option value ("1e-2,1,100"); one clear message for opt when
// there are none or one is not a number.
std::vector<double> parse_list(const std::string& opt, const std::string& text);
// `bench train-step --arch cnn` (bench_train_cnn.cpp): setup B's step through the trainer.
int bench_train_step_cnn(const Args& args);

}  // namespace lf::cli
