// FC network: seed-compatible initialisation and the autograd reference forward (see fc.h).
#include "models/fc.h"

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace lf {

FCParams fc_init(int64_t d, int64_t h, int64_t L, uint64_t seed, at::TensorOptions opts) {
  // A private generator seeded like torch.manual_seed(seed): same stream as PyTorch's default
  // CPU generator after manual_seed, without touching global state.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto cpu = at::TensorOptions().dtype(at::kDouble);
  FCParams p;
  p.W.push_back(at::randn({h, d}, gen, cpu));
  for (int64_t l = 1; l < L; ++l) p.W.push_back(at::randn({h, h}, gen, cpu));
  p.W.push_back(at::randn({1, h}, gen, cpu));
  for (int64_t l = 0; l < L; ++l) p.b.push_back(at::zeros({h}, cpu));
  p.b.push_back(at::zeros({1}, cpu));
  return p.to(opts);
}

at::Tensor fc_forward_reference(const FCParams& p, const at::Tensor& x, const Activation& act) {
  at::Tensor z = x;
  const int64_t L = p.L();
  for (int64_t l = 0; l < L; ++l) {
    double fan_in = static_cast<double>(p.W[l].size(1));
    z = act(at::addmm(p.b[l], z, p.W[l].t(), 1.0, 1.0 / std::sqrt(fan_in)));
  }
  double fan_in = static_cast<double>(p.W[L].size(1));
  return at::addmm(p.b[L], z, p.W[L].t(), 1.0, 1.0 / std::sqrt(fan_in)).squeeze(1);
}

at::Tensor fc_forward_per_sample(const FCParams& p, const at::Tensor& x, const Activation& act) {
  at::Tensor z = x.unsqueeze(1);  // [n, 1, d]
  const int64_t L = p.L();
  for (int64_t l = 0; l <= L; ++l) {
    const double fan_in = static_cast<double>(p.W[l].size(2));
    at::Tensor a = at::baddbmm(p.b[l].unsqueeze(1), z, p.W[l].transpose(1, 2), 1.0, 1.0 / std::sqrt(fan_in));
    z = l < L ? act(a) : a;  // [n, 1, h]; the output layer [n, 1, 1]
  }
  return z.reshape({-1});
}

}  // namespace lf
