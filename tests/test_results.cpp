// The committed report of the paper-scale study (docs/results/, made by `lazyfeat report` from the
// databases under study/): every CSV parses (each row has its header's number of fields, the
// numeric columns hold numbers or nothing, each figure has a point), and runs.csv holds the run
// counts that docs/results/README.md states in its "| status | runs |" table, so that the README
// cannot drift from the figures it describes.
// Deliberately not: the numbers of the figures (test_report.cpp checks the report's arithmetic on
// a database of known curves), the study's runs themselves.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "testing.h"

namespace fs = std::filesystem;

namespace {

const fs::path kResults = fs::path(LAZYFEAT_SOURCE_DIR) / "docs" / "results";

// Whether s is blank or a whole number in C's notation (what the report writes).
bool number_or_blank(const std::string& s) {
  if (s.empty()) return true;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// The columns that the report fills with numbers (docs/report.md).
const std::set<std::string> kNumeric = {"x",          "y",        "y_err",      "n",         "runs",
                                        "range_low",  "range_high", "slope_or_ratio", "slope_err", "points",
                                        "seeds",      "prediction", "paper",      "measured",  "error"};

using Table = std::vector<std::vector<std::string>>;  // the header, then the rows

Table read_csv(const fs::path& p) {
  std::istringstream in(lft::slurp(p.string()));
  Table t;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) t.push_back(lft::csv_fields(line));
  return t;
}

}  // namespace

TEST(Results, CommittedCsvsParseAndHoldTheReadmesRunCounts) {
  ASSERT_TRUE(fs::exists(kResults / "README.md")) << kResults;
  int figures = 0;
  for (const auto& e : fs::directory_iterator(kResults)) {
    if (e.path().extension() != ".csv") continue;
    SCOPED_TRACE(e.path().filename().string());
    const Table t = read_csv(e.path());
    ASSERT_GE(t.size(), 2u) << "a header and at least one row";
    for (size_t r = 1; r < t.size(); ++r) {
      ASSERT_EQ(t[r].size(), t[0].size()) << "row " << r;
      for (size_t c = 0; c < t[0].size(); ++c)
        if (kNumeric.count(t[0][c])) EXPECT_TRUE(number_or_blank(t[r][c])) << "row " << r << ", " << t[0][c];
    }
    const std::string name = e.path().stem().string();
    if (name.size() >= 2 && name[0] == 'F' && std::isdigit(static_cast<unsigned char>(name[1]))) {
      ++figures;
      EXPECT_EQ(t[0], (std::vector<std::string>{"panel", "series", "x", "y", "y_err", "n"}));
      EXPECT_TRUE(fs::exists(kResults / (name + ".png")));
      EXPECT_TRUE(fs::exists(kResults / (name + ".svg")));
    }
  }
  EXPECT_GT(figures, 0);
  EXPECT_TRUE(fs::exists(kResults / "index.html"));

  std::map<std::string, long> csv, readme;
  const Table runs = read_csv(kResults / "runs.csv");
  ASSERT_FALSE(runs.empty());
  EXPECT_EQ(runs[0], (std::vector<std::string>{"status", "runs"}));
  for (size_t r = 1; r < runs.size(); ++r) csv[runs[r][0]] = std::stol(runs[r][1]);
  // The README's table: a "| status | runs |" header, a rule, then "| converged | 2 |" rows.
  std::istringstream in(lft::slurp((kResults / "README.md").string()));
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;  // the text before each '|', blanks, backquotes and stars dropped
    std::string cell;
    for (char c : line) {
      if (c == '|') {
        cells.push_back(cell), cell.clear();
      } else if (c != ' ' && c != '`' && c != '*') {
        cell += c;
      }
    }
    if (cells.size() == 3 && cells[1] == "status" && cells[2] == "runs") {
      inside = true;
    } else if (inside && cells.size() == 3 && cells[1].find_first_not_of("-:") != std::string::npos) {
      readme[cells[1]] = std::stol(cells[2]);
    } else if (inside && cells.size() != 3) {
      inside = false;
    }
  }
  EXPECT_EQ(readme, csv) << "docs/results/README.md's run counts against runs.csv";
  EXPECT_GT(csv["total"], 0);
  long by_status = 0;
  for (const auto& [status, n] : csv)
    if (status != "total") by_status += n;
  EXPECT_EQ(by_status, csv["total"]) << "the statuses add up to the total";
}
