// The study's data (protocol section 1): pool = official train + test files; per-class seeded
// shuffle; class interleaving truncated at the smallest class; centring by the pool's mean;
// every image rescaled to norm sqrt(pixels); parity labels; train = the first ptr points,
// test = the next pte; optional whitened PCA. Seeds as the published code (protocol section 8).
#pragma once
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/pca.h"

namespace lf {

// What load_dataset needs (experiment/from_config.h builds it from a run's options).
struct DataOptions {
  std::string dataset = "mnist";       // mnist | fashion | cifar10
  std::string data_dir;                // the folder holding <dataset>/ IDX files
  int64_t ptr = 5000, pte = 50000;     // train and test sizes
  int64_t pca = 0;                     // whitened PCA components, 0 = none
  bool pca_train_only = false;         // fit the PCA on the training set (the paper: whole pool)
  PcaSolver pca_solver = PcaSolver::Dsyev;
  bool images = false;                 // keep [n, channels, rows, cols] (convolutional networks)
  uint64_t seed_data = 0;
};

struct Dataset {
  std::string name;          // "mnist" | "fashion"
  at::Tensor x_train;        // [ptr, dim] float64 (dim = pca, or pixels; [ptr, 1, 28, 28] for cnn)
  at::Tensor y_train;        // [ptr] float64 in {-1, +1}
  at::Tensor x_test;         // [pte, dim]
  at::Tensor y_test;         // [pte]
  at::Tensor class_train;    // [ptr] int64 original class 0..9
  at::Tensor class_test;     // [pte] int64
  std::vector<double> pca_variances;  // variances of the whitened components on the fitting set
  bool checksums_ok = false;          // every IDX file matched its reference MD5
  int64_t pool_size = 0;              // interleaved pool (63,130 for MNIST)
  at::Tensor source_train;   // [ptr] int64 index of each image in the official files, train
  at::Tensor source_test;    // [pte]   file then test file (0..69,999): distinct across the pool
  int64_t pixels = 0;                 // pixels of one image (784)
  std::string pca_fit;                // "pool" | "train" (pca_train_only) | "" without PCA
  std::string pca_solver;             // "dsyev" | "evd" | "" without PCA
  uint64_t seed_data = 0;
  std::string cache;                  // the prepared-data cache (data/cache.h): "hit", "miss" or "off"
  double seconds = 0.0;               // wall time of load_dataset

  // The summary printed by `lazyfeat data --json` (cli-contract.md).
  nlohmann::json summary() const;
};

// Builds the dataset, or reads it from the prepared-data cache (data/cache.h), which then holds
// the same bits. Throws UsageError for a missing, truncated or corrupt file, a checksum
// mismatch, ptr + pte larger than the pool, a pca larger than the pixel count or the rank.
// Result in float64 on the CPU.
Dataset load_dataset(const DataOptions& opt);

}  // namespace lf
