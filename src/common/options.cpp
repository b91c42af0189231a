#include "common/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "common/error.h"

namespace lf {

OptionParser::OptionParser(std::string usage, std::string summary)
    : usage_(std::move(usage)), summary_(std::move(summary)) {
  opts_.push_back({"help", "", "show this help and exit", true, [](const std::string&) {}});
}

void OptionParser::flag(const std::string& name, const std::string& help,
                        std::function<void(bool)> set) {
  opts_.push_back({name, "", help, true, [name, set](const std::string& v) {
                     set(parse_bool("--" + name, v));
                   }});
}

void OptionParser::flag(const std::string& name, const std::string& help, bool& target) {
  flag(name, help, [&target](bool v) { target = v; });
}

void OptionParser::value(const std::string& name, const std::string& metavar,
                         const std::string& help, std::function<void(const std::string&)> set) {
  opts_.push_back({name, metavar, help, false, std::move(set)});
}

const OptionParser::Opt* OptionParser::find(const std::string& name) const {
  for (const auto& o : opts_)
    if (o.name == name) return &o;
  return nullptr;
}

std::vector<std::string> OptionParser::parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      if (a.size() >= 2 && a[0] == '-' && !(std::isdigit(static_cast<unsigned char>(a[1])) || a[1] == '.'))
        throw UsageError("unknown option " + a + " (see --help)");
      positional.push_back(a);
      continue;
    }
    std::string name = a.substr(2), val;
    bool has_val = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      val = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_val = true;
    }
    const Opt* o = find(name);
    if (!o && !has_val && name.compare(0, 3, "no-") == 0) {
      const Opt* neg = find(name.substr(3));
      if (neg && neg->is_flag) {
        neg->set("false");
        continue;
      }
    }
    if (!o) throw UsageError("unknown option --" + name + " (see --help)");
    if (name == "help") {
      std::cout << help();
      throw HelpShown{};
    }
    if (o->is_flag) {
      o->set(has_val ? val : "true");
    } else {
      if (!has_val) {
        if (i + 1 >= args.size()) throw UsageError("option --" + name + " needs a value");
        val = args[++i];
      }
      o->set(val);
    }
  }
  return positional;
}

std::string OptionParser::help() const {
  std::ostringstream os;
  os << "usage: " << usage_ << "\n\n" << summary_ << "\n\noptions:\n";
  for (const auto& o : opts_) {
    std::string lhs = "  --" + o.name + (o.metavar.empty() ? "" : " " + o.metavar);
    os << lhs;
    if (lhs.size() < 30) os << std::string(30 - lhs.size(), ' ');
    else os << "\n" << std::string(30, ' ');
    os << o.help << "\n";
  }
  return os.str();
}

double parse_double(const std::string& option, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') throw UsageError(option + ": not a number: '" + text + "'");
  // ERANGE on underflow still gives the (subnormal or zero) value; only overflow is refused.
  if (errno == ERANGE && std::isinf(v)) throw UsageError(option + ": out of range: '" + text + "'");
  return v;
}

int64_t parse_int(const std::string& option, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    // Accept integral values written as floats (1e3) from TOML or scripts.
    double d = std::strtod(text.c_str(), &end);
    if (!text.empty() && *end == '\0' && d == static_cast<double>(static_cast<long long>(d)))
      return static_cast<int64_t>(d);
    throw UsageError(option + ": not an integer: '" + text + "'");
  }
  return v;
}

uint64_t parse_uint(const std::string& option, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  if (!text.empty() && text[0] == '-') throw UsageError(option + ": must be >= 0: '" + text + "'");
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE)
    throw UsageError(option + ": not a non-negative integer: '" + text + "'");
  return v;
}

bool parse_bool(const std::string& option, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  throw UsageError(option + ": expected true or false, got '" + text + "'");
}

}  // namespace lf
