// The double backward of PAU for one element or lane vector: the gradients of
// a loss L that depends on backward's outputs (grad_x = g F_x per element,
// grad_a_j = sum g F_{a_j}, grad_b_k = sum g F_{b_k}) with respect to
// backward's inputs g, x, a and b. With the upstream gradients
// v = (u, alpha, beta) = (dL/dgrad_x, dL/dgrad_a, dL/dgrad_b):
//
//     dL/dg   = F_x u + sum_j F_{a_j} alpha_j + sum_k F_{b_k} beta_k   (grad F . v)
//     dL/dx   = g (H v)_x
//     dL/da_j = sum g (H v)_{a_j},   dL/db_k = sum g (H v)_{b_k}
//
// H is the Hessian of F in (x, a, b). Both grad F and H v come from one run
// of pau_math.h's backward on dual numbers (math/dual.h) seeded with v: its
// values are grad F, its tangents H v. Always in scaled powers: the plain
// ones' overflow bound (plain_powers_limit) covers first-order intermediates,
// not their tangents, which also scale with |u|.
#pragma once

#include "dual.h"
#include "pau_math.h"

namespace pau {
namespace math {

// Degrees for the double backward. A coefficient that is zero but has a
// non-zero upstream gradient still moves F's derivatives (d F_x / d a_j =
// j E_{j-1} / D for a_j = 0), so the sums run to the highest index whose
// coefficient or direction is non-zero (m_eff, n_eff here), while the powers
// keep the scaling degree of the non-zero b_k (scaling), which stays safe
// (pau_math.h). Where a zero coefficient's power E_j, j > scaling, overflows
// (|x|^(j - scaling) beyond the dtype's range), that term is NaN: the true
// second derivative is of that size too.
struct ExtendedDegrees {
  static constexpr int max_terms = kMaxTerms;
  int m;
  int n;
  int m_eff;
  int n_eff;
  int scaling_degree;
  PAU_HOST_DEVICE int scaling() const { return scaling_degree; }
};

// The ExtendedDegrees of coefficients a (m + 1), b (n) moved along alpha, beta.
template <class C>
PAU_HOST_DEVICE ExtendedDegrees extended_degrees(const C* a, const C* b, const C* alpha,
                                                 const C* beta, int m, int n) {
  ExtendedDegrees d{};
  d.m = m;
  d.n = n;
  const int a_eff = effective_degree(a, m + 1, 0);
  const int alpha_eff = effective_degree(alpha, m + 1, 0);
  d.m_eff = a_eff > alpha_eff ? a_eff : alpha_eff;
  if (d.m_eff < 0) d.m_eff = 0;
  // b[k-1] holds b_k: an effective index i means degree i + 1.
  d.scaling_degree = effective_degree(b, n, 0) + 1;
  const int beta_eff = effective_degree(beta, n, 0) + 1;
  d.n_eff = d.scaling_degree > beta_eff ? d.scaling_degree : beta_eff;
  return d;
}

// Returns dL/dx; writes dL/dg to *grad_g and adds dL/da_j to grad_a[0..m],
// dL/db_k to grad_b[0..n-1]. alpha: m + 1 values, beta: n values (the
// upstream gradients of the coefficient gradients, per group).
template <Variant variant, class Ops, class Deg>
PAU_HOST_DEVICE typename Ops::value double_backward(
    typename Ops::value x, typename Ops::value g, typename Ops::value u,
    const typename Ops::value* a, const typename Ops::value* b,
    const typename Ops::value* alpha, const typename Ops::value* beta, const Deg& deg,
    typename Ops::value* grad_a, typename Ops::value* grad_b, typename Ops::value* grad_g) {
  using V = typename Ops::value;
  using D = DualOps<Ops>;
  typename D::template Array<Deg::max_terms> a_dual;
  typename D::template Array<Deg::max_terms> b_dual;
  typename D::template Array<Deg::max_terms> da;  // per element: grad F and H v
  typename D::template Array<Deg::max_terms> db;
  const V zero = Ops::broadcast(0);
  for (int j = 0; j <= deg.m; ++j) {
    a_dual[j] = {a[j], alpha[j]};
    da[j] = {zero, zero};
  }
  for (int k = 0; k < deg.n; ++k) {
    b_dual[k] = {b[k], beta[k]};
    db[k] = {zero, zero};
  }
  const Dual<V> dx = backward<variant, D, Deg>({x, u}, D::broadcast(1), a_dual, b_dual, deg, da,
                                               db, nullptr, false);
  V directional = dx.v * u;
  for (int j = 0; j <= deg.m; ++j) {
    directional = Ops::fma(da[j].v, alpha[j], directional);
    grad_a[j] = Ops::fma(g, da[j].t, grad_a[j]);
  }
  for (int k = 0; k < deg.n; ++k) {
    directional = Ops::fma(db[k].v, beta[k], directional);
    grad_b[k] = Ops::fma(g, db[k].t, grad_b[k]);
  }
  *grad_g = directional;
  return g * dx.t;
}

}  // namespace math
}  // namespace pau
