// `lazyfeat bench NAME [options] [--json]`: dispatches to the registered benchmarks.
#include <algorithm>
#include <iostream>

#include "cli/bench.h"
#include "common/error.h"

namespace lf::cli {

std::vector<Entry>& bench_registry() {
  static std::vector<Entry> r;
  return r;
}

Benchmark::Benchmark(std::string name, std::string summary, Fn fn) {
  bench_registry().push_back({std::move(name), std::move(summary), std::move(fn)});
}

namespace {

int cmd_bench(const Args& args) {
  auto list = [](std::ostream& os) {
    auto entries = bench_registry();
    std::sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.name < b.name; });
    os << "usage: lazyfeat bench NAME [options] [--json]   (lazyfeat bench NAME --help)\n\nbenchmarks:\n";
    for (const auto& e : entries) os << "  " << e.name << "  " << e.summary << "\n";
  };
  if (args.empty() || args[0] == "--help") {
    list(args.empty() ? std::cerr : std::cout);
    if (args.empty()) throw UsageError("bench needs a benchmark name");
    return 0;
  }
  for (const auto& e : bench_registry())
    if (e.name == args[0]) return e.fn(Args(args.begin() + 1, args.end()));
  throw UsageError("unknown benchmark '" + args[0] + "' (see lazyfeat bench --help)");
}

Command reg{"bench", "run a named benchmark (train-step, ntk, ...)", cmd_bench};

}  // namespace
}  // namespace lf::cli
