// NumPy .npy files (format version 1.0): write a tensor so numpy.load reads it, and read back
// what this writer (or numpy.save of a C-ordered little-endian array) wrote.
// Types: float64 '<f8', float32 '<f4', int64 '<i8'. Deliberately not: .npz, Fortran order,
// big-endian data, object arrays.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace lf {

// Writes t (any device, made contiguous on the CPU). Throws std::runtime_error on I/O failure,
// UsageError for an unsupported dtype.
void write_npy(const std::string& path, const at::Tensor& t);
// Reads an .npy file; throws UsageError for a missing, truncated or unsupported file.
at::Tensor read_npy(const std::string& path);

}  // namespace lf
