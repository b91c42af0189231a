// NumPy .npy writer and reader (see npy.h). Layout: magic "\x93NUMPY", version 1.0, a 2-byte
// little-endian header length, a Python-dict header padded with spaces to a multiple of 64
// bytes and ended by '\n', then the raw little-endian data in C order.
#include "common/npy.h"

#include <cstring>
#include <fstream>
#include <regex>
#include <stdexcept>

#include "common/error.h"

namespace lf {
namespace {

std::string descr_of(at::ScalarType s) {
  switch (s) {
    case at::kDouble: return "<f8";
    case at::kFloat: return "<f4";
    case at::kLong: return "<i8";
    default: throw UsageError(std::string("npy: unsupported dtype ") + c10::toString(s));
  }
}

at::ScalarType type_of(const std::string& d) {
  if (d == "<f8") return at::kDouble;
  if (d == "<f4") return at::kFloat;
  if (d == "<i8") return at::kLong;
  throw UsageError("npy: unsupported dtype '" + d + "'");
}

}  // namespace

void write_npy(const std::string& path, const at::Tensor& t_in) {
  at::Tensor t = t_in.detach().cpu().contiguous();
  std::string header = "{'descr': '" + descr_of(t.scalar_type()) + "', 'fortran_order': False, 'shape': (";
  for (int64_t i = 0; i < t.dim(); ++i) header += std::to_string(t.size(i)) + (t.dim() == 1 ? "," : (i + 1 < t.dim() ? ", " : ""));
  header += "), }";
  const size_t prefix = 10;  // magic (6) + version (2) + length (2)
  size_t total = prefix + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot write " + path);
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  f.write(reinterpret_cast<const char*>(magic), 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  const unsigned char len_le[2] = {static_cast<unsigned char>(len & 0xff), static_cast<unsigned char>(len >> 8)};
  f.write(reinterpret_cast<const char*>(len_le), 2);
  f.write(header.data(), std::streamsize(header.size()));
  f.write(static_cast<const char*>(t.data_ptr()), std::streamsize(t.numel() * t.element_size()));
  if (!f) throw std::runtime_error("write failed: " + path);
}

at::Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  require(bool(f), "cannot read " + path);
  unsigned char pre[10];
  f.read(reinterpret_cast<char*>(pre), 10);
  require(f && std::memcmp(pre, "\x93NUMPY", 6) == 0, path + " is not an .npy file");
  require(pre[6] == 1, path + ": only .npy version 1.0 is supported");
  const size_t len = size_t(pre[8]) | (size_t(pre[9]) << 8);
  std::string header(len, '\0');
  f.read(header.data(), std::streamsize(len));
  require(bool(f), path + ": truncated header");
  std::smatch m;
  require(std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'")), path + ": no descr in header");
  const at::ScalarType type = type_of(m[1]);
  require(header.find("'fortran_order': False") != std::string::npos, path + ": Fortran order is not supported");
  require(std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)")), path + ": no shape in header");
  std::vector<int64_t> shape;
  const std::string dims = m[1];
  std::regex num("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    shape.push_back(std::stoll(it->str()));
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
  f.read(static_cast<char*>(t.data_ptr()), std::streamsize(t.numel() * t.element_size()));
  require(bool(f), path + ": truncated data");
  return t;
}

}  // namespace lf
