// The losses of protocol section 3 as scalar functions of the margin m = F y, with
// F = alpha (f - f0) the model's output:
//   hinge      l = max(0, 1 - m)
//   softhinge  l = softplus_20(1 - m) = log(1 + exp(20 (1 - m))) / 20
//   qhinge     l = (1/2) max(0, 1 - m)^2
// and the training loss L = 1/(alpha^2 n) sum_mu l(F_mu y_mu), so alpha^2 L = mean l (= 1 at
// t = 0 for the hinge, where F = 0). Its derivative with respect to f_mu is
//   dL/df_mu = (dl/dm)(m_mu) y_mu alpha / (alpha^2 n) = (dl/dm) y_mu / (alpha n).
// A point is unsatisfied when m < 1; the hinge's derivative is exactly 0 for m >= 1.
// Used by the network trainer (experiment/) and frozen-kernel training (ntk/frozen.h); it sits
// with the dynamics so that both layers see it.
// Deliberately not: tensors (the trainer loops over the n margins itself).
#pragma once
#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"

namespace lf {

struct Loss {
  enum class Kind { Hinge, SoftHinge, QHinge };
  Kind kind = Kind::Hinge;
  static constexpr double kSoftBeta = 20.0;  // protocol section 3

  static Loss make(const std::string& name) {
    Loss l;
    if (name == "hinge") l.kind = Kind::Hinge;
    else if (name == "softhinge") l.kind = Kind::SoftHinge;
    else if (name == "qhinge") l.kind = Kind::QHinge;
    else throw UsageError("unknown loss '" + name + "'");
    return l;
  }
  // l(m)
  double value(double m) const {
    double r = 1.0 - m;
    switch (kind) {
      case Kind::Hinge: return r > 0 ? r : 0.0;
      case Kind::SoftHinge: {
        double br = kSoftBeta * r;
        return (std::max(br, 0.0) + std::log1p(std::exp(-std::fabs(br)))) / kSoftBeta;
      }
      case Kind::QHinge: return r > 0 ? 0.5 * r * r : 0.0;
    }
    return 0;
  }
  // dl/dm (<= 0)
  double slope(double m) const {
    double r = 1.0 - m;
    switch (kind) {
      case Kind::Hinge: return r > 0 ? -1.0 : 0.0;
      case Kind::SoftHinge: return -1.0 / (1.0 + std::exp(-kSoftBeta * r));
      case Kind::QHinge: return r > 0 ? -r : 0.0;
    }
    return 0;
  }
};

}  // namespace lf
