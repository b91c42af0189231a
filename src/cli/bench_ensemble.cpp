// `lazyfeat bench ensemble [--device cpu|cuda] [--K 1,4,16] [--h 64 --L 3 --ptr 1000] [--steps N]
// [--repeats R] [--phases] [--json]`: member-steps per second of an ensemble of K members (seeds 0..K-1,
// FC softplus, d = 10, float64, mu = 1000, hinge) trained in lockstep by train_ensemble, next to
// the same K runs trained one after another by train_run in the same call (the baseline).
// Synthetic data (x ~ N(0,1) [ptr, 10], labels the sign of a fixed random linear function) and
// sqrt(h) alpha = 1: no point is satisfied within the steps timed, so every member-step costs a
// full forward and backward. Figures are medians over repeats of member-steps / wall seconds,
// each ensemble and each sequence of runs from its start (the setup included), and the
// ensemble's loop alone (from the moment every member is set up). The engine is the
// ensemble's default: sequential fused kernels on the CPU, batched on cuda. --phases adds where
// the batched engine's rounds spend their time (common/phase_times.h), phase by phase.
// With --arch cnn: setup B (the CNN of protocol section 2 at --h, default 32, under the stochastic
// dynamics at T = 3e-4, tau = 10, batches of at most 64; synthetic images) as one ensemble of
// |--alphas| x --seeds members (default 5 x 10 = 50), each member --steps accepted steps: on cuda
// the grouped CNN engine (experiment/engine.h, all members as one network), on the CPU the
// sequential engine (member after member within each round); the runs alone as train_run makes
// them (a single cnn run is sequential everywhere).
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
#include "common/phase_times.h"
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

// The device's float64 matrix rate on this benchmark's largest products for K members at once,
// K products [ptr, h] x [h, h] as one batched product (bmm; one mm at K = 1), in TFLOP/s: the
// median of 7 timings of 10 products each (a scalar read back ends each timing, so that
// asynchronous devices are timed to completion). At K = 1 on cuda a [5000, 100] x [100, 100]
// product is too small to fill the card (4-7 TFLOP/s, where 100 of them batched reach 25-30):
// each row of the benchmark is held to the rate of its own K.
double matrix_rate(const std::string& device, int64_t K, int64_t ptr, int64_t h) {
  const auto o = at::TensorOptions().dtype(at::kDouble).device(device == "cuda" ? at::kCUDA : at::kCPU);
  const at::Tensor a = at::randn({K, ptr, h}, o), b = at::randn({K, h, h}, o);
  at::Tensor c = at::bmm(a, b), c0 = c[0];
  std::vector<double> rates;
  for (int r = 0; r < 7; ++r) {
    const double s = seconds_of([&] {
      for (int i = 0; i < 10; ++i) {
        if (K == 1) at::mm_out(c0, a[0], b[0]);
        else at::bmm_out(c, a, b);
      }
      (void)c.sum().item<double>();
    });
    rates.push_back(10.0 * 2.0 * double(K) * double(ptr) * double(h) * double(h) / s / 1e12);
  }
  return median(rates);
}

// Member-steps/s of cfgs trained as one ensemble (train_ensemble) over repeats: from its start
// (together) and in the loop alone (from the last member's step-0 checkpoint to the last
// checkpoint of all); with alone, of the same runs one after another (train_run).
struct EnsembleRates {
  std::vector<double> together, loop, apart;
};
EnsembleRates time_ensemble(const std::vector<RunConfig>& cfgs, const Dataset& data, int64_t repeats, bool alone) {
  TrainHooks quiet;
  quiet.progress = false;
  using Clock = std::chrono::steady_clock;
  Clock::time_point loop_start, loop_end;
  std::vector<TrainHooks> hooks(cfgs.size(), quiet);
  for (auto& hk : hooks)
    hk.on_checkpoint = [&](const Checkpoint& c) {
      const auto now = Clock::now();
      if (c.step == 0) loop_start = std::max(loop_start, now);
      loop_end = std::max(loop_end, now);
    };
  EnsembleRates out;
  for (int64_t r = 0; r < repeats; ++r) {
    int64_t done = 0;
    loop_start = loop_end = Clock::time_point();
    double s = seconds_of([&] {
      for (const RunResult& res : train_ensemble(cfgs, data, hooks)) done += res.steps;
    });
    out.together.push_back(double(done) / s);
    out.loop.push_back(double(done) / std::chrono::duration<double>(loop_end - loop_start).count());
    if (alone) {  // not in the phase table (--phases): the ensemble's steps only
      const bool timing = PhaseTimes::enabled();
      PhaseTimes::set_enabled(false);
      done = 0;
      s = seconds_of([&] {
        for (const RunConfig& c : cfgs) done += train_run(c, data, quiet).steps;
      });
      out.apart.push_back(double(done) / s);
      PhaseTimes::set_enabled(timing);
    }
    std::cerr << "K=" << cfgs.size() << " repeat " << r << ": ensemble " << out.together.back() << " member-steps/s";
    if (!out.apart.empty()) std::cerr << ", runs alone " << out.apart.back();
    std::cerr << "\n";
  }
  return out;
}

// The phases of the rounds timed since PhaseTimes::reset (bench ensemble --phases), as a table on
// out and as JSON: per phase the ms a round, the marks a round and the share of the rounds' time.
nlohmann::json phase_table(std::ostream& out) {
  const std::vector<PhaseTimes::Phase> ph = PhaseTimes::totals();
  const double rounds = double(PhaseTimes::spans());
  nlohmann::json j = nlohmann::json::array();
  if (ph.empty() || rounds == 0) {
    out << "phases: none timed (the batched engine's rounds: --device cuda, the rule on the device; the "
           "stochastic dynamics' steps)\n";
    return j;
  }
  double total = 0;
  for (const auto& p : ph) total += p.ms;
  out << "phases of " << rounds << " rounds, " << total / rounds << " ms a round:\n";
  for (const auto& p : ph) {
    out << "  " << p.name << std::string(p.name.size() < 30 ? 30 - p.name.size() : 1, ' ') << p.ms / rounds
        << " ms a round (" << 100.0 * p.ms / total << "%), " << double(p.count) / rounds << " marks a round\n";
    j.push_back({{"phase", p.name}, {"ms_per_round", p.ms / rounds}, {"share", p.ms / total},
                 {"marks_per_round", double(p.count) / rounds}});
  }
  return j;
}

// --arch cnn: one ensemble of alphas x seeds members of setup B (phases: its stochastic steps'
// phases, experiment/train.cpp).
int bench_ensemble_cnn(const std::string& device, int64_t h, int64_t ptr, int64_t steps, int64_t repeats,
                       const std::vector<double>& alphas, int64_t seeds, bool alone, bool phases, bool json) {
  std::vector<RunConfig> cfgs;
  for (double a : alphas)
    for (int64_t s = 0; s < seeds; ++s) {
      RunConfig c;
      c.arch = "cnn";
      c.h = h;
      c.ptr = ptr;
      c.pte = 0;
      c.tau = 10;
      c.temperature = 3e-4;
      c.batch_max = 64;
      c.alpha = a;
      c.seed_init = uint64_t(s);
      c.device = device;
      c.max_steps = steps;
      finalize(c);
      cfgs.push_back(c);
    }
  PhaseTimes::reset();
  const EnsembleRates r = time_ensemble(cfgs, bench_images(ptr), repeats, alone);
  nlohmann::json j = {{"benchmark", "ensemble"}, {"arch", "cnn"}, {"device", device}, {"h", h}, {"ptr", ptr},
                      {"K", cfgs.size()}, {"alphas", alphas}, {"seeds", seeds}, {"steps", steps}, {"repeats", repeats},
                      {"member_steps_per_s", median(r.together)}, {"all", r.together},
                      {"loop_member_steps_per_s", median(r.loop)}, {"intra_op_threads", at::get_num_threads()}};
  std::cout << "ensemble cnn K=" << cfgs.size() << " h=" << h << " ptr=" << ptr << " " << device << ": "
            << median(r.together) << " member-steps/s (" << median(r.loop) << " in the loop)";
  if (alone) {
    j["alone_member_steps_per_s"] = median(r.apart);
    j["ratio"] = median(r.together) / median(r.apart);
    std::cout << ", runs alone " << median(r.apart) << " (x" << j["ratio"].get<double>() << ")";
  }
  std::cout << "\n";
  if (phases) j["phases"] = phase_table(std::cout);
  if (json) print_json_line(j.dump());
  return 0;
}

int bench_ensemble(const Args& args) {
  int64_t h = -1, L = 3, ptr = -1, steps = 200, repeats = 3, alone_max = 16, seeds = 10;
  std::string device = "cpu", ks = "1,4,16", arch = "fc", alphas = "1e-2,1e-1,1,10,100";
  bool json = false, phases = false;
  OptionParser p("lazyfeat bench ensemble [--device cpu|cuda] [--K 1,4,16] [--h N --L N --ptr N --steps N "
                 "--repeats R] [--json]",
                 "Member-steps/s of ensembles of K members (train_ensemble) against the same K runs one after "
                 "another (train_run), medians over repeats.");
  p.value("device", "cpu|cuda", "device (default cpu)", [&](const std::string& v) { device = v; });
  p.value("arch", "fc|cnn", "fc: setup A's network (default); cnn: setup B, one ensemble of alphas x seeds",
          [&](const std::string& v) { arch = v; });
  p.value("alphas", "A1,A2,..", "cnn: the members' alphas (default 1e-2,1e-1,1,10,100)",
          [&](const std::string& v) { alphas = v; });
  p.value("seeds", "N", "cnn: seeds per alpha (default 10)", [&](const std::string& v) { seeds = parse_int("--seeds", v); });
  p.value("K", "K1,K2,..", "ensemble sizes (default 1,4,16)", [&](const std::string& v) { ks = v; });
  p.value("h", "N", "width (default 64; cnn 32)", [&](const std::string& v) { h = parse_int("--h", v); });
  p.value("L", "N", "hidden layers (default 3)", [&](const std::string& v) { L = parse_int("--L", v); });
  p.value("ptr", "N", "training points (default 1000; cnn 5000)",
          [&](const std::string& v) { ptr = parse_int("--ptr", v); });
  p.value("steps", "N", "accepted steps per member (default 200)",
          [&](const std::string& v) { steps = parse_int("--steps", v); });
  p.value("repeats", "R", "repeats (default 3)", [&](const std::string& v) { repeats = parse_int("--repeats", v); });
  p.value("alone-max", "K", "time the K runs alone only up to this K (default 16)",
          [&](const std::string& v) { alone_max = parse_int("--alone-max", v); });
  p.flag("json", "print the figures as one JSON line", json);
  p.flag("phases",
         "also where the ensemble's steps spend their time, phase by phase (common/phase_times.h): fc, the "
         "batched engine's rounds (then without CUDA graphs); cnn, the stochastic dynamics' steps",
         phases);
  p.parse(args);
  PhaseTimes::set_enabled(phases);
  require(arch == "fc" || arch == "cnn", "--arch: fc or cnn");
  if (h < 0) h = arch == "cnn" ? 32 : 64;
  if (ptr < 0) ptr = arch == "cnn" ? 5000 : 1000;
  {
    RunConfig c;
    c.device = device;
    validate_train_config(c);  // --device cuda without CUDA: one message
  }
  if (arch == "cnn") {
    require(h >= 1 && ptr >= 2 && steps >= 1 && repeats >= 1 && seeds >= 1,
            "--h, --steps, --repeats and --seeds must be >= 1, --ptr >= 2");
    const std::vector<double> as = parse_list("--alphas", alphas);
    return bench_ensemble_cnn(device, h, ptr, steps, repeats, as, seeds,
                              int64_t(as.size()) * seeds <= alone_max, phases, json);
  }
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
  const double mm_tflops = matrix_rate(device, 1, ptr, h);
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
    PhaseTimes::reset();
    const EnsembleRates r = time_ensemble(cfgs, data, repeats, K <= alone_max);
    const std::vector<double>&together = r.together, &apart = r.apart, &loop = r.loop;
    const double tflops = median(loop) * flops / 1e12;  // the loop's rate of matrix work
    const double k_tflops = K == 1 ? mm_tflops : matrix_rate(device, K, ptr, h);  // K such products batched
    nlohmann::json row = {{"K", K}, {"member_steps_per_s", median(together)}, {"all", together},
                          {"loop_member_steps_per_s", median(loop)}, {"loop_tflops", tflops},
                          {"matrix_tflops", k_tflops}, {"fraction_of_matrix_rate", tflops / k_tflops}};
    std::cout << "ensemble K=" << K << " h=" << h << " L=" << L << " ptr=" << ptr << " " << device << ": "
              << median(together) << " member-steps/s (" << median(loop) << " in the loop, without the set-up: "
              << tflops << " TFLOP/s, " << 100.0 * tflops / k_tflops << "% of the rate of " << K
              << " such products batched, " << k_tflops << " TFLOP/s)";
    if (!apart.empty()) {
      row["alone_member_steps_per_s"] = median(apart);
      row["alone_all"] = apart;
      row["ratio"] = median(together) / median(apart);
      std::cout << ", runs alone " << median(apart) << " (x" << row["ratio"].get<double>() << ")";
    }
    std::cout << "\n";
    if (phases) row["phases"] = phase_table(std::cout);
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
