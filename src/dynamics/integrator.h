// The step-size rules of the full-batch dynamics (protocol section 4), selected by --integrator:
//   paper  the paper's rule (StepControl in dynamics/momentum.h): accept while the output change
//          df = alpha max|f_new - f| is under df_max, grow dt only while df <= df_min. The default.
//   lte    a lazyfeat addition, not the paper's (protocol section 4 "Integrator lte"): the same
//          trial step (momentum.h, exact in v for a fixed gradient, first order in w), the same
//          ODE, loss and stop rule, but dt is chosen by an estimate of the step's local error on
//          the outputs F = alpha (f - f0) against a tolerance tol, and steps that would carry a
//          point across the hinge's kink (margin F y = 1) by more than tol are retried so that they
//          end just past the kink. Where the trajectory is smooth (in the lazy regime: straight
//          between kinks) the steps grow far beyond the paper's df <= 1e-2.
// Both rules judge a trial from the outputs before (f_old) and after (f_new) it, so they take no
// gradient beyond the one per accepted step: a rejected trial costs one forward.
// Deliberately not here: tensors, the trial step itself (momentum.h), the stochastic dynamics (its
// batch is redrawn every step, so its outputs have no smooth trajectory to extrapolate: lte
// refuses temperature > 0).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "dynamics/momentum.h"

namespace lf {

// The lte rule. Its error estimate for a trial of length dt from t_n, with Delta = f_new - f_old
// and Delta_prev = f_old - f_prev the output change of the previous accepted step (length
// dt_prev, r = dt / dt_prev):
//   smooth part   e_s = (r / 2) alpha max_mu |Delta_mu - r Delta_prev_mu|
// For a trajectory whose velocity changes at a constant rate a, Delta - r Delta_prev = a dt dt_prev
// (the velocity each step uses is the one at its start), and the first-order step's local error is
// a dt^2 / 2 = (r / 2) |Delta - r Delta_prev|: e_s is that error, measured on the outputs. Without a
// previous step (the first one, or after df == 0 steps) e_s falls back to r/2 alpha max|Delta|.
//   kink part     e_k = max over points that cross the margin m = alpha (f - f0) y = 1 within the
//                 trial of |m_new - 1| (1 - x_c): how far past the kink the step carried them while
//                 their hinge derivative was held at its value at the step's start, times the share
//                 of that wrong gradient that reached the velocity, x_c = Momentum::decay(t_c, t + dt
//                 - t_c) from the crossing time t_c = t + theta dt (m linear in the step). Under
//                 gradient flow x_c = 0 and e_k bounds the crossing's error; with momentum (tau = t/mu
//                 with dt << t/mu late in a run) the velocity, and so dm/dt, is continuous across the
//                 kink and the wrong gradient moved it by only (1 - x_c): the error is second order.
// Verdict, with err = max(e_s, e_k) and df = alpha max|Delta|:
//   df NaN                        diverge (as the paper's rule)
//   df == 0                       accept, dt *= 10 (as the paper's rule: the start from dt0)
//   err > tol or df >= 0.1        reject, dt *= clamp(min(0.9 sqrt(tol / e_s), f_k, 0.9 cap/df), 1e-3, 0.9)
//                                 f_k (when e_k > tol) = theta*, the fraction of the trial at which the
//                                 first crossing point is tol/4 past the kink, where 1 - x_c > 1/2
//                                 (e_k ~ dt: land just past the kink); else 0.9 sqrt(tol / e_k)
//                                 (e_k ~ dt^2)
//   else                          accept, dt *= clamp(0.9 sqrt(tol / e_s), 0.2, 5) (and <= 0.9 cap/df)
// e_s scales as dt^2 (hence the square root), e_k and df as dt. dt is capped at max_dt (> 0).
// Order: first (the trial step is the paper's); with the error per step held at tol the global
// error falls as tol^(1/2) on a smooth trajectory, and as tol between kinks of a piecewise linear
// one (a frozen kernel under gradient flow, where the steps are exact away from the kinks).
struct LteControl {
  double tol = 1e-3;
  double max_dt = 0.0;  // 0 = no cap
  static constexpr double kCap = 0.1;  // df cap: ten times the paper's df_max

  double cap() const { return kCap; }

  // Judges the trial (dt) from f_old to f_new on n points; f_prev: the outputs before the previous
  // accepted step (length dt_prev > 0), or nullptr; f0: the outputs at w0 (nullptr: 0); y: +-1.
  // Updates dt for the next trial (accepted or not). err (out): the error estimate.
  // The trial starts at time t; m: the dynamics' momentum (for the kink part, see above).
  StepControl::Verdict judge(double& dt, double dt_prev, const double* f_old, const double* f_new,
                             const double* f_prev, const double* f0, const double* y, int64_t n, double alpha,
                             const Momentum& m, double t, double* df_out = nullptr,
                             double* err_out = nullptr) const {
    const double a = std::fabs(alpha);
    const double r = (f_prev && dt_prev > 0) ? dt / dt_prev : 1.0;
    double df = 0, es = 0, ek = 0, theta = 1.0, land = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double d = f_new[i] - f_old[i];
      const double ad = std::fabs(d);
      if (!(ad <= df)) df = (ad > df) ? ad : std::numeric_limits<double>::quiet_NaN();
      if (std::isnan(df)) break;
      const double dd = f_prev ? std::fabs(d - r * (f_old[i] - f_prev[i])) : ad;
      es = std::max(es, dd);
      const double b = f0 ? f0[i] : 0.0;
      const double m_old = alpha * (f_old[i] - b) * y[i], m_new = alpha * (f_new[i] - b) * y[i];
      if ((m_old < 1.0) != (m_new < 1.0) && m_new != m_old) {  // crossed the kink m = 1
        const double c = std::fabs(1.0 - m_old) / std::fabs(m_new - m_old);  // crossing fraction
        const double share = m.enabled() ? 1.0 - m.decay(t + c * dt, (1.0 - c) * dt) : 1.0;
        const double e = std::fabs(m_new - 1.0) * share;
        if (e > ek) ek = e, land = share;
        // the fraction of the trial at which the point is tol/4 past the kink (m linear in it)
        const double th = (std::fabs(1.0 - m_old) + 0.25 * tol) / std::fabs(m_new - m_old);
        theta = std::min(theta, th);
      }
    }
    df *= a;
    es *= 0.5 * r * a;
    if (df_out) *df_out = df;
    if (err_out) *err_out = std::max(es, ek);
    if (std::isnan(df) || std::isnan(es)) return StepControl::Verdict::Diverge;
    if (df == 0.0) {
      dt *= 10.0;
      if (max_dt > 0 && dt > max_dt) dt = max_dt;
      return StepControl::Verdict::Accept;
    }
    const double err = std::max(es, ek);
    const double fs = es > 0 ? 0.9 * std::sqrt(tol / es) : 5.0;
    const double fc = 0.9 * cap() / df;
    if (err > tol || !(df < cap())) {
      double f = std::min(fs, fc);
      if (ek > tol) f = std::min(f, land > 0.5 ? theta : 0.9 * std::sqrt(tol / ek));
      dt *= std::clamp(f, 1e-3, 0.9);
      return StepControl::Verdict::Reject;
    }
    dt *= std::min(std::clamp(fs, 0.2, 5.0), fc);
    if (max_dt > 0 && dt > max_dt) dt = max_dt;
    return StepControl::Verdict::Accept;
  }
};

// The --integrator names.
inline bool is_integrator(const std::string& name) { return name == "paper" || name == "lte"; }

}  // namespace lf
