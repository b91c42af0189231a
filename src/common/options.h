// A small command-line option parser: --name VALUE, --name=VALUE, flags, --help.
// Every subcommand builds one OptionParser; the run options (experiment/config.h) register
// into it from one table that the sweep specification's TOML keys share.
// Deliberately not: subcommand dispatch (src/cli/main.cpp), short options, abbreviations.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lf {

// Thrown by OptionParser::parse after printing --help to stdout; the CLI exits 0.
struct HelpShown {};

class OptionParser {
 public:
  // usage: e.g. "lazyfeat train [options]"; summary: one paragraph shown by --help.
  OptionParser(std::string usage, std::string summary);

  // A flag (no value): --name sets it true, --name=false / --no-name set it false.
  void flag(const std::string& name, const std::string& help, std::function<void(bool)> set);
  void flag(const std::string& name, const std::string& help, bool& target);
  // An option with a value; metavar names the value in --help.
  void value(const std::string& name, const std::string& metavar, const std::string& help,
             std::function<void(const std::string&)> set);

  // Parses args (without the program and subcommand names). Returns the positional arguments.
  // Unknown options, missing values and unparsable numbers throw UsageError naming the option.
  std::vector<std::string> parse(const std::vector<std::string>& args);
  std::string help() const;

 private:
  struct Opt {
    std::string name, metavar, help;
    bool is_flag;
    std::function<void(const std::string&)> set;
  };
  const Opt* find(const std::string& name) const;
  std::string usage_, summary_;
  std::vector<Opt> opts_;
};

// Number parsing with the option's name in the error (UsageError).
double parse_double(const std::string& option, const std::string& text);
int64_t parse_int(const std::string& option, const std::string& text);
uint64_t parse_uint(const std::string& option, const std::string& text);
bool parse_bool(const std::string& option, const std::string& text);

}  // namespace lf
