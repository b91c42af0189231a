// Reader of the IDX files of MNIST and Fashion-MNIST (unsigned-byte images, idx3, magic
// 0x00000803; labels, idx1, magic 0x00000801), validating everything the header promises
// (protocol section 1). Every problem is a UsageError naming the file and the problem.
// Deliberately not: other IDX element types, compressed (.gz) files, any normalisation
// (data/dataset.h builds the study's pool from these bytes).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lf {

// One IDX file held in memory: the whole file (for its checksum) and its header's sizes.
struct IdxFile {
  std::string path;
  std::vector<uint8_t> bytes;   // the whole file, header included
  std::vector<int64_t> dims;    // [n] for labels, [n, rows, cols] for images
  size_t header = 0;            // payload offset: 4 + 4 * dims.size()

  int64_t count() const { return dims.empty() ? 0 : dims[0]; }
  const uint8_t* payload() const { return bytes.data() + header; }
  std::string md5() const;
};

// Images: magic 0x00000803, n >= 1, rows, cols >= 1, file length exactly 16 + n*rows*cols.
IdxFile read_idx_images(const std::string& path);
// Labels: magic 0x00000801, n >= 1, file length exactly 8 + n, every label in 0..9.
IdxFile read_idx_labels(const std::string& path);

}  // namespace lf
