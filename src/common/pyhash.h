// Python's hash of a float (CPython's numeric hashing, unsalted and documented), needed to
// replay the published runs: the authors' code seeded the initial weights with
// init_seed + hash(alpha) (protocol section 8).
// Deliberately not: hashes of other Python types, NaN (whose hash depends on the object).
#pragma once
#include <cstdint>

namespace lf {

// hash(x) for a finite double, as CPython computes it on 64-bit platforms: the value of x as
// an exact fraction reduced modulo the prime P = 2^61 - 1 (an integral x below P is itself),
// with the sign of x; -1 becomes -2. hash(inf) = 314159, hash(-inf) = -314159.
// Examples: hash(125.0) = 125, hash(0.5) = 2^60, hash(0.00125) = 1155803808368364093.
int64_t python_float_hash(double x);

// The seed of the published code's weights, init_seed + hash(alpha), as the unsigned 64-bit
// number torch.manual_seed receives (a sum outside [0, 2^64) wraps).
uint64_t published_init_seed(uint64_t init_seed, double alpha);

}  // namespace lf
