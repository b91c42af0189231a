// `lazyfeat bench train-step [--h 100 --L 5 --ptr 5000 --steps N --ref-steps M --repeats R] [--json]`:
// accepted steps per second of setup A (FC softplus beta 5, d = 10, float64, mu = 1000, hinge)
// with the fused CPU trainer, and with the plain LibTorch reference trainer measured in the
// same call as the baseline. Synthetic whitened-like data (x ~ N(0,1) [ptr, 10], labels the
// sign of a fixed random linear function), no test set: a step here is exactly what a step
// of a real run costs before any point is satisfied (the backward runs on all points).
// Each repeat is a fresh train_run of N accepted steps; figures are medians over repeats.
// Deliberately not: a test (speed is measured here only), MNIST.
#include <ATen/Parallel.h>

#include <algorithm>
#include <iostream>

#include "cli/bench.h"
#include "common/error.h"
#include "common/options.h"
#include "common/sysinfo.h"
#include "data/dataset.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "models/fc_fused.h"

namespace lf::cli {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t k = v.size() / 2;
  return v.size() % 2 ? v[k] : 0.5 * (v[k - 1] + v[k]);
}

int bench_train_step(const Args& args) {
  int64_t h = 100, L = 5, ptr = 5000, steps = 100, ref_steps = 20, repeats = 3;
  bool json = false, no_ref = false;
  OptionParser p("lazyfeat bench train-step [--h N --L N --ptr N --steps N --ref-steps N --repeats R] [--json]",
                 "Accepted steps/s of setup A (FC softplus, d = 10, float64): the fused trainer and the plain "
                 "LibTorch reference trainer as baseline, medians over repeats.");
  p.value("h", "N", "width (default 100)", [&](const std::string& v) { h = parse_int("--h", v); });
  p.value("L", "N", "hidden layers (default 5)", [&](const std::string& v) { L = parse_int("--L", v); });
  p.value("ptr", "N", "training points (default 5000)", [&](const std::string& v) { ptr = parse_int("--ptr", v); });
  p.value("steps", "N", "accepted steps per repeat, fused (default 100)",
          [&](const std::string& v) { steps = parse_int("--steps", v); });
  p.value("ref-steps", "N", "accepted steps per repeat, reference (default 20)",
          [&](const std::string& v) { ref_steps = parse_int("--ref-steps", v); });
  p.value("repeats", "R", "repeats (default 3)", [&](const std::string& v) { repeats = parse_int("--repeats", v); });
  p.flag("no-reference", "skip the reference baseline", no_ref);
  p.flag("json", "print the figures as one JSON line", json);
  p.parse(args);
  require(h >= 1 && L >= 1 && ptr >= 1, "--h, --L and --ptr must be >= 1");
  require(steps >= 1 && ref_steps >= 1 && repeats >= 1, "--steps, --ref-steps and --repeats must be >= 1");

  RunConfig cfg;
  cfg.h = h;
  cfg.L = L;
  cfg.ptr = ptr;
  cfg.pte = 0;
  finalize(cfg);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  auto o = at::TensorOptions().dtype(at::kDouble);
  Dataset data;
  data.name = "synthetic";
  data.x_train = at::randn({ptr, 10}, gen, o);
  at::Tensor dir = at::randn({10}, gen, o);
  data.y_train = at::where(at::mv(data.x_train, dir) > 0, 1.0, -1.0).to(at::kDouble);
  data.x_test = at::empty({0, 10}, o);
  data.y_test = at::empty({0}, o);

  auto measure = [&](bool reference, int64_t n_steps) {
    std::vector<double> rates;
    for (int64_t r = 0; r < repeats; ++r) {
      RunConfig c = cfg;
      c.max_steps = n_steps;
      TrainHooks hooks;
      hooks.progress = false;
      hooks.reference = reference;
      RunResult res = train_run(c, data, hooks);
      rates.push_back(res.steps_per_s);
      std::cerr << (reference ? "reference" : "fused") << " repeat " << r << ": " << res.steps_per_s
                << " steps/s\n";
    }
    return rates;
  };
  auto fused = measure(false, steps);
  std::vector<double> ref;
  if (!no_ref) ref = measure(true, ref_steps);
  nlohmann::json j = {{"benchmark", "train-step"}, {"h", h}, {"L", L}, {"ptr", ptr}, {"d", 10},
                      {"steps", steps}, {"repeats", repeats}, {"steps_per_s", median(fused)},
                      {"steps_per_s_all", fused}, {"simd", fused_simd_available()},
                      {"intra_op_threads", at::get_num_threads()}};
  if (!no_ref) {
    j["reference_steps_per_s"] = median(ref);
    j["reference_steps_per_s_all"] = ref;
    j["speedup"] = median(fused) / median(ref);
  }
  std::cout << "train-step h=" << h << " L=" << L << " ptr=" << ptr << ": fused " << median(fused)
            << " steps/s";
  if (!no_ref) std::cout << ", reference " << median(ref) << " steps/s (x" << j["speedup"].get<double>() << ")";
  std::cout << "\n";
  if (json) print_json_line(j.dump());
  return 0;
}

Benchmark reg{"train-step", "accepted steps/s of setup A, fused vs plain LibTorch", bench_train_step};

}  // namespace
}  // namespace lf::cli
