// Run records and their grouping: see runs.h. Deliberately no SQL.
#include "analysis/runs.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace lf::analysis {

double regime(const RunRecord& r) {
  if (std::isfinite(r.sqrt_h_alpha) && r.sqrt_h_alpha > 0) return r.sqrt_h_alpha;
  return std::sqrt(static_cast<double>(r.h)) * r.alpha;  // protocol §3
}

namespace {

// The config object to key on: runs.config when present, else the flat columns.
nlohmann::json config_of(const RunRecord& r) {
  if (r.config.is_object() && !r.config.empty()) return r.config;
  return {{"dataset", r.dataset}, {"arch", r.arch},  {"act", r.act},   {"loss", r.loss},
          {"L", r.L},             {"h", r.h},        {"ptr", r.ptr},   {"pte", r.pte},
          {"pca", r.pca},         {"alpha", value_key(r.alpha, 10)},   {"tau", r.tau},
          {"temperature", r.temperature}};
}

std::string key_without(const RunRecord& r, std::initializer_list<const char*> drop) {
  nlohmann::json c = config_of(r);
  for (const char* k : drop) c.erase(k);
  // alpha as rounded text: X / sqrt(h) computed the same way for every seed, but rounding keeps
  // configurations written by different code paths together.
  if (c.contains("alpha") && c["alpha"].is_number()) c["alpha"] = value_key(c["alpha"].get<double>(), 10);
  return c.dump();  // nlohmann::json objects keep sorted keys: canonical
}

}  // namespace

std::string ensemble_key(const RunRecord& r) {
  return key_without(r, {"seed_data", "seed_init", "weights_seed", "seed_batch", "data_dir", "max_wall",
                         "max_steps", "sqrt_h_alpha"});
}

std::string family_key(const RunRecord& r) {
  return key_without(r, {"seed_data", "seed_init", "weights_seed", "seed_batch", "data_dir", "max_wall",
                         "max_steps", "sqrt_h_alpha", "h", "alpha", "delta_kernel",
                         "init_kernel", "final_kernel", "zdot", "kernel_points", "device"});
}

std::string family_label(const RunRecord& r) {
  std::ostringstream s;
  s << r.arch << " " << r.act;
  if (r.arch != "cnn") s << " L=" << r.L;  // the CNN has its four convolutions whatever L says
  s << " " << r.dataset << " n=" << r.ptr << " " << r.loss;
  if (r.tau < 0) s << " mu=" << -r.tau;
  else if (r.tau > 0) s << " tau=" << r.tau;
  else s << " gradient-flow";
  if (r.temperature > 0) s << " T=" << r.temperature;
  return s.str();
}

std::string value_key(double x, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, x);
  return buf;
}

Selection select_converged(const std::vector<RunRecord>& runs) {
  Selection s;
  for (const auto& r : runs) {
    if (r.status == "converged") {
      s.kept.push_back(r);
    } else {
      std::string st = r.status.empty() ? "unknown" : r.status;
      s.dropped[st]++;
      if (!r.error.empty() && !s.reasons.count(st)) s.reasons[st] = r.error;
    }
  }
  return s;
}

}  // namespace lf::analysis
