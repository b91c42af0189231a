// Figures as CSV and gnuplot PNG/SVG: see plot.h. Deliberately no analysis here.
#include "report/plot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace lf::report {

namespace {

bool shown(const Panel& p, double x, double y) {
  if (!std::isfinite(x) || !std::isfinite(y)) return false;
  if (p.logx && x <= 0) return false;
  if (p.logy && y <= 0) return false;
  return true;
}

std::string num(double v) {
  if (std::isnan(v)) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string path_quote(const std::string& s) {
  std::string q;
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  return q;
}

std::string slurp(const std::string& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One multiplot of all panels on the current terminal.
void write_body(std::ostream& gp, const Figure& f) {
  gp << "set multiplot layout 1," << f.panels.size() << "\n";
  for (size_t pi = 0; pi < f.panels.size(); ++pi) {
    const Panel& p = f.panels[pi];
    gp << "unset logscale; unset label; set autoscale; set format x '%g'; set format y '%g'\n";
    gp << "set title \"" << p.title << "\"\n";
    gp << "set xlabel \"" << p.xlabel << "\"\nset ylabel \"" << p.ylabel << "\"\n";
    if (p.logx) gp << "set logscale x; set format x '10^{%L}'\n";
    if (p.logy) gp << "set logscale y; set format y '10^{%L}'\n";
    // Many curves: the key goes outside the plot so that it hides none of them.
    gp << (p.series.size() > 4 ? "set key outside right top" : "set key inside top right")
       << " font ',8' spacing 0.9 samplen 2\n";
    gp << "set grid lw 0.5 lc rgb '#dddddd'\n";
    std::vector<std::string> items;
    for (size_t si = 0; si < p.series.size(); ++si) {
      const Series& s = p.series[si];
      bool any = false;
      for (size_t k = 0; k < s.x.size(); ++k) any = any || shown(p, s.x[k], s.y[k]);
      if (!any) continue;
      std::ostringstream it;
      it << "$P" << pi << "S" << si << " using 1:2";
      bool bars = !s.err.empty();
      if (bars) it << ":3";
      it << " with " << (bars ? (s.points_only ? "yerrorbars" : "yerrorlines")
                              : (s.points_only ? "points" : "linespoints"));
      it << " lt " << (si % 8) + 1 << " pt " << (si % 13) + 1 << " ps 0.7";
      if (s.dashed) it << " dt 2 lc rgb 'black' lw 2";
      it << " title \"" << gp_quote(s.title) << "\"";
      items.push_back(it.str());
    }
    if (items.empty()) {
      gp << "set label 1 'no data in range' at graph 0.5,0.5 center\n"
            "set xrange [0:1]; set yrange [0:1]\nplot 2 notitle\n";
      continue;
    }
    gp << "plot ";
    for (size_t i = 0; i < items.size(); ++i) gp << (i ? ", \\\n     " : "") << items[i];
    gp << "\n";
  }
  gp << "unset multiplot\n";
}

int run_gnuplot(const std::string& script, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::string prog = "gnuplot", cd_script = script;
  std::vector<char*> argv = {prog.data(), cd_script.data(), nullptr};
  pid_t pid;
  int rc = posix_spawnp(&pid, "gnuplot", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

bool Panel::has_points() const {
  for (const auto& s : series)
    for (size_t k = 0; k < s.x.size() && k < s.y.size(); ++k)
      if (shown(*this, s.x[k], s.y[k])) return true;
  return false;
}

std::string gp_quote(const std::string& s) {
  std::string q;
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\', q += c;
    else if (c == '_' || c == '^' || c == '@' || c == '&' || c == '~' || c == '{' || c == '}')
      q += "\\\\", q += c;  // literal in enhanced text
    else q += c;
  }
  return q;
}

std::string write_csv(const Figure& f, const std::string& dir) {
  std::string path = dir + "/" + f.id + ".csv";
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << "panel,series,x,y,y_err,n\n";
  for (const auto& p : f.panels)
    for (const auto& s : p.series)
      for (size_t k = 0; k < s.x.size(); ++k) {
        out << csv_field(p.title) << "," << csv_field(s.title) << "," << num(s.x[k]) << ","
            << num(s.y[k]) << "," << (k < s.err.size() ? num(s.err[k]) : "") << ","
            << (k < s.n.size() ? std::to_string(s.n[k]) : "") << "\n";
      }
  return path;
}

void draw(const Figure& f, const std::string& dir) {
  // Absolute output names: gnuplot resolves relative ones against its working folder.
  std::string base = std::filesystem::absolute(dir + "/" + f.id).string();
  std::string script = dir + "/" + f.id + ".gp";
  {
    std::ofstream gp(script);
    if (!gp) throw std::runtime_error("cannot write " + script);
    gp << "# " << f.id << ": " << f.title << " (written by lazyfeat report; data inline)\n";
    gp << "set encoding utf8\n";
    // Data blocks: x y err, only the points the axes can show (the CSV has them all).
    for (size_t pi = 0; pi < f.panels.size(); ++pi)
      for (size_t si = 0; si < f.panels[pi].series.size(); ++si) {
        const Panel& p = f.panels[pi];
        const Series& s = p.series[si];
        gp << "$P" << pi << "S" << si << " << EOD\n";
        for (size_t k = 0; k < s.x.size(); ++k) {
          if (!shown(p, s.x[k], s.y[k])) continue;
          double e = k < s.err.size() && std::isfinite(s.err[k]) ? s.err[k] : 0.0;
          gp << num(s.x[k]) << " " << num(s.y[k]) << " " << num(e) << "\n";
        }
        gp << "EOD\n";
      }
    int w = 560 * static_cast<int>(f.panels.size()), h = 440;
    gp << "set terminal pngcairo enhanced size " << w << "," << h << " font 'DejaVu Sans,10'\n";
    gp << "set output \"" << path_quote(base + ".png") << "\"\n";
    write_body(gp, f);
    gp << "set terminal svg enhanced size " << w << "," << h << " font 'DejaVu Sans,10' background '#ffffff'\n";
    gp << "set output \"" << path_quote(base + ".svg") << "\"\n";
    write_body(gp, f);
    gp << "unset output\n";
  }
  std::string log = dir + "/" + f.id + ".gp.log";
  int rc = run_gnuplot(script, log);
  if (rc == -1) throw std::runtime_error("cannot run gnuplot (install gnuplot-nox: scripts/setup.sh)");
  if (rc != 0)
    throw std::runtime_error("gnuplot failed on " + script + ": " + slurp(log).substr(0, 400));
  std::error_code ec;
  std::filesystem::remove(log, ec);  // warnings only (e.g. an empty range): not worth keeping
}

}  // namespace lf::report
