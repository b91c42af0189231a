// `lazyfeat data [run options] [--json]`: builds the dataset of a run exactly as a run would
// (protocol section 1) and prints its summary; with --json the contract's object as the last
// stdout line. Deliberately not: writing the data anywhere, training.
#include <algorithm>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "common/error.h"
#include "common/options.h"
#include "common/progress.h"
#include "experiment/from_config.h"
#include "experiment/config.h"

namespace lf::cli {
namespace {

std::string join(const nlohmann::json& xs, int precision = 0) {
  std::ostringstream os;
  if (precision > 0) os.precision(precision);
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i) os << ' ';
    if (xs[i].is_number_float()) os << xs[i].get<double>();
    else os << xs[i];
  }
  return os.str();
}

void print_human(const nlohmann::json& s) {
  auto split = [](const nlohmann::json& part) {
    std::ostringstream os;
    os << part["n"] << " points x " << part["dim"] << " (shape " << join(part["shape"])
       << "), per class " << join(part["class_counts"]);
    return os.str();
  };
  auto num = [](const nlohmann::json& v) { return v.is_null() ? std::string("-") : fmt_num(v.get<double>()); };
  std::cout << "dataset       " << s["dataset"].get<std::string>() << ", seed-data " << s["seed_data"]
            << ", pool " << s["pool_size"] << " images of " << s["pixels"] << " pixels\n"
            << "train         " << split(s["train"]) << "\n"
            << "test          " << split(s["test"]) << "\n"
            << "label mean    train " << num(s["label_mean_train"]) << ", test "
            << num(s["label_mean_test"]) << "\n";
  if (s["pca_fit"].is_null())
    std::cout << "pca           none (centred pixels, norm sqrt(pixels))\n";
  else {
    const auto& v = s["pca_variances"];
    std::cout << "pca           " << v.size() << " whitened components fitted on the "
              << (s["pca_fit"] == "train" ? "training set" : "whole pool") << "; variances ";
    if (v.size() <= 10) {
      std::cout << join(v, 12) << "\n";
    } else {
      auto [lo, hi] = std::minmax_element(v.begin(), v.end());
      std::cout.precision(12);
      std::cout << "from " << lo->get<double>() << " to " << hi->get<double>() << "\n";
    }
  }
  const std::string cache = s["cache"].get<std::string>();
  std::cout << "checksums     " << (s["checksums_ok"].get<bool>() ? "ok" : "not verified")
            << (cache == "hit" ? " (when the prepared-data cache was made)" : "") << "\n"
            << "cache         "
            << (cache == "hit" ? "hit (prepared data read back)" : cache == "miss" ? "miss (built and kept)" : "off")
            << "\n"
            << "time          " << fmt_num(s["seconds"].get<double>()) << " s\n";
}

int cmd_data(const Args& args) {
  RunConfig cfg;
  bool as_json = false;
  OptionParser parser("lazyfeat data [run options] [--json]",
                      "Builds the dataset of a run (protocol section 1: pool, per-class shuffle, "
                      "interleaving, centring, norm sqrt(pixels), parity labels, split, whitened "
                      "PCA) and prints its summary.");
  add_run_options(parser, cfg);
  parser.flag("json", "print the summary as one JSON object (last stdout line)", as_json);
  auto rest = parser.parse(args);
  if (!rest.empty()) throw UsageError("data takes no positional argument, got '" + rest[0] + "'");
  finalize(cfg);
  Dataset ds = load_dataset(cfg);
  nlohmann::json s = ds.summary();
  if (as_json) print_json_line(s.dump());
  else print_human(s);
  return 0;
}

Command reg{"data", "build the dataset of a run and print its summary", cmd_data};

}  // namespace
}  // namespace lf::cli
