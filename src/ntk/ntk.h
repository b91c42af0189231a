// The empirical neural tangent kernel (protocol section 5):
//   Theta(x, x') = grad_w f(w, x) . grad_w f(w, x')   over all parameters,
// as Gram matrices on point sets, float64. A small set of verbs (as neural-tangents does), each
// behind one name with two implementations:
//  - Structured: exploits the layer structure. FC: a dense layer's per-sample weight gradient is
//    the outer product Delta z^T / sqrt(fan_in), so its kernel is (Delta Delta^T) o (Z Z^T) / fan_in
//    (elementwise), plus Delta Delta^T for its bias. Convolutions: per layer, either contract over
//    positions or materialise per-sample weight gradients, whichever a FLOP estimate says is cheaper.
//    Tiled over points (memory bounded), symmetric Grams compute only the lower tiles.
//    Wide ResNet: per-sample weight gradients D U^T of every convolution from one batched
//    backward pass (the residual sums handled by autograd), J J^T in blocks (ntk_wrn.cpp).
//  - Jacobian: per-sample gradients through autograd, J J^T, for any model (reference, fallback).
// Deliberately not here: statistics of kernels (ntk/stats.h), kernel training (ntk/frozen.h).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "models/activation.h"
#include "models/cnn.h"
#include "models/fc.h"
#include "models/wrn.h"

namespace lf {

enum class NtkMethod { Structured, Jacobian };
NtkMethod ntk_method_from_name(const std::string& name);  // "structured" | "jacobian", else UsageError
std::string ntk_method_name(NtkMethod m);

// A network whose kernel we take: FC, CNN or wide ResNet parameters and the activation.
struct Net {
  std::variant<FCParams, CNNParams, WRNParams> params;
  Activation act;
  static Net fc(FCParams p, Activation a) { return Net{std::move(p), a}; }
  static Net cnn(CNNParams p, Activation a) { return Net{std::move(p), a}; }
  static Net wrn(WRNParams p, Activation a) { return Net{std::move(p), a}; }
  bool is_fc() const { return std::holds_alternative<FCParams>(params); }
  std::string arch() const;                       // "fc" | "cnn" | "wrn"
  at::Tensor forward(const at::Tensor& x) const;  // reference forward, f [n]
  std::vector<at::Tensor> flat() const;           // all parameters
  int64_t num_params() const;
  Net to(at::TensorOptions opts) const;           // parameters cast/moved (CPU float64...); no copy if already so
};

// A model for the Jacobian method: f(params, x) -> [n], differentiable by autograd.
using ForwardFn = std::function<at::Tensor(const std::vector<at::Tensor>&, const at::Tensor&)>;

struct NtkOptions {
  NtkMethod method = NtkMethod::Structured;
  int64_t tile = 0;                 // points per tile; 0 = automatic (jacobian: the rows of the
                                    // symmetric J J^T's lower tiles, half of the points)
  double memory_budget = 1e9;       // bytes for temporaries beyond the features and the result
  // Filled by the call: the floating-point operations the method performed (matrix products and
  // the elementwise combination) and a one-line description of the plan chosen.
  double* flops = nullptr;
  std::string* plan = nullptr;
  // FC, structured: the L layers' Grams as two batched products over the whole Gram (no tiles, no
  // symmetric saving, two [L, n1, n2] buffers) rather than tile by tile. Default: off (measured on
  // the H200 at h = 1000, 2000 points: 3.56 ms stacked, 3.33 ms in one tile); ntk_members stacks.
  std::optional<bool> stack_layers;
};

// Theta(x1, x2): [n1, n2].
at::Tensor ntk(const Net& net, const at::Tensor& x1, const at::Tensor& x2, const NtkOptions& opt = {});
// Theta(x, x): [n, n], symmetric (only half of it is computed).
at::Tensor ntk(const Net& net, const at::Tensor& x, const NtkOptions& opt = {});

// The three Grams of two point sets, computed as one symmetric Gram over their union.
struct NtkBlocks {
  at::Tensor aa;  // Theta(a, a)  [na, na]
  at::Tensor ba;  // Theta(b, a)  [nb, na]
  at::Tensor bb;  // Theta(b, b)  [nb, nb]
};
NtkBlocks ntk_blocks(const Net& net, const at::Tensor& a, const at::Tensor& b, const NtkOptions& opt = {});

// Theta of K networks on the same points: [K, n1, n2] (x2 undefined: the symmetric Grams [K, n, n]).
// FC networks of one shape and activation, structured method: one batched forward and backward
// over the members' stacked weights ([K, n, h] features) and their Grams stacked over members
// and layers, in chunks of members whose buffers (2 L n1 n2 doubles each) fit the memory budget:
// 2 K n1 n2 (2 L h + d) flops in a few launches. Otherwise (one network, other architectures, or
// one member's buffers over the budget) ntk() of one network after another.
at::Tensor ntk_members(const std::vector<Net>& nets, const at::Tensor& x1, const at::Tensor& x2 = {},
                       const NtkOptions& opt = {});

// The Jacobian method for any model: rows of per-sample gradients (flattened, in the order of
// params) through autograd, then 2 n1 n2 P flops for J1 J2^T; O(n P) memory. x2 undefined means
// x2 = x1. Without `per_sample`: one forward and backward pass per point (launch-bound on a GPU:
// about 1.8 ms a point at h = 1000 on the H200). With it, a forward of the same model taking
// parameters with a leading point dimension (per_sample(ps, x)[i] = f(ps[.][i], x[i])): the
// parameters are expanded to [B, ...] views and one backward pass gives B rows, the gradients
// with respect to those views (rows_per_pass = B; 0: all rows in one pass).
at::Tensor jacobian(const ForwardFn& f, const std::vector<at::Tensor>& params, const at::Tensor& x,
                    const ForwardFn& per_sample = {}, int64_t rows_per_pass = 0);
at::Tensor ntk_jacobian(const ForwardFn& f, const std::vector<at::Tensor>& params, const at::Tensor& x1,
                        const at::Tensor& x2, const NtkOptions& opt = {}, const ForwardFn& per_sample = {});

}  // namespace lf
