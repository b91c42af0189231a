// What this build runs on: version, LibTorch, the BLAS library actually loaded (protocol
// section 7: OpenBLAS, never the reference BLAS), threads, optional features.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lf {
// Path of the BLAS shared library mapped into this process after a float64 matrix product
// (read from /proc/self/maps), or "" if none is found.
std::string loaded_blas_library();
nlohmann::json build_info();
}  // namespace lf
