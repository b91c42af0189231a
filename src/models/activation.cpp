#include "models/activation.h"

#include <cmath>

#include "common/error.h"

namespace lf {
namespace {

// Unscaled activations: softplus_beta(x) = log(1 + exp(beta x)) / beta, computed stably.
double softplus_u(double x, double beta) {
  double bx = beta * x;
  return (std::max(bx, 0.0) + std::log1p(std::exp(-std::fabs(bx)))) / beta;
}
double relu_u(double x, double) { return x > 0 ? x : 0.0; }
double tanh_u(double x, double) { return std::tanh(x); }
double swish_u(double x, double) { return x / (1.0 + std::exp(-x)); }

}  // namespace

double gaussian_second_moment(double (*g)(double, double), double param) {
  const int n = 40000;  // even
  const double a = -20.0, b = 20.0, hstep = (b - a) / n;
  const double norm = 1.0 / std::sqrt(2.0 * M_PI);
  double sum = 0.0;
  for (int i = 0; i <= n; ++i) {
    double x = a + i * hstep;
    double v = g(x, param);
    double w = (i == 0 || i == n) ? 1.0 : (i % 2 ? 4.0 : 2.0);
    sum += w * v * v * norm * std::exp(-0.5 * x * x);
  }
  return sum * hstep / 3.0;
}

double normalising_constant(Activation::Kind kind, double beta) {
  switch (kind) {
    case Activation::Kind::Softplus: return 1.0 / std::sqrt(gaussian_second_moment(softplus_u, beta));
    case Activation::Kind::Relu: return std::sqrt(2.0);  // exact: E[relu(z)^2] = 1/2
    case Activation::Kind::Tanh: return 1.0 / std::sqrt(gaussian_second_moment(tanh_u, 0.0));
    case Activation::Kind::Swish: return 1.0 / std::sqrt(gaussian_second_moment(swish_u, 0.0));
  }
  return 1.0;
}

Activation Activation::make(const std::string& name, double beta, double scale, double threshold) {
  Activation a;
  if (name == "softplus") a.kind = Kind::Softplus;
  else if (name == "relu") a.kind = Kind::Relu;
  else if (name == "tanh") a.kind = Kind::Tanh;
  else if (name == "swish") a.kind = Kind::Swish;
  else throw UsageError("unknown activation '" + name + "'");
  a.beta = beta;
  a.threshold = a.kind == Kind::Softplus ? threshold : 0.0;
  a.scale = scale > 0 ? scale : normalising_constant(a.kind, beta);  // --act-scale, else E[phi^2] = 1
  return a;
}

std::string Activation::name() const {
  switch (kind) {
    case Kind::Softplus: return "softplus";
    case Kind::Relu: return "relu";
    case Kind::Tanh: return "tanh";
    case Kind::Swish: return "swish";
  }
  return "?";
}

double Activation::value(double x) const {
  switch (kind) {
    case Kind::Softplus: return cut(beta * x) ? scale * x : scale * softplus_u(x, beta);
    case Kind::Relu: return scale * relu_u(x, 0);
    case Kind::Tanh: return scale * std::tanh(x);
    case Kind::Swish: return scale * swish_u(x, 0);
  }
  return 0;
}

double Activation::deriv(double x) const {
  switch (kind) {
    case Kind::Softplus: return cut(beta * x) ? scale : scale / (1.0 + std::exp(-beta * x));
    case Kind::Relu: return x > 0 ? scale : 0.0;
    case Kind::Tanh: { double t = std::tanh(x); return scale * (1 - t * t); }
    case Kind::Swish: { double s = 1.0 / (1.0 + std::exp(-x)); return scale * (s + x * s * (1 - s)); }
  }
  return 0;
}

at::Tensor Activation::operator()(const at::Tensor& z) const {
  switch (kind) {
    case Kind::Softplus:  // ATen's one-pass softplus: log1p(exp(beta z)) / beta, z itself where
                          // beta z > its threshold. Without a cut-off of ours, 600: exp(-600) is
                          // below the last bit of z there, so the value is the exact softplus.
      return scale * at::softplus(z, beta, threshold > 0 ? threshold : 600.0);
    case Kind::Relu: return scale * at::relu(z);
    case Kind::Tanh: return scale * at::tanh(z);
    case Kind::Swish: return scale * z * at::sigmoid(z);
  }
  return z;
}

at::Tensor Activation::derivative(const at::Tensor& z) const {
  switch (kind) {
    case Kind::Softplus: {
      auto d = scale * at::sigmoid(beta * z);
      return threshold > 0 ? at::where(beta * z > threshold, at::full_like(z, scale), d) : d;
    }
    case Kind::Relu: return scale * (z > 0).to(z.scalar_type());
    case Kind::Tanh: { auto t = at::tanh(z); return scale * (1 - t * t); }
    case Kind::Swish: { auto s = at::sigmoid(z); return scale * (s + z * s * (1 - s)); }
  }
  return z;
}

}  // namespace lf
