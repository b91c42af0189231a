// Subcommand registry of the `lazyfeat` CLI. Each src/cli/cmd_*.cpp registers itself:
//   static lf::cli::Command reg{"data", "build the dataset and print its summary", cmd_data};
// A command receives its arguments (after the subcommand name) and returns the exit status;
// it throws UsageError for bad usage or input (exit 2) and anything else for failures (exit 1).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace lf::cli {

using Args = std::vector<std::string>;
using Fn = std::function<int(const Args&)>;

struct Command {
  Command(std::string name, std::string summary, Fn fn);
};

struct Entry {
  std::string name, summary;
  Fn fn;
};
std::vector<Entry>& registry();

// Prints the JSON object as the last line of stdout (cli-contract.md).
void print_json_line(const std::string& compact_json);

}  // namespace lf::cli
