// Python's float hash (see pyhash.h). The fraction m 2^e of x (frexp) is consumed 28 bits at a
// time into a residue modulo P = 2^61 - 1; multiplying by 2^k modulo P is a rotation of the
// 61-bit residue by k, so the exponent is applied as one rotation by e mod 61.
#include "common/pyhash.h"

#include <cmath>

namespace lf {

int64_t python_float_hash(double x) {
  constexpr int kBits = 61;
  constexpr uint64_t kP = (uint64_t(1) << kBits) - 1;  // 2^61 - 1, prime
  if (std::isinf(x)) return x > 0 ? 314159 : -314159;
  int e = 0;
  double m = std::frexp(x, &e);  // x = m 2^e, 0.5 <= |m| < 1
  int sign = 1;
  if (m < 0) {
    sign = -1;
    m = -m;
  }
  uint64_t r = 0;
  while (m != 0) {
    r = ((r << 28) & kP) | (r >> (kBits - 28));  // r 2^28 mod P
    m *= 268435456.0;                             // 2^28: the next 28 bits become the integer part
    e -= 28;
    const uint64_t top = static_cast<uint64_t>(m);
    m -= static_cast<double>(top);
    r += top;
    if (r >= kP) r -= kP;
  }
  // r 2^e mod P: a rotation by e mod 61 (a negative e rotates by 61 - 1 - ((-1 - e) mod 61)).
  const int k = e >= 0 ? e % kBits : kBits - 1 - ((-1 - e) % kBits);
  r = ((r << k) & kP) | (k == 0 ? 0 : (r >> (kBits - k)));
  int64_t h = static_cast<int64_t>(r) * sign;
  if (h == -1) h = -2;
  return h;
}

uint64_t published_init_seed(uint64_t init_seed, double alpha) {
  return init_seed + static_cast<uint64_t>(python_float_hash(alpha));  // modulo 2^64, as intended
}

}  // namespace lf
