// Activations of the study, each normalised so that E[phi(z)^2] = 1 for z ~ N(0,1)
// (protocol section 2): softplus_beta scaled by a (1.40438 at beta = 5), sqrt(2) relu,
// tanh and swish scaled by their own constants. The constant is computed by quadrature
// unless given (--act-scale: the published runs used softplus with a = 1.40438 and tanh
// unnormalised, a = 1; replaying them needs those values).
// This file holds the reference (autograd) versions; fused kernels live in models/fc.cpp.
#pragma once
#include <ATen/ATen.h>

#include <string>

namespace lf {

struct Activation {
  enum class Kind { Softplus, Relu, Tanh, Swish };
  Kind kind = Kind::Softplus;
  double beta = 5.0;   // softplus sharpness
  double scale = 1.0;  // the prefactor a
  // Softplus only: above beta z > threshold, phi(z) = a z exactly (PyTorch's softplus, which the
  // published runs used, with threshold 20); 0 = no cut-off (the exact softplus, the default).
  double threshold = 0.0;

  // scale > 0: that prefactor; 0: the normalising constant of the activation.
  static Activation make(const std::string& name, double beta = 5.0, double scale = 0.0, double threshold = 0.0);
  bool cut(double beta_z) const { return threshold > 0 && beta_z > threshold; }  // softplus: linear here
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
