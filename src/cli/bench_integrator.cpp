// `lazyfeat bench integrator [--ptr N --pte N --L N --h LIST --sqrt-h-alpha LIST --seeds LIST
//   --integrator NAME --tol X --max-wall S] [--json]`: does --integrator eab2 (or lte) follow the
// paper's trajectory, and at what cost? For each configuration (FC softplus, MNIST, setup A: mu = 1000, hinge, full batch) three
// runs: R (the paper's rule, df in [1e-4, 1e-2]), R_fine (the paper's rule ten times finer, df in
// [1e-5, 1e-3]: the stand-in for the exact ODE) and N (--integrator, eab2 by default, at --tol). For R and N against R_fine:
//   out    rms over test points of alpha (f - f0)_X - alpha (f - f0)_fine at the end, divided by
//          the rms of alpha (f - f0)_fine
//   t1, t2 |t_X - t_fine| / t_fine
//   test error, weight change, kernel change (--delta-kernel): the values, and their relative
//          differences to R_fine
//   gradient evaluations (backward passes, rejected trials' forwards not included: see
//   RunResult::gradient_evaluations), trials (forwards: steps + rejected), wall time.
// The R_fine runs of the issue's configurations (ptr 1000) take 15-60 minutes each: with --cache,
// --stop-after S ends this process's runs after S seconds, each leaving its saved state in the
// cache (<config_hash>.state, written every minute too), and the next call resumes them; --arms
// picks the arms this call trains (several processes can share one cache, one arm each); naming
// R_half adds the paper's rule twice finer than R (df in [5e-5, 5e-3]) to the comparison.
// Deliberately not: a test (speed and closeness are measured here, the tests check correctness),
// synthetic data (the question is the paper's trajectories), the stochastic dynamics.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>

#include "cli/bench.h"
#include "common/error.h"
#include "common/npy.h"
#include "common/options.h"
#include "experiment/config.h"
#include "experiment/from_config.h"
#include "experiment/train.h"

namespace lf::cli {
namespace {

using Clock = std::chrono::steady_clock;

// A finished run as the table needs it, kept in --cache DIR as <config_hash>.json and .npy (the
// final test outputs f - f0), so that the expensive R_fine runs are made once.
struct Run {
  nlohmann::json s;  // the summary (RunResult::summary())
  at::Tensor fd;     // [pte] f - f0 at the end
  double get(const char* k) const { return s.contains(k) && s[k].is_number() ? s[k].get<double>() : NAN; }
};

bool finished(const Run& r) { return r.fd.defined(); }

// The run of config c: from the cache when it finished in an earlier call; otherwise trained (from
// its saved state when an earlier call left one) and, once finished, cached. train == false or a
// run still going at `deadline` gives an unfinished Run (its summary only, status "unfinished").
Run run_cached(const RunConfig& c, const Dataset& data, const std::string& cache, bool train,
               std::optional<Clock::time_point> deadline) {
  namespace fs = std::filesystem;
  const std::string base = cache.empty() ? "" : cache + "/" + config_hash(c);
  if (!base.empty() && fs::exists(base + ".json") && fs::exists(base + ".npy")) {
    std::ifstream in(base + ".json");
    return {nlohmann::json::parse(in), read_npy(base + ".npy")};
  }
  if (!train) return {{{"status", "unfinished"}}, at::Tensor()};
  TrainHooks hooks;
  if (!base.empty()) {
    fs::create_directories(cache);
    const std::string state = base + ".state";
    if (fs::exists(state)) {
      std::ifstream in(state, std::ios::binary);
      hooks.resume_state.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    hooks.state_every_s = 60;
    hooks.on_state = [state](const std::string& bytes) {  // whole or not at all: write, then rename
      std::ofstream(state + ".tmp", std::ios::binary) << bytes;
      fs::rename(state + ".tmp", state);
    };
  }
  if (deadline) hooks.should_stop = [d = *deadline] { return Clock::now() >= d; };
  RunResult r = train_run(c, data, hooks);
  if (r.status == "stopped" && deadline && Clock::now() >= *deadline) {
    nlohmann::json s = r.summary();
    s["status"] = "unfinished";
    return {s, at::Tensor()};
  }
  Run out{r.summary(), r.test_f_delta.contiguous()};
  if (!base.empty()) {
    write_npy(base + ".npy", out.fd);
    std::ofstream(base + ".json") << out.s.dump();
    fs::remove(base + ".state");
  }
  return out;
}

double rel(double x, double ref) { return std::fabs(x - ref) / std::fabs(ref); }

nlohmann::json num(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

int bench_integrator(const Args& args) {
  int64_t ptr = 200, pte = 1000, L = 3;
  std::vector<double> hs = {32}, shas = {1e-2, 1e3}, seeds = {0, 1};
  double tol = RunConfig().integrator_tol, max_wall = 0, stop_after = 0;
  bool json = false, kernel = true;
  std::string cache, integrator = "eab2", arms_run = "R_fine,R,N";
  OptionParser p(
      "lazyfeat bench integrator [--ptr N --pte N --L N --h LIST --sqrt-h-alpha LIST --seeds LIST --integrator NAME "
      "--tol X --cache DIR --stop-after S --arms LIST] [--json]",
      "R (paper's rule), R_fine (ten times finer) and N (--integrator eab2 or lte) on MNIST, FC softplus, setup A: "
      "closeness of R and N to R_fine, gradient evaluations and wall time.");
  p.value("ptr", "N", "training points (default 200; the issue's: 1000)",
          [&](const std::string& v) { ptr = parse_int("--ptr", v); });
  p.value("pte", "N", "test points (default 1000)", [&](const std::string& v) { pte = parse_int("--pte", v); });
  p.value("L", "N", "hidden layers (default 3)", [&](const std::string& v) { L = parse_int("--L", v); });
  p.value("h", "LIST", "widths (default 32; the issue's: 32,64)",
          [&](const std::string& v) { hs = parse_list("--h", v); });
  p.value("sqrt-h-alpha", "LIST", "sqrt(h) alpha values (default 1e-2,1e3)",
          [&](const std::string& v) { shas = parse_list("--sqrt-h-alpha", v); });
  p.value("seeds", "LIST", "seed-init values (default 0,1)", [&](const std::string& v) { seeds = parse_list("--seeds", v); });
  p.value("integrator", "NAME", "N's integrator: eab2 (default) or lte",
          [&](const std::string& v) { integrator = v; });
  p.value("tol", "X", "N's tolerance (default: --integrator-tol's default)",
          [&](const std::string& v) { tol = parse_double("--tol", v); });
  p.value("max-wall", "S", "wall-time budget of each run (default none)",
          [&](const std::string& v) { max_wall = parse_double("--max-wall", v); });
  p.value("cache", "DIR", "keep each finished run in DIR (by config hash) and reuse it (default: none)",
          [&](const std::string& v) { cache = v; });
  p.value("stop-after", "S", "with --cache: end this call's runs after S seconds, each resumable from its saved "
          "state by the next call (default: run to the end)",
          [&](const std::string& v) { stop_after = parse_double("--stop-after", v); });
  p.value("arms", "LIST", "the arms this call trains, of R_fine, R, N and R_half (the paper's rule twice finer "
          "than R, compared only when named) (default R_fine,R,N; the others are read from --cache when there)",
          [&](const std::string& v) { arms_run = v; });
  p.flag("kernel", "measure the kernel change (--delta-kernel; default on)", kernel);
  p.flag("json", "print the figures as one JSON line", json);
  p.parse(args);
  require(integrator == "eab2" || integrator == "lte", "--integrator: eab2 or lte (N is the new integrator)");
  require(stop_after >= 0 && std::isfinite(stop_after), "--stop-after must be a number of seconds >= 0");
  require(stop_after == 0 || !cache.empty(), "--stop-after needs --cache DIR (the unfinished runs' states live there)");
  std::vector<std::string> train_arms;
  for (std::stringstream ss(arms_run); ss.good();) {
    std::string a;
    std::getline(ss, a, ',');
    require(a == "R_fine" || a == "R" || a == "N" || a == "R_half",
            "--arms: a comma-separated list of R_fine, R, N and R_half, not '" + a + "'");
    train_arms.push_back(a);
  }
  std::optional<Clock::time_point> deadline;
  if (stop_after > 0)
    deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(stop_after));

  RunConfig base;
  base.ptr = ptr;
  base.pte = pte;
  base.L = L;
  base.max_wall = max_wall;
  base.delta_kernel = kernel;
  {
    RunConfig c = base;
    finalize(c);
    base.data_dir = c.data_dir;
  }
  RunConfig dc = base;
  finalize(dc);
  const Dataset data = load_dataset(dc);

  struct Arm {
    const char* name;
    std::string integrator;
    double df_min, df_max;
  };
  std::vector<Arm> arms = {{"R_fine", "paper", 1e-5, 1e-3}, {"R", "paper", 1e-4, 1e-2}, {"N", integrator, 1e-4, 1e-2}};
  // R_half (only when --arms names it): the paper's rule twice finer than R. Its distance to R_fine
  // against R's tells whether R's is the rule's first-order error (half of R's) or the trajectory's
  // sensitivity to any small error (as large as R's), i.e. how good a stand-in for the ODE R_fine is.
  if (std::find(train_arms.begin(), train_arms.end(), "R_half") != train_arms.end())
    arms.push_back({"R_half", "paper", 5e-5, 5e-3});
  nlohmann::json rows = nlohmann::json::array();
  std::cout << std::setprecision(3);
  std::cout << "config                     arm     status     out_rel   t1_rel    t2_rel    test_err  wchange   "
               "kchange   grads     trials    wall_s\n";
  for (double h : hs)
    for (double sha : shas)
      for (double seed : seeds) {
        std::vector<Run> res;
        for (const Arm& a : arms) {
          RunConfig c = base;
          c.h = int64_t(h);
          c.sqrt_h_alpha = sha;
          c.seed_init = uint64_t(seed);
          c.integrator = a.integrator;
          c.integrator_tol = tol;
          c.df_min = a.df_min;
          c.df_max = a.df_max;
          finalize(c);
          const bool train = std::find(train_arms.begin(), train_arms.end(), a.name) != train_arms.end();
          res.push_back(run_cached(c, data, cache, train, deadline));
          std::cerr << "h " << h << " sqrt(h) alpha " << sha << " seed " << seed << " " << a.name << ": "
                    << res.back().s.value("status", "") << " steps " << res.back().get("steps") << " wall "
                    << res.back().get("wall_s") << "\n";
        }
        const Run& fine = res[0];  // unfinished: the comparisons are NaN (null)
        for (size_t i = 0; i < res.size(); ++i) {
          const Run& r = res[i];
          const double out = finished(r) && finished(fine)
                                 ? (r.fd - fine.fd).pow(2).mean().sqrt().item<double>() /  // alpha cancels
                                       fine.fd.pow(2).mean().sqrt().item<double>()
                                 : kNaN;
          const double steps = r.get("steps"), trials = steps + r.get("rejected");
          nlohmann::json row = {{"h", int64_t(h)},
                                {"sqrt_h_alpha", sha},
                                {"seed", int64_t(seed)},
                                {"arm", arms[i].name},
                                {"status", r.s.value("status", "")},
                                {"out_rel", num(out)},
                                {"t1", num(r.get("t1"))},
                                {"t2", num(r.get("t2"))},
                                {"t1_rel", num(rel(r.get("t1"), fine.get("t1")))},
                                {"t2_rel", num(rel(r.get("t2"), fine.get("t2")))},
                                {"test_err", num(r.get("test_err"))},
                                {"test_err_diff", num(r.get("test_err") - fine.get("test_err"))},
                                {"weight_change", num(r.get("weight_change"))},
                                {"weight_change_rel", num(rel(r.get("weight_change"), fine.get("weight_change")))},
                                {"kernel_change", num(r.get("kernel_change"))},
                                {"kernel_change_rel", num(rel(r.get("kernel_change"), fine.get("kernel_change")))},
                                {"gradient_evaluations", num(r.get("gradient_evaluations"))},
                                {"steps", num(steps)},
                                {"rejected", num(r.get("rejected"))},
                                {"trials", num(trials)},
                                {"wall_s", num(r.get("wall_s"))}};
          rows.push_back(row);
          std::ostringstream cfgs;
          cfgs << "h=" << h << " sha=" << sha << " seed=" << seed;
          std::cout << std::left << std::setw(27) << cfgs.str() << std::setw(8) << arms[i].name << std::setw(11)
                    << row["status"].get<std::string>() << std::setw(10) << out << std::setw(10)
                    << rel(r.get("t1"), fine.get("t1")) << std::setw(10) << rel(r.get("t2"), fine.get("t2"))
                    << std::setw(10) << r.get("test_err") << std::setw(10) << r.get("weight_change") << std::setw(10)
                    << r.get("kernel_change") << std::setw(10) << r.get("gradient_evaluations") << std::setw(10)
                    << trials << std::setw(10) << r.get("wall_s") << "\n"
                    << std::flush;
        }
      }
  nlohmann::json j = {{"benchmark", "integrator"}, {"ptr", ptr}, {"pte", pte}, {"L", L},
                      {"integrator", integrator}, {"tol", tol}, {"rows", rows}};
  if (json) print_json_line(j.dump());
  return 0;
}

Benchmark reg{"integrator", "R, R_fine and --integrator eab2 or lte: closeness to R_fine and cost", bench_integrator};

}  // namespace
}  // namespace lf::cli
