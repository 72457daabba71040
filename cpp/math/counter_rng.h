// Counter-based noise generator of Randomized PAU (RPAU), shared by the CPU
// kernels (scalars and at::vec lanes) and the CUDA kernels. Torch-free.
//
// RPAU perturbs every coefficient c_j of every element x_i: c' = c (1 + e),
// e = alpha_j (2 u - 1). u is a pure function of (seed, offset, i, j), so
// backward regenerates exactly the noise forward used and nothing is stored,
// and the CPU and CUDA kernels produce the same u for the same arguments.
//
// Definition (every operation on uint32 with wrap-around; mix = "lowbias32",
// a 32-bit bijective avalanche hash from Wellons' hash-prospector):
//
//   mix(x):  x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16
//   key      k0 = mix(seed_lo ^ mix(seed_hi ^ mix(offset_lo ^ mix(offset_hi ^ 0x5851f42d))))
//            k1 = mix(k0 ^ 0x2545f491)
//            t_q = mix(k1 + q * 0x9e3779b9)        one constant per pair q of coefficients
//   element  s_i = mix((i_lo ^ k0) + mix(i_hi ^ k1))  i = logical (row-major) index of x
//   word     w_iq = mix(s_i ^ t_q)                 one word per pair of coefficients
//   level    k_ij = w_iq >> 16 for j = 2q, w_iq & 0xffff for j = 2q + 1
//   uniform  u_ij = (k_ij + 0.5) * 2^-16           in (0, 1), 2^16 levels, mean 1/2
//
// For a fixed key and i_hi, i_lo -> s_i is a bijection, so no two of the first
// 2^32 elements share a stream; t_q are pseudo-random, so two elements never
// share a shifted run of words either (a structure that s + q * const would
// have). The midpoint u makes e exactly symmetric: E[e] = 0. 2^16 levels of e
// in [-alpha, alpha] are a uniform distribution to within a variance factor
// of 1 - 2^-32.
//
// Cost per element of the paper's (5, 4): 1 + 5 mixes (one per element, one
// per pair of coefficients). The first version of this generator took 24 bits
// per coefficient (2 + 10 mixes); halving the mixes matters most on GPUs,
// where RPAU's integer work, not memory, bounds the kernels.
//
// Why not Philox 4x32-10 (cuRAND's and PyTorch's generator): RPAU needs
// m+1+n = 10 uniforms per element for the paper's (5, 4), i.e. 3 Philox calls
// of 10 rounds, each round 2 32x32->64 multiplies that AVX2 only has as
// even/odd lane pairs. Measured on this project's 2-core AMD EPYC (AVX2), one
// thread, 2^24 elements, 10 words each: Philox 4x32-10 733 ms, Philox 4x32-7
// 520 ms, one mix per word 190 ms (5 instructions of 1 cycle + 2 mullo per
// word), against a PAU forward of about 10-15 ms per thread-share.
// Quality: lowbias32 passes the avalanche tests of hash-prospector (bias 0.17);
// the tests check mean, variance, uniformity and correlations across elements
// and coefficients, low bits included. It is a simulation-grade generator,
// not a cryptographic one.
#pragma once

#include <stdint.h>

#include "host_device.h"

namespace pau {
namespace rng {

// Most coefficients an RPAU element can have: m + 1 + n with m, n <= 32.
constexpr int kMaxWords = 66;
// Words per element: one per pair of coefficients.
constexpr int kMaxPairs = (kMaxWords + 1) / 2;
// u = (k + 0.5) * kUnit with k a level of kLevelBits bits.
constexpr int kLevelBits = 16;
constexpr double kUnit = 1.0 / 65536.0;  // 2^-16

// Lane operations on plain uint32 (host and CUDA device). The CPU kernels
// provide the same interface for at::vec lanes, so the formulas are written once.
struct ScalarOps {
  using value = uint32_t;
  static PAU_HOST_DEVICE value broadcast(uint32_t v) { return v; }
  static PAU_HOST_DEVICE value shift_right(value v, int s) { return v >> s; }
  static PAU_HOST_DEVICE value multiply(value v, uint32_t c) { return v * c; }
  static PAU_HOST_DEVICE value bit_xor(value a, value b) { return a ^ b; }
  static PAU_HOST_DEVICE value bit_and(value a, uint32_t mask) { return a & mask; }
  static PAU_HOST_DEVICE value add(value a, value b) { return a + b; }
};

template <class Ops>
PAU_HOST_DEVICE typename Ops::value mix(typename Ops::value x) {
  x = Ops::bit_xor(x, Ops::shift_right(x, 16));
  x = Ops::multiply(x, 0x7feb352du);
  x = Ops::bit_xor(x, Ops::shift_right(x, 15));
  x = Ops::multiply(x, 0x846ca68bu);
  x = Ops::bit_xor(x, Ops::shift_right(x, 16));
  return x;
}

// Per-call constants: derived once from (seed, offset), then passed to kernels.
struct Stream {
  uint32_t k0;
  uint32_t k1;
  int words;                // m + 1 + n coefficients
  uint32_t high0;           // mix(0 ^ k1): the i_hi term of every index below 2^32
  uint32_t t[kMaxPairs];    // t_q
};

PAU_HOST_DEVICE Stream make_stream(uint64_t seed, uint64_t offset, int words) {
  using S = ScalarOps;
  Stream s{};
  const uint32_t inner = mix<S>(static_cast<uint32_t>(offset >> 32) ^ 0x5851f42du);
  const uint32_t offset_mix = mix<S>(static_cast<uint32_t>(offset) ^ inner);
  const uint32_t seed_mix = mix<S>(static_cast<uint32_t>(seed >> 32) ^ offset_mix);
  s.k0 = mix<S>(static_cast<uint32_t>(seed) ^ seed_mix);
  s.k1 = mix<S>(s.k0 ^ 0x2545f491u);
  s.high0 = mix<S>(s.k1);
  s.words = words;
  for (int q = 0; 2 * q < words && q < kMaxPairs; ++q) {
    s.t[q] = mix<S>(s.k1 + uint32_t(q) * 0x9e3779b9u);
  }
  return s;
}

// s_i for lanes holding the low words of element indices that share i_hi.
template <class Ops>
PAU_HOST_DEVICE typename Ops::value element_state(const Stream& s, typename Ops::value index_lo,
                                                  uint32_t index_hi) {
  // The CUDA kernels call this per element: no second mix for the indices
  // (below 2^32) that tensors have in practice.
  const uint32_t high = index_hi == 0 ? s.high0 : mix<ScalarOps>(index_hi ^ s.k1);
  return mix<Ops>(Ops::add(Ops::bit_xor(index_lo, Ops::broadcast(s.k0)), Ops::broadcast(high)));
}

// w_iq, the word of the pair of coefficients (2q, 2q + 1).
template <class Ops>
PAU_HOST_DEVICE typename Ops::value pair_word(const Stream& s, typename Ops::value state, int q) {
  return mix<Ops>(Ops::bit_xor(state, Ops::broadcast(s.t[q])));
}

// k_ij from w_iq (q = j / 2): an integer in [0, 2^16), exact in float.
template <class Ops>
PAU_HOST_DEVICE typename Ops::value level(typename Ops::value word, int j) {
  return (j & 1) == 0 ? Ops::shift_right(word, kLevelBits)
                      : Ops::bit_and(word, (1u << kLevelBits) - 1u);
}

// u_ij for one element (reference and debugging; the kernels fold the affine
// map into the coefficients).
PAU_HOST_DEVICE double uniform(const Stream& s, uint64_t index, int j) {
  const uint32_t state = element_state<ScalarOps>(s, static_cast<uint32_t>(index),
                                                  static_cast<uint32_t>(index >> 32));
  const uint32_t word = pair_word<ScalarOps>(s, state, j / 2);
  return (double(level<ScalarOps>(word, j)) + 0.5) * kUnit;
}

// The noise half-widths the operators accept: 0 <= alpha < 1 (NaN is not).
// The CPU backend raises for any other; the CUDA kernels, which never read
// alpha on the host, make the group's factors NaN instead.
PAU_HOST_DEVICE bool alpha_usable(double alpha) { return alpha >= 0.0 && alpha < 1.0; }

// The factor 1 + e = 1 + alpha (2u - 1) is affine in the level k:
//   1 + e = base + scale * k,  base = 1 - alpha + alpha 2^-16,  scale = 2 alpha 2^-16.
// alpha = 0 gives base = 1, scale = 0: the factor is exactly 1.
PAU_HOST_DEVICE double factor_base(double alpha) { return 1.0 - alpha + alpha * kUnit; }
PAU_HOST_DEVICE double factor_scale(double alpha) { return 2.0 * alpha * kUnit; }

}  // namespace rng
}  // namespace pau
