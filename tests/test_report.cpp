// Tests of `lazyfeat report` on a synthetic study database with known structure (errors on a
// known curve, kernel change exactly ~ (sqrt(h) alpha)^-1 in the lazy range up to seed noise,
// outputs with a known variance): the files exist, the CSVs hold the right numbers, the lazy
// slope is -1 within its bootstrap error, index.html renders in headless Chromium with every
// image loaded; bad input exits 2 with one message. Setup B: CNN runs with stored outputs make
// F1b and F2d whose CSVs hold the means, standard errors, ensemble errors and lazy/feature ratio
// computed here by hand; without converged CNN runs both are absent with a one-line reason.
// Deliberately not: real training (the database is written here through src/store's own
// schema and functions, with made-up numbers).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "experiment/config.h"
#include "store/store.h"
#include "testing.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::vector<int> kWidths = {100, 400};
const std::vector<double> kRegimes = {1e-2, 1e-1, 1, 10, 1e2, 1e3, 1e4};  // sqrt(h) alpha
const int kSeeds = 8;
const int kTest = 40;  // test points with stored outputs

// The known curves. Test error: a + b g(X) + c/h + seed * 1e-3 with g = X / (1 + X).
double test_err(int h, double X, int seed) { return 0.05 + 0.03 * X / (1 + X) + 0.1 / h + seed * 1e-3; }
// Output of seed s: alpha (f - f0) = m(X) y + s_i / sqrt(h), s_i = i - (S-1)/2, mean 0, with a
// margin m(X) that differs between regimes: within one ensemble Var = (S^2 - 1) / 12 / h
// exactly and the ensemble error is 0; seeds of different alpha grouped together would add
// the spread of m to the variance.
double out_noise(int seed) { return seed - (kSeeds - 1) / 2.0; }
double margin(double X) { return 0.5 + 0.05 * std::log10(X); }  // 0.4 .. 0.7
const double kVarH = (kSeeds * kSeeds - 1) / 12.0;

// The configuration of one synthetic run, finalized like a real one (alpha = X / sqrt(h)).
lf::RunConfig study_config(int h, double X, int seed) {
  lf::RunConfig c;
  c.dataset = "mnist", c.arch = "fc", c.act = "softplus", c.loss = "hinge";
  c.L = 5, c.h = h, c.ptr = 5000, c.pte = 50000, c.pca = 10;
  c.sqrt_h_alpha = X;
  c.seed_init = static_cast<uint64_t>(seed);
  c.tau = -1000.0, c.temperature = 0.0;
  c.delta_kernel = true;
  lf::finalize(c);
  return c;
}

struct SyntheticRun {
  int h;
  double X;
  int seed;
  std::string status;
  double kernel_change;
};

// Writes the runs through the store's own code (src/store: its schema, plan, checkpoints,
// finish), as `train --db` and sweeps do: FC softplus L=5 runs with outputs and checkpoints.
void write_runs(const std::string& path, const std::vector<SyntheticRun>& runs) {
  lf::Store store(path);
  std::vector<lf::RunConfig> cfgs;
  for (const auto& r : runs) cfgs.push_back(study_config(r.h, r.X, r.seed));
  auto ids = store.plan_all(cfgs);
  ASSERT_EQ(ids.size(), runs.size());
  for (size_t k = 0; k < runs.size(); ++k) {
    const SyntheticRun& r = runs[k];
    const int64_t id = ids[k].first;
    ASSERT_TRUE(ids[k].second) << "run " << k << " planned twice";
    const double X = r.X, alpha = cfgs[k].alpha;
    for (int step = 0; step < 16; ++step) {
      lf::Checkpoint c;
      c.step = step;
      c.t = 1e-3 * std::pow(3.0, step);
      c.train_loss = step == 15 ? 0.0 : std::exp(-c.t / std::max(X, 1.0));
      c.output_norm = c.t / X;
      c.f_norm = 1 + c.t;
      store.add_checkpoint(id, c);
    }
    json summary = {{"status", r.status},
                    {"t1", X},  // t1 = sqrt(h) alpha
                    {"t2", 2 * X},
                    {"test_err", test_err(r.h, X, r.seed)},
                    {"weight_change", std::pow(X, -0.25) / std::sqrt(double(r.h))},
                    {"kernel_change", r.kernel_change},
                    {"kernel", {{"init_kernel_run", {{"test_err", 0.09 + 0.1 / r.h}}}}}};
    at::Tensor y = at::empty({kTest}, at::kDouble), fd = at::empty({kTest}, at::kDouble);
    for (int i = 0; i < kTest; ++i) {
      double yi = i % 3 == 0 ? 1.0 : -1.0;
      y[i] = yi;
      fd[i] = (margin(X) * yi + out_noise(r.seed) / std::sqrt(double(r.h))) / alpha;  // stored unscaled
    }
    store.finish(id, r.status, r.status == "converged" ? "" : "budget exhausted", summary, fd,
                 at::zeros({kTest}, at::kDouble), y, json(nullptr));
  }
}

// The synthetic study: 2 widths x 7 regimes x 8 seeds converged, plus a stopped and a diverged run.
// Kernel change: (sqrt(h) alpha)^-1 (X >= 1) or ^-1.7 (X < 1), times exp(0.05 z) per run.
std::vector<SyntheticRun> study_runs() {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<SyntheticRun> runs;
  for (int h : kWidths)
    for (double X : kRegimes)
      for (int seed = 0; seed < kSeeds; ++seed) {
        double kc = (X >= 1 ? 1.0 / X : std::pow(X, -1.7)) * std::exp(0.05 * z(rng));
        runs.push_back({h, X, seed, "converged", kc});
      }
  runs.push_back({100, 1.0, 9, "stopped", 1.0});
  runs.push_back({400, 1.0, 9, "diverged", 1.0});
  return runs;
}
void make_study(const std::string& path) { write_runs(path, study_runs()); }

// CSV rows as maps column -> text.
std::vector<std::map<std::string, std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::map<std::string, std::string>> rows;
  std::string line;
  if (!std::getline(in, line)) return rows;
  const std::vector<std::string> head = lft::csv_fields(line);
  while (std::getline(in, line)) {
    auto f = lft::csv_fields(line);
    std::map<std::string, std::string> r;
    for (size_t i = 0; i < head.size() && i < f.size(); ++i) r[head[i]] = f[i];
    rows.push_back(r);
  }
  return rows;
}

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The study and its report, made once for the tests that read it.
struct Report {
  lft::TempDir dir;
  std::string db, out;
  lft::CliResult res;
  json summary;
  Report() {
    db = dir.file("study.sqlite");
    out = dir.file("report");
    make_study(db);
    res = lft::run_cli({"report", "--db", db, "--out", out, "--json", "--bootstrap", "200"});
    summary = json::parse(lft::last_line(res.out), nullptr, false);
  }
};

Report& report() {
  static Report r;
  return r;
}

const json* find_fit(const json& fits, const std::string& fig, const std::string& regime) {
  for (const auto& f : fits)
    if (f["figure"] == fig && f["regime"] == regime) return &f;
  return nullptr;
}

// Runs headless Chromium on the page and returns the dumped DOM ("" when chromium is missing).
std::string dump_dom(const std::string& html, const std::string& tmp) {
  const char* chromium = "/usr/bin/chromium";
  if (!fs::exists(chromium)) return "";
  std::string dom = tmp + "/dom.html";
  std::string cmd = std::string("timeout 60 ") + chromium +
                    " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                    " --disable-background-networking --disable-component-update --disable-sync"
                    " --user-data-dir='" + tmp + "/profile' --dump-dom 'file://" + html + "' > '" +
                    dom + "' 2> '" + tmp + "/chromium.log'";
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << slurp(tmp + "/chromium.log").substr(0, 2000);
  return slurp(dom);
}

// "images: N, broken: B" written by the page's inline script.
std::pair<int, int> image_check(const std::string& dom) {
  auto p = dom.find("id=\"image-check\"");
  if (p == std::string::npos) return {-1, -1};
  auto q = dom.find("images: ", p);
  if (q == std::string::npos) return {-1, -1};
  int n = -1, b = -1;
  std::sscanf(dom.c_str() + q, "images: %d, broken: %d", &n, &b);
  return {n, b};
}

}  // namespace

TEST(Report, SummaryListsFiguresAbsentOnesAndDrops) {
  Report& r = report();
  ASSERT_EQ(r.res.status, 0) << r.res.err;
  ASSERT_TRUE(r.summary.is_object()) << r.res.out;
  EXPECT_EQ(r.summary["runs"]["total"], 2 + 14 * kSeeds);
  EXPECT_EQ(r.summary["runs"]["converged"], 14 * kSeeds);
  EXPECT_EQ(r.summary["runs"]["dropped"]["stopped"], 1);
  EXPECT_EQ(r.summary["runs"]["dropped"]["diverged"], 1);
  EXPECT_EQ(r.summary["runs"]["reasons"]["stopped"], "budget exhausted");
  std::set<std::string> made;
  for (const auto& f : r.summary["figures"]) made.insert(f.get<std::string>());
  for (const char* id : {"F1a", "F1c", "F1d", "F2a", "F2b", "F2c", "F3a", "F3b", "F3c", "F6", "T1"}) {
    EXPECT_TRUE(made.count(id)) << id;
    if (std::string(id) == "T1") continue;
    for (const char* ext : {".png", ".svg", ".csv"})
      EXPECT_GT(fs::file_size(r.out + "/" + id + ext), 100u) << id << ext;
  }
  std::set<std::string> absent;
  for (const auto& a : r.summary["absent"]) {
    absent.insert(a["id"].get<std::string>());
    EXPECT_FALSE(a["sweep"].get<std::string>().empty());
  }
  for (const char* id : {"F1b", "F2d", "F5", "F7", "F9"}) EXPECT_TRUE(absent.count(id)) << id;
  EXPECT_TRUE(fs::exists(r.out + "/index.html"));
  EXPECT_TRUE(fs::exists(r.out + "/fits.csv"));
  EXPECT_TRUE(fs::exists(r.out + "/T1.csv"));
  EXPECT_EQ(slurp(r.out + "/runs.csv"),
            "status,runs\ntotal," + std::to_string(2 + 14 * kSeeds) + "\nconverged," + std::to_string(14 * kSeeds) +
                "\ndiverged,1\nstopped,1\n");
  EXPECT_DOUBLE_EQ(r.summary["fit_range"][0].get<double>(), 1e-3);  // the default, printed
}

TEST(Report, CsvHoldsMeansAndStandardErrors) {
  Report& r = report();
  ASSERT_EQ(r.res.status, 0) << r.res.err;
  // F1c: test error vs alpha per h; the mean over seeds 0..S-1 adds (S-1)/2 1e-3, and
  // sem = sd(0..S-1) 1e-3 / sqrt(S) with sd^2 = S (S+1) / 12.
  auto rows = read_csv(r.out + "/F1c.csv");
  ASSERT_EQ(rows.size(), kWidths.size() * kRegimes.size());
  double sem = std::sqrt(kSeeds * (kSeeds + 1) / 12.0) * 1e-3 / std::sqrt(double(kSeeds));
  int checked = 0;
  for (const auto& row : rows) {
    int h = row.at("series") == "h=100" ? 100 : 400;
    double alpha = std::stod(row.at("x"));
    double X = alpha * std::sqrt(double(h));
    EXPECT_NEAR(std::stod(row.at("y")), test_err(h, X, 0) + (kSeeds - 1) / 2.0 * 1e-3, 1e-8) << row.at("x");
    EXPECT_NEAR(std::stod(row.at("y_err")), sem, 1e-10);
    EXPECT_EQ(row.at("n"), std::to_string(kSeeds));
    checked++;
  }
  EXPECT_EQ(checked, 14);
  // F1d: rescaled per h, the curves collapse: at each sqrt(h) alpha both widths give
  // (g(X) - g_min) / (g_max - g_min), g = X/(1+X).
  double gmin = 1e-2 / (1 + 1e-2), gmax = 1e4 / (1 + 1e4);
  auto d = read_csv(r.out + "/F1d.csv");
  ASSERT_EQ(d.size(), 14u);
  for (const auto& row : d) {
    double X = std::stod(row.at("x"));
    EXPECT_NEAR(std::stod(row.at("y")), (X / (1 + X) - gmin) / (gmax - gmin), 1e-6) << X;
  }
  // F2a: Var of alpha (f - f0) = (S^2 - 1) / 12 / h exactly at every sqrt(h) alpha.
  auto v = read_csv(r.out + "/F2a.csv");
  ASSERT_EQ(v.size(), kWidths.size() * kRegimes.size());
  for (const auto& row : v) EXPECT_NEAR(std::stod(row.at("y")), kVarH / std::stod(row.at("x")), 1e-9);
  // F3c: t1 = sqrt(h) alpha.
  int t1_rows = 0;
  for (const auto& row : read_csv(r.out + "/F3c.csv"))
    if (row.at("panel") == "vs √h α" && row.at("series").rfind("t₁", 0) == 0) {
      EXPECT_NEAR(std::stod(row.at("y")), std::stod(row.at("x")), 1e-6 * std::stod(row.at("x")));
      t1_rows++;
    }
  EXPECT_EQ(t1_rows, 14);
}

TEST(Report, FittedSlopes) {
  Report& r = report();
  ASSERT_EQ(r.res.status, 0) << r.res.err;
  const json& fits = r.summary["fits"];
  // Lazy kernel change: exactly (sqrt(h) alpha)^-1 up to 5% noise per run: slope -1 within error.
  const json* lazy = find_fit(fits, "F3a", "lazy");
  ASSERT_NE(lazy, nullptr);
  double s = (*lazy)["slope"].get<double>(), e = (*lazy)["slope_err"].get<double>();
  EXPECT_GT(e, 1e-4);
  EXPECT_LT(e, 0.05);
  EXPECT_LT(std::abs(s + 1.0), 3 * e) << s << " +- " << e;
  EXPECT_EQ((*lazy)["points"], 6);  // X = 1e2, 1e3, 1e4 at two widths
  EXPECT_DOUBLE_EQ((*lazy)["prediction"].get<double>(), -1.0);
  // Feature kernel change: ^-1.7 over X in [1e-3, 0.2]; the prediction 2/(1+1/5) is printed.
  const json* feat = find_fit(fits, "F3a", "feature");
  ASSERT_NE(feat, nullptr);
  EXPECT_NEAR((*feat)["slope"].get<double>(), -1.7, 3 * (*feat)["slope_err"].get<double>() + 0.02);
  EXPECT_NEAR((*feat)["prediction"].get<double>(), -5.0 / 3.0, 1e-12);
  // Var ~ h^-1 exactly.
  const json* var = find_fit(fits, "F2a", "√h α=0.01");
  ASSERT_NE(var, nullptr);
  EXPECT_NEAR((*var)["slope"].get<double>(), -1.0, 1e-9);
  // T1 row: a = 1.7 measured next to the prediction 5/3.
  bool t1 = false;
  for (const auto& row : r.summary["table1"])
    if (row["exponent"] == "a (kernel)") {
      t1 = true;
      EXPECT_NEAR(row["measured"].get<double>(), 1.7, 0.05);
      EXPECT_NEAR(row["prediction"].get<double>(), 5.0 / 3.0, 1e-12);
    }
  EXPECT_TRUE(t1);
  // A user fit range changes the feature fit and is echoed.
  lft::TempDir tmp;
  auto res = lft::run_cli({"report", "--db", r.db, "--out", tmp.file("o"), "--fit-range", "0.005:5",
                           "--bootstrap", "20", "--json"});
  ASSERT_EQ(res.status, 0) << res.err;
  json j = json::parse(lft::last_line(res.out));
  EXPECT_DOUBLE_EQ(j["fit_range"][0].get<double>(), 0.005);
  const json* f2 = find_fit(j["fits"], "F3a", "feature");
  ASSERT_NE(f2, nullptr);
  EXPECT_EQ((*f2)["points"], 6);  // X = 1e-2, 1e-1, 1 at two widths
}

TEST(Report, IndexRendersWithEveryImageInChromium) {
  Report& r = report();
  ASSERT_EQ(r.res.status, 0) << r.res.err;
  ASSERT_TRUE(fs::exists("/usr/bin/chromium"))
      << "headless Chromium (/usr/bin/chromium) is missing: scripts/setup.sh installs it";
  lft::TempDir tmp;
  // Moved away from its folder, the page still shows every figure (data: URIs only).
  std::string moved = tmp.file("moved.html");
  fs::copy_file(r.out + "/index.html", moved);
  std::string html = slurp(moved);
  EXPECT_EQ(html.find("src=\"F"), std::string::npos);  // no relative image sources
  std::string dom = dump_dom(moved, tmp.path);
  auto [n, broken] = image_check(dom);
  int pngs = 0;
  for (const auto& f : r.summary["figures"]) pngs += fs::exists(r.out + "/" + f.get<std::string>() + ".png");
  EXPECT_EQ(n, pngs) << dom.substr(0, 300);
  EXPECT_GE(n, 10);
  EXPECT_EQ(broken, 0);
  for (const char* id : {"F1a", "F3a", "F2c"}) EXPECT_NE(dom.find("id=\"" + std::string(id) + "\""), std::string::npos);
  // The check itself sees a broken image: corrupt one embedded PNG.
  auto p = html.find("base64,");
  ASSERT_NE(p, std::string::npos);
  html.replace(p + 7, 40, std::string(40, 'A'));
  std::string bad = tmp.file("bad.html");
  std::ofstream(bad) << html;
  auto [n2, broken2] = image_check(dump_dom(bad, tmp.path));
  EXPECT_EQ(n2, n);
  EXPECT_EQ(broken2, 1);
}

TEST(Report, BadInputExitsTwo) {
  lft::TempDir tmp;
  std::string good = report().db;
  struct Case {
    std::vector<std::string> args;
    std::string msg;
  };
  std::ofstream(tmp.file("not.sqlite")) << "this is not a database";
  {
    { lf::Store created(tmp.file("newer.sqlite")); }  // the store's schema, then a newer version
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(tmp.file("newer.sqlite").c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "update meta set value = '99' where key = 'schema_version'", nullptr, nullptr, nullptr),
              SQLITE_OK);
    EXPECT_EQ(sqlite3_changes(db), 1);
    sqlite3_close(db);
  }
  std::ofstream(tmp.file("afile")) << "x";
  std::vector<Case> cases = {
      {{"report", "--out", tmp.file("o")}, "--db"},
      {{"report", "--db", good}, "--out"},
      {{"report", "--db", tmp.file("missing.sqlite"), "--out", tmp.file("o")}, "no database file"},
      {{"report", "--db", tmp.file("not.sqlite"), "--out", tmp.file("o")}, "not a lazyfeat study database"},
      {{"report", "--db", tmp.file("newer.sqlite"), "--out", tmp.file("o")}, "newer"},
      {{"report", "--db", good, "--out", tmp.file("o"), "--fit-range", "1:0.1"}, "--fit-range"},
      {{"report", "--db", good, "--out", tmp.file("o"), "--fit-range", "0:1"}, "--fit-range"},
      {{"report", "--db", good, "--out", tmp.file("o"), "--lazy-range", "1e2"}, "--lazy-range"},
      {{"report", "--db", good, "--out", tmp.file("afile")}, "--out"},
  };
  for (const auto& c : cases) {
    auto res = lft::run_cli(c.args);
    EXPECT_EQ(res.status, 2) << c.args.back() << ": " << res.err;
    EXPECT_NE(res.err.find(c.msg), std::string::npos) << res.err;
    EXPECT_LE(std::count(res.err.begin(), res.err.end(), '\n'), 1) << res.err;
  }
}

TEST(Report, EmptyDatabaseMakesNoFiguresAndSaysWhy) {
  lft::TempDir tmp;
  { lf::Store empty(tmp.file("empty.sqlite")); }
  auto res = lft::run_cli({"report", "--db", tmp.file("empty.sqlite"), "--out", tmp.file("o"), "--json"});
  ASSERT_EQ(res.status, 0) << res.err;
  json j = json::parse(lft::last_line(res.out));
  EXPECT_TRUE(j["figures"].empty());
  EXPECT_GE(j["absent"].size(), 12u);
  EXPECT_TRUE(fs::exists(tmp.file("o/index.html")));
}

// ---- Setup B: F1b and F2d from CNN runs.

namespace {

const std::vector<int> kCnnWidths = {10, 20};
const std::vector<double> kCnnAlphas = {1e-2, 100};  // feature, lazy
const int kCnnSeeds = 3;
const int kCnnTest = 30;

// A setup-B run's configuration (examples/setup-b-cnn.toml's fixed options, small n).
lf::RunConfig cnn_config(int h, double alpha, int seed) {
  lf::RunConfig c;
  c.dataset = "mnist", c.arch = "cnn", c.loss = "hinge";
  c.h = h, c.ptr = 256, c.pte = kCnnTest;
  c.alpha = alpha;
  c.seed_init = static_cast<uint64_t>(seed);
  c.tau = 10, c.temperature = 3e-4, c.batch_max = 64;
  lf::finalize(c);
  return c;
}

struct CnnRun {
  int h;
  double alpha;
  int seed;
  std::string status;
  std::vector<double> F;  // the model's test outputs alpha (f - f0)
  double test_err;        // the fraction of F y <= 0, as a real run records it
};

double cnn_label(int i) { return i % 3 == 0 ? 1.0 : -1.0; }

// Outputs F = y (m + noise): the lazy runs (alpha = 100) noisier than the feature runs, so that
// single networks err on some points and the ensemble of three on fewer.
std::vector<CnnRun> cnn_runs(int seeds) {
  std::mt19937_64 rng(11);
  std::vector<CnnRun> runs;
  for (int h : kCnnWidths)
    for (double a : kCnnAlphas)
      for (int s = 0; s < seeds; ++s) {
        std::normal_distribution<double> z(0.0, a > 1 ? 1.2 : 0.8);
        CnnRun r{h, a, s, "converged", {}, 0};
        int wrong = 0;
        for (int i = 0; i < kCnnTest; ++i) {
          double f = cnn_label(i) * (0.5 + z(rng) - 0.2 / h);
          r.F.push_back(f);
          wrong += f * cnn_label(i) <= 0;
        }
        r.test_err = double(wrong) / kCnnTest;
        runs.push_back(r);
      }
  return runs;
}

// Writes CNN runs through the store (plan, finish with their test outputs f - f0 = F / alpha).
void write_cnn_runs(const std::string& path, const std::vector<CnnRun>& runs) {
  lf::Store store(path);
  std::vector<lf::RunConfig> cfgs;
  for (const auto& r : runs) cfgs.push_back(cnn_config(r.h, r.alpha, r.seed));
  auto ids = store.plan_all(cfgs);
  ASSERT_EQ(ids.size(), runs.size());
  for (size_t k = 0; k < runs.size(); ++k) {
    const CnnRun& r = runs[k];
    at::Tensor y = at::empty({kCnnTest}, at::kDouble), fd = at::empty({kCnnTest}, at::kDouble);
    for (int i = 0; i < kCnnTest; ++i) y[i] = cnn_label(i), fd[i] = r.F[i] / r.alpha;
    json summary = {{"status", r.status}, {"test_err", r.test_err}, {"t1", 1.0}, {"t2", 2.0}};
    store.finish(ids[k].first, r.status, r.status == "converged" ? "" : "budget exhausted", summary, fd,
                 at::zeros({kCnnTest}, at::kDouble), y, json(nullptr));
  }
}

std::map<std::string, std::map<double, std::map<std::string, std::string>>> by_series(const std::string& csv) {
  std::map<std::string, std::map<double, std::map<std::string, std::string>>> m;
  for (const auto& row : read_csv(csv)) m[row.at("series")][std::stod(row.at("x"))] = row;
  return m;
}

std::set<std::string> ids_of(const json& a) {
  std::set<std::string> s;
  for (const auto& x : a) s.insert(x.is_string() ? x.get<std::string>() : x["id"].get<std::string>());
  return s;
}

}  // namespace

TEST(Report, CnnRunsMakeF1bAndF2dWithHandComputedNumbers) {
  lft::TempDir tmp;
  std::string db = tmp.file("b.sqlite"), out = tmp.file("report");
  std::vector<CnnRun> runs = cnn_runs(kCnnSeeds);
  CnnRun stopped = runs.front();
  stopped.seed = 9, stopped.status = "stopped";
  std::vector<CnnRun> all = runs;
  all.push_back(stopped);  // left out: only converged runs count
  write_cnn_runs(db, all);
  auto res = lft::run_cli({"report", "--db", db, "--out", out, "--json", "--bootstrap", "10"});
  ASSERT_EQ(res.status, 0) << res.err;
  json j = json::parse(lft::last_line(res.out));
  std::set<std::string> made = ids_of(j["figures"]), absent = ids_of(j["absent"]);
  for (const char* id : {"F1b", "F2d"}) {
    EXPECT_TRUE(made.count(id)) << id;
    for (const char* ext : {".png", ".svg", ".csv", ".gp"})
      EXPECT_GT(fs::file_size(out + "/" + id + ext), 100u) << id << ext;
  }
  // The setup-A figures are not made from CNN runs.
  for (const char* id : {"F1a", "F2a", "F2b", "F2c"}) {
    EXPECT_FALSE(made.count(id)) << id;
    EXPECT_TRUE(absent.count(id)) << id;
  }

  // Expected numbers, by hand from the outputs written above.
  struct Point {
    std::vector<double> errs;
    double ensemble_err = 0;
  };
  std::map<std::pair<double, int>, Point> expect;  // (alpha, h)
  for (double a : kCnnAlphas)
    for (int h : kCnnWidths) {
      Point p;
      int wrong = 0;
      for (int i = 0; i < kCnnTest; ++i) {
        double sum = 0;
        for (const auto& r : runs)
          if (r.alpha == a && r.h == h) sum += r.F[i];
        wrong += sum * cnn_label(i) <= 0;
      }
      for (const auto& r : runs)
        if (r.alpha == a && r.h == h) p.errs.push_back(r.test_err);
      p.ensemble_err = double(wrong) / kCnnTest;
      expect[{a, h}] = p;
    }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / v.size();
  };
  auto sem = [&](const std::vector<double>& v) {
    double m = mean(v), ss = 0;
    for (double x : v) ss += (x - m) * (x - m);
    return std::sqrt(ss / (v.size() - 1) / v.size());
  };
  // The synthetic data does what it is meant to: ensembles err less than single networks.
  for (auto& [k, p] : expect) EXPECT_LT(p.ensemble_err, mean(p.errs)) << k.first << " " << k.second;

  // F1b: test error vs h, one curve per alpha: mean and standard error over the seeds.
  auto f1b = by_series(out + "/F1b.csv");
  ASSERT_EQ(f1b.size(), 2u);
  for (double a : kCnnAlphas) {
    std::string name = "α=" + std::string(a > 1 ? "100" : "0.01");
    ASSERT_TRUE(f1b.count(name)) << name;
    ASSERT_EQ(f1b[name].size(), kCnnWidths.size());
    for (int h : kCnnWidths) {
      const auto& row = f1b[name].at(h);
      const Point& p = expect[{a, h}];
      EXPECT_NEAR(std::stod(row.at("y")), mean(p.errs), 1e-9) << name << " h=" << h;
      EXPECT_NEAR(std::stod(row.at("y_err")), sem(p.errs), 1e-9) << name << " h=" << h;
      EXPECT_EQ(row.at("n"), std::to_string(kCnnSeeds));
    }
  }
  // F2d: single-network error (mean, s.e.) and the error of sign(f_bar), vs h at fixed alpha.
  auto f2d = by_series(out + "/F2d.csv");
  ASSERT_EQ(f2d.size(), 4u);
  for (double a : kCnnAlphas) {
    std::string as = a > 1 ? "100" : "0.01";
    for (int h : kCnnWidths) {
      const Point& p = expect[{a, h}];
      const auto& single = f2d.at("single, α=" + as).at(h);
      const auto& ens = f2d.at("ensemble, α=" + as).at(h);
      EXPECT_NEAR(std::stod(single.at("y")), mean(p.errs), 1e-9) << as << " h=" << h;
      EXPECT_NEAR(std::stod(single.at("y_err")), sem(p.errs), 1e-9) << as << " h=" << h;
      EXPECT_NEAR(std::stod(ens.at("y")), p.ensemble_err, 1e-9) << as << " h=" << h;
      EXPECT_EQ(ens.at("n"), std::to_string(kCnnSeeds));
    }
  }
  // The ratio eps_lazy / eps_feature of the ensemble errors, averaged over h.
  const json* ratio = find_fit(j["fits"], "F2d", "α=100 over 0.01");
  ASSERT_NE(ratio, nullptr) << j["fits"].dump();
  double lazy = (expect[{100, 10}].ensemble_err + expect[{100, 20}].ensemble_err) / 2;
  double feature = (expect[{1e-2, 10}].ensemble_err + expect[{1e-2, 20}].ensemble_err) / 2;
  EXPECT_NEAR((*ratio)["ratio"].get<double>(), lazy / feature, 1e-12);
  EXPECT_DOUBLE_EQ((*ratio)["paper"].get<double>(), 1.7);
  EXPECT_EQ((*ratio)["points"], 2);
  // The page shows both, the family without a depth, the stopped run counted.
  std::string html = slurp(out + "/index.html");
  for (const char* id : {"id=\"F1b\"", "id=\"F2d\"", "cnn relu mnist n=256"})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_EQ(j["runs"]["dropped"]["stopped"], 1);
}

TEST(Report, WithoutConvergedCnnRunsF1bAndF2dAreAbsentWithOneLine) {
  lft::TempDir tmp;
  // (1) No CNN runs at all (the FC study): absent, naming what they need and the example spec.
  auto check_absent = [&](const json& j, const std::string& id, const std::string& needs) {
    bool found = false;
    for (const auto& a : j["absent"])
      if (a["id"] == id) {
        found = true;
        EXPECT_NE(a["needs"].get<std::string>().find(needs), std::string::npos) << a.dump();
        EXPECT_NE(a["sweep"].get<std::string>().find("examples/setup-b-cnn.toml"), std::string::npos);
      }
    EXPECT_TRUE(found) << id;
    EXPECT_FALSE(ids_of(j["figures"]).count(id)) << id;
  };
  check_absent(report().summary, "F1b", "the database has no CNN runs");
  check_absent(report().summary, "F2d", "the database has no CNN runs");
  EXPECT_NE(slurp(report().out + "/index.html").find("the database has no CNN runs"), std::string::npos);
  // (2) CNN runs, none converged: the report still succeeds and says how many did not converge.
  std::vector<CnnRun> runs = cnn_runs(2);
  for (auto& r : runs) r.status = "stopped";
  write_cnn_runs(tmp.file("stopped.sqlite"), runs);
  auto res = lft::run_cli({"report", "--db", tmp.file("stopped.sqlite"), "--out", tmp.file("o1"), "--json"});
  ASSERT_EQ(res.status, 0) << res.err;
  json j = json::parse(lft::last_line(res.out));
  check_absent(j, "F1b", "8 CNN runs in the database did not converge");
  check_absent(j, "F2d", "8 CNN runs in the database did not converge");
  EXPECT_FALSE(fs::exists(tmp.file("o1/F1b.png")));
  // (3) One seed per point: F1b is made, F2d (an ensemble needs >= 2 seeds) is absent.
  write_cnn_runs(tmp.file("one.sqlite"), cnn_runs(1));
  res = lft::run_cli({"report", "--db", tmp.file("one.sqlite"), "--out", tmp.file("o2"), "--json"});
  ASSERT_EQ(res.status, 0) << res.err;
  j = json::parse(lft::last_line(res.out));
  EXPECT_TRUE(ids_of(j["figures"]).count("F1b"));
  check_absent(j, "F2d", "≥2 seeds");
  EXPECT_FALSE(fs::exists(tmp.file("o2/F2d.png")));
}

// The same study in two files (its h = 100 runs with the stopped one; its h = 400 runs with the
// diverged one), read as one by repeating --db: the same figures, number for number, as from the
// single file. Both files number their runs from 1, so the second file's checkpoints (F3b) and
// outputs (F2a, F2b) are found only through its id offset (report/db.h).
TEST(Report, TwoDatabasesReadAsOneStudy) {
  Report& r = report();
  ASSERT_EQ(r.res.status, 0) << r.res.err;
  lft::TempDir dir;
  std::vector<SyntheticRun> narrow, wide;
  for (const SyntheticRun& run : study_runs()) (run.h == 100 ? narrow : wide).push_back(run);
  write_runs(dir.file("a.sqlite"), narrow);
  write_runs(dir.file("b.sqlite"), wide);
  const std::string out = dir.file("report");
  auto res = lft::run_cli({"report", "--db", dir.file("a.sqlite"), "--db", dir.file("b.sqlite"), "--out", out,
                           "--json", "--bootstrap", "200"});
  ASSERT_EQ(res.status, 0) << res.err;
  json s = json::parse(lft::last_line(res.out), nullptr, false);
  EXPECT_EQ(s["runs"], r.summary["runs"]);
  EXPECT_EQ(s["figures"], r.summary["figures"]);
  EXPECT_EQ(s["db"], dir.file("a.sqlite") + ", " + dir.file("b.sqlite"));
  for (const char* f : {"runs.csv", "F1c.csv", "F1d.csv", "F2a.csv", "F2b.csv", "F3a.csv", "F3b.csv", "F3c.csv", "F6.csv"}) {
    SCOPED_TRACE(f);
    const std::string one = slurp(r.out + "/" + f);
    EXPECT_GT(one.size(), 20u);
    EXPECT_EQ(slurp(out + "/" + f), one);
  }
  // A file that is missing among several: one message naming it, exit 2, nothing written.
  const std::string none = dir.file("report-none");
  auto bad = lft::run_cli({"report", "--db", dir.file("a.sqlite"), "--db", dir.file("c.sqlite"), "--out", none});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("c.sqlite"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(none));
}
