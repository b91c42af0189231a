// The observables as protocol section 5 defines them, checked against independent computations:
// zdot of the output against the NTK (f_dot = Theta y / (alpha n) at t = 0 under the hinge),
// the per-layer weight change (biases included, relative to the layer's initial norm) against
// the stored weights, and the one NaN rule of every trainer (network and frozen kernel).
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <cmath>

#include "experiment/config.h"
#include "experiment/from_config.h"
#include "experiment/train.h"
#include "models/fc.h"
#include "ntk/frozen.h"
#include "ntk/ntk.h"
#include "testing.h"

using namespace lf;

namespace {

using lft::quiet;
using lft::synthetic;

const auto kD = at::TensorOptions().dtype(at::kDouble);

RunConfig tiny(double alpha) {
  RunConfig c;
  c.h = 16;
  c.L = 2;
  c.ptr = 40;
  c.pte = 20;
  c.alpha = alpha;
  finalize(c);
  return c;
}

}  // namespace

// At t = 0 every point is unsatisfied and the momentum of tau = t/mu gives v = -g, so the
// outputs move at f_dot = Theta(w0) y / (alpha n). zdot's last entry, measured over the first
// step of the protocol's dynamics that moves the outputs by more than df_min (1e-4), must
// equal its rms over the training points to first order in that step (df <= 1e-2).
TEST(Observables, ZdotOfTheOutputIsTheKernelFlow) {
  for (double alpha : {1.0, 1e-2}) {
    SCOPED_TRACE("alpha " + std::to_string(alpha));
    Dataset d = synthetic(40, 20);
    RunConfig c = tiny(alpha);
    c.zdot = true;
    c.max_steps = 3000;
    RunResult r = train_run(c, d, quiet());
    ASSERT_EQ(r.zdot.size(), 3u) << "pre_1, pre_2, f";
    Net net0 = Net::fc(fc_init(10, c.h, c.L, c.weights_seed()), activation_of(c));
    at::Tensor theta = ntk(net0, d.x_train);                               // [n, n]
    at::Tensor fdot = at::mv(theta, d.y_train) / (alpha * double(c.ptr));  // [n]
    const double want = fdot.pow(2).mean().sqrt().item<double>();
    EXPECT_NEAR(r.zdot[2] / want, 1.0, 2e-2) << r.zdot[2] << " vs " << want;
    for (double z : r.zdot) EXPECT_GT(z, 0.0);
  }
}

// layer_change[l] = ||(W_l, b_l) - (W_l(0), b_l(0))|| / ||(W_l(0), b_l(0))||, at the last
// checkpoint, from the weights of the final saved state and the seeded initial weights.
TEST(Observables, LayerChangeIsRelativeAndIncludesTheBias) {
  Dataset d = synthetic(40, 20);
  RunConfig c = tiny(1e-2);  // the feature regime: weights move by O(1)
  c.dt0 = 1e-2;
  c.df_min = 1e-2;
  c.df_max = 1e-1;
  c.max_steps = 200;
  std::string last_state;
  TrainHooks hooks = quiet();
  hooks.on_state = [&](const std::string& s) { last_state = s; };
  RunResult r = train_run(c, d, hooks);
  ASSERT_FALSE(last_state.empty());
  FCParams w = fc_params_from_state(last_state), w0 = fc_init(10, c.h, c.L, c.weights_seed());
  const Checkpoint& last = r.checkpoints.back();
  ASSERT_EQ(last.layer_change.size(), size_t(c.L + 1));
  double moved_bias = 0;
  for (int64_t l = 0; l <= c.L; ++l) {
    const double dW = (w.W[l] - w0.W[l]).norm().item<double>(), db = (w.b[l] - w0.b[l]).norm().item<double>();
    const double n0 = std::hypot(w0.W[l].norm().item<double>(), w0.b[l].norm().item<double>());
    EXPECT_NEAR(last.layer_change[l], std::hypot(dW, db) / n0, 1e-12 * (1 + last.layer_change[l])) << "layer " << l;
    moved_bias = std::max(moved_bias, db);
  }
  EXPECT_GT(moved_bias, 0.0) << "the biases must have moved for this test to see them";
}

// One NaN rule (protocol section 4): a trial step whose output change is NaN ends the run as
// diverged at once, with the same message in network and frozen-kernel training.
TEST(Observables, NanEndsNetworkAndFrozenRunsAlike) {
  Dataset d = synthetic(40, 20);
  RunConfig c = tiny(1e-310);  // dL/df overflows: the first trial step gives NaN outputs
  RunResult r = train_run(c, d, quiet());
  EXPECT_EQ(r.status, "diverged");
  EXPECT_EQ(r.rejected, 0);

  at::Tensor K = at::eye(4, kD);
  K[1][2] = std::numeric_limits<double>::quiet_NaN();
  FrozenOptions o;
  o.control.dt = 1e-3;
  FrozenResult fr = frozen_kernel_train(K, at::tensor({1.0, -1.0, 1.0, -1.0}, kD), o);
  EXPECT_EQ(fr.status, "diverged");
  EXPECT_EQ(fr.rejected, 0);
  EXPECT_EQ(fr.message, r.message);
  EXPECT_EQ(fr.steps, 0);
}
