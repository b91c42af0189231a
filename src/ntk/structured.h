// Internal to the ntk layer: the structured kernels of each architecture, dispatched by ntk()
// (ntk.cpp). x2 == nullptr means the symmetric Gram Theta(x1, x1).
// Deliberately not a public interface: callers use ntk() and Net (ntk.h).
#pragma once
#include <ATen/ATen.h>

#include "models/activation.h"
#include "models/wrn.h"
#include "ntk/ntk.h"

namespace lf {

at::Tensor wrn_structured(const WRNParams& p, const Activation& act, const at::Tensor& x1, const at::Tensor* x2,
                          const NtkOptions& opt);  // ntk_wrn.cpp

}  // namespace lf
