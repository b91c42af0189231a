// `lazyfeat bench train-step [--h 100 --L 5 --ptr 5000 --steps N --ref-steps M --repeats R] [--json]`:
// accepted steps per second of setup A (FC softplus beta 5, d = 10, float64, mu = 1000, hinge)
// with the fused CPU trainer, and with the plain LibTorch reference trainer measured in the
// same call as the baseline. Synthetic whitened-like data (x ~ N(0,1) [ptr, 10], labels the
// sign of a fixed random linear function), no test set: a step here is exactly what a step
// of a real run costs before any point is satisfied (the backward runs on all points).
// Each repeat is a fresh train_run of N accepted steps; figures are medians over repeats of the
// loop's rate (from the step-0 checkpoint to the last: without the run's one-off setup).
// Also reported: the fused kernels alone at the initial weights ("kernels": forward, backward on
// all points and on every other point, medians of 21 calls, next to a [ptr, h] x [h, h] at::mm_out
// timed the same way as the machine's baseline) and the rejected trial steps of the fused runs.
// Deliberately not: a test (speed is measured here only), MNIST.
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "cli/bench.h"
#include "common/error.h"
#include "common/options.h"
#include "common/sysinfo.h"
#include "experiment/from_config.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "models/activation.h"
#include "models/fc.h"
#include "models/fc_fused.h"

namespace lf::cli {
namespace {

int bench_train_step(const Args& args) {
  for (size_t i = 0; i + 1 < args.size(); ++i)  // setup B's benchmark (bench_train_cnn.cpp)
    if (args[i] == "--arch" && args[i + 1] == "cnn") return bench_train_step_cnn(args);
  int64_t h = 100, L = 5, ptr = 5000, steps = 100, ref_steps = 20, repeats = 3;
  bool json = false, no_ref = false;
  OptionParser p("lazyfeat bench train-step [--h N --L N --ptr N --steps N --ref-steps N --repeats R] [--json]",
                 "Accepted steps/s of setup A (FC softplus, d = 10, float64): the fused trainer and the plain "
                 "LibTorch reference trainer as baseline, medians over repeats.");
  p.value("arch", "fc|cnn", "fc: setup A (default); cnn: setup B (see --arch cnn --help)",
          [&](const std::string& v) { require(v == "fc", "bench train-step --arch: fc or cnn, got '" + v + "'"); });
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
  Dataset data = bench_dataset(ptr);
  auto o = at::TensorOptions().dtype(at::kDouble);

  int64_t rejected = 0, rejected_ref = 0;  // rejected trial steps, summed over the repeats
  std::vector<double> with_setup, with_setup_ref;
  std::string trainer;
  auto measure = [&](bool reference, int64_t n_steps) {
    std::vector<double> rates;
    for (int64_t r = 0; r < repeats; ++r) {
      RunConfig c = cfg;
      c.max_steps = n_steps;
      TrainHooks hooks;
      hooks.progress = false;
      hooks.reference = reference;
      RunResult res = train_run(c, data, hooks);
      // The loop's rate: steps between the step-0 checkpoint (after the run's setup: buffers,
      // initialisation, first forward and gradient) and the last one. res.steps_per_s counts the
      // setup too (reported as run_steps_per_s_all).
      const Checkpoint &c0 = res.checkpoints.front(), &c1 = res.checkpoints.back();
      rates.push_back(c1.wall_s > c0.wall_s ? double(c1.step - c0.step) / (c1.wall_s - c0.wall_s) : 0.0);
      (reference ? with_setup_ref : with_setup).push_back(res.steps_per_s);
      (reference ? rejected_ref : rejected) += res.rejected;
      if (!reference) trainer = res.trainer;  // "fused", or "reference" where the BLAS is MKL (train.cpp)
      std::cerr << (reference ? "reference" : "fused") << " repeat " << r << ": " << rates.back()
                << " steps/s (" << res.steps_per_s << " with the setup)\n";
    }
    return rates;
  };
  // The fused kernels alone at the initial weights: forward and backward (all points), medians.
  nlohmann::json kern;
  {
    const FCLayout lay(10, h, L);
    FCParams w = lay.views(lay.flatten(fc_init(10, h, L, cfg.weights_seed())));
    FCFused net(activation_of(cfg), lay, ptr);
    at::Tensor f = at::empty({ptr}, o), g = at::zeros({lay.size}, o);
    FCParams gp = lay.views(g);
    std::vector<int64_t> rows(ptr);
    std::vector<double> c(ptr);
    for (int64_t i = 0; i < ptr; ++i) rows[i] = i, c[i] = 1.0 / double(ptr);
    auto time_ms = [&](auto&& fn) {
      std::vector<double> ts;
      for (int r = 0; r < 21; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        fn();
        ts.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      return median(ts);
    };
    kern["forward_ms"] = time_ms([&] { net.forward(w, data.x_train, f); });
    kern["backward_ms"] = time_ms([&] { net.backward(w, data.x_train, rows.data(), c.data(), ptr, gp); });
    std::vector<int64_t> half;  // every other point: the gathered path
    for (int64_t i = 0; i < ptr; i += 2) half.push_back(i);
    kern["backward_half_ms"] =
        time_ms([&] { net.backward(w, data.x_train, half.data(), c.data(), int64_t(half.size()), gp); });
    at::Tensor a = at::randn({ptr, h}, o), bm = at::randn({h, h}, o), out = at::empty({ptr, h}, o);
    kern["mm_ms"] = time_ms([&] { at::mm_out(out, a, bm); });  // [ptr, h] x [h, h], LibTorch as is
    std::cerr << "kernels: " << kern.dump() << "\n";
  }
  auto fused = measure(false, steps);
  std::vector<double> ref;
  if (!no_ref) ref = measure(true, ref_steps);
  nlohmann::json j = {{"benchmark", "train-step"}, {"h", h}, {"L", L}, {"ptr", ptr}, {"d", 10},
                      {"steps", steps}, {"repeats", repeats}, {"steps_per_s", median(fused)}, {"trainer", trainer},
                      {"steps_per_s_all", fused}, {"rejected", rejected},
                      {"run_steps_per_s_all", with_setup}, {"simd", simd_name(fused_simd_width())},
                      {"intra_op_threads", at::get_num_threads()}, {"kernels", kern}};
  if (!no_ref) {
    j["reference_steps_per_s"] = median(ref);
    j["reference_steps_per_s_all"] = ref;
    j["reference_run_steps_per_s_all"] = with_setup_ref;
    j["speedup"] = median(fused) / median(ref);
  }
  std::cout << "train-step h=" << h << " L=" << L << " ptr=" << ptr << ": " << trainer << " " << median(fused)
            << " steps/s";
  if (!no_ref) std::cout << ", reference " << median(ref) << " steps/s (x" << j["speedup"].get<double>() << ")";
  std::cout << "\n";
  if (json) print_json_line(j.dump());
  return 0;
}

Benchmark reg{"train-step", "accepted steps/s of setup A, fused vs plain LibTorch", bench_train_step};

}  // namespace
}  // namespace lf::cli
