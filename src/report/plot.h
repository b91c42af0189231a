// A figure of the report as data (panels of series of points with error bars), written as the
// CSV behind it and drawn by gnuplot (run as a subprocess on a script file) into PNG and SVG.
// Deliberately not: which data goes in a figure (report/report.cpp), HTML (report/html.cpp).
#pragma once
#include <string>
#include <vector>

namespace lf::report {

struct Series {
  std::string title;
  std::vector<double> x, y, err;  // err empty or NaN entries: no error bar
  std::vector<int> n;             // runs behind each point (CSV only); may be empty
  bool points_only = false;       // no connecting line
  bool dashed = false;            // e.g. a reference curve
};

struct Panel {
  std::string title, xlabel, ylabel;  // UTF-8, the paper's symbols (α, √h α, Θ, ...)
  bool logx = false, logy = false;
  std::vector<Series> series;
  bool has_points() const;  // any finite point plottable on these axes
};

struct Figure {
  std::string id;       // "F3a"
  std::string title;    // one line
  std::string finding;  // the paper's finding (figures.md)
  std::vector<Panel> panels;
  std::vector<std::string> notes;  // shown under the figure (fits, counts, what is missing)
};

// Writes DIR/ID.csv with columns panel,series,x,y,y_err,n (one row per point, every point).
std::string write_csv(const Figure& f, const std::string& dir);
// Writes DIR/ID.gp and runs gnuplot on it, producing DIR/ID.png and DIR/ID.svg. Points that a
// log axis cannot show (<= 0, NaN) are left out of the plot (they stay in the CSV). Throws
// std::runtime_error when gnuplot fails or is missing.
void draw(const Figure& f, const std::string& dir);

// Quotes text for a gnuplot double-quoted string (enhanced text mode off).
std::string gp_quote(const std::string& s);

}  // namespace lf::report
