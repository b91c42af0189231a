// Encoding of resumable training states (see state.h).
#include "experiment/state.h"

#include <cstring>

#include "common/error.h"

namespace lf {
namespace {
constexpr char kMagic[] = "LFSTATE1\n";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;

at::ScalarType dtype_from_name(const std::string& s) {
  if (s == "float64") return at::kDouble;
  if (s == "float32") return at::kFloat;
  if (s == "int64") return at::kLong;
  if (s == "uint8") return at::kByte;
  throw UsageError("training state: unknown dtype '" + s + "'");
}
std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return "float64";
    case at::kFloat: return "float32";
    case at::kLong: return "int64";
    case at::kByte: return "uint8";
    default: throw std::runtime_error("training state: unsupported dtype");
  }
}
}  // namespace

std::string TrainState::encode() const {
  nlohmann::json h = header;
  h["tensors"] = nlohmann::json::array();
  std::vector<at::Tensor> cpu;
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    h["tensors"].push_back({{"name", name}, {"dtype", dtype_name(c.scalar_type())}, {"numel", c.numel()}});
    cpu.push_back(c);
  }
  std::string text = h.dump();
  uint64_t len = text.size();
  std::string out(kMagic, kMagicLen);
  out.append(reinterpret_cast<const char*>(&len), sizeof len);
  out += text;
  for (const auto& c : cpu) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  return out;
}

TrainState TrainState::decode(const std::string& bytes) {
  require(bytes.size() >= kMagicLen + 8 && bytes.compare(0, kMagicLen, kMagic) == 0,
          "not a lazyfeat training state");
  uint64_t len = 0;
  std::memcpy(&len, bytes.data() + kMagicLen, sizeof len);
  size_t pos = kMagicLen + sizeof len;
  require(len <= bytes.size() - pos, "training state: truncated header");
  TrainState s;
  try {
    s.header = nlohmann::json::parse(bytes.substr(pos, len));
  } catch (const std::exception&) {
    throw UsageError("training state: corrupt header");
  }
  pos += len;
  for (const auto& e : s.header.at("tensors")) {
    auto type = dtype_from_name(e.at("dtype").get<std::string>());
    int64_t numel = e.at("numel").get<int64_t>();
    at::Tensor t = at::empty({numel}, at::TensorOptions().dtype(type));
    size_t nb = size_t(numel) * t.element_size();
    require(nb <= bytes.size() - pos, "training state: truncated data");
    std::memcpy(t.data_ptr(), bytes.data() + pos, nb);
    pos += nb;
    s.tensors[e.at("name").get<std::string>()] = t;
  }
  require(pos == bytes.size(), "training state: trailing bytes");
  s.header.erase("tensors");
  return s;
}

const at::Tensor& TrainState::tensor(const std::string& name) const {
  auto it = tensors.find(name);
  require(it != tensors.end(), "training state: no tensor '" + name + "'");
  return it->second;
}

}  // namespace lf
