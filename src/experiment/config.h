// RunConfig: every option of one run (cli-contract.md "Run options"), its defaults (the
// paper's protocol, docs/protocol.md), validation, canonical JSON and identity hash.
// One table of options serves the CLI (--name VALUE) and sweep specifications (TOML keys).
// Deliberately not: how a run executes (experiment/train.h), where results go (store/).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lf {

class OptionParser;
using json = nlohmann::json;

struct RunConfig {
  // Data (protocol section 1).
  std::string dataset = "mnist";      // mnist | fashion | cifar10
  std::string data_dir;               // "" = the project's data folder (default_data_dir())
  int64_t ptr = 5000;                 // train size n
  int64_t pte = 50000;                // test size
  int64_t pca = -1;                   // whitened PCA components; -1 = 10 for fc, 0 otherwise
  bool pca_train_only = false;        // fit the PCA on the training set (the paper: whole pool)
  std::string pca_solver = "dsyev";   // dsyev (the published code's symeig) | evd (linalg_eigh)
  uint64_t seed_data = 0, seed_init = 0, seed_batch = 0;
  bool published_seed = false;        // weights seeded with seed_init + Python's hash(alpha), as
                                      // the published code did (protocol section 8)

  // Network (protocol section 2).
  std::string arch = "fc";            // fc | cnn | wrn
  std::string act;                    // softplus | relu | tanh | swish; "" = the architecture's
                                      // (finalize: softplus for fc, relu for cnn, protocol section 6)
  double softplus_beta = 5.0;
  double softplus_threshold = 0.0;    // PyTorch's softplus cut-off (the published runs: 20); 0 = none
  double act_scale = 0.0;             // activation prefactor a; 0 = normalising constant by
                                      // quadrature (1.40438... for softplus at beta 5)
  int64_t L = 5;                      // hidden layers
  int64_t h = 0;                      // width; 0 = the architecture's (finalize: 100, and 10 for wrn,
                                      // the paper's 28 x 10: protocol section 2)

  // Model and loss (protocol section 3). alpha in the paper's convention.
  double alpha = 1.0;
  double sqrt_h_alpha = std::numeric_limits<double>::quiet_NaN();  // if set, alpha = X / sqrt(h)
  std::string loss = "hinge";         // hinge | softhinge | qhinge

  // Dynamics (protocol section 4). The published code's convention for tau:
  // tau > 0 constant relaxation time; tau < 0 means tau = t/mu with mu = -tau; tau = 0 gradient flow.
  double tau = -1000.0;               // --mu 1000 (setup A)
  double temperature = 0.0;           // > 0: the stochastic variant (setup B: 3e-4)
  int64_t batch_max = 64, batch_min = 1;
  double df_min = 1e-4, df_max = 1e-2;
  double dt0 = 1e-50;                 // initial step (full batch); the stochastic variant starts at T
  double max_dt = 0.0;                // 0 = no cap (the stochastic variant computes its own,
                                      // dynamics/momentum.h stochastic_max_dt; a smaller one here wins)
  std::string integrator = "paper";   // paper | lte | eab2 (dynamics/integrator.h; protocol section 4)
  double integrator_tol = 1e-3;       // lte, eab2: local error tolerance on alpha (f - f0)

  // Precision, device, budgets.
  std::string dtype = "float64";      // float64 | float32
  std::string device = "cpu";         // cpu | cuda
  double max_wall = 0.0;              // seconds, 0 = none
  int64_t max_steps = 0;              // accepted steps, 0 = none

  // Kernel measurements (protocol sections 4, 5).
  int64_t kernel_points = -1;         // -1 = min(ptr, pte)
  bool init_kernel = false, final_kernel = false, delta_kernel = false;
  bool zdot = false;                  // per-layer |dz/dt| at t = 0 (Fig. 8)

  // Derived quantities, valid after finalize().
  bool uses_momentum() const { return tau != 0.0; }
  double mu() const { return tau < 0 ? -tau : 0.0; }
  bool stochastic() const { return temperature > 0.0; }
  bool is_double() const { return dtype == "float64"; }
  // The seed of the initial weights' generator: seed_init, or seed_init + hash(alpha) with
  // published_seed (common/pyhash.h).
  uint64_t weights_seed() const;
};

// The directory holding data/<dataset>/: $LAZYFEAT_DATA_DIR, else <source tree>/data.
std::string default_data_dir();

// Registers every run option on the parser, writing into cfg.
void add_run_options(OptionParser& parser, RunConfig& cfg);

// Sets one run option by its name without dashes ("sqrt-h-alpha", "gradient-flow", ...) from
// its text value; flags take "true"/"false". Unknown names throw UsageError.
void set_run_option(RunConfig& cfg, const std::string& name, const std::string& value);
bool is_run_option(const std::string& name);
std::vector<std::string> run_option_names();

// Resolves defaults that depend on other options (alpha from sqrt-h-alpha, pca for fc,
// kernel points, data dir) and validates: throws UsageError naming the first problem
// (alpha <= 0, h < 1, L < 1, unknown activation/loss/dataset/arch/dtype/device, ...).
void finalize(RunConfig& cfg);

// Canonical JSON (sorted keys, every field, after finalize) and back.
json config_to_json(const RunConfig& cfg);
RunConfig config_from_json(const json& j);
// The identity of a run: config_to_json minus what cannot change its numbers
// (data_dir, max_wall, max_steps), as compact text, and its MD5.
std::string config_identity(const RunConfig& cfg);
std::string config_hash(const RunConfig& cfg);

}  // namespace lf
