// Activations of the study, each normalised so that E[phi(z)^2] = 1 for z ~ N(0,1)
// (protocol section 2): softplus_beta scaled by a (1.40438 at beta = 5), sqrt(2) relu,
// tanh and swish scaled by their own constants. The constant is computed by quadrature
// unless given (--softplus-scale, needed to replay the published runs exactly).
// This file holds the reference (autograd) versions; fused kernels live in models/fc.cpp.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace lf {

struct RunConfig;

struct Activation {
  enum class Kind { Softplus, Relu, Tanh, Swish };
  Kind kind = Kind::Softplus;
  double beta = 5.0;   // softplus sharpness
  double scale = 1.0;  // the prefactor a

  static Activation from_config(const RunConfig& cfg);
  static Activation make(const std::string& name, double beta = 5.0, double scale = 0.0);
  std::string name() const;

  // Scalar value and derivative (reference for tests and quadrature).
  double value(double x) const;
  double deriv(double x) const;
  // Elementwise on tensors, differentiable by autograd (the reference path).
  at::Tensor operator()(const at::Tensor& z) const;
  // phi'(z) elementwise (no autograd needed).
  at::Tensor derivative(const at::Tensor& z) const;
};

// E[g(z)^2] for z ~ N(0,1), by composite Simpson quadrature on [-20, 20].
double gaussian_second_moment(double (*g)(double, double), double param);
// The normalising constant a = E[phi_unscaled(z)^2]^(-1/2) of an activation.
double normalising_constant(Activation::Kind kind, double beta);

}  // namespace lf
