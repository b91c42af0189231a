// lazyfeat: the thin CLI. Dispatches to the subcommands registered by src/cli/cmd_*.cpp and
// maps errors to exit codes: 0 success, 2 bad usage or bad input, 1 any other failure.
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "common/error.h"
#include "common/options.h"
#include "common/sysinfo.h"

namespace lf::cli {

std::vector<Entry>& registry() {
  static std::vector<Entry> r;
  return r;
}

Command::Command(std::string name, std::string summary, Fn fn) {
  registry().push_back({std::move(name), std::move(summary), std::move(fn)});
}

void print_json_line(const std::string& compact_json) {
  std::cout << compact_json << std::endl;
}

}  // namespace lf::cli

namespace {

void usage(std::ostream& os) {
  auto entries = lf::cli::registry();
  std::sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.name < b.name; });
  os << "usage: lazyfeat <command> [options]   (lazyfeat <command> --help for its options)\n\n"
        "Feature and lazy learning in deep networks (Geiger, Spigler, Jacot, Wyart).\n\n"
        "commands:\n";
  for (const auto& e : entries) {
    std::string n = "  " + e.name;
    os << n << std::string(n.size() < 12 ? 12 - n.size() : 1, ' ') << e.summary << "\n";
  }
  os << "\n  --version   version, LibTorch, the BLAS library in use and its kernels (OpenBLAS's core)\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? 2 : 0;
  }
  try {
    if (args[0] == "--version") {
      auto info = lf::build_info();
      std::cout << "lazyfeat " << info["version"].get<std::string>() << "\n"
                << "libtorch " << info["libtorch"].get<std::string>() << "\n"
                << "blas " << info["blas"].get<std::string>() << "\n"
                << "blas kernels " << (info["blas_core"] == "" ? "unknown" : info["blas_core"].get<std::string>()) << "\n"
                << "intra-op threads " << info["intra_op_threads"] << "\n"
                << "mpi " << info["mpi"] << ", cuda "
                << info["cuda_available"] << "\n";
      if (std::find(args.begin(), args.end(), "--json") != args.end())
        lf::cli::print_json_line(info.dump());
      return 0;
    }
    for (const auto& e : lf::cli::registry()) {
      if (e.name == args[0]) {
        std::vector<std::string> rest(args.begin() + 1, args.end());
        return e.fn(rest);
      }
    }
    throw lf::UsageError("unknown command '" + args[0] + "' (see lazyfeat --help)");
  } catch (const lf::HelpShown&) {
    return 0;
  } catch (const lf::UsageError& e) {
    std::cerr << "lazyfeat: error: " << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "lazyfeat: failure: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "lazyfeat: failure: " << e.what() << "\n";
    return 1;
  }
}
