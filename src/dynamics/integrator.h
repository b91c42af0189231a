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
// What both error-controlled rules read of a trial's outputs on n points (f_old -> f_new over dt
// from time t; f0: the outputs at w0, nullptr: 0; y: +-1): df = alpha max|f_new - f_old| (NaN as
// soon as one difference is not a number), fmax = alpha max|f_new - f0|, and the kink part e_k
// (above): crossed, e_k, the momentum share of the worst crossing (land) and theta, the fraction
// of the trial at which the first crossing point is tol/4 past the kink (m linear in the trial).
struct KinkScan {
  double df = 0, fmax = 0, ek = 0, theta = 1.0, land = 0;
  bool crossed = false;
  // The factor on dt of a trial rejected for its kink part: land just past the first kink when
  // most of the wrong gradient reached the velocity (e_k ~ dt), else the square-root rule (e_k ~ dt^2).
  double kink_factor(double tol) const { return land > 0.5 ? theta : 0.9 * std::sqrt(tol / ek); }
};
inline KinkScan scan_outputs(const double* f_old, const double* f_new, const double* f0, const double* y, int64_t n,
                             double alpha, const Momentum& m, double t, double dt, double tol) {
  KinkScan k;
  for (int64_t i = 0; i < n; ++i) {
    const double ad = std::fabs(f_new[i] - f_old[i]);
    if (!(ad <= k.df)) k.df = (ad > k.df) ? ad : std::numeric_limits<double>::quiet_NaN();
    if (std::isnan(k.df)) break;
    const double b = f0 ? f0[i] : 0.0;
    const double m_old = alpha * (f_old[i] - b) * y[i], m_new = alpha * (f_new[i] - b) * y[i];
    k.fmax = std::max(k.fmax, std::fabs(m_new));
    if ((m_old < 1.0) != (m_new < 1.0) && m_new != m_old) {  // crossed the kink m = 1
      k.crossed = true;
      const double c = std::fabs(1.0 - m_old) / std::fabs(m_new - m_old);  // crossing fraction
      const double share = m.enabled() ? 1.0 - m.decay(t + c * dt, (1.0 - c) * dt) : 1.0;
      const double e = std::fabs(m_new - 1.0) * share;
      if (e > k.ek) k.ek = e, k.land = share;
      k.theta = std::min(k.theta, (std::fabs(1.0 - m_old) + 0.25 * tol) / std::fabs(m_new - m_old));
    }
  }
  k.df *= std::fabs(alpha);
  return k;
}

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
    const double r = (f_prev && dt_prev > 0) ? dt / dt_prev : 1.0;
    const KinkScan k = scan_outputs(f_old, f_new, f0, y, n, alpha, m, t, dt, tol);
    const double df = k.df, ek = k.ek;
    double es = 0;  // the smooth part: max |Delta - r Delta_prev| (|Delta| without a previous step)
    for (int64_t i = 0; i < n && !std::isnan(df); ++i) {
      const double d = f_new[i] - f_old[i];
      es = std::max(es, f_prev ? std::fabs(d - r * (f_old[i] - f_prev[i])) : std::fabs(d));
    }
    es *= 0.5 * r * std::fabs(alpha);
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
      if (ek > tol) f = std::min(f, k.kink_factor(tol));
      dt *= std::clamp(f, 1e-3, 0.9);
      return StepControl::Verdict::Reject;
    }
    dt *= std::min(std::clamp(fs, 0.2, 5.0), fc);
    if (max_dt > 0 && dt > max_dt) dt = max_dt;
    return StepControl::Verdict::Accept;
  }
};

// ------------------------------------------------------------------------------------------------
// The eab2 integrator (protocol section 4 "Integrator eab2"; a lazyfeat addition): the same ODE
//   dw/dt = v,   tau(t) dv/dt = -(v + g(t))
// integrated exactly over a step [t, t + h] for a gradient that is linear in time,
//   g(s) = g_n + g1 (s - t),   g1 = (g_n - g_{n-1}) / h_prev    (exponential Adams-Bashforth 2)
// or constant (g1 = 0: exponential Euler) after a step whose hinge set changed (a kink: the
// difference g_n - g_{n-1} is a jump, not a slope) or without a previous gradient. The step is
//   v' = c.vv v + c.vg g_n + c.vp g_{n-1}
//   w' = w + c.wv v + c.wg g_n + c.wp g_{n-1}                    (v: the velocity before the step)
// with scalars (per step, the same for every parameter) from the closed forms below: exact for a
// gradient linear in time, so exact between the kinks of a frozen kernel under the hinge (a
// constant gradient), where the paper's step (w <- w + dt v_new) is first order.
//   tau > 0 constant, z = h / tau, psi_j(z) = sum_k (-z)^k / (k + j)!  (psi_1 = (1 - e^-z) / z):
//     v' = e^-z v - z psi_1 g_n - h z psi_2 g1
//     w' = w + h psi_1 v - h z psi_2 g_n - h^2 z psi_3 g1
//   tau = t / mu (the paper's), q = h / t, x = (1 + q)^-mu, X1 = t (1 - (1 + q)^(1 - mu)) / (mu - 1)
//   (= t log(1 + q) for mu = 1; the integral of x over the step):
//     v' = x v - (1 - x) g_n - (mu h - t (1 - x)) / (mu + 1) g1
//     w' = w + X1 v - (h - X1) g_n - (mu h^2 / 2 - t (h - X1)) / (mu + 1) g1     (t = 0: x = X1 = 0)
//   tau = 0 (gradient flow): v' = v, w' = w - h g_n - h^2 / 2 g1.
// Computed in long double (the g1 terms cancel to O(h^3) when mu h << t).
struct ExpStep {
  double vv = 1, vg = 0, vp = 0, wv = 0, wg = 0, wp = 0;
  double r = 0;  // h / h_prev when g1 is used (the extrapolated gradient at the step's end is g_n + r (g_n - g_{n-1}))
};

namespace detail {
inline long double psi(int j, long double z) {  // sum_k (-z)^k / (k + j)!, z >= 0
  if (z < 1.0L) {
    long double fact = 1.0L;
    for (int i = 2; i <= j; ++i) fact *= i;
    long double term = 1.0L / fact, sum = term;
    for (int k = 1; k < 40 && std::fabs(term) > 1e-22L * std::fabs(sum); ++k) {
      term *= -z / (long double)(k + j);
      sum += term;
    }
    return sum;
  }
  const long double e = std::exp(-z);
  if (j == 1) return (1.0L - e) / z;
  if (j == 2) return (z - 1.0L + e) / (z * z);
  return (z * z / 2.0L - z + 1.0L - e) / (z * z * z);
}
}  // namespace detail

// The coefficients of a step of length h from time t; h_prev > 0: with the slope g1 = (g_n -
// g_{n-1}) / h_prev, else g1 = 0.
inline ExpStep exp_step(const Momentum& m, double t, double h, double h_prev) {
  using LD = long double;
  const LD H = h;
  LD vv, vg, v1, wv, wg, w1;  // coefficients of v, g_n and g1
  if (m.tau > 0) {
    const LD z = H / LD(m.tau);
    const LD p1 = detail::psi(1, z), p2 = detail::psi(2, z), p3 = detail::psi(3, z);
    vv = std::exp(-z), vg = -z * p1, v1 = -H * z * p2;
    wv = H * p1, wg = -H * z * p2, w1 = -H * H * z * p3;
  } else if (m.tau < 0) {
    const LD mu = -LD(m.tau), a = t;
    if (a <= 0) {
      vv = 0, vg = -1, v1 = -mu * H / (mu + 1);
      wv = 0, wg = -H, w1 = -mu * H * H / (2 * (mu + 1));
    } else {
      const LD L = std::log1p(H / a);
      const LD x = std::exp(-mu * L), omx = -std::expm1(-mu * L);
      const LD X1 = std::fabs(mu - 1) < 1e-12L ? a * L : a * (-std::expm1(-(mu - 1) * L)) / (mu - 1);
      vv = x, vg = -omx, v1 = -(mu * H - a * omx) / (mu + 1);
      wv = X1, wg = -(H - X1), w1 = -(mu * H * H / 2 - a * (H - X1)) / (mu + 1);
    }
  } else {
    vv = 1, vg = 0, v1 = 0;
    wv = 0, wg = -H, w1 = -H * H / 2;
  }
  ExpStep c;
  c.vv = double(vv), c.wv = double(wv);
  if (h_prev > 0) {  // g1 = (g_n - g_{n-1}) / h_prev
    const LD s = 1.0L / LD(h_prev);
    c.vg = double(vg + v1 * s), c.vp = double(-v1 * s);
    c.wg = double(wg + w1 * s), c.wp = double(-w1 * s);
    c.r = h / h_prev;
  } else {
    c.vg = double(vg), c.wg = double(wg);
  }
  return c;
}

// The step on raw arrays of P values (w, v, g = g_n, gp = g_{n-1}; gp may be null when c.r == 0),
// keeping w, v for a rejection (trial_restore) and the extrapolated gradient at the step's end,
// gx = g + r (g - gp), for the error estimate after the next gradient (Eab2Control::next_dt_cap).
inline void exp_trial_step(const ExpStep& c, double* w, double* v, const double* g, const double* gp, int64_t P,
                           double* w_prev, double* v_prev, double* gx) {
  for (int64_t i = 0; i < P; ++i) {
    w_prev[i] = w[i];
    v_prev[i] = v[i];
    const double gi = g[i], pi = c.r > 0 ? gp[i] : 0.0, vi = v[i];
    v[i] = c.vv * vi + c.vg * gi + c.vp * pi;
    w[i] += c.wv * vi + c.wg * gi + c.wp * pi;
    gx[i] = c.r > 0 ? gi + c.r * (gi - pi) : gi;
  }
}

// The eab2 rule. A trial is judged on its outputs before the gradient at its end exists:
//   df NaN                     diverge;   df == 0: accept, dt *= 10 (the paper's start from dt0)
//   df >= 0.1 or e_k > tol     reject (e_k and the landing fraction as lte's kink part), dt *= clamp(
//                              min(0.9 cap/df, f_k), 1e-3, 0.9)
//   else                       accept, dt *= min(5, 0.9 cap/df)
// Then, after the gradient g_{n+1} at the accepted point, the smooth error of the step just taken
// is estimated from how far the gradient left its extrapolation gx:
//   rho = |g_{n+1} - gx| / |g_n|       (2-norms over the parameters)
//   e_s = df rho c_p,   c_2 = (h/3 + h_prev/2) / (h + h_prev) (AB2: the defect grows as s (s + h_prev)),
//                       c_1 = 1/2 (constant gradient: the defect grows as s)
// (the output change df ~ |J g| h and the error ~ |J defect| h c_p), and the next dt is capped at
// h clamp(0.9 (tol_r / e_s)^(1/(p+1)), 0.2, 5) with tol_r = tol min(1, alpha max|f - f0|): relative
// while the outputs are small (the feature regime's start, where an absolute error would be a
// large relative one and grow with the outputs), absolute from margins of order 1 on. After a
// step across a kink the defect holds the kink's jump: the estimate is then conservative. Order 2
// between kinks; at the kinks, first order (see protocol section 4 on the hinge's chatter).
struct Eab2Control {
  double tol = 1e-3;
  double max_dt = 0.0;
  static constexpr double kCap = 0.1;

  // lte's verdict without its smooth part. crossed, fmax (out): the trial's (KinkScan).
  StepControl::Verdict judge(double& dt, const double* f_old, const double* f_new, const double* f0,
                             const double* y, int64_t n, double alpha, const Momentum& m, double t,
                             double* df_out, bool* crossed, double* fmax_out = nullptr) const {
    const KinkScan k = scan_outputs(f_old, f_new, f0, y, n, alpha, m, t, dt, tol);
    const double df = k.df, ek = k.ek;
    if (df_out) *df_out = df;
    if (crossed) *crossed = k.crossed;
    if (fmax_out) *fmax_out = k.fmax;
    if (std::isnan(df)) return StepControl::Verdict::Diverge;
    if (df == 0.0) {
      dt *= 10.0;
      if (max_dt > 0 && dt > max_dt) dt = max_dt;
      return StepControl::Verdict::Accept;
    }
    const double fc = 0.9 * kCap / df;
    if (ek > tol || !(df < kCap)) {
      double f = fc;
      if (ek > tol) f = std::min(f, k.kink_factor(tol));
      dt *= std::clamp(f, 1e-3, 0.9);
      return StepControl::Verdict::Reject;
    }
    dt *= std::min(5.0, fc);
    if (max_dt > 0 && dt > max_dt) dt = max_dt;
    return StepControl::Verdict::Accept;
  }
  // After the gradient at the end of an accepted step of length h (h_prev > 0: it used g1) that
  // changed the outputs by df, with rho = |g_{n+1} - gx| / |g_n|: the cap on the next dt.
  double next_dt_cap(double h, double h_prev, double df, double rho, double fmax = 1.0) const {
    const double tol = this->tol * std::min(1.0, fmax);  // relative while the outputs are below 1
    const double cp = h_prev > 0 ? (h / 3 + h_prev / 2) / (h + h_prev) : 0.5;
    const double es = df * rho * cp;
    if (df == 0.0) return std::numeric_limits<double>::infinity();  // the start from dt0 (judge: dt *= 10)
    if (!(es > 0)) return 5.0 * h;
    const double p = h_prev > 0 ? 2.0 : 1.0;
    return h * std::clamp(0.9 * std::pow(tol / es, 1.0 / (p + 1.0)), 0.2, 5.0);
  }
};

// The --integrator names.
inline bool is_integrator(const std::string& name) { return name == "paper" || name == "lte" || name == "eab2"; }

}  // namespace lf
