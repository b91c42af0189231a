// `lazyfeat bench ntk`: time of the three Gram matrices train x train, test x train and
// test x test for 1,000 + 1,000 points, FC L=5, d=10, float64, synthetic inputs (protocol
// section 7: the published implementation took 3.2 s at h=100 and 62 s at h=400), against the
// machine's float64 matrix-product rate measured in the same call (a 2000 x 2000 x h at::mm).
// --members K: the same for K networks (seeds 0..K-1) through ntk_members (the members' Grams
// batched) against the K networks one after another, in the same call.
// Deliberately not a test: speed is measured here only.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include "cli/bench.h"
#include "common/error.h"
#include "common/options.h"
#include "ntk/ntk.h"

namespace lf::cli {
namespace {

template <class F>
double time_s(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --members: ntk_members of the union of the two point sets (the three Grams of ntk_blocks) for K
// networks against ntk_blocks of each, median seconds of each over the repeats.
int bench_members(const Net& net0, int64_t K, const at::Tensor& a, const at::Tensor& b, NtkOptions opt, bool json,
                  int64_t repeats = 3) {
  const auto& p0 = std::get<FCParams>(net0.params);
  std::vector<Net> nets;
  for (int64_t k = 0; k < K; ++k)
    nets.push_back(Net::fc(fc_init(p0.d(), p0.h(), p0.L(), uint64_t(k), a.options()), net0.act));
  const at::Tensor ab = at::cat({a, b});
  std::vector<double> t_batched, t_alone;
  double c_batched = 0, c_alone = 0;
  NtkOptions alone = opt;
  alone.plan = nullptr;  // opt.plan: the batched call's
  alone.flops = nullptr;
  for (int64_t r = 0; r < repeats; ++r) {
    t_batched.push_back(time_s([&] { c_batched = ntk_members(nets, ab, at::Tensor(), opt).sum().item<double>(); }));
    t_alone.push_back(time_s([&] {
      c_alone = 0;
      for (const Net& n : nets) {
        NtkBlocks k = ntk_blocks(n, a, b, alone);
        c_alone += k.aa.sum().item<double>() + 2 * k.ba.sum().item<double>() + k.bb.sum().item<double>();
      }
    }));
  }
  const std::string plan = *opt.plan;
  const double tb = median(t_batched), ta = median(t_alone);
  nlohmann::json j = {{"members", K}, {"h", p0.h()}, {"L", p0.L()}, {"n_train", a.size(0)}, {"n_test", b.size(0)},
                      {"device", a.is_cuda() ? "cuda" : "cpu"}, {"repeats", repeats}, {"seconds_batched", tb},
                      {"seconds_alone", ta}, {"speedup", ta / tb}, {"plan", plan},
                      {"checksum_rel_diff", std::fabs(c_batched - c_alone) / std::fabs(c_alone)}};
  if (json) print_json_line(j.dump());
  else
    std::cout << "ntk of " << K << " members h=" << p0.h() << " L=" << p0.L() << ": batched " << tb << " s, alone "
              << ta << " s (x" << ta / tb << "), " << plan << "\n";
  return 0;
}

int bench_ntk(const Args& args) {
  int64_t h = 100, L = 5, d = 10, n = 1000, repeats = 5, tile = 0, members = 0;
  std::string stack = "auto";
  std::string method = "structured", device = "cpu";
  bool json = false;
  OptionParser p("lazyfeat bench ntk [--h H] [--L L] [--n N] [--method M] [--repeats R] [--json]",
                 "Seconds for Theta(train, train), Theta(test, train), Theta(test, test) on N + N synthetic "
                 "points (FC softplus, d=10, float64), median of R repeats; the FLOPs the method computes and "
                 "its rate, against a 2000 x 2000 x h float64 at::mm measured in the same call.");
  p.value("h", "H", "width (default 100)", [&](const std::string& v) { h = parse_int("--h", v); });
  p.value("L", "L", "hidden layers (default 5)", [&](const std::string& v) { L = parse_int("--L", v); });
  p.value("n", "N", "points per set (default 1000)", [&](const std::string& v) { n = parse_int("--n", v); });
  p.value("method", "structured|jacobian", "NTK method (default structured)", [&](const std::string& v) { method = v; });
  p.value("repeats", "R", "repeats, the median is reported (default 5)",
          [&](const std::string& v) { repeats = parse_int("--repeats", v); });
  p.value("tile", "T", "points per tile (default automatic)", [&](const std::string& v) { tile = parse_int("--tile", v); });
  p.value("members", "K", "K networks: batched (ntk_members) against one after another (default: one network)",
          [&](const std::string& v) { members = parse_int("--members", v); });
  p.value("stack-layers", "auto|on|off", "FC: the layers' Grams as one batched product (default auto: on cuda)",
          [&](const std::string& v) { stack = v; });
  p.flag("json", "print the figures as one JSON object on the last line", json);
  p.value("device", "cpu|cuda", "device (default cpu)", [&](const std::string& v) { device = v; });
  double budget_gb = 1;
  p.value("memory-budget", "GB", "memory for the method's temporaries (default 1)",
          [&](const std::string& v) { budget_gb = parse_double("--memory-budget", v); });
  auto rest = p.parse(args);
  require(rest.empty(), "unexpected argument '" + (rest.empty() ? "" : rest[0]) + "'");
  require(h >= 1, "--h must be >= 1");
  require(L >= 1, "--L must be >= 1");
  require(n >= 1, "--n must be >= 1");
  require(repeats >= 1, "--repeats must be >= 1");
  require(tile >= 0, "--tile must be >= 0");
  require(members >= 0, "--members must be >= 0");
  require(stack == "auto" || stack == "on" || stack == "off", "--stack-layers must be auto, on or off");
  require(device == "cpu" || device == "cuda", "--device must be cpu or cuda");
  require(device == "cpu" || at::hasCUDA(), "--device cuda: this build/machine has no CUDA device");
  NtkOptions opt;
  opt.method = ntk_method_from_name(method);
  opt.tile = tile;
  if (stack != "auto") opt.stack_layers = stack == "on";
  require(budget_gb > 0, "--memory-budget must be > 0");
  opt.memory_budget = budget_gb * 1e9;
  double flops = 0;
  std::string plan;
  opt.flops = &flops;
  opt.plan = &plan;

  auto f64 = at::TensorOptions().dtype(at::kDouble);
  auto dev = f64.device(device == "cuda" ? at::kCUDA : at::kCPU);
  at::manual_seed(0);
  at::Tensor x_train = at::randn({n, d}, f64).to(dev), x_test = at::randn({n, d}, f64).to(dev);
  Net net = Net::fc(fc_init(d, h, L, 0, dev), Activation::make("softplus"));
  if (members > 0) return bench_members(net, members, x_train, x_test, opt, json);
  at::Tensor A = at::randn({2000, h}, dev), B = at::randn({h, 2000}, dev), C = at::empty({2000, 2000}, dev);

  std::vector<double> t_ntk, t_mm;
  double checksum = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    t_mm.push_back(time_s([&] {
      at::mm_out(C, A, B);
      (void)C.sum().item<double>();  // the device done (cuda is asynchronous)
    }));
    t_ntk.push_back(time_s([&] {
      NtkBlocks k = ntk_blocks(net, x_train, x_test, opt);
      checksum = k.aa.sum().item<double>() + k.ba.sum().item<double>() + k.bb.sum().item<double>();
    }));
  }
  const double seconds = median(t_ntk), mm_s = median(t_mm);
  const double gflop = flops * 1e-9, gflops = gflop / seconds;
  const double mm_gflops = 2.0 * 2000 * 2000 * double(h) * 1e-9 / mm_s;
  nlohmann::json j = {{"h", h},           {"L", L},           {"d", d},  {"device", device},
                      {"n_train", n},     {"n_test", n},      {"method", method},
                      {"repeats", repeats}, {"seconds", seconds}, {"seconds_min", *std::min_element(t_ntk.begin(), t_ntk.end())},
                      {"gflop", gflop},   {"gflops", gflops}, {"matmul_gflops", mm_gflops},
                      {"fraction_of_matmul", gflops / mm_gflops}, {"plan", plan}, {"checksum", checksum}};
  // Protocol section 7: the published NTK routine on this machine class.
  if (n == 1000 && L == 5 && (h == 100 || h == 400)) {
    const double published = h == 100 ? 3.2 : 62.0;
    j["published_s"] = published;
    j["speedup"] = published / seconds;
  }
  if (json) {
    print_json_line(j.dump());
  } else {
    std::cout << "ntk " << method << " h=" << h << " L=" << L << " " << n << "+" << n << " points: " << seconds
              << " s (median of " << repeats << "), " << gflop << " GFLOP, " << gflops << " GFLOP/s; at::mm "
              << mm_gflops << " GFLOP/s\n";
  }
  return 0;
}

Benchmark reg{"ntk", "three NTK Gram matrices for 1,000 + 1,000 points (FC L=5)", bench_ntk};

}  // namespace
}  // namespace lf::cli
