// The data pipeline (protocol sections 1 and 8): the CLI summary, class balance of every
// prefix, seeds, the split, norms, whitening, image shapes, Fashion-MNIST, and every kind of
// bad input through the CLI (exit 2, one line naming the problem).
// Deliberately not: seed compatibility with PyTorch itself (no Python here; fc_init's test
// covers the generator), timing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <cstdlib>
#include <set>

#include "common/error.h"
#include "common/options.h"
#include "common/sysinfo.h"
#include "experiment/from_config.h"
#include "data/idx.h"
#include "experiment/config.h"
#include "testing.h"

using namespace lf;
namespace fs = std::filesystem;

namespace {

const char* kFiles[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"};

Dataset load(std::vector<std::string> args) {
  RunConfig c;
  OptionParser p("test", "test");
  add_run_options(p, c);
  args.push_back("--data-dir");
  args.push_back(lft::data_dir());
  p.parse(args);
  finalize(c);
  return load_dataset(c);
}

double max_abs(const at::Tensor& t) { return t.abs().max().item<double>(); }

// Covariance (x - mean)^T (x - mean) / N minus the identity: [D, D]
double whitening_error(const at::Tensor& x) {
  at::Tensor xc = x - x.mean(0);
  at::Tensor cov = at::mm(xc.t(), xc) / double(x.size(0));
  return max_abs(cov - at::eye(x.size(1), at::kDouble));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The whole MNIST pool, centred and normalised (ptr = pool, pte = 0, no PCA): loaded once.
const Dataset& mnist_pool() {
  static const Dataset* pool = new Dataset(load({"--ptr", "63130", "--pte", "0", "--pca", "0"}));
  return *pool;
}

class MnistPool : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { mnist_pool(); }
  static const Dataset& pool() { return mnist_pool(); }
};

}  // namespace

TEST(DataCli, JsonSummaryOfSetupA) {
  auto r = lft::run_cli({"data", "--ptr", "5000", "--pte", "50000", "--pca", "10", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(lft::last_line(r.out));
  EXPECT_EQ(j["dataset"], "mnist");
  EXPECT_EQ(j["pool_size"], 63130);
  EXPECT_EQ(j["train"]["n"], 5000);
  EXPECT_EQ(j["train"]["dim"], 10);
  EXPECT_EQ(j["test"]["n"], 50000);
  EXPECT_EQ(j["train"]["class_counts"], std::vector<int>(10, 500));
  EXPECT_EQ(j["test"]["class_counts"], std::vector<int>(10, 5000));
  EXPECT_EQ(j["label_mean_train"].get<double>(), 0.0);
  ASSERT_EQ(j["pca_variances"].size(), 10u);
  for (auto& v : j["pca_variances"]) EXPECT_NEAR(v.get<double>(), 1.0, 1e-9);
  // (checksums_ok is not asserted: the loader throws on a mismatch, so a summary always says
  // true; the mismatch itself is DataBadInput.ChecksumMismatch*.)
  EXPECT_EQ(j["pca_fit"], "pool");
  EXPECT_EQ(j["pixels"], 784);
  EXPECT_EQ(j["seed_data"], 0);
  EXPECT_EQ(j["test"]["dim"], 10);
  EXPECT_EQ(j["train"]["shape"], std::vector<int>{10});
  EXPECT_EQ(j["label_mean_test"].get<double>(), 0.0);  // 5,000 of each class: parity balanced
}

TEST(DataCli, HumanSummary) {
  auto r = lft::run_cli({"data", "--ptr", "100", "--pte", "10", "--pca", "0"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("per class 10 10 10 10 10 10 10 10 10 10"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pool 63130 images of 784 pixels"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("train         100 points x 784"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("label mean    train 0, test 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cache         "), std::string::npos) << r.out;
}

TEST_F(MnistPool, EveryPrefixIsClassBalanced) {
  const Dataset& d = pool();
  EXPECT_EQ(d.pool_size, 63130);  // 6,313 rounds (class 5 is the smallest)
  ASSERT_EQ(d.class_train.size(0), 63130);
  // Position k holds class k mod 10, so every multiple of 10 is balanced.
  at::Tensor expected = at::arange(10, at::kLong).repeat({6313});
  EXPECT_TRUE(at::equal(d.class_train, expected));
  EXPECT_TRUE(at::equal(d.y_train, (expected.remainder(2) * 2 - 1).to(at::kDouble)));
  // The pool draws distinct images of the 70,000, each of its class.
  std::set<int64_t> seen;
  auto* s = d.source_train.data_ptr<int64_t>();
  for (int64_t i = 0; i < d.source_train.numel(); ++i) {
    ASSERT_TRUE(s[i] >= 0 && s[i] < 70000);
    seen.insert(s[i]);
  }
  EXPECT_EQ(seen.size(), 63130u);
}

TEST_F(MnistPool, CentredAndNormalisedFromTheRawBytes) {
  const Dataset& d = pool();
  ASSERT_EQ(d.x_train.sizes(), (std::vector<int64_t>{63130, 784}));
  at::Tensor norms = d.x_train.norm(2, {1});
  EXPECT_LT(max_abs(norms - 28.0), 1e-12);
  // Recompute from the IDX bytes with plain loops: byte/255 in float32, pool mean, rescale.
  IdxFile tr = read_idx_images(lft::data_dir() + "/mnist/train-images-idx3-ubyte");
  IdxFile te = read_idx_images(lft::data_dir() + "/mnist/t10k-images-idx3-ubyte");
  auto pixel = [&](int64_t src, int k) -> double {
    const uint8_t* p = src < 60000 ? tr.payload() + src * 784 : te.payload() + (src - 60000) * 784;
    return static_cast<double>(static_cast<float>(p[k]) / 255.0f);
  };
  const auto* s = d.source_train.data_ptr<int64_t>();
  std::vector<double> mean(784, 0.0);
  for (int64_t i = 0; i < 63130; ++i)
    for (int k = 0; k < 784; ++k) mean[k] += pixel(s[i], k);
  for (auto& m : mean) m /= 63130.0;
  for (int64_t i : {0, 1, 9, 12345, 63129}) {
    std::vector<double> z(784);
    double nrm = 0;
    for (int k = 0; k < 784; ++k) nrm += (z[k] = pixel(s[i], k) - mean[k]) * z[k];
    nrm = std::sqrt(nrm);
    auto row = d.x_train[i];
    for (int k = 0; k < 784; ++k) ASSERT_NEAR(row[k].item<double>(), 28.0 * z[k] / nrm, 1e-12) << i << " " << k;
  }
}

TEST_F(MnistPool, SameSeedSameNumbersOtherSeedOthers) {
  Dataset a = load({"--ptr", "1000", "--pte", "1000", "--pca", "0", "--seed-data", "0"});
  Dataset b = load({"--ptr", "1000", "--pte", "1000", "--pca", "0", "--seed-data", "0"});
  Dataset c = load({"--ptr", "1000", "--pte", "1000", "--pca", "0", "--seed-data", "1"});
  EXPECT_TRUE(at::equal(a.x_train, b.x_train));
  EXPECT_TRUE(at::equal(a.x_test, b.x_test));
  EXPECT_TRUE(at::equal(a.source_train, b.source_train));
  EXPECT_FALSE(at::equal(a.source_train, c.source_train));
  EXPECT_GT(max_abs(a.x_train - c.x_train), 1.0);
  EXPECT_TRUE(at::equal(a.class_train, c.class_train));  // balance does not depend on the seed
  // The split takes a prefix of the same pool, whatever ptr is.
  EXPECT_TRUE(at::equal(a.x_train, pool().x_train.slice(0, 0, 1000)));
  EXPECT_TRUE(at::equal(a.x_test, pool().x_train.slice(0, 1000, 2000)));
}

TEST_F(MnistPool, TrainAndTestAreDisjoint) {
  Dataset d = load({"--ptr", "5000", "--pte", "50000", "--pca", "0"});
  ASSERT_EQ(d.source_train.numel(), 5000);
  ASSERT_EQ(d.source_test.numel(), 50000);
  std::vector<char> in_train(70000, 0);
  for (int64_t i = 0; i < 5000; ++i) in_train[d.source_train[i].item<int64_t>()] = 1;
  auto* t = d.source_test.data_ptr<int64_t>();
  int64_t shared = 0;
  for (int64_t i = 0; i < 50000; ++i) shared += in_train[t[i]];
  EXPECT_EQ(shared, 0);
  EXPECT_TRUE(at::equal(d.x_test, pool().x_train.slice(0, 5000, 55000)));
  EXPECT_EQ(d.y_train.sum().item<double>(), 0.0);
}

TEST_F(MnistPool, CnnKeepsTheImages) {
  Dataset d = load({"--arch", "cnn", "--ptr", "100", "--pte", "30"});
  EXPECT_EQ(d.x_train.sizes(), (std::vector<int64_t>{100, 1, 28, 28}));
  EXPECT_EQ(d.x_test.sizes(), (std::vector<int64_t>{30, 1, 28, 28}));
  EXPECT_TRUE(at::equal(d.x_train.reshape({100, 784}), pool().x_train.slice(0, 0, 100)));
  EXPECT_TRUE(d.pca_variances.empty());
}

TEST(DataPca, WhitensThePool) {
  Dataset d = load({"--ptr", "63130", "--pte", "0", "--pca", "10"});
  ASSERT_EQ(d.x_train.sizes(), (std::vector<int64_t>{63130, 10}));
  EXPECT_LT(whitening_error(d.x_train), 1e-9);
  ASSERT_EQ(d.pca_variances.size(), 10u);
  for (double v : d.pca_variances) EXPECT_NEAR(v, 1.0, 1e-9);
  EXPECT_LT(max_abs(d.x_train.mean(0)), 1e-9);
  EXPECT_EQ(d.pca_fit, "pool");
}

TEST(DataPca, TrainOnlyWhitensTheTrainingSet) {
  Dataset d = load({"--ptr", "2000", "--pte", "2000", "--pca", "20", "--pca-train-only"});
  ASSERT_EQ(d.x_train.sizes(), (std::vector<int64_t>{2000, 20}));
  ASSERT_EQ(d.x_test.sizes(), (std::vector<int64_t>{2000, 20}));
  EXPECT_EQ(d.pca_fit, "train");
  EXPECT_LT(whitening_error(d.x_train), 1e-9);
  for (double v : d.pca_variances) EXPECT_NEAR(v, 1.0, 1e-9);
  // The test set is only approximately white: the fit did not see it.
  double e = whitening_error(d.x_test);
  EXPECT_GT(e, 1e-3);
  EXPECT_LT(e, 1.0);
}

TEST(DataFashion, PoolOfSeventyThousand) {
  Dataset d = load({"--dataset", "fashion", "--ptr", "100", "--pte", "100", "--pca", "0"});
  EXPECT_EQ(d.pool_size, 70000);  // 7,000 images of each class
  // The classes are Fashion-MNIST's own: each point's class is the label that the raw
  // Fashion-MNIST label files (read here) hold for its source image (train file, then test file).
  auto tr = read_bytes(lft::data_dir() + "/fashion/train-labels-idx1-ubyte");
  auto te = read_bytes(lft::data_dir() + "/fashion/t10k-labels-idx1-ubyte");
  ASSERT_EQ(tr.size(), 60008u);
  ASSERT_EQ(te.size(), 10008u);
  auto label = [&](int64_t src) { return int64_t(src < 60000 ? tr[8 + src] : te[8 + src - 60000]); };
  for (int64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(d.class_train[i].item<int64_t>(), label(d.source_train[i].item<int64_t>())) << i;
    ASSERT_EQ(d.class_test[i].item<int64_t>(), label(d.source_test[i].item<int64_t>())) << i;
  }
  // and its images are not MNIST's: the same seed and split give other pixels.
  EXPECT_GT(max_abs(d.x_train - mnist_pool().x_train.slice(0, 0, 100)), 1.0);
  EXPECT_LT(max_abs(d.x_train.norm(2, {1}) - 28.0), 1e-12);
  auto s = d.summary();
  EXPECT_EQ(s["train"]["class_counts"], std::vector<int>(10, 10));
}

TEST(DataIdx, ByteOver255AsATenComputesIt) {
  // The loader converts pixels through its own table of float(b) / 255.0f. The published code
  // ran torchvision's ToTensor: ATen's float32 division, then .double(). Rebuild the whole pool
  // that way from the raw IDX bytes (read here, not through data/idx.h), centre and rescale it,
  // and compare with what load_dataset produced.
  const Dataset& d = mnist_pool();
  auto tr = read_bytes(lft::data_dir() + "/mnist/train-images-idx3-ubyte");
  auto te = read_bytes(lft::data_dir() + "/mnist/t10k-images-idx3-ubyte");
  ASSERT_EQ(tr.size(), 16u + 60000u * 784u);
  ASSERT_EQ(te.size(), 16u + 10000u * 784u);
  at::Tensor bytes = at::cat({at::from_blob(tr.data() + 16, {60000, 784}, at::kByte),
                              at::from_blob(te.data() + 16, {10000, 784}, at::kByte)});
  at::Tensor raw = bytes.index_select(0, d.source_train);  // [63130, 784] uint8
  auto centre_rescale = [](at::Tensor x) {
    x = x - x.mean(0);
    return x * 28.0 / at::linalg_vector_norm(x, 2, at::IntArrayRef{1}, /*keepdim=*/true);
  };
  at::Tensor aten = centre_rescale(raw.to(at::kFloat).div(255).to(at::kDouble));
  EXPECT_LT(max_abs(d.x_train - aten), 1e-12);
  // The comparison can tell the conversions apart: dividing in float64 gives other numbers.
  at::Tensor in_double = centre_rescale(raw.to(at::kDouble).div(255.0));
  EXPECT_GT(max_abs(d.x_train - in_double), 1e-9);
}

TEST(DataIdx, ReadsASmallFile) {
  lft::TempDir tmp;
  // 3 images of 2x2 pixels.
  std::vector<uint8_t> b = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2};
  for (int i = 0; i < 12; ++i) b.push_back(uint8_t(20 * i));
  write_bytes(tmp.file("img"), b);
  IdxFile f = read_idx_images(tmp.file("img"));
  EXPECT_EQ(f.dims, (std::vector<int64_t>{3, 2, 2}));
  EXPECT_EQ(f.payload()[11], 220);
  write_bytes(tmp.file("lab"), {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 10});
  try {
    read_idx_labels(tmp.file("lab"));
    FAIL() << "label 10 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("label 10 at index 2"), std::string::npos) << e.what();
  }
}

// Bad input through the CLI: each exits 2 with one line naming the problem.
namespace {

// A data folder whose mnist/ links to the real files, except `name`, written by `make`.
struct BadDir {
  lft::TempDir tmp;
  BadDir(const std::string& name, const std::function<void(std::vector<uint8_t>&)>& make,
         bool remove = false) {
    fs::create_directory(tmp.file("mnist"));
    for (const char* f : kFiles) {
      std::string src = lft::data_dir() + "/mnist/" + f, dst = tmp.file("mnist/") + f;
      if (f != name) {
        fs::create_symlink(src, dst);
      } else if (!remove) {
        auto b = read_bytes(src);
        make(b);
        write_bytes(dst, b);
      }
    }
  }
};

void expect_usage_error(const std::vector<std::string>& args, const std::string& needle) {
  auto r = lft::run_cli(args);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "") << "no summary (with its checksums_ok) for data that failed to load";
}

}  // namespace

TEST(DataBadInput, MissingFile) {
  BadDir d("t10k-labels-idx1-ubyte", nullptr, /*remove=*/true);
  expect_usage_error({"data", "--data-dir", d.tmp.path}, "t10k-labels-idx1-ubyte: missing (run scripts/setup.sh");
}

TEST(DataBadInput, TruncatedFile) {
  BadDir d("train-images-idx3-ubyte", [](auto& b) { b.resize(1000); });
  expect_usage_error({"data", "--data-dir", d.tmp.path},
                     "train-images-idx3-ubyte: truncated: expected 47040016 bytes, found 1000");
}

TEST(DataBadInput, ExtraBytes) {
  BadDir d("t10k-labels-idx1-ubyte", [](auto& b) { b.push_back(0); });
  expect_usage_error({"data", "--data-dir", d.tmp.path},
                     "t10k-labels-idx1-ubyte: extra bytes: expected 10008 bytes, found 10009");
}

TEST(DataBadInput, CorruptedMagicNumber) {
  BadDir d("t10k-images-idx3-ubyte", [](auto& b) { b[3] = 0x01; });
  expect_usage_error({"data", "--data-dir", d.tmp.path},
                     "t10k-images-idx3-ubyte: bad magic number 0x00000801 (expected 0x00000803");
}

TEST(DataBadInput, LabelOutOfRange) {
  BadDir d("t10k-labels-idx1-ubyte", [](auto& b) { b[8 + 5] = 12; });
  expect_usage_error({"data", "--data-dir", d.tmp.path}, "label 12 at index 5 is out of range 0..9");
}

TEST(DataBadInput, ImageAndLabelCountsDisagree) {
  // A t10k labels file of 9,999 labels: valid on its own, one short of the images.
  BadDir d("t10k-labels-idx1-ubyte", [](auto& b) {
    b.pop_back();
    b[7] = 0x0f;  // 10000 = 0x2710 -> 0x270f
  });
  expect_usage_error({"data", "--data-dir", d.tmp.path}, "10000 images but");
}

TEST(DataBadInput, ChecksumMismatch) {
  // Same length, a valid label changed: only the checksum can tell.
  BadDir d("t10k-labels-idx1-ubyte", [](auto& b) { b[8] = uint8_t((b[8] + 1) % 10); });
  expect_usage_error({"data", "--data-dir", d.tmp.path},
                     "t10k-labels-idx1-ubyte: checksum mismatch: MD5 ");
}

TEST(DataBadInput, ChecksumMismatchOfAnImageByte) {
  BadDir d("t10k-images-idx3-ubyte", [](auto& b) { b[16 + 400] ^= 0x01; });
  expect_usage_error({"data", "--data-dir", d.tmp.path},
                     "expected 2646ac647ad5339dbf082846283269ea");
}

TEST(DataBadInput, SplitLargerThanThePool) {
  expect_usage_error({"data", "--ptr", "60000", "--pte", "3131"},
                     "--ptr 60000 plus --pte 3131 is larger than the pool of 63130 mnist images");
}

TEST(DataBadInput, PcaLargerThanThePixels) {
  expect_usage_error({"data", "--pca", "785"}, "--pca 785 is larger than the 784 pixels");
}

TEST(DataBadInput, PcaBeyondTheRank) {
  // 784 is allowed by the pixel count, but some pixels are 0 in every image.
  expect_usage_error({"data", "--ptr", "100", "--pte", "0", "--pca", "784", "--pca-train-only"},
                     "exceeds the rank");
}

TEST(DataBadInput, UnknownDatasetAndOption) {
  expect_usage_error({"data", "--dataset", "imagenet"}, "unknown dataset 'imagenet'");
  expect_usage_error({"data", "--no-such-option"}, "no-such-option");
  expect_usage_error({"data", "extra"}, "no positional argument");
}

// CIFAR-10 from its binary files (protocol section 1: the same pool, shuffle, interleaving,
// centring and rescaling), on synthetic files: 6 files of 10 records, one per class, each image
// constant per channel (R, G, B) = (10 c + f, 100 + f, 200 - 3 c) for class c in file f.
TEST(DataCifar, BinaryFilesThroughThePipeline) {
  lft::TempDir tmp;
  fs::create_directory(tmp.file("cifar10"));
  const char* names[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                         "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
  for (int f = 0; f < 6; ++f) {
    std::vector<uint8_t> b;
    for (int c = 0; c < 10; ++c) {
      b.push_back(uint8_t(c));
      for (int v : {10 * c + f, 100 + f, 200 - 3 * c}) b.insert(b.end(), 1024, uint8_t(v));
    }
    write_bytes(tmp.file("cifar10/") + names[f], b);
  }
  DataOptions o;
  o.dataset = "cifar10";
  o.data_dir = tmp.path;
  o.ptr = 20;
  o.pte = 30;
  o.images = true;
  Dataset d = load_dataset(o);
  EXPECT_EQ(d.pool_size, 60);
  EXPECT_EQ(d.pixels, 3072);
  EXPECT_FALSE(d.checksums_ok);
  ASSERT_EQ(d.x_train.sizes(), (std::vector<int64_t>{20, 3, 32, 32}));
  // Independent expectation: image (c, f) has channel values v = byte / 255 (in float32, as
  // ToTensor); centred by the mean over all 60 images, then scaled to norm sqrt(3072).
  auto value = [](int c, int f, int ch) {
    const int byte = ch == 0 ? 10 * c + f : ch == 1 ? 100 + f : 200 - 3 * c;
    return double(float(byte) / 255.0f);
  };
  double mean[3] = {0, 0, 0};
  for (int c = 0; c < 10; ++c)
    for (int f = 0; f < 6; ++f)
      for (int ch = 0; ch < 3; ++ch) mean[ch] += value(c, f, ch) / 60.0;
  for (int i = 0; i < 20; ++i) {
    const int64_t src = d.source_train[i].item<int64_t>();
    const int c = int(src % 10), f = int(src / 10);
    EXPECT_EQ(d.class_train[i].item<int64_t>(), i % 10);  // interleaved 0, 1, .., 9, 0, ..
    EXPECT_EQ(c, i % 10);
    EXPECT_EQ(d.y_train[i].item<double>(), c % 2 ? 1.0 : -1.0);
    double centred[3], norm2 = 0;
    for (int ch = 0; ch < 3; ++ch) {
      centred[ch] = value(c, f, ch) - mean[ch];
      norm2 += 1024 * centred[ch] * centred[ch];
    }
    for (int ch = 0; ch < 3; ++ch) {
      at::Tensor plane = d.x_train[i][ch];
      const double expected = std::sqrt(3072.0) * centred[ch] / std::sqrt(norm2);
      EXPECT_NEAR(plane[5][7].item<double>(), expected, 1e-12) << i << " " << ch;
      EXPECT_LT((plane - plane[0][0]).abs().max().item<double>(), 1e-12);  // constant per channel
    }
  }
  // A truncated file is named.
  write_bytes(tmp.file("cifar10/test_batch.bin"), std::vector<uint8_t>(3073 * 2 + 5, 1));
  try {
    load_dataset(o);
    FAIL() << "truncated file accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("test_batch.bin: 6151 bytes, not a whole number of 3073-byte"),
              std::string::npos) << e.what();
  }
  expect_usage_error({"data", "--dataset", "cifar10", "--data-dir", tmp.file("none")},
                     "data_batch_1.bin: cannot open");
}

// The prepared-data cache (data/cache.h): a second load is a hit with the same bits; a corrupt,
// truncated or stale file is rebuilt with one line on stderr; off writes nothing; the key holds
// the options and the BLAS kernels; the least recently used files go beyond the size cap.
namespace {

DataOptions cache_options(uint64_t seed = 0, int64_t pca = 10) {
  DataOptions o;
  o.data_dir = lft::data_dir();
  o.ptr = 300;
  o.pte = 700;
  o.pca = pca;
  o.images = pca == 0;
  o.seed_data = seed;
  return o;
}

void expect_same_data(const Dataset& a, const Dataset& b) {
  for (auto m : {&Dataset::x_train, &Dataset::y_train, &Dataset::x_test, &Dataset::y_test, &Dataset::class_train,
                 &Dataset::class_test, &Dataset::source_train, &Dataset::source_test}) {
    EXPECT_EQ((a.*m).sizes(), (b.*m).sizes());
    EXPECT_TRUE(at::equal(a.*m, b.*m));  // every bit
  }
  EXPECT_EQ(a.pca_variances, b.pca_variances);
  EXPECT_EQ(a.pool_size, b.pool_size);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.pca_fit, b.pca_fit);
  EXPECT_EQ(a.pca_solver, b.pca_solver);
  EXPECT_EQ(a.checksums_ok, b.checksums_ok);
  EXPECT_EQ(a.seed_data, b.seed_data);
}

std::vector<fs::path> cache_files(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".data") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// Loads with stderr captured: the dataset and what was printed.
std::pair<Dataset, std::string> load_capturing(const DataOptions& o) {
  ::testing::internal::CaptureStderr();
  Dataset d = load_dataset(o);
  return {std::move(d), ::testing::internal::GetCapturedStderr()};
}

}  // namespace

TEST(DataCache, SecondLoadIsAHitWithTheSameBits) {
  lft::TempDir tmp;
  lft::ScopedEnv dir("LAZYFEAT_DATA_CACHE", tmp.path);
  for (int64_t pca : {10, 0}) {
    SCOPED_TRACE("pca " + std::to_string(pca));
    Dataset fresh = load_dataset(cache_options(0, pca));
    EXPECT_EQ(fresh.cache, "miss");
    Dataset again = load_dataset(cache_options(0, pca));
    EXPECT_EQ(again.cache, "hit");
    expect_same_data(again, fresh);
    if (pca == 0) EXPECT_EQ(again.x_train.sizes(), (std::vector<int64_t>{300, 1, 28, 28}));
  }
  EXPECT_EQ(cache_files(tmp.path).size(), 2u);
  {
    lft::ScopedEnv off("LAZYFEAT_DATA_CACHE", "0");  // nothing read, nothing written
    EXPECT_EQ(load_dataset(cache_options(5)).cache, "off");
  }
  EXPECT_EQ(cache_files(tmp.path).size(), 2u);
}

TEST(DataCache, CorruptOrTruncatedFileIsRebuiltWithOneLine) {
  lft::TempDir tmp;
  lft::ScopedEnv dir("LAZYFEAT_DATA_CACHE", tmp.path);
  const DataOptions images = cache_options(0, 0);  // raw images: quicker to build again than the PCA
  const Dataset fresh = load_dataset(images);
  const fs::path file = cache_files(tmp.path).at(0);
  struct Damage {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> apply;
  };
  for (const Damage& d : {Damage{"corrupt (checksum mismatch)", [](auto& b) { b[b.size() - 100] ^= 0x10; }},
                          Damage{"corrupt (truncated)", [](auto& b) { b.resize(b.size() - 8); }},
                          Damage{"corrupt (trailing bytes)", [](auto& b) { b.push_back(0); }},
                          Damage{"corrupt (not a cache file)", [](auto& b) { b[0] = 'X'; }}}) {
    SCOPED_TRACE(d.what);
    auto bytes = read_bytes(file.string());
    d.apply(bytes);
    write_bytes(file.string(), bytes);
    auto [got, err] = load_capturing(images);
    EXPECT_EQ(got.cache, "miss");
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(std::string("is ") + d.what + ": building the data again"), std::string::npos) << err;
    expect_same_data(got, fresh);
    EXPECT_EQ(load_dataset(images).cache, "hit") << "the file rewritten";
  }
}

// A data file replaced (a copy: another modification time) makes the entry stale.
TEST(DataCache, StaleWhenTheDataFilesChange) {
  lft::TempDir tmp;
  lft::ScopedEnv dir("LAZYFEAT_DATA_CACHE", tmp.file("cache"));
  fs::create_directories(tmp.file("mnist"));
  for (const char* f : kFiles) fs::create_symlink(lft::data_dir() + "/mnist/" + f, tmp.file("mnist/") + f);
  DataOptions o = cache_options();
  o.data_dir = tmp.path;
  const Dataset fresh = load_dataset(o);
  EXPECT_EQ(load_dataset(o).cache, "hit");
  fs::remove(tmp.file("mnist/t10k-labels-idx1-ubyte"));
  fs::copy_file(lft::data_dir() + "/mnist/t10k-labels-idx1-ubyte", tmp.file("mnist/t10k-labels-idx1-ubyte"));
  auto [got, err] = load_capturing(o);
  EXPECT_EQ(got.cache, "miss");
  EXPECT_NE(err.find("is stale (the data files changed): building the data again"), std::string::npos) << err;
  expect_same_data(got, fresh);
  EXPECT_EQ(load_dataset(o).cache, "hit");
}

// Other options, another file; the BLAS kernels in the key (another OpenBLAS core: a miss, in
// a child process, where OPENBLAS_CORETYPE takes effect); the size cap evicts the oldest.
TEST(DataCache, KeyHoldsTheOptionsAndTheBlasKernels) {
  lft::TempDir tmp;
  const std::vector<std::string> args = {"data", "--ptr", "300", "--pte", "700", "--pca", "0", "--json"};
  auto cache_of = [&](const std::vector<std::string>& env) {
    auto r = lft::run_cli(args, env);
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(lft::last_line(r.out)).at("cache").get<std::string>();
  };
  const std::string env = "LAZYFEAT_DATA_CACHE=" + tmp.path;
  // Kernels other than this process's: Prescott's (SSE3, on any x86-64), or Core2's under Prescott.
  const std::string core = lf::blas_core();
  const std::string other = std::string("OPENBLAS_CORETYPE=") +
                            (core.size() >= 8 && core.substr(core.size() - 8) == "Prescott" ? "Core2" : "Prescott");
  EXPECT_EQ(cache_of({env}), "miss");
  EXPECT_EQ(cache_of({env}), "hit");
  EXPECT_EQ(cache_of({env, other}), "miss");
  EXPECT_EQ(cache_of({env, other}), "hit");
  EXPECT_EQ(cache_files(tmp.path).size(), 2u);
  lft::ScopedEnv dir("LAZYFEAT_DATA_CACHE", tmp.path);
  EXPECT_EQ(load_dataset(cache_options(7, 0)).cache, "miss");  // another data seed
  EXPECT_EQ(cache_files(tmp.path).size(), 3u);
  // Each file is ~6.3 MB (1,000 images of 784 pixels, labels, classes, sources): a cap of 8 MB
  // keeps only the newest.
  lft::ScopedEnv cap("LAZYFEAT_DATA_CACHE_MB", "8");
  EXPECT_EQ(load_dataset(cache_options(8, 0)).cache, "miss");
  const auto left = cache_files(tmp.path);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(load_dataset(cache_options(8, 0)).cache, "hit");
}
