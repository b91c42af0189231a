// `lazyfeat ntk`: the empirical NTK Gram matrix of a freshly initialised FC, CNN or wide ResNet (or, with
// --db/--run, of a stored run's trained weights, any arch) on the first N test points (cli-contract.md),
// its Frobenius norm, mean, trace and time, optionally written as a NumPy .npy file.
// Deliberately not: the kernel measurements recorded with a run (experiment/kernels.h).
#include <algorithm>
#include <chrono>
#include <iostream>

#include "cli/command.h"
#include "common/error.h"
#include "common/npy.h"
#include "common/options.h"
#include "experiment/from_config.h"
#include "experiment/config.h"
#include "experiment/run_state.h"
#include "experiment/train.h"
#include "ntk/ntk.h"
#include "ntk/stats.h"
#include "store/store.h"

namespace lf::cli {
namespace {

int cmd_ntk(const Args& args) {
  RunConfig cfg;
  int64_t points = -1;
  std::string method = "structured", out;
  bool json = false;
  OptionParser p("lazyfeat ntk [run options] --points N [--method structured|jacobian] [--out FILE.npy] [--json]",
                 "The empirical NTK Theta(x, x') = grad_w f(x) . grad_w f(x') (protocol section 5) of a freshly "
                 "initialised network (--arch fc, cnn or wrn, --seed-init; --device cuda: on the GPU) on the first N test points of the dataset "
                 "(cnn and wrn: the normalised images, 1 channel for MNIST). "
                 "The structured method exploits the layer structure; jacobian takes per-sample gradients by "
                 "autograd (the slow reference). With --db FILE --run ID: the network of that stored run (fc, cnn or "
                 "wrn) as it was at its last saved state (the end of a converged run), on its dataset.");
  add_run_options(p, cfg);
  p.value("points", "N", "test points in the Gram matrix (default --kernel-points)",
          [&](const std::string& v) { points = parse_int("--points", v); });
  p.value("method", "structured|jacobian", "how the kernel is computed (default structured)",
          [&](const std::string& v) { method = v; });
  p.value("out", "FILE.npy", "write the [N, N] float64 matrix in NumPy format", [&](const std::string& v) { out = v; });
  p.flag("json", "print {\"n\",\"method\",\"seconds\",\"frobenius\",\"mean\",\"trace\",...} as the last line", json);
  std::string db;
  int64_t run_id = -1;
  p.value("db", "FILE", "a study database: take the network of --run ID from it", [&](const std::string& v) { db = v; });
  p.value("run", "ID", "with --db: the run whose trained weights to use", [&](const std::string& v) {
    run_id = parse_int("--run", v);
  });
  auto rest = p.parse(args);
  require(rest.empty(), "unexpected argument '" + (rest.empty() ? "" : rest[0]) + "'");
  require(db.empty() == (run_id < 0), "--db and --run go together");
  std::string trained;  // the stored run's state, whose weights replace a fresh initialisation
  if (!db.empty()) {
    StoreOptions so;
    so.create = false;
    so.readonly = true;
    Store store(db, so);
    RunRow row = store.run(run_id);
    auto state = store.load_state(run_id);
    require(bool(state), "run " + std::to_string(run_id) + " has no saved weights (status " + row.status + ")");
    std::string data_dir = cfg.data_dir;
    int64_t pte = cfg.pte;
    cfg = config_from_json(row.config);
    cfg.data_dir = data_dir;  // this machine's data, not the one the run was made on
    if (std::find(args.begin(), args.end(), "--pte") != args.end()) cfg.pte = pte;
    trained = state->blob;
  }
  finalize(cfg);
  NtkOptions opt;
  opt.method = ntk_method_from_name(method);
  if (points < 0) points = cfg.kernel_points;
  require(points >= 1, "--points must be >= 1");
  require(points <= cfg.pte, "--points must be <= --pte (" + std::to_string(cfg.pte) + ")");

  Dataset data = load_dataset(cfg);
  auto dtype = cfg.is_double() ? at::kDouble : at::kFloat;
  auto wopts = at::TensorOptions().dtype(dtype).device(cfg.device == "cuda" ? at::kCUDA : at::kCPU);
  require(cfg.device != "cuda" || at::hasCUDA(), "--device cuda: this build/machine has no CUDA device");
  at::Tensor x = data.x_test.narrow(0, 0, points).to(wopts).contiguous();
  const Activation act = activation_of(cfg);
  // --h is the width: the FC width, the CNN's channels, the wide ResNet's width factor.
  Net net = !trained.empty()     ? net_from_state(trained, act).to(wopts)
            : cfg.arch == "fc"  ? Net::fc(fc_init(x.size(1), cfg.h, cfg.L, cfg.weights_seed(), wopts), act)
            : cfg.arch == "cnn" ? Net::cnn(cnn_init(x.size(1), cfg.h, cfg.weights_seed(), wopts), act)
                                : Net::wrn(wrn_init(x.size(1), cfg.h, cfg.weights_seed(), wopts), act);
  double flops = 0;
  std::string plan;
  opt.flops = &flops;
  opt.plan = &plan;
  const auto t0 = std::chrono::steady_clock::now();
  at::Tensor K = ntk(net, x, opt).to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out.empty()) write_npy(out, K);

  KernelStatsOptions so;
  so.top = 0;
  nlohmann::json s = kernel_stats(K, at::Tensor(), so);
  nlohmann::json j = {{"n", points},           {"method", method},           {"seconds", seconds},
                      {"frobenius", s["frobenius"]}, {"mean", s["mean"]}, {"trace", s["trace"]},
                      {"std", s["std"]},       {"arch", cfg.arch},           {"h", cfg.h},
                      {"L", cfg.L},            {"params", net.num_params()}, {"gflop", flops * 1e-9},
                      {"plan", plan}};
  if (!out.empty()) j["out"] = out;
  if (json) {
    print_json_line(j.dump());
  } else {
    std::cout << "NTK of " << cfg.arch << " (h " << cfg.h << ", " << net.num_params() << " parameters) on " << points
              << " test points, " << method << ": " << seconds << " s\n"
              << "frobenius " << s["frobenius"] << "  mean " << s["mean"] << "  trace " << s["trace"] << "\n";
    if (!out.empty()) std::cout << "written to " << out << "\n";
  }
  return 0;
}

Command reg{"ntk", "the empirical NTK Gram matrix of a network on test points", cmd_ntk};

}  // namespace
}  // namespace lf::cli
