#include "experiment/config.h"

#include <cstdlib>
#include <functional>

#include "common/error.h"
#include "common/md5.h"
#include "common/options.h"
#include "common/pyhash.h"
#include "dynamics/integrator.h"

namespace lf {
namespace {

struct RunOption {
  const char* name;
  const char* metavar;  // nullptr for flags
  const char* help;
  std::function<void(RunConfig&, const std::string&)> set;
};

std::string opt(const char* name) { return std::string("--") + name; }

const std::vector<RunOption>& table() {
  static const std::vector<RunOption> t = {
      {"dataset", "NAME", "mnist | fashion | cifar10 (parity labels; cifar10: the binary files, 3 channels)",
       [](RunConfig& c, const std::string& v) { c.dataset = v; }},
      {"data-dir", "DIR", "folder holding <dataset>/ IDX files (default: the project's data/)",
       [](RunConfig& c, const std::string& v) { c.data_dir = v; }},
      {"ptr", "N", "training points (default 5000)",
       [](RunConfig& c, const std::string& v) { c.ptr = parse_int(opt("ptr"), v); }},
      {"pte", "N", "test points (default 50000)",
       [](RunConfig& c, const std::string& v) { c.pte = parse_int(opt("pte"), v); }},
      {"pca", "D", "whitened PCA to D components, 0 = raw pixels (default 10 for fc)",
       [](RunConfig& c, const std::string& v) { c.pca = parse_int(opt("pca"), v); }},
      {"pca-train-only", nullptr, "fit the PCA on the training set only (the paper: whole pool)",
       [](RunConfig& c, const std::string& v) { c.pca_train_only = parse_bool(opt("pca-train-only"), v); }},
      {"pca-solver", "dsyev|evd", "PCA eigensolver: dsyev replays the published data (default), evd is linalg_eigh",
       [](RunConfig& c, const std::string& v) { c.pca_solver = v; }},
      {"seed-data", "S", "seed of the data split (default 0)",
       [](RunConfig& c, const std::string& v) { c.seed_data = parse_uint(opt("seed-data"), v); }},
      {"seed-init", "S", "seed of the initial weights (default 0)",
       [](RunConfig& c, const std::string& v) { c.seed_init = parse_uint(opt("seed-init"), v); }},
      {"published-seed", nullptr,
       "seed the weights with seed-init + Python's hash(alpha), as the published code did (replays its runs)",
       [](RunConfig& c, const std::string& v) { c.published_seed = parse_bool(opt("published-seed"), v); }},
      {"seed-batch", "S", "seed of the batch draws (default 0)",
       [](RunConfig& c, const std::string& v) { c.seed_batch = parse_uint(opt("seed-batch"), v); }},
      {"arch", "fc|cnn|wrn", "network (default fc)",
       [](RunConfig& c, const std::string& v) { c.arch = v; }},
      {"act", "NAME", "softplus | relu | tanh | swish, normalised (default softplus; relu with --arch cnn or wrn)",
       [](RunConfig& c, const std::string& v) { c.act = v; }},
      {"softplus-beta", "B", "softplus sharpness (default 5)",
       [](RunConfig& c, const std::string& v) { c.softplus_beta = parse_double(opt("softplus-beta"), v); }},
      {"act-scale", "A",
       "activation prefactor (default: the normalising constant; the published runs: 1.40438 softplus, 1 tanh)",
       [](RunConfig& c, const std::string& v) { c.act_scale = parse_double(opt("act-scale"), v); }},
      {"softplus-threshold", "X",
       "softplus is linear where beta z > X, as PyTorch's (the published runs: 20; default 0 = exact softplus)",
       [](RunConfig& c, const std::string& v) { c.softplus_threshold = parse_double(opt("softplus-threshold"), v); }},
      {"softplus-scale", "A", "the same as --act-scale (kept for the published runs' name)",
       [](RunConfig& c, const std::string& v) { c.act_scale = parse_double(opt("softplus-scale"), v); }},
      {"L", "N", "hidden layers (default 5)",
       [](RunConfig& c, const std::string& v) { c.L = parse_int(opt("L"), v); }},
      {"h", "N", "width: fc neurons, cnn channels, wrn width factor (default 100; 10 with --arch wrn)",
       [](RunConfig& c, const std::string& v) {
         c.h = parse_int(opt("h"), v);
         require(c.h >= 1, "--h must be >= 1, got " + std::to_string(c.h));  // 0 is finalize's "unset"
       }},
      {"alpha", "A", "output scale, paper's convention (default 1)",
       [](RunConfig& c, const std::string& v) {
         c.alpha = parse_double(opt("alpha"), v);
         c.sqrt_h_alpha = std::numeric_limits<double>::quiet_NaN();
       }},
      {"sqrt-h-alpha", "X", "set alpha = X / sqrt(h)",
       [](RunConfig& c, const std::string& v) { c.sqrt_h_alpha = parse_double(opt("sqrt-h-alpha"), v); }},
      {"loss", "NAME", "hinge | softhinge | qhinge (default hinge)",
       [](RunConfig& c, const std::string& v) { c.loss = v; }},
      {"mu", "M", "momentum with tau = t/M (default: M = 1000)",
       [](RunConfig& c, const std::string& v) {
         double m = parse_double(opt("mu"), v);
         require(m > 0, "--mu must be > 0, got " + v);
         c.tau = -m;
       }},
      {"tau", "T", "momentum with constant relaxation time T (T > 0)",
       [](RunConfig& c, const std::string& v) {
         double t = parse_double(opt("tau"), v);
         require(t > 0, "--tau must be > 0, got " + v + " (use --mu M for tau = t/M)");
         c.tau = t;
       }},
      {"gradient-flow", nullptr, "plain gradient flow, no momentum",
       [](RunConfig& c, const std::string& v) {
         if (parse_bool(opt("gradient-flow"), v)) c.tau = 0.0;
         else if (c.tau == 0.0) c.tau = -1000.0;
       }},
      {"temperature", "T", "stochastic dynamics at fixed temperature T (0 = full batch)",
       [](RunConfig& c, const std::string& v) { c.temperature = parse_double(opt("temperature"), v); }},
      {"batch-max", "B", "largest batch of the stochastic dynamics (default 64)",
       [](RunConfig& c, const std::string& v) { c.batch_max = parse_int(opt("batch-max"), v); }},
      {"batch-min", "B", "smallest batch of the stochastic dynamics (default 1)",
       [](RunConfig& c, const std::string& v) { c.batch_min = parse_int(opt("batch-min"), v); }},
      {"df-min", "X", "adaptive step: grow dt when alpha max|df| <= X (default 1e-4)",
       [](RunConfig& c, const std::string& v) { c.df_min = parse_double(opt("df-min"), v); }},
      {"df-max", "X", "adaptive step: reject when alpha max|df| >= X (default 1e-2)",
       [](RunConfig& c, const std::string& v) { c.df_max = parse_double(opt("df-max"), v); }},
      {"dt0", "DT", "initial step (default 1e-50; the stochastic variant starts at T)",
       [](RunConfig& c, const std::string& v) { c.dt0 = parse_double(opt("dt0"), v); }},
      {"max-dt", "DT", "cap on the step (default none)",
       [](RunConfig& c, const std::string& v) { c.max_dt = parse_double(opt("max-dt"), v); }},
      {"integrator", "paper|lte|eab2",
       "step-size rule: paper (default: the paper's df bounds), lte (local-error control with kink landing) or "
       "eab2 (exponential second-order steps with error control and kink landing); lte and eab2 are lazyfeat "
       "additions, protocol section 4",
       [](RunConfig& c, const std::string& v) { c.integrator = v; }},
      {"integrator-tol", "X", "lte, eab2: local error tolerance on alpha (f - f0) per step (default 1e-3)",
       [](RunConfig& c, const std::string& v) { c.integrator_tol = parse_double(opt("integrator-tol"), v); }},
      {"dtype", "float64|float32", "precision (default float64)",
       [](RunConfig& c, const std::string& v) { c.dtype = v; }},
      {"device", "cpu|cuda", "device (default cpu)",
       [](RunConfig& c, const std::string& v) { c.device = v; }},
      {"max-wall", "SEC", "wall-time budget; a run that hits it is 'stopped' (default none)",
       [](RunConfig& c, const std::string& v) { c.max_wall = parse_double(opt("max-wall"), v); }},
      {"max-steps", "N", "accepted-step budget; a run that hits it is 'stopped' (default none)",
       [](RunConfig& c, const std::string& v) { c.max_steps = parse_int(opt("max-steps"), v); }},
      {"kernel-points", "N", "test points on which the NTK is measured (default min(ptr, pte))",
       [](RunConfig& c, const std::string& v) { c.kernel_points = parse_int(opt("kernel-points"), v); }},
      {"init-kernel", nullptr, "also train the frozen kernel at initialisation",
       [](RunConfig& c, const std::string& v) { c.init_kernel = parse_bool(opt("init-kernel"), v); }},
      {"final-kernel", nullptr, "also train the frozen kernel at the end of training",
       [](RunConfig& c, const std::string& v) { c.final_kernel = parse_bool(opt("final-kernel"), v); }},
      {"delta-kernel", nullptr, "measure the kernel at init and at the end, and their change",
       [](RunConfig& c, const std::string& v) { c.delta_kernel = parse_bool(opt("delta-kernel"), v); }},
      {"zdot", nullptr, "measure the per-layer preactivation speed |dz/dt| at t = 0",
       [](RunConfig& c, const std::string& v) { c.zdot = parse_bool(opt("zdot"), v); }},
  };
  return t;
}

const RunOption* find_option(const std::string& name) {
  for (const auto& o : table())
    if (name == o.name) return &o;
  return nullptr;
}

bool one_of(const std::string& v, std::initializer_list<const char*> xs) {
  for (const char* x : xs)
    if (v == x) return true;
  return false;
}

}  // namespace

uint64_t RunConfig::weights_seed() const {
  return published_seed ? published_init_seed(seed_init, alpha) : seed_init;
}

std::string default_data_dir() {
  if (const char* d = std::getenv("LAZYFEAT_DATA_DIR"); d && *d) return d;
  return std::string(LAZYFEAT_SOURCE_DIR) + "/data";
}

void add_run_options(OptionParser& parser, RunConfig& cfg) {
  for (const auto& o : table()) {
    auto set = o.set;
    if (o.metavar)
      parser.value(o.name, o.metavar, o.help, [&cfg, set](const std::string& v) { set(cfg, v); });
    else
      parser.flag(o.name, o.help, [&cfg, set](bool v) { set(cfg, v ? "true" : "false"); });
  }
}

void set_run_option(RunConfig& cfg, const std::string& name, const std::string& value) {
  const RunOption* o = find_option(name);
  if (!o) throw UsageError("unknown run option '" + name + "'");
  o->set(cfg, value);
}

bool is_run_option(const std::string& name) { return find_option(name) != nullptr; }

std::vector<std::string> run_option_names() {
  std::vector<std::string> names;
  for (const auto& o : table()) names.push_back(o.name);
  return names;
}

void finalize(RunConfig& c) {
  require(one_of(c.dataset, {"mnist", "fashion", "cifar10"}),
          "unknown dataset '" + c.dataset + "' (expected mnist, fashion or cifar10)");
  require(one_of(c.arch, {"fc", "cnn", "wrn"}), "unknown arch '" + c.arch + "' (expected fc, cnn or wrn)");
  if (c.act.empty()) c.act = c.arch == "fc" ? "softplus" : "relu";  // the paper's (protocol section 6)
  require(one_of(c.act, {"softplus", "relu", "tanh", "swish"}),
          "unknown activation '" + c.act + "' (expected softplus, relu, tanh or swish)");
  require(one_of(c.loss, {"hinge", "softhinge", "qhinge"}),
          "unknown loss '" + c.loss + "' (expected hinge, softhinge or qhinge)");
  require(one_of(c.dtype, {"float64", "float32"}), "unknown dtype '" + c.dtype + "' (expected float64 or float32)");
  require(one_of(c.device, {"cpu", "cuda"}), "unknown device '" + c.device + "' (expected cpu or cuda)");
  if (c.h == 0) c.h = c.arch == "wrn" ? 10 : 100;  // the paper's widths (protocol sections 2 and 6)
  require(c.h >= 1, "--h must be >= 1, got " + std::to_string(c.h));
  require(c.L >= 1, "--L must be >= 1, got " + std::to_string(c.L));
  require(c.ptr >= 1, "--ptr must be >= 1, got " + std::to_string(c.ptr));
  require(c.pte >= 0, "--pte must be >= 0, got " + std::to_string(c.pte));
  if (!std::isnan(c.sqrt_h_alpha)) {
    require(c.sqrt_h_alpha > 0 && std::isfinite(c.sqrt_h_alpha),
            "--sqrt-h-alpha must be a finite number > 0");
    // pow(h, 0.5) as the published code's h ** 0.5 (libm's pow; not always sqrt's rounding),
    // so that alpha, and hash(alpha) for --published-seed, are the published run's.
    c.alpha = c.sqrt_h_alpha / std::pow(static_cast<double>(c.h), 0.5);
    c.sqrt_h_alpha = std::numeric_limits<double>::quiet_NaN();
  }
  require(c.alpha > 0 && std::isfinite(c.alpha), "--alpha must be a finite number > 0");
  require(c.softplus_beta > 0 && std::isfinite(c.softplus_beta), "--softplus-beta must be > 0");
  require(c.act_scale >= 0 && std::isfinite(c.act_scale), "--act-scale must be a finite number >= 0 (0: normalised)");
  require(c.softplus_threshold >= 0 && std::isfinite(c.softplus_threshold),
          "--softplus-threshold must be a finite number >= 0 (0: none)");
  require(one_of(c.pca_solver, {"dsyev", "evd"}), "unknown PCA solver '" + c.pca_solver + "' (expected dsyev or evd)");
  if (c.pca < 0) c.pca = (c.arch == "fc") ? 10 : 0;
  require(c.arch == "fc" || c.pca == 0, "--pca applies to fc networks only");
  require(c.temperature >= 0 && std::isfinite(c.temperature), "--temperature must be >= 0");
  require(c.batch_min >= 1 && c.batch_max >= c.batch_min, "need 1 <= --batch-min <= --batch-max");
  require(c.df_min > 0 && c.df_max > c.df_min, "need 0 < --df-min < --df-max");
  require(is_integrator(c.integrator), "unknown integrator '" + c.integrator + "' (expected paper, lte or eab2)");
  require(c.integrator_tol > 0 && c.integrator_tol < 1 && std::isfinite(c.integrator_tol),
          "need 0 < --integrator-tol < 1");
  require(c.integrator == "paper" || !c.stochastic(),
          "--integrator " + c.integrator + " applies to the full-batch dynamics only (temperature 0): the stochastic "
          "dynamics redraws its batch every step, so its outputs have no smooth path to control");
  require(c.dt0 > 0, "--dt0 must be > 0");
  require(c.max_dt >= 0, "--max-dt must be >= 0");
  require(c.max_wall >= 0, "--max-wall must be >= 0");
  require(c.max_steps >= 0, "--max-steps must be >= 0");
  if (c.kernel_points < 0) c.kernel_points = std::min(c.ptr, c.pte);
  require(c.kernel_points <= c.pte, "--kernel-points must be <= --pte");
  if (c.data_dir.empty()) c.data_dir = default_data_dir();
}

json config_to_json(const RunConfig& c) {
  json j;
  j["dataset"] = c.dataset;
  j["data_dir"] = c.data_dir;
  j["ptr"] = c.ptr;
  j["pte"] = c.pte;
  j["pca"] = c.pca;
  j["pca_train_only"] = c.pca_train_only;
  j["pca_solver"] = c.pca_solver;
  j["seed_data"] = c.seed_data;
  j["seed_init"] = c.seed_init;
  j["published_seed"] = c.published_seed;
  j["weights_seed"] = c.weights_seed();  // derived, for queries
  j["seed_batch"] = c.seed_batch;
  j["arch"] = c.arch;
  j["act"] = c.act;
  j["softplus_beta"] = c.softplus_beta;
  j["act_scale"] = c.act_scale;
  j["softplus_threshold"] = c.softplus_threshold;
  j["L"] = c.L;
  j["h"] = c.h;
  j["alpha"] = c.alpha;
  j["sqrt_h_alpha"] = c.alpha * std::sqrt(static_cast<double>(c.h));  // derived, for queries
  j["loss"] = c.loss;
  j["tau"] = c.tau;
  j["temperature"] = c.temperature;
  j["batch_max"] = c.batch_max;
  j["batch_min"] = c.batch_min;
  j["df_min"] = c.df_min;
  j["df_max"] = c.df_max;
  j["dt0"] = c.dt0;
  j["max_dt"] = c.max_dt;
  // Only when not the default: the identity (config_hash) of every paper-rule run stays as it was.
  if (c.integrator != "paper") {
    j["integrator"] = c.integrator;
    j["integrator_tol"] = c.integrator_tol;
  }
  j["dtype"] = c.dtype;
  j["device"] = c.device;
  j["max_wall"] = c.max_wall;
  j["max_steps"] = c.max_steps;
  j["kernel_points"] = c.kernel_points;
  j["init_kernel"] = c.init_kernel;
  j["final_kernel"] = c.final_kernel;
  j["delta_kernel"] = c.delta_kernel;
  j["zdot"] = c.zdot;
  return j;
}

RunConfig config_from_json(const json& j) {
  RunConfig c;
  auto get = [&](const char* k, auto& field) {
    if (j.contains(k) && !j[k].is_null()) field = j[k].get<std::decay_t<decltype(field)>>();
  };
  get("dataset", c.dataset); get("data_dir", c.data_dir); get("ptr", c.ptr); get("pte", c.pte);
  get("pca", c.pca); get("pca_train_only", c.pca_train_only); get("seed_data", c.seed_data);
  get("seed_init", c.seed_init); get("seed_batch", c.seed_batch); get("arch", c.arch);
  get("act", c.act); get("softplus_beta", c.softplus_beta); get("softplus_scale", c.act_scale);
  get("act_scale", c.act_scale); get("published_seed", c.published_seed);
  get("softplus_threshold", c.softplus_threshold);
  // Runs recorded before the dsyev PCA existed used linalg_eigh's: read them back as such.
  c.pca_solver = j.contains("pca_solver") ? j["pca_solver"].get<std::string>() : std::string("evd");
  get("L", c.L); get("h", c.h); get("alpha", c.alpha); get("loss", c.loss); get("tau", c.tau);
  get("temperature", c.temperature); get("batch_max", c.batch_max); get("batch_min", c.batch_min);
  get("df_min", c.df_min); get("df_max", c.df_max); get("dt0", c.dt0); get("max_dt", c.max_dt);
  get("integrator", c.integrator); get("integrator_tol", c.integrator_tol);
  get("dtype", c.dtype); get("device", c.device); get("max_wall", c.max_wall);
  get("max_steps", c.max_steps); get("kernel_points", c.kernel_points);
  get("init_kernel", c.init_kernel); get("final_kernel", c.final_kernel);
  get("delta_kernel", c.delta_kernel); get("zdot", c.zdot);
  return c;
}

std::string config_identity(const RunConfig& c) {
  json j = config_to_json(c);
  j.erase("data_dir");
  j.erase("max_wall");
  j.erase("max_steps");
  return j.dump();
}

std::string config_hash(const RunConfig& c) { return md5_hex(config_identity(c)); }

}  // namespace lf
