// Per-element math of the Padé Activation Unit, shared by the CPU kernels
// (scalar and at::vec::Vectorized lanes) and the CUDA kernels. Torch-free so
// that nvcc can compile it without torch headers.
//
// F(x) = P(x) / Q(x), P(x) = sum_j a_j x^j (j = 0..m), A(x) = sum_k b_k x^k
// (k = 1..n) and Q = 1 + |A| (safe), 1 + sum_k |b_k x^k| (abs_sum), 1 + A (plain).
//
// Overflow: x^j overflows long before F does (x = 1e30 in float, x = 6e4 in
// half once promoted is fine, but x^5 for x = 1e8 is not). Every quantity is
// therefore expressed in the scaled powers
//
//     E_j = x^j / M^s,   M = max(1, |x|),   s = the scaling degree,
//
// which stay bounded for j <= s: for |x| <= 1 they are plain powers, for
// |x| > 1 they are sgn(x)^s * w^(s-j) with w = 1/x, and x^(j-s) above s.
// With D = Q / M^s = E_0 + g(sum_k b_k E_k) every formula keeps its shape:
//
//     F       = sum_j a_j E_j / D
//     dF/da_j = E_j / D
//     dF/db_k = -F / D * c_k      c_k = sign(A) E_k | sign(b_k) |E_k| | E_k
//     dF/dx   = (sum_j j a_j E_{j-1} - F * sum_k k d_k) / D
//                                 d_k = sign(A) b_k E_{k-1} | sgn(x) |b_k| |E_{k-1}| | b_k E_{k-1}
//
// The scaling degree is the effective denominator degree (highest non-zero
// b_k): scaling by a degree whose coefficient is zero would underflow both the
// numerator and D (e.g. b = 0 makes PAU a polynomial, and x^-n vanishes).
// Likewise sums run to the effective degrees so that 0 * inf never occurs.
//
// Plain powers: with M = 1 the same formulas hold with E_j = x^j and D = Q.
// That costs no reciprocal and no selects, and is exact arithmetic-for-
// arithmetic for |x| <= 1 (there the scaled powers are the plain ones). For
// |x| > 1 it is safe only while nothing overflows: plain_powers_limit gives
// a bound on |x| below which no intermediate of forward or backward can, for
// the given coefficients. The CPU kernels use plain powers for every block of
// elements whose largest |x| is within that bound, scaled powers otherwise.
#pragma once

#include <cmath>

#include "host_device.h"

namespace pau {
namespace math {

enum class Variant : int { safe = 0, abs_sum = 1, plain = 2 };

// Degrees above this are rejected by the operator checks. Arrays of this many
// terms live on the stack (CPU) or in registers/local memory (CUDA).
constexpr int kMaxDegree = 32;
constexpr int kMaxTerms = kMaxDegree + 1;

// Highest index j in [first, count) with c[j * stride] != 0, or first - 1 if
// none. NaN counts as non-zero so that it propagates.
template <class C>
PAU_HOST_DEVICE int effective_degree(const C* c, int count, int first, int stride = 1) {
  for (int j = count - 1; j >= first; --j) {
    if (!(c[j * stride] == C(0))) return j;
  }
  return first - 1;
}

// Degrees known at run time. Every function below also accepts FixedDegrees,
// whose compile-time constants let the compiler unroll the loops and keep the
// term arrays in registers.
struct Degrees {
  // Size of the per-element term arrays. Vectorized<T>'s default constructor
  // zero-fills, so arrays sized by kMaxTerms cost 33 vector stores per element
  // unless the compiler proves them dead; FixedDegrees sizes them exactly.
  static constexpr int max_terms = kMaxTerms;
  int m;      // numerator degree (a_0..a_m)
  int n;      // denominator degree (b_1..b_n)
  int m_eff;  // highest non-zero a_j (0 if all are zero)
  int n_eff;  // highest non-zero b_k (0 if all are zero): the scaling degree
  // The degree s of the scaled powers. A function, not n_eff itself, for the
  // double backward's degrees (pau_double_backward.h), whose sums run further.
  PAU_HOST_DEVICE int scaling() const { return n_eff; }
};

// Degrees (M, N) with all leading coefficients non-zero.
template <int M, int N>
struct FixedDegrees {
  static constexpr int max_terms = (M > N ? M : N) + 1;
  static constexpr int m = M;
  static constexpr int n = N;
  static constexpr int m_eff = M;
  static constexpr int n_eff = N;
  static constexpr PAU_HOST_DEVICE int scaling() { return N; }
};

// e[j] = E_j for j = 0..count-1 (see the header comment), scaling degree s;
// count and s + 1 are at most kTerms.
template <class Ops, int kTerms = kMaxTerms>
PAU_HOST_DEVICE void scaled_powers(typename Ops::value x, int s, int count,
                                   typename Ops::value* e) {
  using V = typename Ops::value;
  const V one = Ops::broadcast(1);
  const auto large = Ops::abs_greater_than_one(x);
  // |w| <= 1 in every lane; 1/x of the small lanes (inf at 0) is discarded.
  const V w = Ops::select(large, one / x, x);
  // sgn(x)^s for the large lanes, computed as a product so NaN propagates.
  V sign_s = one;
  if (s & 1) sign_s = Ops::select(large, Ops::sign(x), one);
  const int top = count - 1 > s ? count - 1 : s;
  typename Ops::template Array<kTerms> w_power;
  w_power[0] = one;
  for (int i = 1; i <= top; ++i) w_power[i] = w_power[i - 1] * w;
  V x_power = one;  // x^(j-s) for j > s
  for (int j = 0; j < count; ++j) {
    V scaled;
    if (j <= s) {
      scaled = w_power[s - j];
    } else {
      x_power = x_power * x;
      scaled = x_power;
    }
    V value = Ops::select(large, sign_s * scaled, w_power[j]);
    // With s = 0, E_0 = 1 for every x: a group whose effective degrees are
    // (0, 0) (constant or all-zero) would turn NaN into a_0. E_0 = NaN there
    // makes D, F and every gradient NaN, as for any other degrees.
    if (j == 0 && s == 0) value = Ops::select(Ops::is_nan(x), x, value);
    e[j] = value;
  }
}

// e[j] = x^j for j = 0..count-1: E_j with M = 1 (see the header comment).
template <class Ops>
PAU_HOST_DEVICE void plain_powers(typename Ops::value x, int count, typename Ops::value* e) {
  e[0] = Ops::broadcast(1);
  for (int j = 1; j < count; ++j) e[j] = e[j - 1] * x;
}

// E_j, scaled (always finite) or plain (for |x| <= plain_powers_limit only).
template <class Ops, int kTerms>
PAU_HOST_DEVICE void powers(typename Ops::value x, int s, int count, bool plain,
                            typename Ops::value* e) {
  if (plain) {
    plain_powers<Ops>(x, count, e);
  } else {
    scaled_powers<Ops, kTerms>(x, s, count, e);
  }
}

// A bound L >= 1 such that, for every |x| <= L, forward and backward with plain
// powers form no intermediate beyond largest / 1024 (the compute type's largest
// finite value with room for rounding), or -1 if no such bound exists (huge or
// NaN coefficients). a: m + 1 values, b: n values, as the kernels see them;
// every |coefficient| is taken times `growth` (RPAU perturbs by up to 2x).
//
// With M = max(1, L), alpha = max |a_j|, beta = max |b_k| the intermediates are
// bounded by: P and P' by (m+1)^2 alpha M^m; A and Q' by (n+1)^2 beta M^n;
// P Q', P x^k (k <= n) and x^j (j <= max(m, n)) by
// (m+1)(n+1)^2 max(1, alpha) max(1, beta) M^(m+n). Each bound <= largest / 1024
// gives one root; L is the smallest. Host only: called once per group and call.
template <class C>
inline double plain_powers_limit(const C* a, int m, const C* b, int n, double growth,
                                 double largest) {
  double alpha = 0.0;
  double beta = 0.0;
  for (int j = 0; j <= m; ++j) {
    const double v = std::fabs(double(a[j]));
    if (std::isnan(v)) return -1.0;
    alpha = std::fmax(alpha, v * growth);
  }
  for (int k = 0; k < n; ++k) {
    const double v = std::fabs(double(b[k]));
    if (std::isnan(v)) return -1.0;
    beta = std::fmax(beta, v * growth);
  }
  const double room = largest / 1024.0;
  // The largest M >= 1 with factor * M^degree <= room, or -1 if M = 1 fails.
  auto root = [room](double factor, int degree) {
    if (!(factor <= room)) return -1.0;
    if (degree == 0 || factor == 0.0) return HUGE_VAL;
    return std::fmax(1.0, std::pow(room / factor, 1.0 / degree));
  };
  const double m1 = m + 1.0;
  const double n1 = n + 1.0;
  const double products = m1 * n1 * n1 * std::fmax(1.0, alpha) * std::fmax(1.0, beta);
  return std::fmin(std::fmin(root(m1 * m1 * alpha, m), root(n1 * n1 * beta, n)),
                   root(products, m + n));
}

// Per-element values shared by forward and backward.
template <class V>
struct Evaluation {
  V sum_a;     // sum_j a_j E_j
  V sum_b;     // sum_k b_k E_k (for abs_sum: sum_k |b_k| |E_k|)
  V d;        // D = Q / M^s
};

template <Variant variant, class Ops, class Deg>
PAU_HOST_DEVICE Evaluation<typename Ops::value> evaluate(const typename Ops::value* e,
                                                          const typename Ops::value* a,
                                                          const typename Ops::value* b,
                                                          const Deg& deg) {
  using V = typename Ops::value;
  Evaluation<V> r;
  r.sum_a = Ops::broadcast(0);
  for (int j = deg.m_eff; j >= 0; --j) r.sum_a = Ops::fma(a[j], e[j], r.sum_a);
  r.sum_b = Ops::broadcast(0);
  for (int k = deg.n_eff; k >= 1; --k) {
    if (variant == Variant::abs_sum) {
      r.sum_b = Ops::fma(Ops::abs(b[k - 1]), Ops::abs(e[k]), r.sum_b);
    } else {
      r.sum_b = Ops::fma(b[k - 1], e[k], r.sum_b);
    }
  }
  // E_0 = 1 / M^s > 0.
  r.d = variant == Variant::safe ? e[0] + Ops::abs(r.sum_b) : e[0] + r.sum_b;
  return r;
}

// F(x) for one element or lane vector. a: m+1 values, b: n values. plain:
// plain powers, for |x| <= plain_powers_limit(a, b) only.
template <Variant variant, class Ops, class Deg>
PAU_HOST_DEVICE typename Ops::value forward(typename Ops::value x, const typename Ops::value* a,
                                            const typename Ops::value* b, const Deg& deg,
                                            bool plain = false) {
  using V = typename Ops::value;
  typename Ops::template Array<Deg::max_terms> e;
  const int count = (deg.m_eff > deg.n_eff ? deg.m_eff : deg.n_eff) + 1;
  powers<Ops, Deg::max_terms>(x, deg.scaling(), count, plain, e);
  const Evaluation<V> r = evaluate<variant, Ops, Deg>(e, a, b, deg);
  return r.sum_a / r.d;
}

// Gradients of F at x, scaled by the incoming gradient g. Returns dL/dx and
// adds dL/da_j to grad_a[0..m] and dL/db_k to grad_b[0..n-1].
// RPAU evaluates F with perturbed coefficients c' = c * factor and passes
// factor (m+1 values for a, then n for b) so that the coefficient gradients are
// those of the unperturbed c: dL/dc = dL/dc' * factor. PAU passes nullptr,
// which the compiler folds away. plain: as for forward.
template <Variant variant, class Ops, class Deg>
PAU_HOST_DEVICE typename Ops::value backward(typename Ops::value x, typename Ops::value g,
                                             const typename Ops::value* a,
                                             const typename Ops::value* b, const Deg& deg,
                                             typename Ops::value* grad_a,
                                             typename Ops::value* grad_b,
                                             const typename Ops::value* factor = nullptr,
                                             bool plain = false) {
  using V = typename Ops::value;
  typename Ops::template Array<Deg::max_terms> e;
  const int top = deg.m > deg.n ? deg.m : deg.n;
  powers<Ops, Deg::max_terms>(x, deg.scaling(), top + 1, plain, e);
  const Evaluation<V> r = evaluate<variant, Ops, Deg>(e, a, b, deg);
  const V inv_d = Ops::broadcast(1) / r.d;

  const V g_over_d = g * inv_d;
  for (int j = 0; j <= deg.m; ++j) {
    const V scale = factor ? g_over_d * factor[j] : g_over_d;
    grad_a[j] = Ops::fma(scale, e[j], grad_a[j]);
  }

  // sign(A) = sign(A / M^s) since M^s > 0.
  const V sign_a = Ops::sign(r.sum_b);
  // dF/db_k = -(P/M^s) c_k / D^2, formed as (F c_k) (g / D) with F c_k =
  // ((P/M^s) / D) c_k: (P/M^s) c_k carries M^-2s and underflows (dF/db_1 of
  // 1 / (1 + 1e-30 x^32) at x = 10 in float). Where F itself overflows (|x|
  // near the dtype's max) but F c_k (|c_k| <= 1) does not, ((P/M^s) c_k) / D
  // instead, never inf * 0 = NaN.
  // safe: c_k = sign(A) E_k, with sign(A) folded into P here.
  const V minus_p = variant == Variant::safe ? -(r.sum_a * sign_a) : -r.sum_a;
  const V minus_f = minus_p * inv_d;
  // Plain powers keep F finite (plain_powers_limit): only the scaled ones
  // need the fallback, chosen per lane once: F c_k = (p_factor c_k) d_factor.
  // The plain path never reads the factors, so it does not form them.
  V p_factor = minus_f;
  V d_factor = Ops::broadcast(1);
  if (!plain) {
    const auto f_finite = Ops::is_finite(minus_f);
    p_factor = Ops::select(f_finite, minus_f, minus_p);
    d_factor = Ops::select(f_finite, Ops::broadcast(1), inv_d);
  }
  for (int k = 1; k <= deg.n; ++k) {
    V c;
    if (variant == Variant::abs_sum) {
      c = Ops::sign(b[k - 1]) * Ops::abs(e[k]);
    } else {
      c = e[k];
    }
    const V scale = factor ? g_over_d * factor[deg.m + k] : g_over_d;
    const V f_c = plain ? minus_f * c : (p_factor * c) * d_factor;
    grad_b[k - 1] = Ops::fma(scale, f_c, grad_b[k - 1]);
  }

  V dp = Ops::broadcast(0);  // P'(x) / M^s
  for (int j = deg.m_eff; j >= 1; --j) dp = Ops::fma(a[j] * Ops::broadcast(j), e[j - 1], dp);
  V dq = Ops::broadcast(0);  // Q'(x) / M^s
  for (int k = deg.n_eff; k >= 1; --k) {
    if (variant == Variant::abs_sum) {
      dq = Ops::fma(Ops::abs(b[k - 1]) * Ops::broadcast(k), Ops::abs(e[k - 1]), dq);
    } else {
      dq = Ops::fma(b[k - 1] * Ops::broadcast(k), e[k - 1], dq);
    }
  }
  if (variant == Variant::safe) dq = sign_a * dq;
  if (variant == Variant::abs_sum) dq = Ops::sign(x) * dq;
  // F Q' / M^s as (P / M^s) (Q'/Q): Q'/Q = (Q' / M^s) / D is the true ratio
  // whatever the scaling, whereas (P / M^s)(Q' / M^s) carries M^-2s and
  // underflows (1 / (1 + 1e-30 x^32) at x = 6 in float gave dF/dx = 0) or
  // overflows (1e25 x / (1 + 1e25 |x|) at x = 0.5 gave -inf).
  return g_over_d * (dp - r.sum_a * (dq * inv_d));
}

}  // namespace math
}  // namespace pau
