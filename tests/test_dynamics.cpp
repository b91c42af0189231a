// The dynamics rules (dynamics/momentum.h): the momentum step against the closed-form
// solution of tau dv/dt = -(v + g) for constant g, the adaptive step on a scripted df
// sequence, the log-spaced checkpoints.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "dynamics/momentum.h"

using namespace lf;

namespace {
// Integrates v over [t, T] in `steps` equal steps with the trainer's update.
double integrate(const Momentum& m, double v, double g, double t, double T, int steps) {
  double dt = (T - t) / steps;
  for (int k = 0; k < steps; ++k) {
    double x = m.decay(t, dt);
    v = x * v - (1 - x) * g;
    t += dt;
  }
  return v;
}
}  // namespace

// Constant tau: v(t) = -g + (v0 + g) exp(-t / tau), exactly, whatever the steps.
TEST(Momentum, ConstantTauMatchesClosedForm) {
  Momentum m{10.0};
  const double g = 0.7, v0 = -2.0;
  for (int steps : {1, 7, 1000}) {
    double v = integrate(m, v0, g, 0.0, 3.5, steps);
    EXPECT_NEAR(v, -g + (v0 + g) * std::exp(-3.5 / 10.0), 1e-13) << steps;
  }
}

// tau = t / mu: v + g scales as t^-mu, so v(t2) = -g + (v(t1) + g) (t1 / t2)^mu, and many
// small steps equal one big step.
TEST(Momentum, TOverMuMatchesClosedFormAndComposes) {
  for (double mu : {1.0, 3.0, 1000.0}) {
    Momentum m{-mu};
    const double g = -0.3, v1 = 1.5, t1 = 2.0, t2 = 2.01;
    double exact = -g + (v1 + g) * std::pow(t1 / t2, mu);
    double one = integrate(m, v1, g, t1, t2, 1);
    double many = integrate(m, v1, g, t1, t2, 500);
    EXPECT_NEAR(one, exact, 1e-12) << mu;
    EXPECT_NEAR(many, exact, 1e-12) << mu;
  }
  // At t = 0 the factor is 0: the first step sets v = -g (protocol section 4).
  Momentum m{-1000.0};
  EXPECT_EQ(m.decay(0.0, 1e-50), 0.0);
  EXPECT_TRUE(m.enabled());
  EXPECT_FALSE(Momentum{0.0}.enabled());
  EXPECT_EQ(Momentum{0.0}.decay(1.0, 0.1), 0.0);  // gradient flow: v = -g
}

TEST(StepControl, ScriptedDfSequence) {
  StepControl sc;  // df_min 1e-4, df_max 1e-2, dt0 1e-50
  EXPECT_EQ(sc.dt, 1e-50);
  using V = StepControl::Verdict;
  EXPECT_EQ(sc.judge(0.0), V::Accept);  // df == 0: dt *= 10
  EXPECT_DOUBLE_EQ(sc.dt, 1e-49);
  EXPECT_EQ(sc.judge(5e-5), V::Accept);  // small: dt *= 1.1
  EXPECT_DOUBLE_EQ(sc.dt, 1.1e-49);
  EXPECT_EQ(sc.judge(1e-4), V::Accept);  // df == df_min still grows
  EXPECT_DOUBLE_EQ(sc.dt, 1.21e-49);
  EXPECT_EQ(sc.judge(5e-3), V::Accept);  // inside the band: unchanged
  EXPECT_DOUBLE_EQ(sc.dt, 1.21e-49);
  EXPECT_EQ(sc.judge(1e-2), V::Reject);  // df >= df_max: dt /= 10
  EXPECT_DOUBLE_EQ(sc.dt, 1.21e-50);
  EXPECT_EQ(sc.judge(std::numeric_limits<double>::infinity()), V::Reject);  // inf: too large
  EXPECT_DOUBLE_EQ(sc.dt, 1.21e-51);
  EXPECT_EQ(sc.judge(std::numeric_limits<double>::quiet_NaN()), V::Diverge);  // NaN: stop, dt kept
  EXPECT_DOUBLE_EQ(sc.dt, 1.21e-51);
  sc.max_dt = 2e-51;
  EXPECT_EQ(sc.judge(0.0), V::Accept);  // growth capped by max_dt
  EXPECT_DOUBLE_EQ(sc.dt, 2e-51);
}

TEST(Checkpoints, LogSpaced) {
  EXPECT_EQ(next_checkpoint(0), 1);
  EXPECT_EQ(next_checkpoint(1), 2);
  EXPECT_EQ(next_checkpoint(99), 100);    // every step at first
  EXPECT_EQ(next_checkpoint(1000), 1010); // 1000 + 1 + 100 (1 - e^-0.1) = 1010.5
  EXPECT_EQ(next_checkpoint(1000000), 1000101);  // then every ~100 steps
  int64_t s = 0, count = 0;
  while (s < 100000) {
    int64_t n = next_checkpoint(s);
    ASSERT_GT(n, s);
    s = n;
    ++count;
  }
  EXPECT_GT(count, 500);
  EXPECT_LT(count, 3000);
}
