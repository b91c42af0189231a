// index.html of the report: one self-contained page (PNG images as data: URIs, no scripts or
// styles from elsewhere) showing every figure, the fits next to the paper's predictions, the run
// counts, what was dropped and why, and the configuration of each family of runs. A small inline
// script writes the number of images that failed to decode into #image-check (read by the tests
// through headless Chromium's --dump-dom).
// Deliberately not: deciding what is in a figure (report.cpp), drawing (plot.cpp).
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "analysis/runs.h"
#include "report/report.h"

namespace lf::report {

namespace {

std::string base64(const std::string& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += tbl[v >> 18], out += tbl[(v >> 12) & 63], out += tbl[(v >> 6) & 63], out += tbl[v & 63];
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += tbl[v >> 18], out += tbl[(v >> 12) & 63], out += "==";
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += tbl[v >> 18], out += tbl[(v >> 12) & 63], out += tbl[(v >> 6) & 63], out += '=';
  }
  return out;
}

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string cell(const nlohmann::json& v, int digits = 3) {
  if (v.is_number()) return analysis::value_key(v.get<double>(), digits);
  if (v.is_string()) return esc(v.get<std::string>());
  if (v.is_null()) return "n/a";
  return esc(v.dump());
}

}  // namespace

void write_index(const std::string& path, const std::vector<Figure>& figures,
                 const nlohmann::json& s, const nlohmann::json& families) {
  std::string dir = path.substr(0, path.find_last_of('/'));
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
       "<title>lazyfeat report</title>\n<style>\n"
       "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}\n"
       "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}\n"
       "img.fig{max-width:100%;border:1px solid #eee}.note{color:#555;font-size:90%}\n"
       "section{margin-bottom:2.5em}code,pre{background:#f6f6f6}pre{white-space:pre-wrap;font-size:80%}\n"
       "</style></head><body>\n";
  h << "<h1>Feature and lazy learning: figures from the study database</h1>\n";
  h << "<p>Database <code>" << esc(s["db"].get<std::string>()) << "</code>. Runs: "
    << s["runs"]["total"] << " in total, " << s["runs"]["converged"]
    << " converged (only converged runs count, protocol §5).";
  if (!s["runs"]["dropped"].empty()) {
    h << " Dropped:";
    for (auto& [st, n] : s["runs"]["dropped"].items()) {
      h << " " << n << " " << esc(st);
      if (s["runs"]["reasons"].contains(st))
        h << " (e.g. “" << esc(s["runs"]["reasons"][st].get<std::string>()) << "”)";
      h << ";";
    }
  } else {
    h << " None dropped.";
  }
  h << "</p>\n<p>Fit ranges of √h α: feature regime [" << cell(s["fit_range"][0]) << ", "
    << cell(s["fit_range"][1]) << "] (<code>--fit-range</code>), lazy regime ["
    << cell(s["lazy_range"][0]) << ", " << cell(s["lazy_range"][1])
    << "] (<code>--lazy-range</code>); errors: standard deviation over " << s["bootstrap"]
    << " bootstrap resamplings of the seeds. α in the paper's convention.</p>\n";
  h << "<p id=\"image-check\">images not checked (scripts off)</p>\n";

  h << "<h2>Contents</h2><ul>\n";
  for (const Figure& f : figures) h << "<li><a href=\"#" << f.id << "\">" << f.id << "</a>: " << esc(f.title) << "</li>\n";
  if (!s["table1"].empty()) h << "<li><a href=\"#T1\">T1</a>: fitted exponents vs the paper's predictions</li>\n";
  h << "</ul>\n";

  if (!s["absent"].empty()) {
    h << "<h2>Figures absent from this database</h2>\n<table><tr><th>figure</th><th>needs</th><th>a sweep that makes it</th></tr>\n";
    for (const auto& a : s["absent"])
      h << "<tr><td>" << cell(a["id"]) << "</td><td>" << cell(a["needs"]) << "</td><td><code>"
        << cell(a["sweep"]) << "</code></td></tr>\n";
    h << "</table>\n";
  }

  h << "<h2 id=\"T1\">Fitted exponents (T1 and the figures' slopes)</h2>\n";
  if (!s["table1"].empty()) {
    h << "<p>Table 1: exponents for α ≪ 1 (feature regime), O ~ (√h α)^(-exponent).</p>\n"
         "<table><tr><th>family</th><th>exponent</th><th>measured</th><th>± (bootstrap)</th>"
         "<th>prediction</th><th>paper measured</th><th>range of √h α</th></tr>\n";
    for (const auto& r : s["table1"])
      h << "<tr><td>" << cell(r["family"]) << "</td><td>" << cell(r["exponent"]) << "</td><td>"
        << cell(r["measured"]) << "</td><td>" << cell(r["error"], 2) << "</td><td>"
        << cell(r["prediction"]) << "</td><td>" << cell(r["paper"]) << "</td><td>["
        << cell(r["range"][0]) << ", " << cell(r["range"][1]) << "]</td></tr>\n";
    h << "</table>\n";
  }
  h << "<table><tr><th>figure</th><th>family</th><th>quantity</th><th>regime</th><th>range</th>"
       "<th>slope / ratio</th><th>±</th><th>points</th><th>seeds</th><th>prediction</th><th>paper</th></tr>\n";
  for (const auto& j : s["fits"]) {
    bool ratio = j.contains("ratio");
    std::string range = j.contains("range") && j["range"].is_array() && j["range"].size() == 2
                            ? "[" + cell(j["range"][0]) + ", " + cell(j["range"][1]) + "]"
                            : "all";
    h << "<tr><td>" << cell(j["figure"]) << "</td><td>" << cell(j["family"]) << "</td><td>"
      << cell(j["quantity"]) << "</td><td>" << cell(j["regime"]) << "</td><td>" << range
      << "</td><td>" << cell(ratio ? j["ratio"] : j.value("slope", nlohmann::json()))
      << "</td><td>" << cell(j.value("slope_err", nlohmann::json()), 2) << "</td><td>"
      << j.value("points", 0) << "</td><td>" << j.value("seeds", 0) << "</td><td>"
      << cell(j.value("prediction", nlohmann::json())) << "</td><td>"
      << cell(j.value("paper", nlohmann::json())) << "</td></tr>\n";
  }
  h << "</table>\n";

  for (const Figure& f : figures) {
    h << "<section id=\"" << f.id << "\"><h2>" << f.id << ": " << esc(f.title) << "</h2>\n";
    h << "<p><b>Paper:</b> " << esc(f.finding) << "</p>\n";
    h << "<img class=\"fig\" alt=\"" << f.id << "\" src=\"data:image/png;base64,"
      << base64(read_file(dir + "/" + f.id + ".png")) << "\">\n";
    for (const auto& n : f.notes) h << "<p class=\"note\">" << esc(n) << "</p>\n";
    h << "<p class=\"note\">Data: <code>" << f.id << ".csv</code>; vector image <code>" << f.id
      << ".svg</code>; gnuplot script <code>" << f.id << ".gp</code> (next to this page).</p>\n</section>\n";
  }

  h << "<h2>Configurations</h2>\n<p>Converged runs grouped into families (same configuration "
       "except h, α and the seeds).</p>\n";
  for (const auto& fam : families) {
    h << "<h3>" << cell(fam["label"]) << "</h3><p>" << fam["runs"] << " runs, " << fam["widths"]
      << " widths, " << fam["alphas"] << " values of α, " << fam["seeds"] << " seeds.</p>\n<pre>"
      << esc(fam["config"].dump(1)) << "</pre>\n";
  }

  h << "<script>\n(function(){\n"
       "  function check(){\n"
       "    var imgs=document.images, broken=0;\n"
       "    for (var i=0;i<imgs.length;i++) if (!imgs[i].complete || imgs[i].naturalWidth===0) broken++;\n"
       "    var e=document.getElementById('image-check');\n"
       "    e.textContent='images: '+imgs.length+', broken: '+broken;\n"
       "    e.setAttribute('data-images', imgs.length); e.setAttribute('data-broken', broken);\n"
       "  }\n"
       "  if (document.readyState==='complete') check(); else window.addEventListener('load', check);\n"
       "})();\n</script>\n</body></html>\n";
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << h.str();
}

}  // namespace lf::report
