// IDX reading and validation (see idx.h). The header is big-endian: a 32-bit magic number
// (0x0000 0x08 = unsigned byte, then the number of dimensions), then one 32-bit size each.
#include "data/idx.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/md5.h"

namespace lf {
namespace {

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string hex32(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", x);
  return buf;
}

std::vector<uint8_t> slurp(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw UsageError(path + ": missing (run scripts/setup.sh to fetch the data)");
  if (!fs::is_regular_file(path, ec)) throw UsageError(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(path + ": cannot be opened");
  in.seekg(0, std::ios::end);
  std::streamoff n = in.tellg();
  in.seekg(0, std::ios::beg);
  std::vector<uint8_t> bytes(static_cast<size_t>(n));
  if (n > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), n))
    throw UsageError(path + ": read error");
  return bytes;
}

// Reads the header of an unsigned-byte IDX file with `ndim` dimensions and checks its magic
// number, that every size is >= 1 and that the file holds exactly the promised bytes.
IdxFile read_idx(const std::string& path, int ndim) {
  IdxFile f;
  f.path = path;
  f.bytes = slurp(path);
  f.header = 4 + 4 * static_cast<size_t>(ndim);
  const uint32_t magic = 0x00000800u | static_cast<uint32_t>(ndim);
  if (f.bytes.size() < 4)
    throw UsageError(path + ": truncated: " + std::to_string(f.bytes.size()) +
                     " bytes, not even an IDX magic number");
  const uint32_t found = be32(f.bytes.data());
  if (found != magic)
    throw UsageError(path + ": bad magic number " + hex32(found) + " (expected " + hex32(magic) +
                     ", an idx" + std::to_string(ndim) + " file of unsigned bytes)");
  if (f.bytes.size() < f.header)
    throw UsageError(path + ": truncated: header needs " + std::to_string(f.header) +
                     " bytes, found " + std::to_string(f.bytes.size()));
  // Sizes are < 2^32 each; the product is tracked in 128 bits so no header can overflow it.
  unsigned __int128 expected = f.header, payload = 1;
  for (int k = 0; k < ndim; ++k) {
    uint32_t d = be32(f.bytes.data() + 4 + 4 * k);
    if (d == 0) throw UsageError(path + ": dimension " + std::to_string(k) + " of the header is 0");
    f.dims.push_back(static_cast<int64_t>(d));
    payload *= d;
  }
  expected += payload;
  const size_t found_len = f.bytes.size();
  auto exp_text = [&] {
    if (expected > static_cast<unsigned __int128>(INT64_MAX)) return std::string("more than 2^63");
    return std::to_string(static_cast<uint64_t>(expected));
  };
  if (expected > found_len)
    throw UsageError(path + ": truncated: expected " + exp_text() + " bytes, found " +
                     std::to_string(found_len));
  if (expected < found_len)
    throw UsageError(path + ": extra bytes: expected " + exp_text() + " bytes, found " +
                     std::to_string(found_len));
  return f;
}

}  // namespace

std::string IdxFile::md5() const { return md5_hex(bytes.data(), bytes.size()); }

IdxFile read_idx_images(const std::string& path) { return read_idx(path, 3); }

IdxFile read_idx_labels(const std::string& path) {
  IdxFile f = read_idx(path, 1);
  const uint8_t* y = f.payload();
  for (int64_t i = 0; i < f.count(); ++i)
    if (y[i] > 9)
      throw UsageError(path + ": label " + std::to_string(int(y[i])) + " at index " +
                       std::to_string(i) + " is out of range 0..9");
  return f;
}

}  // namespace lf
