// `lazyfeat bench ntk`: time of the three Gram matrices train x train, test x train and
// test x test for 1,000 + 1,000 points, FC L=5, d=10, float64, synthetic inputs (protocol
// section 7: the published implementation took 3.2 s at h=100 and 62 s at h=400), against the
// machine's float64 matrix-product rate measured in the same call (a 2000 x 2000 x h at::mm).
// Deliberately not a test: speed is measured here only.
#include <algorithm>
#include <chrono>
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

int bench_ntk(const Args& args) {
  int64_t h = 100, L = 5, d = 10, n = 1000, repeats = 5, tile = 0;
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
  require(device == "cpu" || device == "cuda", "--device must be cpu or cuda");
  require(device == "cpu" || at::hasCUDA(), "--device cuda: this build/machine has no CUDA device");
  NtkOptions opt;
  opt.method = ntk_method_from_name(method);
  opt.tile = tile;
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
