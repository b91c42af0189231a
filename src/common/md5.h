// MD5 (RFC 1321) of a byte buffer or a file: data checksums (protocol section 1) and the
// identity hash of a run configuration. Not for security.
#pragma once
#include <cstddef>
#include <string>

namespace lf {
std::string md5_hex(const void* data, size_t n);
std::string md5_hex(const std::string& s);
std::string md5_file_hex(const std::string& path);  // throws UsageError if unreadable
}  // namespace lf
