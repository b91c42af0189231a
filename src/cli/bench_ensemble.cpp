// `lazyfeat bench ensemble [--device cpu|cuda] [--K 1,4,16] [--h 64 --L 3 --ptr 1000] [--steps N]
// [--repeats R] [--json]`: member-steps per second of an ensemble of K members (seeds 0..K-1,
// FC softplus, d = 10, float64, mu = 1000, hinge) trained in lockstep by train_ensemble, next to
// the same K runs trained one after another by train_run in the same call (the baseline).
// Synthetic data (x ~ N(0,1) [ptr, 10], labels the sign of a fixed random linear function) and
// sqrt(h) alpha = 1: no point is satisfied within the steps timed, so every member-step costs a
// full forward and backward. Figures are medians over repeats of member-steps / wall seconds,
// each ensemble and each sequence of runs from its start (the setup included), and the
// ensemble's loop alone (from the moment every member is set up). The engine is the
// ensemble's default: sequential fused kernels on the CPU, batched on cuda.
// Deliberately not: a test (speed is measured here only), MNIST.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <sstream>

#include "cli/bench.h"
#include "common/error.h"
#include "common/options.h"
#include "experiment/config.h"
#include "data/dataset.h"
#include "experiment/train.h"
#include "models/fc_fused.h"

namespace lf::cli {
namespace {

double seconds_of(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The device's float64 matrix rate on this benchmark's largest product, [ptr, h] x [h, h], in
// TFLOP/s: the median of 7 timings of 10 products each (a scalar read back ends each timing, so
// that asynchronous devices are timed to completion).
double matrix_rate(const std::string& device, int64_t ptr, int64_t h) {
  const auto o = at::TensorOptions().dtype(at::kDouble).device(device == "cuda" ? at::kCUDA : at::kCPU);
  const at::Tensor a = at::randn({ptr, h}, o), b = at::randn({h, h}, o);
  at::Tensor c = at::mm(a, b);
  std::vector<double> rates;
  for (int r = 0; r < 7; ++r) {
    const double s = seconds_of([&] {
      for (int i = 0; i < 10; ++i) at::mm_out(c, a, b);
      (void)c.sum().item<double>();
    });
    rates.push_back(10.0 * 2.0 * double(ptr) * double(h) * double(h) / s / 1e12);
  }
  return median(rates);
}

int bench_ensemble(const Args& args) {
  int64_t h = 64, L = 3, ptr = 1000, steps = 200, repeats = 3, alone_max = 16;
  std::string device = "cpu", ks = "1,4,16";
  bool json = false;
  OptionParser p("lazyfeat bench ensemble [--device cpu|cuda] [--K 1,4,16] [--h N --L N --ptr N --steps N "
                 "--repeats R] [--json]",
                 "Member-steps/s of ensembles of K members (train_ensemble) against the same K runs one after "
                 "another (train_run), medians over repeats.");
  p.value("device", "cpu|cuda", "device (default cpu)", [&](const std::string& v) { device = v; });
  p.value("K", "K1,K2,..", "ensemble sizes (default 1,4,16)", [&](const std::string& v) { ks = v; });
  p.value("h", "N", "width (default 64)", [&](const std::string& v) { h = parse_int("--h", v); });
  p.value("L", "N", "hidden layers (default 3)", [&](const std::string& v) { L = parse_int("--L", v); });
  p.value("ptr", "N", "training points (default 1000)", [&](const std::string& v) { ptr = parse_int("--ptr", v); });
  p.value("steps", "N", "accepted steps per member (default 200)",
          [&](const std::string& v) { steps = parse_int("--steps", v); });
  p.value("repeats", "R", "repeats (default 3)", [&](const std::string& v) { repeats = parse_int("--repeats", v); });
  p.value("alone-max", "K", "time the K runs alone only up to this K (default 16)",
          [&](const std::string& v) { alone_max = parse_int("--alone-max", v); });
  p.flag("json", "print the figures as one JSON line", json);
  p.parse(args);
  require(h >= 1 && L >= 1 && ptr >= 1 && steps >= 1 && repeats >= 1,
          "--h, --L, --ptr, --steps and --repeats must be >= 1");
  std::vector<int64_t> Ks;
  {
    std::stringstream ss(ks);
    std::string item;
    while (std::getline(ss, item, ',')) Ks.push_back(parse_int("--K", item));
    require(!Ks.empty(), "--K needs at least one ensemble size");
    for (int64_t k : Ks) require(k >= 1, "--K: ensemble sizes must be >= 1");
  }
  Dataset data = bench_dataset(ptr);
  // The matrix work of one member-step (FC, d = 10): the forward's products 2 n fo fi a layer,
  // the backward's weight gradients as many, and its input gradients as many again above the
  // first layer.
  double flops = 0;
  {
    const FCLayout lay(10, h, L);
    for (int64_t l = 0; l <= L; ++l)
      flops += 2.0 * double(ptr) * double(lay.fan_out(l) * lay.fan_in(l)) * (l == 0 ? 2.0 : 3.0);
  }
  const double mm_tflops = matrix_rate(device, ptr, h);
  std::cout << "matrix rate: " << mm_tflops << " TFLOP/s (float64 [" << ptr << ", " << h << "] x [" << h << ", " << h
            << "] on " << device << "), " << flops / 1e9 << " GFLOP of products a member-step\n";

  nlohmann::json rows = nlohmann::json::array();
  for (int64_t K : Ks) {
    std::vector<RunConfig> cfgs;
    for (int64_t k = 0; k < K; ++k) {
      RunConfig c;
      c.h = h;
      c.L = L;
      c.ptr = ptr;
      c.pte = 0;
      c.sqrt_h_alpha = 1.0;
      c.seed_init = uint64_t(k);
      c.device = device;
      c.max_steps = steps;
      finalize(c);
      cfgs.push_back(c);
    }
    TrainHooks quiet;
    quiet.progress = false;
    // The loop's time: from the last member's step-0 checkpoint (every member set up) to the
    // last checkpoint of all (every member at its step budget).
    using Clock = std::chrono::steady_clock;
    Clock::time_point loop_start, loop_end;
    std::vector<TrainHooks> hooks(size_t(K), quiet);
    for (auto& hk : hooks)
      hk.on_checkpoint = [&](const Checkpoint& c) {
        const auto now = Clock::now();
        if (c.step == 0) loop_start = std::max(loop_start, now);
        loop_end = std::max(loop_end, now);
      };
    std::vector<double> together, apart, loop;
    for (int64_t r = 0; r < repeats; ++r) {
      int64_t done = 0;
      loop_start = loop_end = Clock::time_point();
      double s = seconds_of([&] {
        for (const RunResult& res : train_ensemble(cfgs, data, hooks)) done += res.steps;
      });
      together.push_back(double(done) / s);
      loop.push_back(double(done) / std::chrono::duration<double>(loop_end - loop_start).count());
      if (K <= alone_max) {
        done = 0;
        s = seconds_of([&] {
          for (const RunConfig& c : cfgs) done += train_run(c, data, quiet).steps;
        });
        apart.push_back(double(done) / s);
      }
      std::cerr << "K=" << K << " repeat " << r << ": ensemble " << together.back() << " member-steps/s";
      if (!apart.empty()) std::cerr << ", runs alone " << apart.back();
      std::cerr << "\n";
    }
    const double tflops = median(loop) * flops / 1e12;  // the loop's rate of matrix work
    nlohmann::json row = {{"K", K}, {"member_steps_per_s", median(together)}, {"all", together},
                          {"loop_member_steps_per_s", median(loop)}, {"loop_tflops", tflops},
                          {"fraction_of_matrix_rate", tflops / mm_tflops}};
    std::cout << "ensemble K=" << K << " h=" << h << " L=" << L << " ptr=" << ptr << " " << device << ": "
              << median(together) << " member-steps/s (" << median(loop) << " in the loop, without the set-up: "
              << tflops << " TFLOP/s, " << 100.0 * tflops / mm_tflops << "% of the matrix rate)";
    if (!apart.empty()) {
      row["alone_member_steps_per_s"] = median(apart);
      row["alone_all"] = apart;
      row["ratio"] = median(together) / median(apart);
      std::cout << ", runs alone " << median(apart) << " (x" << row["ratio"].get<double>() << ")";
    }
    std::cout << "\n";
    rows.push_back(row);
  }
  nlohmann::json j = {{"benchmark", "ensemble"}, {"device", device}, {"h", h}, {"L", L}, {"ptr", ptr}, {"d", 10},
                      {"matrix_tflops", mm_tflops}, {"gflop_per_member_step", flops / 1e9},
                      {"steps", steps}, {"repeats", repeats}, {"intra_op_threads", at::get_num_threads()},
                      {"rows", rows}};
  if (json) print_json_line(j.dump());
  return 0;
}

Benchmark reg{"ensemble", "member-steps/s of ensembles of K members against K runs alone", bench_ensemble};

}  // namespace
}  // namespace lf::cli
