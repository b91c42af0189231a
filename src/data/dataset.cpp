// The study's data pipeline (protocol sections 1 and 8): IDX files checked against their
// reference MD5 sums, pool = official train file then test file, per-class seeded shuffle,
// class interleaving truncated at the smallest class, centring, rescaling to norm
// sqrt(pixels), parity labels, train/test split, optional whitened PCA. CIFAR-10 from its
// binary files (data_batch_1..5.bin, test_batch.bin: records of 1 label byte and 3 x 32 x 32
// pixel bytes, channel-major, as torchvision's CIFAR10 tensors), through the same pipeline.
// Deliberately not: the prepared-data cache (data/cache.h keeps what this file builds), other
// datasets, any augmentation, MD5 sums for the CIFAR-10 files (none recorded here: checksums_ok
// stays false for it).
#include "data/dataset.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "common/error.h"
#include "data/cache.h"
#include "data/idx.h"
#include "data/pca.h"

namespace lf {
namespace {

constexpr int64_t kClasses = 10;

// The four files of a dataset in pool order (train file, then test file), with their
// reference MD5 sums: MNIST as first published (protocol section 1), Fashion-MNIST as
// unpacked from Debian's dataset-fashion-mnist.
struct Reference {
  const char* images;
  const char* images_md5;
  const char* labels;
  const char* labels_md5;
};

std::array<Reference, 2> references(const std::string& dataset) {
  if (dataset == "mnist")
    return {{{"train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"},
             {"t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"}}};
  if (dataset == "fashion")
    return {{{"train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a",
              "train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"},
             {"t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a",
              "t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"}}};
  throw UsageError("unknown dataset '" + dataset + "' (expected mnist, fashion or cifar10)");
}

void check_md5(const IdxFile& f, const char* expected) {
  const std::string found = f.md5();
  if (found != expected)
    throw UsageError(f.path + ": checksum mismatch: MD5 " + found + ", expected " + expected +
                     " (a different or damaged copy; run scripts/setup.sh)");
}

// The Euclidean norm of each image, [N, p] -> [N, 1], by the reduction the published code's
// x.flatten(1).norm(dim=1) ran: LibTorch 1.13's frobenius_norm over one dimension is
// at::norm(x, 2, dim), which later versions still provide (frobenius_norm is deprecated there).
at::Tensor image_norms(const at::Tensor& x) {
  return at::norm(x, 2, at::IntArrayRef{1}, /*keepdim=*/false).view({-1, 1});
}

std::vector<int64_t> class_counts(const at::Tensor& cls) {
  at::Tensor c = at::bincount(cls, {}, kClasses);
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

nlohmann::json split_summary(const at::Tensor& x, const at::Tensor& cls) {
  std::vector<int64_t> shape(x.sizes().begin() + 1, x.sizes().end());
  int64_t dim = 1;
  for (int64_t s : shape) dim *= s;
  return {{"n", x.size(0)}, {"dim", dim}, {"shape", shape}, {"class_counts", class_counts(cls)}};
}

}  // namespace

nlohmann::json Dataset::summary() const {
  auto mean_or_null = [](const at::Tensor& y) -> nlohmann::json {
    if (y.numel() == 0) return nullptr;
    return y.mean().item<double>();
  };
  return {{"dataset", name},
          {"train", split_summary(x_train, class_train)},
          {"test", split_summary(x_test, class_test)},
          {"label_mean_train", mean_or_null(y_train)},
          {"label_mean_test", mean_or_null(y_test)},
          {"pca_variances", pca_variances},
          {"pca_fit", pca_fit.empty() ? nlohmann::json(nullptr) : nlohmann::json(pca_fit)},
          {"pca_solver", pca_solver.empty() ? nlohmann::json(nullptr) : nlohmann::json(pca_solver)},
          {"checksums_ok", checksums_ok},
          {"pool_size", pool_size},
          {"pixels", pixels},
          {"seed_data", seed_data},
          {"cache", cache},
          {"seconds", seconds}};
}

namespace {

// CIFAR-10's binary files, train batches 1..5 then the test batch, as bytes [total, 3072]
// (channel-major) and classes [total].
constexpr int64_t kCifarSide = 32, kCifarChannels = 3, kCifarRecord = 1 + kCifarChannels * kCifarSide * kCifarSide;

void read_cifar10(const std::string& dir, at::Tensor& bytes, at::Tensor& cls) {
  std::vector<std::string> raw;
  int64_t total = 0;
  for (const char* name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
                           "data_batch_5.bin", "test_batch.bin"}) {
    const std::string path = dir + name;
    std::FILE* f = std::fopen(path.c_str(), "rb");
    require(f != nullptr, path + ": cannot open (CIFAR-10 binary version expected under " + dir + ")");
    std::string data;
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, got);
    std::fclose(f);
    require(!data.empty() && data.size() % kCifarRecord == 0,
            path + ": " + std::to_string(data.size()) + " bytes, not a whole number of " +
                std::to_string(kCifarRecord) + "-byte CIFAR-10 records");
    total += int64_t(data.size()) / kCifarRecord;
    raw.push_back(std::move(data));
  }
  const int64_t pixels = kCifarRecord - 1;
  bytes = at::empty({total, pixels}, at::kByte);
  cls = at::empty({total}, at::kLong);
  uint8_t* b = bytes.data_ptr<uint8_t>();
  int64_t* c = cls.data_ptr<int64_t>();
  for (const auto& data : raw)
    for (size_t r = 0; r < data.size(); r += kCifarRecord) {
      const auto label = static_cast<uint8_t>(data[r]);
      require(label < kClasses, dir + ": a CIFAR-10 record with label " + std::to_string(label));
      *c++ = label;
      std::memcpy(b, data.data() + r + 1, static_cast<size_t>(pixels));
      b += pixels;
    }
}

}  // namespace

namespace {

// The files a dataset is built from (their identity keys the cache, data/cache.h).
std::vector<std::string> source_files(const DataOptions& cfg) {
  const std::string dir = cfg.data_dir + "/" + cfg.dataset + "/";
  if (cfg.dataset == "cifar10")
    return {dir + "data_batch_1.bin", dir + "data_batch_2.bin", dir + "data_batch_3.bin",
            dir + "data_batch_4.bin", dir + "data_batch_5.bin", dir + "test_batch.bin"};
  std::vector<std::string> out;
  for (const Reference& r : references(cfg.dataset)) out.push_back(dir + r.images), out.push_back(dir + r.labels);
  return out;
}

// load_dataset without the cache.
Dataset build_dataset(const DataOptions& cfg) {
  const auto start = std::chrono::steady_clock::now();
  const std::string dir = cfg.data_dir + "/" + cfg.dataset + "/";
  const bool cifar = cfg.dataset == "cifar10";
  int64_t channels = 1, rows = 0, cols = 0, pixels = 0;
  at::Tensor bytes, cls_all;  // [total, pixels] and [total]: the official files, train then test
  if (cifar) {
    read_cifar10(dir, bytes, cls_all);
    channels = kCifarChannels;
    rows = cols = kCifarSide;
    pixels = channels * rows * cols;
    require(cfg.pca <= pixels, "--pca " + std::to_string(cfg.pca) + " is larger than the " +
                                   std::to_string(pixels) + " pixels of an image");
  } else {
    const auto refs = references(cfg.dataset);

    // 1. Read and validate the four files; then their checksums (a damaged header is named
    //    as such rather than as a mere checksum mismatch).
    std::array<IdxFile, 2> images, labels;
    for (size_t s = 0; s < 2; ++s) {
      images[s] = read_idx_images(dir + refs[s].images);
      labels[s] = read_idx_labels(dir + refs[s].labels);
      require(images[s].count() == labels[s].count(),
              images[s].path + ": " + std::to_string(images[s].count()) + " images but " + labels[s].path +
                  " holds " + std::to_string(labels[s].count()) + " labels");
    }
    require(images[0].dims[1] == images[1].dims[1] && images[0].dims[2] == images[1].dims[2],
            images[1].path + ": images of " + std::to_string(images[1].dims[1]) + "x" +
                std::to_string(images[1].dims[2]) + " pixels, but " + images[0].path + " has " +
                std::to_string(images[0].dims[1]) + "x" + std::to_string(images[0].dims[2]));
    for (size_t s = 0; s < 2; ++s) {
      check_md5(images[s], refs[s].images_md5);
      check_md5(labels[s], refs[s].labels_md5);
    }

    rows = images[0].dims[1];
    cols = images[0].dims[2];
    pixels = rows * cols;
    require(cfg.pca <= pixels, "--pca " + std::to_string(cfg.pca) + " is larger than the " +
                                   std::to_string(pixels) + " pixels of an image");

    // 2. The official files, train then test: bytes [total, pixels] and classes [total].
    const int64_t n_file[2] = {images[0].count(), images[1].count()};
    const int64_t total = n_file[0] + n_file[1];
    bytes = at::empty({total, pixels}, at::kByte);
    cls_all = at::empty({total}, at::kLong);
    {
      uint8_t* b = bytes.data_ptr<uint8_t>();
      int64_t* c = cls_all.data_ptr<int64_t>();
      for (size_t s = 0; s < 2; ++s) {
        std::memcpy(b, images[s].payload(), static_cast<size_t>(n_file[s] * pixels));
        b += n_file[s] * pixels;
        for (int64_t i = 0; i < n_file[s]; ++i) *c++ = labels[s].payload()[i];
      }
    }
    images = {};
    labels = {};
  }  // MNIST, Fashion-MNIST
  const int64_t total = cls_all.numel();

  // 3. Per class 0..9, one randperm over that class's images in file order, all from one
  //    generator seeded like torch.manual_seed(seed_data) (protocol section 8); then
  //    interleave 0,1,..,9,0,1,.. truncated at the smallest class (protocol section 1.3).
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(cfg.seed_data);
  std::vector<at::Tensor> shuffled;  // [count_c] indices into the files, per class
  int64_t rounds = total;
  for (int64_t c = 0; c < kClasses; ++c) {
    at::Tensor idx = at::nonzero(cls_all == c).squeeze(1);  // [count_c] in file order
    require(idx.numel() > 0, dir + ": no image of class " + std::to_string(c));
    at::Tensor perm = at::randperm(idx.numel(), gen, at::TensorOptions().dtype(at::kLong));
    shuffled.push_back(idx.index_select(0, perm));
    rounds = std::min(rounds, idx.numel());
  }
  for (auto& s : shuffled) s = s.slice(0, 0, rounds);
  at::Tensor source = at::stack(shuffled, 1).reshape({-1});  // [rounds, 10] -> [pool]
  const int64_t pool = source.numel();
  require(cfg.ptr <= pool && cfg.pte <= pool - cfg.ptr,  // ptr + pte <= pool, without overflow
          "--ptr " + std::to_string(cfg.ptr) + " plus --pte " + std::to_string(cfg.pte) +
              " is larger than the pool of " + std::to_string(pool) + " " + cfg.dataset + " images");

  // 4. Pixels byte/255 in float32, widened to float64 (torchvision's ToTensor, then .double()):
  //    a table of the 256 values (IEEE division is exact-rounded, as ATen's), gathered once.
  double table[256];
  for (int v = 0; v < 256; ++v) table[v] = static_cast<double>(static_cast<float>(v) / 255.0f);
  at::Tensor x = at::empty({pool, pixels}, at::kDouble);  // [pool, p]
  {
    const uint8_t* b = bytes.data_ptr<uint8_t>();
    const int64_t* src = source.data_ptr<int64_t>();
    double* out = x.data_ptr<double>();
    at::parallel_for(0, pool, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const uint8_t* row = b + src[i] * pixels;
        double* o = out + i * pixels;
        for (int64_t k = 0; k < pixels; ++k) o[k] = table[row[k]];
      }
    });
  }
  bytes = at::Tensor();
  at::Tensor cls = cls_all.index_select(0, source);  // [pool]

  // 5. Centre by the pool's mean image; rescale each image to norm sqrt(pixels) (section 1.4),
  //    in the published order: x - mean, then sqrt(pixels) * x, then divided by the row norms.
  x = x - x.mean(0);
  at::Tensor norms = image_norms(x);  // [pool, 1]
  x = (std::sqrt(static_cast<double>(pixels)) * x) / norms;

  Dataset ds;
  ds.name = cfg.dataset;
  ds.pool_size = pool;
  ds.pixels = pixels;
  ds.seed_data = cfg.seed_data;
  ds.checksums_ok = !cifar;  // CIFAR-10: not checked

  // 6. Labels y = 2 (class mod 2) - 1 (section 1.5); train = first ptr, test = next pte.
  const int64_t ptr = cfg.ptr, pte = cfg.pte;
  ds.class_train = cls.slice(0, 0, ptr).clone();
  ds.class_test = cls.slice(0, ptr, ptr + pte).clone();
  ds.y_train = (ds.class_train.remainder(2) * 2 - 1).to(at::kDouble);
  ds.y_test = (ds.class_test.remainder(2) * 2 - 1).to(at::kDouble);
  ds.source_train = source.slice(0, 0, ptr).clone();
  ds.source_test = source.slice(0, ptr, ptr + pte).clone();

  // 7. Whitened PCA (fc only, section 1.7): fitted on the pool, or on the training set.
  if (cfg.pca > 0) {
    ds.pca_fit = cfg.pca_train_only ? "train" : "pool";
    at::Tensor fit = cfg.pca_train_only ? x.slice(0, 0, ptr) : x;  // [N, p]
    at::Tensor w;                                                   // [N, D] = pca.apply(fit)
    WhitenedPca pca = fit_whitened_pca(fit, cfg.pca, cfg.pca_solver, &w);
    ds.pca_solver = cfg.pca_solver == PcaSolver::Dsyev ? "dsyev" : "evd";
    at::Tensor var = (w - w.mean(0)).pow(2).mean(0);                // [D], 1 by construction
    ds.pca_variances.assign(var.data_ptr<double>(), var.data_ptr<double>() + var.numel());
    ds.x_train = w.slice(0, 0, ptr).clone();
    ds.x_test = cfg.pca_train_only ? pca.apply(x.slice(0, ptr, ptr + pte))
                                   : w.slice(0, ptr, ptr + pte).clone();
  } else {
    ds.x_train = x.slice(0, 0, ptr).clone();
    ds.x_test = x.slice(0, ptr, ptr + pte).clone();
    if (cfg.images) {  // images stay images: [n, channels, rows, cols]
      ds.x_train = ds.x_train.view({ptr, channels, rows, cols});
      ds.x_test = ds.x_test.view({pte, channels, rows, cols});
    }
  }
  ds.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return ds;
}

}  // namespace

Dataset load_dataset(const DataOptions& cfg) {
  const auto start = std::chrono::steady_clock::now();
  const DataCache cache(cfg, source_files(cfg));
  std::optional<Dataset> cached = cache.load();
  Dataset ds = cached ? std::move(*cached) : build_dataset(cfg);
  if (!cached) {
    cache.store(ds);
    ds.cache = cache.enabled() ? "miss" : "off";
  }
  ds.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return ds;
}

}  // namespace lf
