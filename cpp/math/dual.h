// Dual numbers over any element-operation interface (math::ScalarOps, the
// CPU kernels' VecOps): a value and its directional derivative. Running
// pau_math.h's backward on them gives, in the tangent, the Hessian of F times
// a direction: the fused double backward (pau_double_backward.h) is
// forward-mode differentiation of the first-order formulas, so it inherits
// their overflow handling and needs no second set of formulas to keep in step.
//
// Derivatives follow torch's conventions where a function has a kink:
// d|v| = sign(v) dv with sign(0) = 0, d sign(v) = 0; select picks value and
// tangent of the same branch, so a branch's inf or NaN never leaks into the
// other's tangent.
#pragma once

#include <cstddef>

#include "host_device.h"

namespace pau {
namespace math {

template <class V>
struct Dual {
  V v;  // value
  V t;  // tangent
};

// Uninitialised storage for N values of a trivially copyable type whose
// default constructor does work (at::vec::Vectorized zero-fills): dual arrays
// are written before they are read.
template <class T, int N>
struct RawArray {
  alignas(64) unsigned char bytes[N * sizeof(T)];
  PAU_HOST_DEVICE T* data() { return reinterpret_cast<T*>(bytes); }
  PAU_HOST_DEVICE const T* data() const { return reinterpret_cast<const T*>(bytes); }
  PAU_HOST_DEVICE T& operator[](std::ptrdiff_t i) { return data()[i]; }
  PAU_HOST_DEVICE operator T*() { return data(); }
};

template <class V>
PAU_HOST_DEVICE Dual<V> operator+(const Dual<V>& a, const Dual<V>& b) {
  return {a.v + b.v, a.t + b.t};
}

template <class V>
PAU_HOST_DEVICE Dual<V> operator-(const Dual<V>& a, const Dual<V>& b) {
  return {a.v - b.v, a.t - b.t};
}

template <class V>
PAU_HOST_DEVICE Dual<V> operator-(const Dual<V>& a) {
  return {-a.v, -a.t};
}

template <class V>
PAU_HOST_DEVICE Dual<V> operator*(const Dual<V>& a, const Dual<V>& b) {
  return {a.v * b.v, a.v * b.t + a.t * b.v};
}

// d(a/b) = (da - (a/b) db) / b: one division for the value, one for the
// tangent, no b^2 (which would overflow or underflow first).
template <class V>
PAU_HOST_DEVICE Dual<V> operator/(const Dual<V>& a, const Dual<V>& b) {
  const V q = a.v / b.v;
  return {q, (a.t - q * b.t) / b.v};
}

template <class Ops>
struct DualOps {
  using base = typename Ops::value;
  using value = Dual<base>;
  using mask = typename Ops::mask;
  template <int N>
  using Array = RawArray<value, N>;

  // A constant: zero tangent.
  template <class S>
  static PAU_HOST_DEVICE value broadcast(S v) {
    return {Ops::broadcast(v), Ops::broadcast(0)};
  }
  static PAU_HOST_DEVICE value abs(const value& a) {
    return {Ops::abs(a.v), Ops::sign(a.v) * a.t};
  }
  static PAU_HOST_DEVICE value sign(const value& a) {
    return {Ops::sign(a.v), Ops::broadcast(0)};
  }
  static PAU_HOST_DEVICE mask abs_greater_than_one(const value& a) {
    return Ops::abs_greater_than_one(a.v);
  }
  static PAU_HOST_DEVICE mask is_nan(const value& a) { return Ops::is_nan(a.v); }
  static PAU_HOST_DEVICE mask is_finite(const value& a) { return Ops::is_finite(a.v); }
  static PAU_HOST_DEVICE value select(const mask& m, const value& if_true,
                                      const value& if_false) {
    return {Ops::select(m, if_true.v, if_false.v), Ops::select(m, if_true.t, if_false.t)};
  }
  static PAU_HOST_DEVICE value fma(const value& a, const value& b, const value& c) {
    return {Ops::fma(a.v, b.v, c.v), Ops::fma(a.v, b.t, Ops::fma(a.t, b.v, c.t))};
  }
};

}  // namespace math
}  // namespace pau
