// Shared test helpers: run the built `lazyfeat` binary, temporary folders, data location.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "experiment/train.h"
#include "ntk/frozen.h"

namespace lft {

struct CliResult {
  int status;           // exit status
  std::string out, err; // stdout, stderr
};
// Runs the lazyfeat binary with args (no shell: arguments are passed as they are).
CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {});
// Starts argv (argv[0] looked up in PATH) without waiting, stdin from /dev/null, stdout and
// stderr into the files out and err, env added to this process's (replacing a variable of the
// same name); new_group: its own process
// group (so that a test can signal the whole group). Returns the pid, or -1.
int start(std::vector<std::string> argv, const std::string& out, const std::string& err, bool new_group = false,
          const std::vector<std::string>& env = {});
// Waits for pid: its exit status, or 128 + the signal that ended it.
int wait_exit(int pid);
std::string slurp(const std::string& path);  // a whole file
// One CSV line's fields; a field in double quotes may hold commas (the report quotes its labels).
std::vector<std::string> csv_fields(const std::string& line);
// The last line of stdout (the --json object).
std::string last_line(const std::string& s);
// A fresh empty folder under $TMPDIR, removed by the destructor.
struct TempDir {
  TempDir();
  ~TempDir();
  std::string path;
  std::string file(const std::string& name) const { return path + "/" + name; }
};
std::string data_dir();       // the project's data folder (built by scripts/setup.sh)
std::string binary();         // path of the lazyfeat binary
bool have_mnist();            // the four MNIST IDX files are present

// A small in-process dataset: x ~ N(0,1) [n + pte, 10] from the seed, labels the sign of
// x_0 x_1 + 0.3 x_2 (not linearly separable); the first n points train, the rest test.
lf::Dataset synthetic(int64_t n, int64_t pte, uint64_t seed = 3);
// Images [n + pte, 1, side, side] x ~ N(0, 1), labels the sign of the image's overlap with a fixed
// smooth pattern (learnable by a small convolutional network); the first n points train.
lf::Dataset images(int64_t n, int64_t pte, int64_t side = 28, uint64_t seed = 5);
lf::TrainHooks quiet();  // no progress on stderr
// The name of the CPU float64 trainer a run takes by default here: "fused", or "reference" on a
// LibTorch whose BLAS is MKL (models/blas.h: fused_kernels_preferred).
std::string cpu_trainer();

// The rows of a read-only query of a study database as text (REAL columns with 17 digits: exact),
// empty when the file cannot be opened or read (a test then fails on what it expected).
std::vector<std::vector<std::string>> query(const std::string& db_path, const std::string& sql);
// The first column of the first row as an integer, -1 when there is none.
int64_t count(const std::string& db_path, const std::string& sql);
// A finished study (GoogleTest expectations): n runs, one per config, all converged, each with
// its outputs, and its checkpoints exactly the log-spaced schedule from 0 then the final step
// (no duplicate, no gap, no leftover of a killed attempt).
void expect_all_converged_once(const std::string& db_path, int64_t n);

// An environment variable set to value (unset where value is null) while in scope, then
// restored (or unset again).
struct ScopedEnv {
  ScopedEnv(const std::string& name, const char* value);
  ScopedEnv(const std::string& name, const std::string& value) : ScopedEnv(name, value.c_str()) {}
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  std::string name, old;
  bool had = false;
};

// The checkpoints a run reports through its hooks (recording(r) adds them to r).
struct Recorded {
  std::vector<lf::Checkpoint> checkpoints;
};
lf::TrainHooks recording(Recorded& r);  // quiet(), plus on_checkpoint into r
// train_ensemble(cfgs, d, kind) with member k's checkpoints recorded into rec[k] (resized to the
// members), the environment variable var set to value (nullptr: unset) for the call only, then
// restored (ScopedEnv), as tests that compare two settings of a switch (LAZYFEAT_CUDA_GRAPHS,
// ...) run it.
std::vector<lf::RunResult> ensemble_with(const char* var, const char* value, const std::vector<lf::RunConfig>& cfgs,
                                         const lf::Dataset& d, std::vector<Recorded>& rec,
                                         lf::EngineKind kind = lf::EngineKind::Auto);
// Two runs that made the same decisions (status, steps, rejected trials) and the same numbers
// to 1e-9 relative: t, t1, test error and every checkpoint (quantities that start at 0, the
// weight and output change, within the rounding floor of two implementations: 1e-14, 1e-13).
// Two implementations whose sums run in different orders (the batched engine against the
// sequential one, cuda against the CPU, at::mm against dgemm_) promise that only for runs whose
// decisions rest on no rounding: see above_rounding.
void expect_same_run(const lf::RunResult& a, const Recorded& ca, const lf::RunResult& b, const Recorded& cb);

// cfg starting at dt0 = kDt0AboveRounding instead of the protocol's 1e-50. From 1e-50 dt grows
// tenfold at each step that leaves every output's bits unchanged (df == 0, protocol section 4),
// and whether a weight change of a few ulps moves an output's last bit depends on the order of
// the sums: two implementations (or one on two CPUs' BLAS kernels) may then take x10 and x1.1 in
// another order (seen: OpenBLAS's Prescott kernels against lazyfeat's fused ones), and their t
// and dt differ by a factor up to 9 for a while. From dt0 = 1e-7 the first step already moves
// the outputs by ~1e-7 / alpha (df ~ dt Theta, Theta ~ 1, dL/dw ~ 1/alpha): far above rounding
// for every alpha of these tests, so no decision rests on the order of a sum.
constexpr double kDt0AboveRounding = 1e-7;
lf::RunConfig above_rounding(lf::RunConfig cfg);

// The ensemble cfgs on the batched engine with its rule on the device for every step
// (LAZYFEAT_DEVICE_RULE=all), once as it is and once with the phases timed (common/phase_times.h,
// as `bench ensemble --phases`): the same numbers bit for bit, every phase marked as often as a
// round of an L-layer network marks it (the kernels' path on cuda, the LibTorch composition
// elsewhere), no phase negative, and the phases' sum within the timed call's wall time.
void expect_phase_times_account_for_the_rounds(const std::vector<lf::RunConfig>& cfgs, const lf::Dataset& d);

// A run's summary without its timings (wall_s, steps_per_s): what two runs of the same numbers share.
nlohmann::json numbers(const lf::RunResult& r);
// The run's checkpoints after step `after`, as JSON without wall_s.
nlohmann::json checkpoints_after(const lf::RunResult& r, int64_t after);

// A run trained in one go (to cfg's budget or convergence), and the same run stopped after `cut`
// accepted steps and resumed from the state it saved then (mid): the three results and the
// final states of the whole run and of the resumed one.
struct ResumedRun {
  lf::RunResult full, first, second;
  std::string end_full, mid, end_resumed;
};
ResumedRun train_and_resume(const lf::RunConfig& cfg, const lf::Dataset& d, int64_t cut);

// The ensembles' small member: FC h = 16, L = 2, 50 training and 30 test points, the protocol's
// dynamics, seed_init seed, sqrt(h) alpha, a step budget (finalized).
lf::RunConfig small_member(uint64_t seed, double sqrt_h_alpha, int64_t max_steps);
// The integrators' small network run: FC h = 16, L = 2, 60 training and 100 test points (to go
// with synthetic(60, 100)), --integrator name at tol 1e-3 (finalized).
lf::RunConfig small_integrator_run(const std::string& name);
// A stochastic run (protocol section 4) of arch fc (h = 16, L = 2) or cnn (h = 3) on n training and
// 50 test points: constant tau = 10, temperature 1e-3, batches of at most 16 (finalized).
lf::RunConfig stochastic_config(const std::string& arch, int64_t n);
// An ensemble's members: base at each alpha (outer) and seed_init (inner), finalized.
std::vector<lf::RunConfig> members_of(lf::RunConfig base, const std::vector<double>& alphas,
                                      const std::vector<uint64_t>& seeds);
// A convolutional run (arch cnn or wrn) of h channels (wrn: width factor) on n training and pte
// test images, in a loose full-batch setting: df in [1e-2, 1e-1], dt from 1e-2 (finalized).
lf::RunConfig conv_config(const std::string& arch, int64_t n, int64_t pte, int64_t h);
// The run configuration that `lazyfeat train ARGS` builds (run options only), with the project's
// data folder (finalized).
lf::RunConfig config_of_args(std::vector<std::string> args);
// The exact t2 of a linear model f(w, x) = w . x with orthogonal inputs |x_i|^2 = k_i under
// gradient flow and the hinge (frozen kernel Theta = diag(k), lazyfeat's 1/|B|): point i's
// margin grows at k_i / |B| until it reaches 1 and then stays; the kinks computed event by event.
double exact_hinge_t2(const std::vector<double>& k);
// That model on 8 points (k from 0.3 to 3.1, labels of both signs, alpha = 0.5), shared by the
// lte and eab2 tests: the paper's rule under gradient flow from dt = 1e-50 (`gradient_flow`), the
// exact t2, and `margin_error`: max_i |alpha u_i y_i - 1| at the end (every margin ends at 1).
struct LinearHingeProblem {
  std::vector<double> k;
  at::Tensor K, y;
  double alpha, t2;
  lf::FrozenOptions gradient_flow;
  double margin_error(const lf::FrozenResult& r) const;
};
LinearHingeProblem linear_hinge_problem();

// Frozen-kernel training on a coupled kernel (Theta = X X^T / 60, X ~ N(0, 1) [40, 60], labels the
// sign of X's first column) with the paper's momentum (tau = t/mu, mu = 1000), shared by the lte
// and eab2 tests: the options of the paper's rule, its run, and the run ten times finer (df in
// [1e-5, 1e-3]: the stand-in for the exact trajectory); `distance` is |u - u_fine| / |u_fine|.
struct CoupledFrozenProblem {
  at::Tensor K, y;
  lf::FrozenOptions paper;
  lf::FrozenResult paper_run, fine_run;
  double distance(const lf::FrozenResult& r) const;
};
CoupledFrozenProblem coupled_frozen_problem();

}  // namespace lft
