// What this build runs on: version, LibTorch, the BLAS library actually loaded (protocol
// section 7: OpenBLAS, never the reference BLAS), threads, optional features.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace lf {
// Path of the BLAS shared library mapped into this process after a float64 matrix product
// (read from /proc/self/maps), or "" if none is found.
std::string loaded_blas_library();
// The BLAS kernels in use: for OpenBLAS its version and the core whose kernels it chose for this
// CPU at load time (OPENBLAS_CORETYPE overrides the choice), e.g. "OpenBLAS 0.3.21 Haswell".
// The core decides the last bits of every product (protocol section 8); "" when the BLAS is not
// OpenBLAS.
std::string blas_core();
nlohmann::json build_info();
}  // namespace lf
