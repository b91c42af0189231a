// The paper's continuous-time dynamics (protocol section 4), as scalar rules shared by every
// trainer (the fused FC trainer, frozen-kernel training, later CNN and ensembles):
//  - momentum: over one step dt with the gradient g held fixed, tau dv/dt = -(v + g) is
//    integrated exactly: v <- x v - (1 - x) g, then w <- w + dt v, where
//      tau > 0 constant:   x = exp(-dt / tau)
//      tau = t / mu:       x = (t / (t + dt))^mu        (x = 0 at t = 0, so v = -g)
//      tau = 0:            plain gradient flow, w <- w - dt g
//  - the adaptive step: accept, reject (restore, dt /= 10) or accept and grow (dt *= 1.1, or
//    *= 10 when df == 0), judged on df = alpha max_mu |f_new(x_mu) - f_old(x_mu)|.
//  - the stochastic variant at fixed temperature T: the batch size that follows dt, and the cap
//    max_dt on dt that keeps the batch at most b_max (stochastic_batch_size, stochastic_max_dt).
// Deliberately not here: tensors. Trainers apply decay() to their own buffers.
#pragma once
#include <cmath>
#include <cstdint>

namespace lf {

struct Momentum {
  double tau = -1000.0;  // the published code's convention: > 0 constant, < 0 means t/mu, 0 none

  bool enabled() const { return tau != 0.0; }
  // The factor x of v <- x v - (1 - x) g for a step from t to t + dt.
  double decay(double t, double dt) const {
    if (tau > 0) return std::exp(-dt / tau);
    if (tau < 0) {
      if (t <= 0) return 0.0;
      double mu = -tau;
      return std::exp(mu * (std::log(t) - std::log(t + dt)));  // (t / (t + dt))^mu
    }
    return 0.0;  // gradient flow: v = -g, then w += dt v is w -= dt g
  }
};

struct StepControl {
  double dt = 1e-50;     // current step; starts at dt0 (1e-50 full batch, T stochastic)
  double df_min = 1e-4;  // protocol section 4
  double df_max = 1e-2;
  double max_dt = 0.0;   // 0 = no cap

  enum class Verdict { Accept, Reject, Diverge };
  // Judges a trial step of size dt that changed the outputs by df (already multiplied by alpha)
  // and updates dt for the next trial. A NaN df (an output that is not a number) ends the run
  // as diverged, as the published code stops on it: every trainer stops the same way.
  Verdict judge(double df) {
    if (std::isnan(df)) return Verdict::Diverge;
    if (!(df < df_max)) {  // df >= df_max (inf included)
      dt /= 10.0;
      return Verdict::Reject;
    }
    if (df <= df_min) {
      dt *= (df == 0.0) ? 10.0 : 1.1;
      if (max_dt > 0 && dt > max_dt) dt = max_dt;
    }
    return Verdict::Accept;
  }
};

// One trial step of the momentum dynamics over P values on raw arrays, the previous w and v kept
// in w_prev, v_prev for a rejection (restore with trial_restore):
//   momentum:       v <- x v - y g,  w <- w + dt v      (x = Momentum::decay(t, dt), y = 1 - x)
//   gradient flow:  w <- w - dt g                        (v untouched)
// The network trainer (on its flat parameters) and frozen-kernel training (on the outputs u)
// both step through it, so they take the same arithmetic.
inline void trial_step(double x, double y, double dt, bool momentum, double* w, double* v, const double* g,
                       int64_t P, double* w_prev, double* v_prev) {
  if (momentum) {
    for (int64_t i = 0; i < P; ++i) {
      w_prev[i] = w[i];
      v_prev[i] = v[i];
      const double vi = v[i] * x - g[i] * y;
      v[i] = vi;
      w[i] += vi * dt;
    }
  } else {
    for (int64_t i = 0; i < P; ++i) {
      w_prev[i] = w[i];
      v_prev[i] = v[i];
      w[i] -= g[i] * dt;
    }
  }
}
inline void trial_restore(double* w, double* v, const double* w_prev, const double* v_prev, int64_t P) {
  for (int64_t i = 0; i < P; ++i) {
    w[i] = w_prev[i];
    v[i] = v_prev[i];
  }
}

// The stochastic variant (protocol section 4). With n training points, batch b and step dt the
// effective temperature is
//   T = (dt / b) (1 - (b - 1) / (n - 1))
// so at fixed T the batch follows dt:
//   b = max(b_min, round(n / ((T / dt) (n - 1) + 1)))        (round: to nearest, ties to even)
// b is not capped directly: dt is capped at
//   max_dt = b_max T / (1 - (b_max - 1) / (n - 1)),           where the formula gives b = b_max,
// and no cap (0 here, as StepControl::max_dt) when b_max >= n.
inline int64_t stochastic_batch_size(int64_t n, double T, double dt, int64_t b_min) {
  const double b = double(n) / ((T / dt) * double(n - 1) + 1.0);
  const double r = std::nearbyint(b);  // the default rounding mode: ties to even, as Python's round
  return r > double(b_min) ? int64_t(r) : b_min;
}
inline double stochastic_max_dt(int64_t n, double T, int64_t b_max) {
  if (b_max >= n) return 0.0;  // no cap: every dt gives b <= n <= b_max
  return double(b_max) * T / (1.0 - double(b_max - 1) / double(n - 1));
}
// The effective temperature of a realised pair (dt, b) on n points (the first formula above).
inline double effective_temperature(int64_t n, double dt, int64_t b) {
  return (dt / double(b)) * (1.0 - double(b - 1) / double(n - 1));
}

// Why a run ends as diverged, in every trainer's words: all its trial steps were rejected, or
// one gave a NaN output change (StepControl::Verdict::Diverge).
constexpr const char* kStepUnderflow =
    "the step size underflowed to 0: every trial step changes the outputs too much";
constexpr const char* kNanStep = "a trial step gave a non-finite output change (NaN)";

// Log-spaced checkpoint steps (protocol section 4): t_{k+1} = floor(t_k + 1 + 100 (1 - exp(-0.01 t_k / 100))).
inline int64_t next_checkpoint(int64_t step) {
  return static_cast<int64_t>(std::floor(static_cast<double>(step) + 1.0 +
                                         100.0 * (1.0 - std::exp(-0.01 * static_cast<double>(step) / 100.0))));
}

}  // namespace lf
