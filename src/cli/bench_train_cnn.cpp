// `lazyfeat bench train-step --arch cnn [--device cpu|cuda] [--h 32 --ptr 5000 --batch-max 64
//  --temperature 3e-4 --tau 10 --alpha 1 --steps N --ref-steps M --repeats R] [--json]`: trial steps per second of setup B (the CNN
// of protocol section 2 under the stochastic dynamics of protocol section 4, float64) through
// lazyfeat's trainer, next to a plain LibTorch autograd loop doing the same work (the published
// algorithm: the batch drawn by chunk forwards, f(batch) with a graph, backward, the momentum step,
// f(batch) again for df), LibTorch's own conv2d forward and backward for the four layers'
// shapes at b_max images, and the trainer's CPU kernels (models/cnn_fused.h) on the same network
// at b_max images, all in the same call, on the device asked (cuda: cuDNN on both sides, no CPU
// kernels); --reference-trainer also times the trainer with --reference (its CNN through conv2d +
// autograd, what the trainer ran before the fused kernels). Synthetic images (x ~ N(0,1) [ptr, 1, 28, 28]
// rescaled to norm 28 as the real data, labels the sign of a fixed pattern), no test set.
// The same work includes the checkpoint observables: both sides evaluate the first
// min(ptr, 10 b_max) training points at the log-spaced checkpoint steps (protocol section 4;
// every step early in a run). Rates: steps between the step-0 checkpoint and the last one over
// their wall time, medians over repeats. Deliberately not: a test (speed is measured here only),
// MNIST.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>
#include <iostream>

#include "cli/bench.h"
#include "common/error.h"
#include "common/options.h"
#include "dynamics/momentum.h"
#include "experiment/config.h"
#include "experiment/from_config.h"
#include "experiment/train.h"
#include "models/cnn.h"
#include "models/cnn_fused.h"

namespace lf::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }


// The published algorithm in plain LibTorch autograd (protocol section 4): per trial step, a batch
// of b unsatisfied points from chunk forwards over a random permutation, the batch loss with a
// graph, backward, the momentum step, the batch outputs again, and the step rule; at the
// checkpoint steps the outputs on the first min(n, 10 b_max) training points. Steps per second
// from the step-0 checkpoint on.
double plain_loop(const RunConfig& cfg, const Dataset& data, int64_t steps) {
  const Activation act = activation_of(cfg);
  const int64_t n = data.x_train.size(0), bmax = cfg.batch_max;
  const at::Device dev(cfg.device == "cuda" ? at::kCUDA : at::kCPU);
  CNNParams p = cnn_init(1, cfg.h, cfg.weights_seed(), at::TensorOptions().dtype(at::kDouble).device(dev));
  std::vector<at::Tensor> params = p.flat(), vel;
  for (auto& t : params) {
    t.requires_grad_(true);
    vel.push_back(at::zeros_like(t));
  }
  const at::Tensor x = data.x_train.to(dev), y = data.y_train.to(dev);
  at::Tensor f0;
  {
    c10::NoGradGuard ng;
    std::vector<at::Tensor> parts;
    for (int64_t s = 0; s < n; s += bmax) parts.push_back(cnn_forward_reference(p, x.narrow(0, s, std::min(bmax, n - s)), act));
    f0 = at::cat(parts);
  }
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed_batch);
  StepControl sc{cfg.temperature, cfg.df_min, cfg.df_max, stochastic_max_dt(n, cfg.temperature, bmax)};
  const double alpha = cfg.alpha;
  const int64_t diag = std::min(n, 10 * bmax);
  auto observe = [&] {
    c10::NoGradGuard ng;
    at::Tensor f = cnn_forward_reference(p, x.narrow(0, 0, diag), act);
    volatile double loss = (1 - alpha * (f - f0.narrow(0, 0, diag)) * y.narrow(0, 0, diag)).relu().mean().item<double>();
    (void)loss;
  };
  observe();  // step 0
  const auto t0 = Clock::now();
  int64_t accepted = 0, next = next_checkpoint(0);
  for (int64_t trial = 0; accepted < steps && trial < 10 * steps; ++trial) {
    const int64_t b = stochastic_batch_size(n, cfg.temperature, sc.dt, cfg.batch_min);
    at::Tensor perm = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong)).to(dev);
    std::vector<at::Tensor> picked;
    int64_t got = 0;
    {
      c10::NoGradGuard ng;
      for (int64_t s = 0; s < n && got < b; s += bmax) {
        at::Tensor im = perm.narrow(0, s, std::min(bmax, n - s));
        at::Tensor keep = alpha * (cnn_forward_reference(p, x.index_select(0, im), act) - f0.index_select(0, im)) *
                              y.index_select(0, im) < 1;
        picked.push_back(im.masked_select(keep));
        got += picked.back().numel();
      }
    }
    at::Tensor idx = at::cat(picked).narrow(0, 0, std::min(got, b));
    if (idx.numel() == 0) break;
    at::Tensor xb = x.index_select(0, idx), f0b = f0.index_select(0, idx), yb = y.index_select(0, idx);
    at::Tensor out = cnn_forward_reference(p, xb, act);
    at::Tensor loss = (1 - alpha * (out - f0b) * yb).relu().sum() / double(b) / (alpha * alpha);
    for (auto& t : params) t.mutable_grad() = at::Tensor();
    loss.backward();
    const double dt = sc.dt, xdec = std::exp(-dt / cfg.tau);
    std::vector<at::Tensor> saved_p, saved_v;
    {
      c10::NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i) {
        saved_p.push_back(params[i].detach().clone());
        saved_v.push_back(vel[i].clone());
        vel[i].mul_(xdec).sub_(params[i].grad(), 1 - xdec);
        params[i].add_(vel[i], dt);
      }
      at::Tensor out_new = cnn_forward_reference(p, xb, act);
      const double df = alpha * (out.detach() - out_new).abs().max().item<double>();
      if (sc.judge(df) == StepControl::Verdict::Reject) {
        for (size_t i = 0; i < params.size(); ++i) {
          params[i].copy_(saved_p[i]);
          vel[i].copy_(saved_v[i]);
        }
        continue;
      }
    }
    if (++accepted >= next) {
      observe();
      next = next_checkpoint(accepted);
    }
  }
  return 1000.0 * double(accepted) / ms_since(t0);
}

// LibTorch's conv2d alone for the four layers at bmax images: forward, and forward + backward
// (grad of weight and input), medians of 11 calls in ms.
nlohmann::json conv_timings(int64_t h, int64_t bmax, const std::string& device) {
  auto o = at::TensorOptions().dtype(at::kDouble).device(device == "cuda" ? at::kCUDA : at::kCPU);
  auto sync = [&](const at::Tensor& t) { (void)t.sum().item<double>(); };  // an asynchronous device timed to completion
  nlohmann::json out = nlohmann::json::array();
  int64_t c = 1, s = 28;
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    at::Tensor x = at::randn({bmax, c, s, s}, o).requires_grad_(l > 0);
    at::Tensor w = at::randn({h, c, 5, 5}, o).requires_grad_(true), b = at::zeros({h}, o).requires_grad_(true);
    const std::vector<int64_t> st = {kCnnStrides[l], kCnnStrides[l]}, pad = {kCnnPadding, kCnnPadding};
    std::vector<double> fw, fb;
    for (int r = 0; r < 11; ++r) {
      auto t0 = Clock::now();
      {
        c10::NoGradGuard ng;
        sync(at::conv2d(x, w, b, st, pad));
      }
      fw.push_back(ms_since(t0));
      t0 = Clock::now();
      at::conv2d(x, w, b, st, pad).sum().backward();
      sync(w.grad());
      fb.push_back(ms_since(t0));
    }
    const int64_t so = (s + 2 * kCnnPadding - kCnnKernel) / kCnnStrides[l] + 1;
    out.push_back({{"layer", l}, {"input", {bmax, c, s, s}}, {"output", {bmax, h, so, so}},
                   {"forward_ms", median(fw)}, {"forward_backward_ms", median(fb)}});
    c = h;
    s = so;
  }
  return out;
}

// The trainer's CPU kernels (models/cnn_fused.h) on the same network at bmax images: a forward
// that keeps nothing, and a forward that keeps + the backward, medians of 11 calls in ms.
nlohmann::json fused_timings(int64_t h, int64_t bmax) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  const CNNLayout lay(1, h);
  const CNNParams p = cnn_init(1, h, 1);
  at::Tensor x = at::randn({bmax, 1, 28, 28}, o), c = at::randn({bmax}, o), f = at::empty({bmax}, o);
  at::Tensor flat = at::zeros({lay.size}, o);
  CNNParams g = lay.views(flat);
  CNNFused net(Activation::make("relu"), lay);
  std::vector<double> fw, fb;
  for (int r = 0; r < 11; ++r) {
    auto t0 = Clock::now();
    net.forward(p, x, f.data_ptr<double>(), false);
    fw.push_back(ms_since(t0));
    t0 = Clock::now();
    net.forward(p, x, f.data_ptr<double>(), true);
    net.backward(p, c.data_ptr<double>(), g);
    fb.push_back(ms_since(t0));
  }
  return {{"images", bmax}, {"forward_ms", median(fw)}, {"forward_backward_ms", median(fb)}};
}

}  // namespace

Dataset bench_images(int64_t ptr) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  auto o = at::TensorOptions().dtype(at::kDouble);
  Dataset d;
  d.name = "synthetic-images";
  at::Tensor x = at::randn({ptr, 1, 28, 28}, gen, o);
  x = x * (28.0 / x.flatten(1).norm(2, {1}).view({ptr, 1, 1, 1}));  // norm sqrt(784), protocol section 1.4
  at::Tensor r = at::arange(28, o);
  at::Tensor u = at::sin(r / 4.0).unsqueeze(1) * at::cos(r / 5.0).unsqueeze(0);
  d.x_train = x;
  d.y_train = at::where((x.squeeze(1) * u).sum({1, 2}) > 0, 1.0, -1.0).to(at::kDouble);
  d.x_test = at::empty({0, 1, 28, 28}, o);
  d.y_test = at::empty({0}, o);
  return d;
}

int bench_train_step_cnn(const Args& args) {
  int64_t h = 32, ptr = 5000, steps = 200, ref_steps = 40, repeats = 3, batch_max = 64;
  double temperature = 3e-4, tau = 10, alpha = 1;
  bool json = false, no_ref = false, reference_trainer = false;
  std::string arch, device = "cpu";
  OptionParser p("lazyfeat bench train-step --arch cnn [--device cpu|cuda] [--h N --ptr N --batch-max B --temperature T --tau T "
                 "--alpha A --steps N --ref-steps M --repeats R] [--json]",
                 "Trial steps/s of setup B (CNN, stochastic dynamics, float64) through the trainer, next to a plain "
                 "LibTorch autograd loop of the same work and conv2d alone, medians.");
  p.value("arch", "cnn", "the network (cnn here)", [&](const std::string& v) { arch = v; });
  p.value("device", "cpu|cuda", "device of both loops (default cpu)", [&](const std::string& v) { device = v; });
  p.value("h", "N", "channels (default 32)", [&](const std::string& v) { h = parse_int("--h", v); });
  p.value("ptr", "N", "training points (default 5000)", [&](const std::string& v) { ptr = parse_int("--ptr", v); });
  p.value("batch-max", "B", "largest batch (default 64)",
          [&](const std::string& v) { batch_max = parse_int("--batch-max", v); });
  p.value("temperature", "T", "temperature (default 3e-4)",
          [&](const std::string& v) { temperature = parse_double("--temperature", v); });
  p.value("tau", "T", "momentum time (default 10)", [&](const std::string& v) { tau = parse_double("--tau", v); });
  p.value("alpha", "A", "output scale (default 1)", [&](const std::string& v) { alpha = parse_double("--alpha", v); });
  p.value("steps", "N", "accepted trainer steps per repeat (default 200)", [&](const std::string& v) { steps = parse_int("--steps", v); });
  p.value("ref-steps", "N", "accepted plain-loop steps per repeat (default 40)",
          [&](const std::string& v) { ref_steps = parse_int("--ref-steps", v); });
  p.value("repeats", "R", "repeats (default 3)", [&](const std::string& v) { repeats = parse_int("--repeats", v); });
  p.flag("no-reference", "skip the plain LibTorch loop", no_ref);
  p.flag("reference-trainer", "also time the trainer with --reference (LibTorch conv2d + autograd inside it)",
         reference_trainer);
  p.flag("json", "print the figures as one JSON line", json);
  p.parse(args);
  require(arch == "cnn", "bench train-step --arch: this benchmark takes cnn (fc is the default benchmark)");
  require(h >= 1 && ptr >= 2 && batch_max >= 1, "--h, --batch-max must be >= 1 and --ptr >= 2");
  require(steps >= 2 && ref_steps >= 2 && repeats >= 1, "--steps and --ref-steps must be >= 2, --repeats >= 1");
  require(temperature > 0 && tau > 0 && alpha > 0, "--temperature, --tau and --alpha must be > 0");

  RunConfig cfg;
  cfg.arch = "cnn";
  cfg.h = h;
  cfg.ptr = ptr;
  cfg.pte = 0;
  cfg.tau = tau;
  cfg.temperature = temperature;
  cfg.batch_max = batch_max;
  cfg.alpha = alpha;
  cfg.device = device;
  finalize(cfg);
  validate_train_config(cfg);  // --device cuda without CUDA: one message
  Dataset data = bench_images(ptr);

  std::vector<double> rates, run_rates, lt_rates;
  int64_t rejected = 0;
  std::string trainer;
  // One trainer run: steps/s between the step-0 checkpoint and the last.
  auto trainer_rate = [&](bool reference, RunResult& res) {
    RunConfig c = cfg;
    c.max_steps = steps;
    TrainHooks hooks;
    hooks.progress = false;
    hooks.reference = reference;
    res = train_run(c, data, hooks);
    const Checkpoint &c0 = res.checkpoints.front(), &c1 = res.checkpoints.back();
    return c1.wall_s > c0.wall_s ? double(c1.step - c0.step) / (c1.wall_s - c0.wall_s) : 0.0;
  };
  for (int64_t r = 0; r < repeats; ++r) {
    RunResult res;
    rates.push_back(trainer_rate(false, res));
    run_rates.push_back(res.steps_per_s);
    rejected += res.rejected;
    trainer = res.trainer;
    std::cerr << "trainer repeat " << r << ": " << rates.back() << " steps/s (" << res.steps_per_s
              << " with the setup, " << res.trainer << ")\n";
    if (reference_trainer) {
      lt_rates.push_back(trainer_rate(true, res));
      std::cerr << "reference trainer repeat " << r << ": " << lt_rates.back() << " steps/s\n";
    }
  }
  std::vector<double> ref_rates;
  if (!no_ref)
    for (int64_t r = 0; r < repeats; ++r) {
      ref_rates.push_back(plain_loop(cfg, data, ref_steps));
      std::cerr << "plain loop repeat " << r << ": " << ref_rates.back() << " steps/s\n";
    }
  const nlohmann::json conv = conv_timings(h, batch_max, device);
  std::cerr << "conv2d: " << conv.dump() << "\n";
  const nlohmann::json fused = device == "cpu" ? fused_timings(h, batch_max) : nlohmann::json();  // CPU kernels only
  std::cerr << "fused kernels: " << fused.dump() << "\n";
  const double rate = median(rates);
  nlohmann::json j = {{"benchmark", "train-step"}, {"arch", "cnn"}, {"device", device}, {"h", h}, {"ptr", ptr}, {"batch_max", batch_max},
                      {"temperature", temperature}, {"tau", tau}, {"alpha", alpha}, {"steps", steps},
                      {"repeats", repeats}, {"steps_per_s", rate}, {"steps_per_s_all", rates}, {"run_steps_per_s_all", run_rates},
                      {"trainer", trainer}, {"rejected", rejected}, {"intra_op_threads", at::get_num_threads()}, {"conv2d", conv},
                      {"fused", fused}};
  std::cout << "train-step cnn " << device << " h=" << h << " ptr=" << ptr << " batch-max=" << batch_max << ": trainer " << rate
            << " steps/s";
  if (reference_trainer) {
    j["reference_trainer_steps_per_s"] = median(lt_rates);
    j["reference_trainer_steps_per_s_all"] = lt_rates;
    std::cout << ", reference trainer " << median(lt_rates) << " steps/s";
  }
  if (!no_ref) {
    const double ref_rate = median(ref_rates);
    j["reference_steps_per_s"] = ref_rate;
    j["reference_steps_per_s_all"] = ref_rates;
    j["speedup"] = rate / ref_rate;
    std::cout << ", plain LibTorch loop " << ref_rate << " steps/s (x" << rate / ref_rate << ")";
  }
  std::cout << "\n";
  if (json) print_json_line(j.dump());
  return 0;
}

}  // namespace lf::cli
