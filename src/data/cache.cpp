// The prepared-data cache (see cache.h). A file: the line "lazyfeat-data-cache", one line of
// JSON (format, key, files, the dataset's scalar fields, each tensor's dtype, shape, length and
// checksum, the payload's length), then the tensors' bytes one after another.
#include "data/cache.h"

#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <torch/csrc/api/include/torch/version.h>

#include "common/md5.h"
#include "common/sysinfo.h"

namespace lf {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kMagic = "lazyfeat-data-cache";

// A 64-bit checksum of n bytes (four interleaved FNV-1a lanes over 8-byte words, then the tail):
// it detects a truncated or altered payload; not a cryptographic hash.
uint64_t checksum(const uint8_t* p, size_t n) {
  constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t lane[4] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL, 0x9ce484222325cbf2ULL, 0x2325cbf29ce48422ULL};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      lane[k] = (lane[k] ^ w) * kPrime;
    }
  uint64_t h = n;
  for (int k = 0; k < 4; ++k) h = (h ^ lane[k]) * kPrime;
  for (; i < n; ++i) h = (h ^ p[i]) * kPrime;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The tensors of a Dataset, in file order.
struct Field {
  const char* name;
  at::Tensor Dataset::*member;
};
constexpr Field kFields[] = {{"x_train", &Dataset::x_train},         {"y_train", &Dataset::y_train},
                             {"x_test", &Dataset::x_test},           {"y_test", &Dataset::y_test},
                             {"class_train", &Dataset::class_train}, {"class_test", &Dataset::class_test},
                             {"source_train", &Dataset::source_train}, {"source_test", &Dataset::source_test}};

at::ScalarType dtype_of(const std::string& s) {
  if (s == "float64") return at::kDouble;
  if (s == "int64") return at::kLong;
  throw std::runtime_error("dtype " + s);
}

// The cache's folder: LAZYFEAT_DATA_CACHE (0: none), else <data_dir>/cache.
std::string cache_dir(const DataOptions& opt) {
  const char* e = std::getenv("LAZYFEAT_DATA_CACHE");
  if (e && std::string(e) == "0") return "";
  if (e && *e) return e;
  return opt.data_dir.empty() ? "" : opt.data_dir + "/cache";
}

uint64_t cap_bytes() {
  const char* e = std::getenv("LAZYFEAT_DATA_CACHE_MB");
  const double mb = e && *e ? std::atof(e) : 4096.0;
  return static_cast<uint64_t>(std::max(0.0, mb) * 1024 * 1024);
}

// Removes the least recently used cache files (by modification time, which a hit refreshes)
// until the folder holds at most cap bytes, keeping `keep`.
void evict(const std::string& dir, const std::string& keep) {
  struct Entry {
    fs::path path;
    fs::file_time_type time;
    uintmax_t size;
  };
  std::vector<Entry> files;
  uintmax_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".data") continue;
    std::error_code ec2;
    const uintmax_t size = e.file_size(ec2);
    const auto time = e.last_write_time(ec2);
    if (ec2) continue;
    files.push_back({e.path(), time, size});
    total += size;
  }
  std::sort(files.begin(), files.end(), [](const Entry& a, const Entry& b) { return a.time < b.time; });
  for (const Entry& f : files) {
    if (total <= cap_bytes()) break;
    if (f.path == keep) continue;
    std::error_code ec3;
    if (fs::remove(f.path, ec3)) total -= f.size;
  }
}

}  // namespace

DataCache::DataCache(const DataOptions& opt, std::vector<std::string> files) {
  dir_ = cache_dir(opt);
  if (dir_.empty()) return;
  const json key = {{"format", kFormat},
                    {"dataset", opt.dataset},
                    {"ptr", opt.ptr},
                    {"pte", opt.pte},
                    {"pca", opt.pca},
                    {"pca_train_only", opt.pca > 0 && opt.pca_train_only},
                    {"pca_solver", opt.pca > 0 ? (opt.pca_solver == PcaSolver::Dsyev ? "dsyev" : "evd") : ""},
                    {"images", opt.pca == 0 && opt.images},
                    {"seed_data", opt.seed_data},
                    {"libtorch", TORCH_VERSION},
                    {"blas", blas_core()}};
  key_ = key.dump();
  json ids = json::array();
  for (const std::string& f : files) {
    struct stat st {};
    if (stat(f.c_str(), &st) != 0) {  // a missing file: load_dataset names it; no cache
      dir_.clear();
      return;
    }
    ids.push_back({{"path", fs::absolute(f).lexically_normal().string()},
                   {"size", static_cast<int64_t>(st.st_size)},
                   {"mtime_ns", static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec}});
  }
  files_ = ids.dump();
  path_ = dir_ + "/" + opt.dataset + "-" + md5_hex(key_).substr(0, 20) + ".data";
}

std::optional<Dataset> DataCache::load() const {
  if (!enabled()) return std::nullopt;
  std::FILE* f = std::fopen(path_.c_str(), "rb");
  if (!f) return std::nullopt;  // a miss
  auto reject = [&](const std::string& why) -> std::optional<Dataset> {
    std::fclose(f);
    std::cerr << "lazyfeat: warning: the data cache " << path_ << " is " << why << ": building the data again\n";
    std::error_code ec;
    fs::remove(path_, ec);
    return std::nullopt;
  };
  try {
    char line[64];
    if (!std::fgets(line, sizeof line, f) || std::string(line) != std::string(kMagic) + "\n")
      return reject("corrupt (not a cache file)");
    std::string header;
    for (int c; (c = std::fgetc(f)) != EOF && c != '\n';) header.push_back(static_cast<char>(c));
    const json h = json::parse(header);
    if (h.at("format").get<int>() != kFormat || h.at("key").dump() != json::parse(key_).dump())
      return reject("stale (made for other options or another lazyfeat)");
    if (h.at("files").dump() != json::parse(files_).dump()) return reject("stale (the data files changed)");
    Dataset ds;
    uint64_t total = 0;
    for (const Field& fd : kFields) total += h.at("tensors").at(fd.name).at("bytes").get<uint64_t>();
    if (total != h.at("payload_bytes").get<uint64_t>()) return reject("corrupt (payload length)");
    // Each tensor's bytes straight into its storage, checked against its own checksum.
    for (const Field& fd : kFields) {
      const json& t = h.at("tensors").at(fd.name);
      at::Tensor x = at::empty(t.at("shape").get<std::vector<int64_t>>(), dtype_of(t.at("dtype").get<std::string>()));
      const size_t n = x.nbytes();
      if (n != t.at("bytes").get<uint64_t>()) return reject("corrupt (a tensor's length)");
      auto* p = static_cast<uint8_t*>(x.data_ptr());
      if (n > 0 && std::fread(p, 1, n, f) != n) return reject("corrupt (truncated)");
      if (hex64(checksum(p, n)) != t.at("checksum").get<std::string>()) return reject("corrupt (checksum mismatch)");
      ds.*fd.member = x;
    }
    if (std::fgetc(f) != EOF) return reject("corrupt (trailing bytes)");
    std::fclose(f);
    const json& m = h.at("meta");
    ds.name = m.at("name").get<std::string>();
    ds.pca_variances = m.at("pca_variances").get<std::vector<double>>();
    ds.checksums_ok = m.at("checksums_ok").get<bool>();
    ds.pool_size = m.at("pool_size").get<int64_t>();
    ds.pixels = m.at("pixels").get<int64_t>();
    ds.pca_fit = m.at("pca_fit").get<std::string>();
    ds.pca_solver = m.at("pca_solver").get<std::string>();
    ds.seed_data = m.at("seed_data").get<uint64_t>();
    ds.cache = "hit";
    ::utime(path_.c_str(), nullptr);  // recently used (eviction keeps it)
    return ds;
  } catch (const std::exception& e) {
    return reject(std::string("corrupt (") + e.what() + ")");
  }
}

void DataCache::store(const Dataset& ds) const {
  if (!enabled()) return;
  json tensors = json::object();
  uint64_t total = 0;
  std::vector<at::Tensor> parts;
  for (const Field& fd : kFields) {
    const at::Tensor t = (ds.*fd.member).contiguous();
    const std::string dtype = t.scalar_type() == at::kDouble ? "float64" : "int64";
    tensors[fd.name] = {{"dtype", dtype},
                        {"shape", t.sizes().vec()},
                        {"bytes", t.nbytes()},
                        {"checksum", hex64(checksum(static_cast<const uint8_t*>(t.data_ptr()), t.nbytes()))}};
    total += t.nbytes();
    parts.push_back(t);
  }
  const json meta = {{"name", ds.name},         {"pca_variances", ds.pca_variances}, {"checksums_ok", ds.checksums_ok},
                     {"pool_size", ds.pool_size}, {"pixels", ds.pixels},               {"pca_fit", ds.pca_fit},
                     {"pca_solver", ds.pca_solver}, {"seed_data", ds.seed_data}};
  const json header = {{"format", kFormat}, {"key", json::parse(key_)}, {"files", json::parse(files_)},
                       {"meta", meta},      {"tensors", tensors},        {"payload_bytes", total}};
  std::error_code ec;
  fs::create_directories(dir_, ec);
  const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  bool ok = f != nullptr;
  if (ok) {
    const std::string head = std::string(kMagic) + "\n" + header.dump() + "\n";
    ok = std::fwrite(head.data(), 1, head.size(), f) == head.size();
    for (const at::Tensor& t : parts)
      ok = ok && (t.nbytes() == 0 || std::fwrite(t.data_ptr(), 1, t.nbytes(), f) == t.nbytes());
    ok = (std::fclose(f) == 0) && ok;
  }
  if (ok) ok = std::rename(tmp.c_str(), path_.c_str()) == 0;
  if (!ok) {
    const int err = errno;
    std::remove(tmp.c_str());
    static bool told = false;  // once a process
    if (!told)
      std::cerr << "lazyfeat: note: cannot write the data cache " << dir_ << " (" << std::strerror(err)
                << "): the data is built again at each start\n";
    told = true;
    return;
  }
  evict(dir_, path_);
}

}  // namespace lf
