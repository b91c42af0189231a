// Kernel measurements of a run (see kernels.h; protocol sections 4, 5). Theta is taken with the
// structured method on CPU float64 copies of the weights and data, whatever the run's device
// and dtype. Cost at the protocol's defaults (FC L=5, h=100, 5,000 kernel points): one
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


Net cpu_net(const Net& net) { return net.to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU)); }

at::Tensor cpu64(const at::Tensor& t) { return t.to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU)); }

// Theta on the first kernel_points test points (protocol section 5).
at::Tensor kernel_on_test_points(const RunConfig& cfg, const Dataset& data, const Net& net) {
  const int64_t n = std::min<int64_t>(cfg.kernel_points, data.x_test.size(0));
  return ntk(net, cpu64(data.x_test.narrow(0, 0, n)));
}

nlohmann::json stats_on_test_points(const RunConfig& cfg, const Dataset& data, const at::Tensor& K) {
  KernelStatsOptions o;
  o.max_eigen_n = 2000;  // the eigendecomposition is O(n^3): skipped for larger kernels
  return kernel_stats(K, cpu64(data.y_test.narrow(0, 0, K.size(0))), o);
}

// Frozen-kernel training with the kernel of `net` (protocol section 4), test error on the test set.
nlohmann::json frozen_run(const RunConfig& cfg, const Dataset& data, const Net& net) {
  at::Tensor x_train = cpu64(data.x_train), x_test = cpu64(data.x_test);
  FrozenResult r = frozen_kernel_train(ntk(net, x_train), cpu64(data.y_train), frozen_options(cfg));
  const int64_t m = x_test.size(0);
  at::Tensor u_test = at::empty({m}, x_test.options());
  for (int64_t i0 = 0; i0 < m; i0 += kTestBlock) {
    const int64_t b = std::min(kTestBlock, m - i0);
    u_test.narrow(0, i0, b).copy_(at::mv(ntk(net, x_test.narrow(0, i0, b), x_train), r.c));  // Theta_test,train c
  }
  if (m > 0) r.test_err = frozen_test_error(u_test, cpu64(data.y_test));
  return r.to_json();
}

}  // namespace

bool wants_kernels(const RunConfig& cfg) { return cfg.delta_kernel || cfg.init_kernel || cfg.final_kernel; }

nlohmann::json measure_kernels_at_init(const RunConfig& cfg, const Dataset& data, const Net& w0) {
  nlohmann::json j = nlohmann::json::object();
  if (!wants_kernels(cfg)) return j;
  Net net0 = cpu_net(w0);
  if (cfg.kernel_points > 0) j["init"] = stats_on_test_points(cfg, data, kernel_on_test_points(cfg, data, net0));
  if (cfg.init_kernel) j["init_kernel_run"] = frozen_run(cfg, data, net0);
  return j;
}

nlohmann::json measure_kernels_at_end(const RunConfig& cfg, const Dataset& data, const Net& w0, const Net& w,
                                      const nlohmann::json& at_init) {
  nlohmann::json j = at_init.is_object() ? at_init : nlohmann::json::object();
  if (!wants_kernels(cfg)) return j;
  Net net = cpu_net(w);
  if (cfg.kernel_points > 0) {
    at::Tensor K = kernel_on_test_points(cfg, data, net);
    j["final"] = stats_on_test_points(cfg, data, K);
    at::Tensor K0 = kernel_on_test_points(cfg, data, cpu_net(w0));
    if (!j.contains("init")) j["init"] = stats_on_test_points(cfg, data, K0);
    j["change"] = kernel_change(K, K0);  // ||Theta_end - Theta_0|| / ||Theta_0||
  }
  if (cfg.final_kernel) j["final_kernel_run"] = frozen_run(cfg, data, net);
  return j;
}

nlohmann::json measure_kernels_at_init(const RunConfig& cfg, const Dataset& data, const FCParams& w0) {
  return measure_kernels_at_init(cfg, data, Net::fc(w0, activation_of(cfg)));
}

nlohmann::json measure_kernels_at_end(const RunConfig& cfg, const Dataset& data, const FCParams& w0,
                                      const FCParams& w, const nlohmann::json& at_init) {
  return measure_kernels_at_end(cfg, data, Net::fc(w0, activation_of(cfg)), Net::fc(w, activation_of(cfg)), at_init);
}

}  // namespace lf
