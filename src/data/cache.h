// The prepared data on disk: what load_dataset builds for one DataOptions (the pool's split and
// labels, the whitened PCA or the normalised images), kept after its first use so that a
// process reaches its first step without reading, checking and transforming the data files
// again (3 s for MNIST with the PCA on 2 cores).
//  - Where: LAZYFEAT_DATA_CACHE=DIR, else <data_dir>/cache; LAZYFEAT_DATA_CACHE=0 turns it off.
//  - Key (the file's name): every field of DataOptions that shapes the result (dataset, ptr,
//    pte, pca, pca_train_only, pca_solver, images, seed_data), the LibTorch version and the BLAS
//    kernels in use (lf::blas_core(): the PCA's last bits, protocol section 8), and kFormat.
//  - Checked at every load: the header names the same key and the same data files (each file's
//    size and modification time), and a 64-bit checksum of the payload matches. A file that
//    fails is stale or corrupt: one line on stderr, the data built again and the file replaced.
//  - Written to a temporary file and renamed, so that concurrent processes (a sweep's workers,
//    the test suite) read either nothing or a whole file. The cache keeps at most
//    LAZYFEAT_DATA_CACHE_MB megabytes (default 4096), the least recently used files going first.
// Deliberately not: building the data (data/dataset.cpp), caching anything but load_dataset's
// result, a lock (two processes that miss at once both build and both write the same bytes).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace lf {

class DataCache {
 public:
  // files: the data files the dataset is built from (their size and time go into the header).
  DataCache(const DataOptions& opt, std::vector<std::string> files);
  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }  // "" when off
  // The cached dataset, or nothing on a miss; a stale or corrupt file is reported on stderr
  // (one line) and removed.
  std::optional<Dataset> load() const;
  // Keeps ds (a failure to write is reported on stderr, one line, and otherwise ignored).
  void store(const Dataset& ds) const;

  static constexpr int kFormat = 1;

 private:
  std::string key_;    // canonical JSON of what determines the dataset
  std::string files_;  // JSON of the data files' identity
  std::string dir_, path_;
};

}  // namespace lf
