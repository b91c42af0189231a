// The byte format of a resumable training state (TrainHooks::on_state): a magic line, a JSON
// header (integers, names, the shapes of the tensors) and the raw bytes of named CPU tensors
// (native byte order, dtype as in the header). Doubles that must survive exactly travel as
// tensors, never as JSON text.
// Deliberately not: what a trainer puts in it (experiment/train.cpp), where it is kept (store/).
#pragma once
#include <ATen/ATen.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace lf {

struct TrainState {
  nlohmann::json header = nlohmann::json::object();
  std::map<std::string, at::Tensor> tensors;  // CPU, contiguous

  std::string encode() const;
  // Throws UsageError for bytes that are not a state of this format.
  static TrainState decode(const std::string& bytes);
  const at::Tensor& tensor(const std::string& name) const;  // UsageError when missing
};

}  // namespace lf
