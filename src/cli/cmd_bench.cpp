// `lazyfeat bench NAME [options] [--json]`: dispatches to the registered benchmarks.
#include <algorithm>
#include <iostream>
#include <sstream>

#include "cli/bench.h"

#include <ATen/CPUGeneratorImpl.h>
#include "common/error.h"
#include "common/options.h"

namespace lf::cli {

std::vector<Entry>& bench_registry() {
  static std::vector<Entry> r;
  return r;
}

Dataset bench_dataset(int64_t ptr) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  auto o = at::TensorOptions().dtype(at::kDouble);
  Dataset data;
  data.name = "synthetic";
  data.x_train = at::randn({ptr, 10}, gen, o);
  at::Tensor dir = at::randn({10}, gen, o);
  data.y_train = at::where(at::mv(data.x_train, dir) > 0, 1.0, -1.0).to(at::kDouble);
  data.x_test = at::empty({0, 10}, o);
  data.y_test = at::empty({0}, o);
  return data;
}

std::vector<double> parse_list(const std::string& opt, const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(parse_double(opt, item));
  require(!out.empty(), opt + " needs a comma-separated list of numbers");
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t k = v.size() / 2;
  return v.size() % 2 ? v[k] : 0.5 * (v[k - 1] + v[k]);
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
