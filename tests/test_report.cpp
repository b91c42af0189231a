// Tests of `lazyfeat report` on a synthetic study database with known structure (errors on a
// known curve, kernel change exactly ~ (sqrt(h) alpha)^-1 in the lazy range up to seed noise,
// outputs with a known variance): the files exist, the CSVs hold the right numbers, the lazy
// slope is -1 within its bootstrap error, index.html renders in headless Chromium with every
// image loaded; bad input exits 2 with one message.
// Deliberately not: real training (the database is written here with the schema's DDL).
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

#include "testing.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The schema of docs/schema.md (version 1), as the store writes it.
const char* kDdl = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY, config_hash TEXT UNIQUE, config TEXT, status TEXT, error TEXT,
  host TEXT, pid INTEGER, version TEXT,
  created_at TEXT, started_at TEXT, ended_at TEXT, heartbeat_at TEXT,
  dataset TEXT, arch TEXT, act TEXT, L INTEGER, h INTEGER, ptr INTEGER, pte INTEGER, pca INTEGER,
  alpha REAL, sqrt_h_alpha REAL, tau REAL, temperature REAL, loss TEXT,
  seed_data INTEGER, seed_init INTEGER, seed_batch INTEGER,
  steps INTEGER, t REAL, t1 REAL, t2 REAL, train_loss REAL, train_err REAL, test_err REAL,
  weight_change REAL, output_norm REAL, f_norm REAL, kernel_change REAL, wall_s REAL,
  steps_per_s REAL, summary TEXT);
CREATE TABLE checkpoints(
  run_id INTEGER, step INTEGER, t REAL, dt REAL, train_loss REAL, train_err REAL, test_err REAL,
  unsatisfied INTEGER, weight_change REAL, w0_norm REAL, output_norm REAL, f_norm REAL,
  wall_s REAL, layer_change TEXT, PRIMARY KEY (run_id, step));
CREATE TABLE outputs(
  run_id INTEGER, kind TEXT, n INTEGER, f_delta BLOB, f0 BLOB, y BLOB, PRIMARY KEY (run_id, kind));
CREATE TABLE kernels(run_id INTEGER, which TEXT, stats TEXT, path TEXT, PRIMARY KEY (run_id, which));
CREATE TABLE states(run_id INTEGER PRIMARY KEY, step INTEGER, t REAL, saved_at TEXT, blob BLOB);
INSERT INTO meta VALUES ('schema_version', '1');
)sql";

const std::vector<int> kWidths = {100, 400};
const std::vector<double> kRegimes = {1e-2, 1e-1, 1, 10, 1e2, 1e3, 1e4};  // sqrt(h) alpha
const int kSeeds = 8;
const int kTest = 40;  // test points with stored outputs

// The known curves. Test error: a + b g(X) + c/h + seed * 1e-3 with g = X / (1 + X).
double test_err(int h, double X, int seed) { return 0.05 + 0.03 * X / (1 + X) + 0.1 / h + seed * 1e-3; }
// Output noise of seed s: alpha (f - f0) = 0.5 y + s_i / sqrt(h), s_i = i - (S-1)/2, mean 0:
// Var = (S^2 - 1) / 12 / h exactly, ensemble error 0.
double out_noise(int seed) { return seed - (kSeeds - 1) / 2.0; }
const double kVarH = (kSeeds * kSeeds - 1) / 12.0;

class Db {
 public:
  explicit Db(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    exec(kDdl);
  }
  ~Db() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  }
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// Inserts one FC softplus L=5 run with its outputs and checkpoints.
void add_run(sqlite3* db, int id, int h, double X, int seed, const std::string& status,
             double kernel_change) {
  double alpha = X / std::sqrt(double(h));
  json cfg = {{"dataset", "mnist"}, {"arch", "fc"},    {"act", "softplus"}, {"L", 5},
              {"h", h},             {"alpha", alpha},  {"sqrt_h_alpha", X}, {"seed_init", seed},
              {"seed_data", 0},     {"seed_batch", 0}, {"ptr", 5000},       {"pte", 50000},
              {"pca", 10},          {"loss", "hinge"}, {"tau", -1000.0},    {"temperature", 0.0},
              {"delta_kernel", true}};
  json summary = {{"status", status}, {"kernel", {{"init_kernel_run", {{"test_err", 0.09 + 0.1 / h}}}}}};
  sqlite3_stmt* s;
  sqlite3_prepare_v2(db,
                     "insert into runs(id, config_hash, config, status, error, dataset, arch, act, L, h,"
                     " ptr, pte, pca, alpha, sqrt_h_alpha, tau, temperature, loss, seed_data, seed_init,"
                     " seed_batch, t1, t2, test_err, weight_change, kernel_change, summary)"
                     " values (?,?,?,?,?,'mnist','fc','softplus',5,?,5000,50000,10,?,?,-1000,0,'hinge',0,?,0,?,?,?,?,?,?)",
                     -1, &s, nullptr);
  std::string hash = "h" + std::to_string(id), c = cfg.dump(), sm = summary.dump();
  std::string err = status == "converged" ? "" : "budget exhausted";
  sqlite3_bind_int(s, 1, id);
  sqlite3_bind_text(s, 2, hash.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 3, c.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(s, 4, status.c_str(), -1, SQLITE_TRANSIENT);
  if (err.empty()) sqlite3_bind_null(s, 5);
  else sqlite3_bind_text(s, 5, err.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int(s, 6, h);
  sqlite3_bind_double(s, 7, alpha);
  sqlite3_bind_double(s, 8, X);
  sqlite3_bind_int(s, 9, seed);
  sqlite3_bind_double(s, 10, X);       // t1 = sqrt(h) alpha
  sqlite3_bind_double(s, 11, 2 * X);   // t2
  sqlite3_bind_double(s, 12, test_err(h, X, seed));
  sqlite3_bind_double(s, 13, std::pow(X, -0.25) / std::sqrt(double(h)));
  sqlite3_bind_double(s, 14, kernel_change);
  sqlite3_bind_text(s, 15, sm.c_str(), -1, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
  sqlite3_finalize(s);

  std::vector<double> fd(kTest), f0(kTest, 0.0);
  std::vector<int8_t> y(kTest);
  for (int i = 0; i < kTest; ++i) {
    y[i] = i % 3 == 0 ? 1 : -1;
    fd[i] = (0.5 * y[i] + out_noise(seed) / std::sqrt(double(h))) / alpha;  // stored unscaled
  }
  sqlite3_prepare_v2(db, "insert into outputs values (?, 'final', ?, ?, ?, ?)", -1, &s, nullptr);
  sqlite3_bind_int(s, 1, id);
  sqlite3_bind_int(s, 2, kTest);
  sqlite3_bind_blob(s, 3, fd.data(), kTest * 8, SQLITE_TRANSIENT);
  sqlite3_bind_blob(s, 4, f0.data(), kTest * 8, SQLITE_TRANSIENT);
  sqlite3_bind_blob(s, 5, y.data(), kTest, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
  sqlite3_finalize(s);

  sqlite3_prepare_v2(db, "insert into checkpoints(run_id, step, t, train_loss, output_norm, f_norm)"
                         " values (?, ?, ?, ?, ?, ?)", -1, &s, nullptr);
  for (int k = 0; k < 16; ++k) {
    double t = 1e-3 * std::pow(3.0, k);
    sqlite3_bind_int(s, 1, id);
    sqlite3_bind_int(s, 2, k);
    sqlite3_bind_double(s, 3, t);
    sqlite3_bind_double(s, 4, k == 15 ? 0.0 : std::exp(-t / std::max(X, 1.0)));
    sqlite3_bind_double(s, 5, t / X);
    sqlite3_bind_double(s, 6, 1 + t);
    ASSERT_EQ(sqlite3_step(s), SQLITE_DONE);
    sqlite3_reset(s);
  }
  sqlite3_finalize(s);
}

// The synthetic study: 2 widths x 7 regimes x 8 seeds converged, plus a stopped and a diverged run.
// Kernel change: (sqrt(h) alpha)^-1 (X >= 1) or ^-1.7 (X < 1), times exp(0.05 z) per run.
void make_study(const std::string& path) {
  Db db(path);
  db.exec("begin");
  std::mt19937_64 rng(7);
  std::normal_distribution<double> z(0.0, 1.0);
  int id = 0;
  for (int h : kWidths)
    for (double X : kRegimes)
      for (int seed = 0; seed < kSeeds; ++seed) {
        double kc = (X >= 1 ? 1.0 / X : std::pow(X, -1.7)) * std::exp(0.05 * z(rng));
        add_run(db.get(), ++id, h, X, seed, "converged", kc);
      }
  add_run(db.get(), ++id, 100, 1.0, 9, "stopped", 1.0);
  add_run(db.get(), ++id, 400, 1.0, 9, "diverged", 1.0);
  db.exec("commit");
}

// CSV rows as maps column -> text.
std::vector<std::map<std::string, std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::map<std::string, std::string>> rows;
  std::string line;
  std::vector<std::string> head;
  auto split = [](const std::string& l) {
    std::vector<std::string> f;
    std::string cur;
    bool q = false;
    for (char c : l) {
      if (c == '"') q = !q;
      else if (c == ',' && !q) f.push_back(cur), cur.clear();
      else cur += c;
    }
    f.push_back(cur);
    return f;
  };
  if (!std::getline(in, line)) return rows;
  head = split(line);
  while (std::getline(in, line)) {
    auto f = split(line);
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
    Db newer(tmp.file("newer.sqlite"));
    newer.exec("update meta set value = '99' where key = 'schema_version'");
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
  { Db empty(tmp.file("empty.sqlite")); }
  auto res = lft::run_cli({"report", "--db", tmp.file("empty.sqlite"), "--out", tmp.file("o"), "--json"});
  ASSERT_EQ(res.status, 0) << res.err;
  json j = json::parse(lft::last_line(res.out));
  EXPECT_TRUE(j["figures"].empty());
  EXPECT_GE(j["absent"].size(), 12u);
  EXPECT_TRUE(fs::exists(tmp.file("o/index.html")));
}
