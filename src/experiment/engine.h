// The tensor work of the dynamics for K members (protocol section 4), one trial step at a time:
// the momentum update of the members' weights, one forward on the training set, the output
// change df and the fit of the trial outputs, the restore of rejected trials, one backward.
// The engine keeps each member's training outputs f (now) and f0 (at w0), so that the members'
// scalar state machines (experiment/member.h: t, dt, decisions, checkpoints) see numbers only.
// Two implementations:
//  - SequentialEngine: one Model per member (experiment/model.h: the fused CPU float64 kernels,
//    the plain LibTorch reference, or the CNN), one member after another; outputs, df and the
//    fit on the host. Each member gets exactly the numbers of its run alone. Cost: K times one
//    run's. The CPU's engine, and the engine of the wrn and of the stochastic FC dynamics
//    (forward_rows, gradient_rows) everywhere.
//  - BatchedEngine: the members' weights as [K, P] tensors on one device; one batched forward
//    (batched matrix products over [K, n, h]) keeping the preactivations, df and the fit as
//    [K', n] tensor reductions on the device (one transfer of 4 numbers a member a step), and a
//    hand-written batched backward (two batched products a layer and one elementwise pass). On
//    cuda in float64 with softplus, each hidden layer's scale, bias and activation follow its
//    product as one hand-written pass, and in the backward the activation's derivative (from z)
//    and the bias gradient are one pass, and so are a round's trial step and its keeping of the
//    accepted trials over [K, P] (models/fc_cuda.h; LAZYFEAT_CUDA_KERNELS=0: LibTorch's
//    baddbmm, softplus, softplus_backward, sum and where instead).
//    Members that left (converged, stopped, diverged) are not computed. The GPU path of
//    full-batch FC ensembles; it refuses batch work (forward_rows, gradient_rows) and other
//    networks.
//  - GroupedCnnEngine (cnn_ensemble.cpp): K CNNs of setup B as one network of K groups: each
//    convolution one grouped at::conv2d (groups = K; cuDNN on cuda) over the members' images
//    side by side in the channels, [N, K C, H, W], each member its own points; the gradient by
//    autograd through it. Both dynamics: full batches (outputs and fit on the host) and the
//    stochastic one, whose walks and batches (forward_batches, gradient_batches) go through it
//    as one computation. Cost: about one run's launches for K members; the numbers are each
//    member's run alone to rounding (another summation order than conv2d of one member). The
//    GPU path of CNN ensembles.
// Deliberately not: the step rule, stop rules, observables (experiment/member.h).
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "dynamics/integrator.h"
#include "dynamics/loss.h"
#include "experiment/model.h"
#include "experiment/observables.h"

namespace lf {

// What the members fit: the training labels y [n], the loss, and each member's alpha.
struct FitSpec {
  Loss loss;
  std::vector<double> y;
  std::vector<double> alpha;  // [K]
  bool host_outputs = false;      // Trial's host views of the outputs, for --integrator lte and eab2
  bool gradient_history = false;  // --integrator eab2: gradient() keeps the previous gradient (g_prev)
};

// One member's trial step as the step rule sees it.
struct Trial {
  double df = 0;  // alpha max_mu |f_new(x_mu) - f(x_mu)|; NaN when an output is not a number
  Fit fit;        // of the trial outputs f_new: loss2, train_err, unsatisfied (rows and c stay in the engine)
  // Host views [n] of the outputs before the trial (f), after it (f_new) and at w0 (f0), valid
  // until the engine's next forward: always from the sequential engine, from the batched one
  // with FitSpec::host_outputs (one more transfer a step). Step rules that look at every point
  // (--integrator lte, dynamics/integrator.h) read them.
  const double* f = nullptr;
  const double* f_new = nullptr;
  const double* f0 = nullptr;
};

// The paper's full-batch step rule run on the device (Engine::rounds): one member's scalars, in
// and out. The rule is StepControl::judge and Momentum::decay's (dynamics/momentum.h) and
// Member's stop and t1 rules (experiment/member.h), as [K] tensor operations.
struct RuleState {
  double t = 0, dt = 0, t1 = kNaN;
  int64_t step = 0, rejected = 0, gradient_evaluations = 0;
  int64_t park_at = 0;  // in: the member takes no trial step once step reaches it (a checkpoint, a budget)
  Fit fit;              // loss2, train_err, unsatisfied of the member's outputs (in and out)
  // out: why the member stopped within the rounds, or Running.
  enum class Stop { Running, Converged, NanStep, StepUnderflow, NonFinite } stop = Stop::Running;
};
struct RuleParams {  // shared by the members (experiment/train.h, lockstep_key)
  double df_min = 1e-4, df_max = 1e-2, max_dt = 0, tau = -1000;
};

class Engine {
 public:
  virtual ~Engine() = default;
  // Member k's weights, velocity and gradient at its weights, as [P] tensors (views that stay
  // valid for the engine's life); prev_w(k): its weights before its last trial step.
  virtual at::Tensor w(int64_t k) = 0;
  virtual at::Tensor v(int64_t k) = 0;
  virtual at::Tensor g(int64_t k) = 0;
  virtual at::Tensor prev_w(int64_t k) = 0;
  // Member k's initial weights w0 [P] (a view the member fills once).
  virtual at::Tensor w0(int64_t k) = 0;
  // New members ks: a forward at their weights w0 gives f0 = f; fits[i] is the fit of member ks[i]
  // (its numbers: loss2, train_err, unsatisfied).
  virtual void start(const std::vector<int64_t>& ks, std::vector<Fit>& fits) = 0;
  // Resumed member k: its saved outputs; returns their fit.
  virtual Fit set_outputs(int64_t k, const std::vector<double>& f, const std::vector<double>& f0) = 0;
  // Member k's outputs now (for its resumable state).
  virtual void outputs(int64_t k, std::vector<double>& f, std::vector<double>& f0) = 0;
  // The trial step of members ks with their decay factors x and steps dt (momentum on: v <- x v -
  // (1 - x) g, w <- w + dt v; off: w <- w - dt g), keeping their previous w and v.
  virtual void trial(const std::vector<int64_t>& ks, const std::vector<double>& x, const std::vector<double>& dt,
                     bool momentum) = 0;
  // --integrator eab2 (dynamics/integrator.h): the exponential step of members ks with their
  // coefficients c[i] on v, g and g_prev, keeping w and v for a rejection and the extrapolated
  // gradient g_extrap = g + r (g - g_prev) for the error estimate after the next gradient.
  virtual void trial_exp(const std::vector<int64_t>& ks, const std::vector<ExpStep>& c) = 0;
  // Member k's gradient at its previous accepted point, and the last trial's extrapolation ([P]
  // views; with FitSpec::gradient_history only).
  virtual at::Tensor g_prev(int64_t k) = 0;
  virtual at::Tensor g_extrap(int64_t k) = 0;
  // The trial outputs of members ks at their current weights: trials[i] for member ks[i].
  virtual void forward(const std::vector<int64_t>& ks, std::vector<Trial>& trials) = 0;
  // Accepted members ks: their trial outputs become their outputs f.
  virtual void accept(const std::vector<int64_t>& ks) = 0;
  // Rejected members ks go back to their weights and velocity before the trial step.
  virtual void restore(const std::vector<int64_t>& ks) = 0;
  // g(ks[i]) <- dL/dw at the weights of the last forward (start or forward) of member ks[i],
  // from the fit of those outputs: sum_mu dL/df_mu df(w, x_mu)/dw over the points with a
  // non-zero loss derivative. Every ks[i] was in that forward. With FitSpec::gradient_history,
  // g_prev(ks[i]) <- g(ks[i]) first.
  virtual void gradient(const std::vector<int64_t>& ks) = 0;
  // The stochastic dynamics (protocol section 4), member by member at its current weights:
  // f[i] <- f(w_k, x_train[rows[i]]); and g(k) <- sum_i c[i] d f(w_k, x_train[rows[i]]) / dw.
  virtual void forward_rows(int64_t k, const std::vector<int64_t>& rows, std::vector<double>& f) = 0;
  virtual void gradient_rows(int64_t k, const std::vector<int64_t>& rows, const std::vector<double>& c) = 0;
  // The same for members ks together, each on its own rows (a batch walk's chunks, the batches):
  // f[i] <- f(w_{ks[i]}, x_train[rows[i]]); g(ks[i]) <- sum_j c[i][j] df(w_{ks[i]}, x_train[rows[i][j]])/dw.
  // By default member after member (forward_rows, gradient_rows); the grouped CNN engine as one
  // computation.
  virtual void forward_batches(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>& rows,
                               std::vector<std::vector<double>>& f);
  virtual void gradient_batches(const std::vector<int64_t>& ks, const std::vector<std::vector<int64_t>>& rows,
                                const std::vector<std::vector<double>>& c);
  // f of member k on a CPU float64 [N, d] set: [N] CPU float64.
  virtual at::Tensor evaluate(int64_t k, const at::Tensor& x) = 0;
  // What checkpoints of members ks measure of their weights now: norms[i] the ChangeNorms of
  // w - w0 of member ks[i] (experiment/observables.h) and, when x (CPU float64 [N, d]) has
  // N > 0, f[i] its outputs on x ([N] CPU float64). The batched engine does all members at
  // once, in one batched forward and one transfer.
  virtual void observe(const std::vector<int64_t>& ks, const at::Tensor& x, std::vector<ChangeNorms>& norms,
                       std::vector<at::Tensor>& f) = 0;
  // Up to `rounds` trial steps of members ks under the paper's full-batch rule (trial, forward,
  // verdict, restore, gradient), each member's scalars kept on the device in between: one upload
  // of st before, one download after. A member stops at st.park_at accepted steps, at zero loss
  // (Stop::Converged, the trial that reached it accepted) or at a diverging step (its weights
  // restored). Only engines with rounds_supported(); the paper's rule (no zdot, no lte or eab2).
  // The batched engine on cuda replays one captured round as a CUDA graph from the second round
  // of a call on (common/cuda_graph.h; kept while ks and the rule stay): the same kernels on the
  // same numbers as launched one by one (LAZYFEAT_CUDA_GRAPHS=0), bit for bit.
  virtual bool rounds_supported() const { return false; }
  virtual void rounds(const std::vector<int64_t>& ks, const RuleParams& rule, int64_t rounds,
                      std::vector<RuleState>& st);
  virtual std::string name() const = 0;  // "fused" | "reference" | "batched" | "grouped"
};

// fused: the CPU float64 FC kernels; else plain LibTorch (models of make_model), on opts' dtype
// and device.
std::unique_ptr<Engine> make_sequential_engine(FitSpec spec, bool fused, const Activation& act, const NetLayout& lay,
                                               const at::Tensor& x_train, at::TensorOptions opts);
std::unique_ptr<Engine> make_batched_engine(FitSpec spec, const Activation& act, const FCLayout& lay,
                                            const at::Tensor& x_train, at::TensorOptions opts);
// The grouped CNN engine (experiment/cnn_ensemble.cpp): x_train [n, C, rows, cols] images.
std::unique_ptr<Engine> make_grouped_cnn_engine(FitSpec spec, const Activation& act, const CNNLayout& lay,
                                                const at::Tensor& x_train, at::TensorOptions opts);

}  // namespace lf
