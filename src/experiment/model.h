// A network as the dynamics see it (protocol sections 2-4): parameters w and gradient g as flat
// vectors [P], the training outputs of the last forward, the gradient of a weighted sum of them,
// and the outputs on any CPU float64 set. Implementations behind one name:
//  - FusedModel: CPU float64 FC kernels (models/fc_fused.h); forward ~ 2 n P flops, the backward
//    runs on the points with a non-zero loss derivative only (~ 4 |rows| P flops).
//  - ReferenceModel: plain LibTorch autograd through fc_forward_reference, any dtype and device;
//    the backward always runs over the whole training set.
//  - ConvModel: the convolutional networks of setup B, the CNN (models/cnn.h) and the wide ResNet
//    (models/wrn.h), through LibTorch's conv2d, any dtype and device (CUDA: cuDNN); outputs in
//    blocks of points, gradients on the listed points only.
//  - CNNFusedModel: the CNN through the CPU float64 kernels of models/cnn_fused.h (one dgemm per
//    layer over a block of images), the same contract and numbers to rounding.
// NetLayout: what the trainer knows of an architecture without a model (size, initial weights,
// per-layer slices, the shape recorded in a saved state, the network as the NTK takes it).
// Deliberately not: the dynamics (experiment/member.h), the loss (dynamics/loss.h).
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/activation.h"
#include "models/cnn.h"
#include "models/fc_fused.h"
#include "models/wrn.h"
#include "ntk/ntk.h"

namespace lf {

struct RunConfig;

// The architecture of a run: "fc" (fc is used), "cnn" (cnn is used) or "wrn" (wrn is used).
// Its layers, in the order of the per-layer observables (Checkpoint::layer_change): fc the L + 1
// dense layers; cnn the 4 convolutions, then the output layer; wrn the convolutions in draw order
// (the stem, then per block c1, c2 and its shortcut convolution when it has one), then the head.
struct NetLayout {
  std::string arch = "fc";
  FCLayout fc;
  CNNLayout cnn;
  WRNLayout wrn;
  // The run's network on training inputs x_train ([n, d] for fc, images [n, C, rows, cols] for
  // cnn and wrn); --h is the fc width, the cnn's channels, the wrn's width factor.
  static NetLayout of(const RunConfig& cfg, const at::Tensor& x_train);
  // The network that shape() describes (a saved state's header); UsageError when it is none.
  static NetLayout of_shape(const nlohmann::json& shape);
  int64_t size() const;
  // The initial weights of protocol section 8 for this seed, flat [P] CPU float64.
  at::Tensor init(uint64_t seed) const;
  std::vector<ParamSlice> slices() const;  // per layer (W_l, b_l)
  nlohmann::json shape() const;            // {"arch", "d", "h", "L"} or {"arch", "channels", "h"}
  // The network with the flat weights w [P] (views into w) as the NTK takes it (ntk/ntk.h).
  Net net(const at::Tensor& w, const Activation& act) const;
};

class Model {
 public:
  virtual ~Model() = default;
  // f (n doubles) <- f(w, x_train); remembers what gradient() needs.
  virtual void forward_train(double* f) = 0;
  // g <- sum_k c[k] d f(w, x_rows[k]) / dw at the w of the last forward_train().
  virtual void gradient(const std::vector<int64_t>& rows, const std::vector<double>& c) = 0;
  // f[k] <- f(w, x_train[rows[k]]) at the current weights (a batch draw, a batch's df).
  virtual void forward_rows(const std::vector<int64_t>& rows, double* f) = 0;
  // g <- sum_k c[k] d f(w, x_rows[k]) / dw at the current weights (its own forward on the rows).
  virtual void gradient_rows(const std::vector<int64_t>& rows, const std::vector<double>& c) = 0;
  // f(w, x) on a CPU float64 [N, ...] set: [N] CPU float64.
  virtual at::Tensor evaluate(const at::Tensor& x) = 0;
  // True when w, v, g are contiguous CPU float64 (the dynamics then run on raw arrays).
  virtual bool raw() const = 0;
  at::Tensor w, g;  // [P]
};

// fused: the CPU float64 kernels, FC (models/fc_fused.h) or CNN (models/cnn_fused.h); opts must
// then be CPU float64. Otherwise plain LibTorch.
std::unique_ptr<Model> make_model(bool fused, const Activation& act, const NetLayout& lay, const at::Tensor& x_train,
                                  at::TensorOptions opts);
std::unique_ptr<Model> make_model(bool fused, const Activation& act, const FCLayout& lay, const at::Tensor& x_train,
                                  at::TensorOptions opts);

}  // namespace lf
