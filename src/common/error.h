// Errors that the CLI maps to exit codes (cli-contract.md): UsageError -> 2 (bad usage or bad
// input, one line naming the problem), anything else -> 1.
#pragma once
#include <stdexcept>
#include <string>

namespace lf {

struct UsageError : std::runtime_error {
  explicit UsageError(const std::string& what) : std::runtime_error(what) {}
};

// Throws UsageError(msg) unless cond holds.
inline void require(bool cond, const std::string& msg) {
  if (!cond) throw UsageError(msg);
}

}  // namespace lf
