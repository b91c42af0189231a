// Kernel measurements of a run (see kernels.h; protocol sections 4, 5). Theta is taken with the
// structured method in float64 on the run's device (cuda runs on the GPU), whatever the run's
// dtype; its statistics run on the CPU, frozen-kernel training's products on the run's device. Cost at the protocol's defaults (FC L=5, h=100, 5,000 kernel points): one
// symmetric Gram (~25 GFLOP) per kernel; a frozen-kernel run adds the training Gram, the
// dynamics (2 n |B| flops a step), a least-squares solve (O(n^3)) and Theta_test,train c in
// blocks of test points (memory bounded).
#include "experiment/kernels.h"

#include <algorithm>

#include "experiment/from_config.h"
#include "ntk/ntk.h"
#include "ntk/stats.h"

namespace lf {
namespace {

constexpr int64_t kTestBlock = 4096;  // test points per block of Theta_test,train


at::TensorOptions kernel_options(const RunConfig& cfg) {
  return at::TensorOptions().dtype(at::kDouble).device(cfg.device == "cuda" ? at::kCUDA : at::kCPU);
}
Net kernel_net(const RunConfig& cfg, const Net& net) { return net.to(kernel_options(cfg)); }
at::Tensor on_device(const RunConfig& cfg, const at::Tensor& t) { return t.to(kernel_options(cfg)); }
at::Tensor cpu64(const at::Tensor& t) { return t.to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU)); }

// Theta of each network on the first kernel_points test points (protocol section 5), CPU float64:
// [networks, n, n].
at::Tensor kernels_on_test_points(const RunConfig& cfg, const Dataset& data, const std::vector<Net>& nets) {
  const int64_t n = std::min<int64_t>(cfg.kernel_points, data.x_test.size(0));
  return cpu64(ntk_members(nets, on_device(cfg, data.x_test.narrow(0, 0, n))));
}

nlohmann::json stats_on_test_points(const RunConfig& cfg, const Dataset& data, const at::Tensor& K) {
  KernelStatsOptions o;
  o.max_eigen_n = 2000;  // the eigendecomposition is O(n^3): skipped for larger kernels
  return kernel_stats(K, cpu64(data.y_test.narrow(0, 0, K.size(0))), o);
}

// Frozen-kernel training with the kernel of `net` (protocol section 4), test error on the test set.
nlohmann::json frozen_run(const RunConfig& cfg, const Dataset& data, const Net& net) {
  at::Tensor x_train = on_device(cfg, data.x_train), x_test = on_device(cfg, data.x_test);
  FrozenResult r = frozen_kernel_train(ntk(net, x_train), cpu64(data.y_train), frozen_options(cfg));
  const int64_t m = x_test.size(0);
  at::Tensor u_test = at::empty({m}, at::TensorOptions().dtype(at::kDouble));
  const at::Tensor c = on_device(cfg, r.c);
  for (int64_t i0 = 0; i0 < m; i0 += kTestBlock) {
    const int64_t b = std::min(kTestBlock, m - i0);
    u_test.narrow(0, i0, b).copy_(at::mv(ntk(net, x_test.narrow(0, i0, b), x_train), c));  // Theta_test,train c
  }
  if (m > 0) r.test_err = frozen_test_error(u_test, cpu64(data.y_test));
  return r.to_json();
}

}  // namespace

bool wants_kernels(const RunConfig& cfg) { return cfg.delta_kernel || cfg.init_kernel || cfg.final_kernel; }

nlohmann::json measure_kernels_at_init(const RunConfig& cfg, const Dataset& data, const Net& w0) {
  return measure_kernels_at_init(std::vector<RunConfig>{cfg}, data, std::vector<Net>{w0}).front();
}

std::vector<nlohmann::json> measure_kernels_at_init(const std::vector<RunConfig>& cfgs, const Dataset& data,
                                                    const std::vector<Net>& w0s) {
  std::vector<nlohmann::json> out(cfgs.size(), nlohmann::json::object());
  if (cfgs.empty() || !wants_kernels(cfgs.front())) return out;
  std::vector<Net> nets;
  for (size_t k = 0; k < cfgs.size(); ++k) nets.push_back(kernel_net(cfgs[k], w0s[k]));
  if (cfgs.front().kernel_points > 0) {
    const at::Tensor K = kernels_on_test_points(cfgs.front(), data, nets);  // [members, n, n]
    for (size_t k = 0; k < cfgs.size(); ++k) out[k]["init"] = stats_on_test_points(cfgs[k], data, K[int64_t(k)]);
  }
  for (size_t k = 0; k < cfgs.size(); ++k)
    if (cfgs[k].init_kernel) out[k]["init_kernel_run"] = frozen_run(cfgs[k], data, nets[k]);
  return out;
}

nlohmann::json measure_kernels_at_end(const RunConfig& cfg, const Dataset& data, const Net& w0, const Net& w,
                                      const nlohmann::json& at_init) {
  nlohmann::json j = at_init.is_object() ? at_init : nlohmann::json::object();
  if (!wants_kernels(cfg)) return j;
  Net net = kernel_net(cfg, w);
  if (cfg.kernel_points > 0) {
    const at::Tensor KK0 = kernels_on_test_points(cfg, data, {net, kernel_net(cfg, w0)});
    const at::Tensor K = KK0[0], K0 = KK0[1];
    j["final"] = stats_on_test_points(cfg, data, K);
    if (!j.contains("init")) j["init"] = stats_on_test_points(cfg, data, K0);
    j["change"] = kernel_change(K, K0);  // ||Theta_end - Theta_0|| / ||Theta_0||
  }
  if (cfg.final_kernel) j["final_kernel_run"] = frozen_run(cfg, data, net);
  return j;
}

}  // namespace lf
