#include "testing.h"

#include "common/options.h"
#include "common/phase_times.h"
#include "dynamics/momentum.h"
#include "experiment/config.h"
#include "models/blas.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <ATen/CPUGeneratorImpl.h>

#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

extern char** environ;

namespace lft {

namespace fs = std::filesystem;

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) out.emplace_back();
    else out.back() += c;
  }
  return out;
}

int start(std::vector<std::string> argv, const std::string& out, const std::string& err, bool new_group,
          const std::vector<std::string>& env) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  if (new_group) {
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
  }
  std::vector<char*> av;
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  // This process's environment, each variable of env replacing one of the same name.
  auto name = [](const std::string& kv) { return kv.substr(0, kv.find('=') + 1); };
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    if (std::none_of(env.begin(), env.end(), [&](const std::string& x) { return name(x) == name(kv); }))
      env_s.push_back(kv);
  }
  env_s.insert(env_s.end(), env.begin(), env.end());
  std::vector<char*> ev;
  for (auto& e : env_s) ev.push_back(e.data());
  ev.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, av[0], &fa, &at, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return rc == 0 ? pid : -1;
}

int wait_exit(int pid) {
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env) {
  TempDir tmp;
  std::vector<std::string> argv = {binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  int pid = start(argv, tmp.file("out"), tmp.file("err"), false, env);
  if (pid < 0) return {127, "", "spawn failed"};
  int status = wait_exit(pid);
  return {status, slurp(tmp.file("out")), slurp(tmp.file("err"))};
}

std::string last_line(const std::string& s) {
  std::string t = s;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  auto pos = t.rfind('\n');
  return pos == std::string::npos ? t : t.substr(pos + 1);
}

TempDir::TempDir() {
  static std::mt19937_64 rng(std::random_device{}());
  fs::path base = fs::temp_directory_path();
  for (;;) {
    fs::path p = base / ("lazyfeat-test-" + std::to_string(getpid()) + "-" + std::to_string(rng() % 1000000000));
    if (fs::create_directory(p)) {
      path = p.string();
      break;
    }
  }
}

// std::filesystem::remove_all is avoided: PyTorch 2.x's libtorch.so exports a broken copy of it
// that the dynamic linker picks (a null call, seen on the GPU machine); nftw is plain libc.
static int remove_entry(const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }

TempDir::~TempDir() { nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

std::string data_dir() { return LAZYFEAT_DATA_DIR; }
std::string binary() { return LAZYFEAT_BINARY; }

bool have_mnist() {
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    if (!fs::exists(data_dir() + "/mnist/" + f)) return false;
  return true;
}

lf::Dataset synthetic(int64_t n, int64_t pte, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  lf::Dataset d;
  d.name = "synthetic";
  at::Tensor x = at::randn({n + pte, 10}, gen, o);
  at::Tensor s = x.select(1, 0) * x.select(1, 1) + 0.3 * x.select(1, 2);
  at::Tensor y = at::where(s > 0, at::ones_like(s), -at::ones_like(s));
  d.x_train = x.narrow(0, 0, n).contiguous();
  d.y_train = y.narrow(0, 0, n).contiguous();
  d.x_test = x.narrow(0, n, pte).contiguous();
  d.y_test = y.narrow(0, n, pte).contiguous();
  return d;
}

lf::Dataset images(int64_t n, int64_t pte, int64_t side, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto o = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x = at::randn({n + pte, 1, side, side}, gen, o);
  at::Tensor r = at::arange(side, o);
  at::Tensor u = at::sin(r / 4.0).unsqueeze(1) * at::cos(r / 5.0).unsqueeze(0);  // [side, side]
  at::Tensor s = (x.squeeze(1) * u).sum({1, 2});
  at::Tensor y = at::where(s > 0, at::ones_like(s), -at::ones_like(s));
  lf::Dataset d;
  d.name = "images";
  d.x_train = x.narrow(0, 0, n).contiguous();
  d.y_train = y.narrow(0, 0, n).contiguous();
  d.x_test = x.narrow(0, n, pte).contiguous();
  d.y_test = y.narrow(0, n, pte).contiguous();
  return d;
}

std::string cpu_trainer() { return lf::fused_kernels_preferred() ? "fused" : "reference"; }

lf::TrainHooks quiet() {
  lf::TrainHooks h;
  h.progress = false;
  return h;
}

std::vector<std::vector<std::string>> query(const std::string& db_path, const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return rows;
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        if (sqlite3_column_type(st, c) == SQLITE_FLOAT) {  // exact: SQLite's own text has 15 digits
          char buf[40];
          std::snprintf(buf, sizeof buf, "%.17g", sqlite3_column_double(st, c));
          row.push_back(buf);
          continue;
        }
        auto* p = sqlite3_column_text(st, c);
        row.push_back(p ? reinterpret_cast<const char*>(p) : "");
      }
      rows.push_back(row);
    }
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

int64_t count(const std::string& db_path, const std::string& sql) {
  auto r = query(db_path, sql);
  return r.empty() || r[0].empty() || r[0][0].empty() ? -1 : std::stoll(r[0][0]);
}

void expect_all_converged_once(const std::string& db, int64_t n) {
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs"), n);
  EXPECT_EQ(count(db, "SELECT count(DISTINCT config_hash) FROM runs"), n);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'converged'"), n);
  EXPECT_EQ(count(db, "SELECT count(*) FROM outputs"), n);
  for (const auto& row : query(db, "SELECT id, steps FROM runs")) {
    // (run_id, step) is the primary key: no duplicates by construction. The steps are exactly
    // the log-spaced schedule (protocol section 4) from 0, then the final step.
    auto steps = query(db, "SELECT step FROM checkpoints WHERE run_id = " + row[0] + " ORDER BY step");
    ASSERT_GE(steps.size(), 5u) << "run " << row[0];
    int64_t last = std::stoll(row[1]), expect = 0;
    for (size_t i = 0; i < steps.size(); ++i) {
      EXPECT_EQ(std::stoll(steps[i][0]), i + 1 == steps.size() ? last : expect) << "run " << row[0] << " #" << i;
      expect = lf::next_checkpoint(expect);
    }
  }
}

lf::TrainHooks recording(Recorded& r) {
  lf::TrainHooks h = quiet();
  h.on_checkpoint = [&r](const lf::Checkpoint& c) { r.checkpoints.push_back(c); };
  return h;
}

ScopedEnv::ScopedEnv(const std::string& n, const char* v) : name(n) {
  const char* o = std::getenv(n.c_str());
  had = o != nullptr;
  if (had) old = o;
  if (v) setenv(n.c_str(), v, 1);
  else unsetenv(n.c_str());
}
ScopedEnv::~ScopedEnv() { had ? setenv(name.c_str(), old.c_str(), 1) : unsetenv(name.c_str()); }

std::vector<lf::RunResult> ensemble_with(const char* var, const char* value, const std::vector<lf::RunConfig>& cfgs,
                                         const lf::Dataset& d, std::vector<Recorded>& rec, lf::EngineKind kind) {
  rec.assign(cfgs.size(), Recorded{});
  std::vector<lf::TrainHooks> hooks;
  for (auto& r : rec) hooks.push_back(recording(r));
  const ScopedEnv env(var, value);
  return lf::train_ensemble(cfgs, d, hooks, kind);
}

void expect_phase_times_account_for_the_rounds(const std::vector<lf::RunConfig>& cfgs, const lf::Dataset& d) {
  std::vector<Recorded> ra, rb;
  lf::PhaseTimes::set_enabled(false);
  const std::vector<lf::RunResult> plain = ensemble_with("LAZYFEAT_DEVICE_RULE", "all", cfgs, d, ra, lf::EngineKind::Batched);
  lf::PhaseTimes::set_enabled(true);
  lf::PhaseTimes::reset();
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<lf::RunResult> timed = ensemble_with("LAZYFEAT_DEVICE_RULE", "all", cfgs, d, rb, lf::EngineKind::Batched);
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  lf::PhaseTimes::set_enabled(false);
  int64_t longest = 0;  // trials of the member with the most: each round gives a member at most one
  for (size_t k = 0; k < cfgs.size(); ++k) {
    SCOPED_TRACE("member " + std::to_string(k));
    EXPECT_EQ(numbers(timed[k]), numbers(plain[k]));
    expect_same_run(timed[k], rb[k], plain[k], ra[k]);
    longest = std::max(longest, timed[k].steps + timed[k].rejected);
  }
  const int64_t rounds = lf::PhaseTimes::spans(), L = cfgs.front().L;
  EXPECT_GE(rounds, longest);
  // At most the rounds of the call in which the last member ends (kMaxRounds, experiment/train.cpp)
  // past it: a member whose rounds were counted twice would pass this.
  EXPECT_LE(rounds, longest + 256) << "rounds counted more than once";
  const bool kernels = cfgs.front().device == "cuda";  // engine.cpp's marks on either path
  std::map<std::string, int64_t> want = {
      {"trial step", rounds},       {"forward products", rounds * (L + 1)},
      {"forward epilogues", rounds * L}, {"fit and rule", rounds},
      {"gradient products (weights)", rounds * (L + 1)}, {"gradient copies", rounds * (L + 1)},
      {"gradient products (inputs)", rounds * (kernels ? L - 1 : L)}, {"gradient epilogues", rounds * L},
      {"state update", rounds}};
  int64_t copies = 0;  // cuda: every layer of a round of two or more members (aligned weights)
  double sum = 0;
  int64_t between = 0;
  for (const lf::PhaseTimes::Phase& p : lf::PhaseTimes::totals()) {
    SCOPED_TRACE(p.name);
    EXPECT_GE(p.ms, 0.0);
    sum += p.ms;
    if (p.name == lf::PhaseTimes::kBetweenSpans) {
      between = p.count;
      continue;
    }
    if (p.name == "weight copies" && kernels) {
      copies = p.count;
      continue;
    }
    ASSERT_TRUE(want.count(p.name)) << "a phase that engine.cpp does not mark";
    EXPECT_EQ(p.count, want[p.name]);
    want.erase(p.name);
  }
  EXPECT_TRUE(want.empty()) << want.size() << " phases never marked, e.g. " << want.begin()->first;
  EXPECT_LT(between, rounds) << "each call of rounds starts a new chain";
  if (kernels) {
    EXPECT_GT(copies, 0);
    EXPECT_LE(copies, rounds * (L + 1));
    EXPECT_EQ(copies % (L + 1), 0);
  }
  EXPECT_GT(sum, 0.0);
  EXPECT_LE(sum, wall_ms);
}

namespace {

// a and b to 1e-9 relative, or within floor (the rounding of quantities that start at 0).
void expect_close(double a, double b, const std::string& what, double floor = 0) {
  if (std::isnan(a) || std::isnan(b)) {
    EXPECT_EQ(std::isnan(a), std::isnan(b)) << what;
    return;
  }
  EXPECT_LE(std::fabs(a - b), 1e-9 * std::max(std::fabs(a), std::fabs(b)) + floor) << what << ": " << a << " vs " << b;
}

}  // namespace

void expect_same_run(const lf::RunResult& a, const Recorded& ca, const lf::RunResult& b, const Recorded& cb) {
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.message, b.message);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.rejected, b.rejected) << "the same accept/reject decisions";
  expect_close(a.t, b.t, "t");
  expect_close(a.t1, b.t1, "t1");
  expect_close(a.test_err, b.test_err, "test_err");
  ASSERT_EQ(ca.checkpoints.size(), cb.checkpoints.size());
  for (size_t i = 0; i < ca.checkpoints.size(); ++i) {
    const lf::Checkpoint &x = ca.checkpoints[i], &y = cb.checkpoints[i];
    const std::string at = "checkpoint " + std::to_string(i);
    EXPECT_EQ(x.step, y.step) << at;
    expect_close(x.t, y.t, at + " t");
    expect_close(x.dt, y.dt, at + " dt");
    expect_close(x.train_loss, y.train_loss, at + " train_loss");
    expect_close(x.weight_change, y.weight_change, at + " weight_change", 1e-14);
    expect_close(x.output_norm, y.output_norm, at + " output_norm", 1e-13);
    EXPECT_EQ(x.unsatisfied, y.unsatisfied) << at;
  }
}

lf::RunConfig above_rounding(lf::RunConfig cfg) {
  cfg.dt0 = kDt0AboveRounding;
  lf::finalize(cfg);
  return cfg;
}

nlohmann::json numbers(const lf::RunResult& r) {
  nlohmann::json j = r.summary();
  j.erase("wall_s");
  j.erase("steps_per_s");
  return j;
}

nlohmann::json checkpoints_after(const lf::RunResult& r, int64_t after) {
  nlohmann::json out = nlohmann::json::array();
  for (const lf::Checkpoint& c : r.checkpoints)
    if (c.step > after) {
      nlohmann::json j = c.to_json();
      j.erase("wall_s");
      out.push_back(j);
    }
  return out;
}

ResumedRun train_and_resume(const lf::RunConfig& cfg, const lf::Dataset& d, int64_t cut) {
  ResumedRun r;
  lf::TrainHooks h = quiet();
  h.on_state = [&](const std::string& s) { r.end_full = s; };
  r.full = lf::train_run(cfg, d, h);
  lf::RunConfig c1 = cfg;
  c1.max_steps = cut;
  h.on_state = [&](const std::string& s) { r.mid = s; };
  r.first = lf::train_run(c1, d, h);
  h.on_state = [&](const std::string& s) { r.end_resumed = s; };
  h.resume_state = r.mid;
  r.second = lf::train_run(cfg, d, h);
  return r;
}

lf::RunConfig stochastic_config(const std::string& arch, int64_t n) {
  lf::RunConfig c;
  c.arch = arch;
  c.h = arch == "cnn" ? 3 : 16;
  c.L = 2;
  c.ptr = n;
  c.pte = 50;
  c.tau = 10;
  c.temperature = 1e-3;
  c.batch_max = 16;
  lf::finalize(c);
  return c;
}

std::vector<lf::RunConfig> members_of(lf::RunConfig base, const std::vector<double>& alphas,
                                      const std::vector<uint64_t>& seeds) {
  std::vector<lf::RunConfig> out;
  for (double alpha : alphas)
    for (uint64_t seed : seeds) {
      base.alpha = alpha;
      base.seed_init = seed;
      lf::finalize(base);
      out.push_back(base);
    }
  return out;
}

lf::RunConfig conv_config(const std::string& arch, int64_t n, int64_t pte, int64_t h) {
  lf::RunConfig c;
  c.arch = arch;
  c.h = h;
  c.ptr = n;
  c.pte = pte;
  c.dt0 = 1e-2;
  c.df_min = 1e-2;
  c.df_max = 1e-1;
  lf::finalize(c);
  return c;
}

lf::RunConfig config_of_args(std::vector<std::string> args) {
  lf::RunConfig cfg;
  lf::OptionParser p("test", "test");
  lf::add_run_options(p, cfg);
  args.insert(args.end(), {"--data-dir", data_dir()});
  p.parse(args);
  lf::finalize(cfg);
  return cfg;
}

lf::RunConfig small_member(uint64_t seed, double sqrt_h_alpha, int64_t max_steps) {
  lf::RunConfig c;
  c.h = 16;
  c.L = 2;
  c.ptr = 50;
  c.pte = 30;
  c.seed_init = seed;
  c.sqrt_h_alpha = sqrt_h_alpha;
  c.max_steps = max_steps;
  lf::finalize(c);
  return c;
}

double exact_hinge_t2(const std::vector<double>& k) {
  std::vector<double> m(k.size(), 0.0);
  std::vector<bool> in(k.size(), true);
  double t = 0;
  for (size_t left = k.size(); left > 0; --left) {
    double best = INFINITY;
    size_t j = 0;
    for (size_t i = 0; i < k.size(); ++i)
      if (in[i] && (1 - m[i]) * double(left) / k[i] < best) best = (1 - m[i]) * double(left) / k[i], j = i;
    for (size_t i = 0; i < k.size(); ++i)
      if (in[i]) m[i] += best * k[i] / double(left);
    m[j] = 1, in[j] = false;
    t += best;
  }
  return t;
}

LinearHingeProblem linear_hinge_problem() {
  LinearHingeProblem p;
  p.k = {1.0, 0.6, 2.5, 0.3, 1.7, 0.9, 0.45, 3.1};
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  p.K = at::diag(at::tensor(p.k, f64));
  p.y = at::tensor(std::vector<double>{1, -1, 1, 1, -1, -1, 1, -1}, f64);
  p.alpha = 0.5;
  p.t2 = exact_hinge_t2(p.k);
  p.gradient_flow.alpha = p.alpha;
  p.gradient_flow.momentum.tau = 0;
  p.gradient_flow.control.dt = 1e-50;
  return p;
}

double LinearHingeProblem::margin_error(const lf::FrozenResult& r) const {
  double over = 0;
  for (size_t i = 0; i < k.size(); ++i)
    over = std::max(over, std::fabs(alpha * r.u_train[int64_t(i)].item<double>() * y[int64_t(i)].item<double>() - 1));
  return over;
}

CoupledFrozenProblem coupled_frozen_problem() {
  CoupledFrozenProblem p;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor X = at::randn({40, 60}, gen, at::TensorOptions().dtype(at::kDouble));
  p.K = at::mm(X, X.t()) / 60.0;
  p.y = at::where(X.select(1, 0) > 0, 1.0, -1.0).to(at::kDouble);
  p.paper.alpha = 1.0;
  p.paper.momentum.tau = -1000.0;
  p.paper.control.dt = 1e-50;
  lf::FrozenOptions fine = p.paper;
  fine.control.df_min = 1e-5, fine.control.df_max = 1e-3;
  p.fine_run = lf::frozen_kernel_train(p.K, p.y, fine);
  p.paper_run = lf::frozen_kernel_train(p.K, p.y, p.paper);
  return p;
}

double CoupledFrozenProblem::distance(const lf::FrozenResult& r) const {
  return (r.u_train - fine_run.u_train).norm().item<double>() / fine_run.u_train.norm().item<double>();
}

lf::RunConfig small_integrator_run(const std::string& name) {
  lf::RunConfig c;
  c.h = 16;
  c.L = 2;
  c.ptr = 60;
  c.pte = 100;
  c.integrator = name;
  c.integrator_tol = 1e-3;
  lf::finalize(c);
  return c;
}

}  // namespace lft
