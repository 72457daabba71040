// Per-element math of the Piecewise Linear Unit (PWLU, Zhou et al. 2021),
// shared by the CPU kernels (scalars and at::vec::Vectorized lanes) and
// the CUDA kernels. Torch-free so that nvcc can compile it.
//
// One group has N intervals between the bounds B_L < B_R, N+1 points
// Y_0..Y_N and outer slopes K_L, K_R. With d = (B_R - B_L) / N and the
// position u = (x - B_L) / d (computed as (x - B_L) * inv_width,
// inv_width = N / (B_R - B_L) rounded once per group):
//
//   x <  B_L:  F = Y_0 + (x - B_L) K_L
//   x >= B_R:  F = Y_N + (x - B_R) K_R
//   else:      k = clamp(floor(u'), 0, N-1), t = u - k,
//              F = Y_k + t S_k,   S_k = Y_{k+1} - Y_k (precomputed per group)
//
// where u' = (x - B_L) * locate locates the interval (see below).
//
// F is continuous; each breakpoint belongs to the piece on its right, which
// fixes the one-sided derivative used there (B_L: first interval, B_R: right
// outer piece). For the interior breakpoints x_k = B_L + k (B_R - B_L) / N the
// interval comes from u' with `locate`, N / (B_R - B_L) rounded up (never
// below the exact quotient: inverse_width_upper): then (x_k - B_L) * locate
// >= k and floor(u') = k whenever x_k - B_L is exact in T (as it is for x_k
// and B_L of like magnitude, Sterbenz). inv_width, rounded to nearest, can
// be one ulp below the quotient; u then rounds to the float below k and x_k
// took the left interval's slope. t keeps the nearest inv_width, which is
// up to twice as accurate; where u' and u straddle k (x within an ulp of u
// below x_k) t is a rounding error below 0 and F stays continuous.
//
// Gradients (g = dL/dF). Inside, with k fixed, du/dB_L = -inv_width (1 - u/N)
// and du/dB_R = -inv_width u/N, so with dF/dx = S_k inv_width:
//
//   dF/dY_k = 1 - t,  dF/dY_{k+1} = t
//   dF/dB_L = -dF/dx (1 - u/N),  dF/dB_R = -dF/dx u/N
//
// Outside: dF/dx = K, dF/dB = -K, dF/dK = x - B, dF/dY_end = 1 (for the side
// that applies). Writing w = u/N inside, 0 left and 1 right, both cases read
// dF/dB_L = -dF/dx (1 - w) and dF/dB_R = -dF/dx w, and the points get
// g (1 - t) and g t at k and k+1 with (k, t) = (0, 0) left and (N-1, 1) right,
// so every lane does the same scatter.
//
// Infinite x: the outer pieces give +-inf, or the end point when the slope is
// 0 (where (x - B) K would be inf * 0 = NaN). NaN x falls in neither outer
// piece and gives NaN through t.
#pragma once

#include <math.h>

#include <cstdint>

#include "host_device.h"

namespace pau {
namespace pwlu {

// N above this is rejected by the operator checks. Not a limit of the math:
// it bounds the CPU backward's per-tile scratch (2 (N+1) doubles per group of a
// per-lane tile, up to 256 groups: 16 MiB at N = 4096).
constexpr int kMaxIntervals = 4096;

// Columns of a group's row of derived parameters (make_params).
enum Param : int {
  kLeft = 0,       // B_L
  kRight,          // B_R
  kInvWidth,       // N / (B_R - B_L), to nearest
  kLocate,         // N / (B_R - B_L), rounded up: locates the interval
  kInvCount,       // 1 / N
  kSlopeLeft,      // K_L
  kSlopeRight,     // K_R
  kFirst,          // Y_0
  kLast,           // Y_N
  kParams
};

// Per-group gradient layout: Y_0..Y_N, then these four.
enum Extra : int { kGradLeft = 0, kGradRight, kGradSlopeLeft, kGradSlopeRight, kExtras };

// v rounded to nearest T, +-inf beyond T's range (where a plain cast of the
// double is undefined behaviour in C++).
PAU_HOST_DEVICE float round_to(double v, float) {
  // From this magnitude on, round-to-nearest-even goes to inf.
  constexpr double kFloatOverflow = 0x1.ffffffp127;
  return fabs(v) >= kFloatOverflow ? static_cast<float>(copysign(INFINITY, v))
                                   : static_cast<float>(v);
}
PAU_HOST_DEVICE double round_to(double v, double) { return v; }

// v rounded up to T: the smallest T not below v (inf beyond T's range).
PAU_HOST_DEVICE float round_up_to(double v, float) {
  const float r = round_to(v, float());
  return static_cast<double>(r) < v ? nextafterf(r, INFINITY) : r;
}
PAU_HOST_DEVICE double round_up_to(double v, double) { return v; }

// N / (B_R - B_L) rounded up to T: never below the exact quotient of the
// given bounds (see the breakpoint convention above). In double, the
// difference and the quotient each round; when either may have rounded the
// quotient down (TwoSum error of the difference < 0, or fma residual < 0),
// three steps up cover the at most 2^-52 relative shortfall. Bounds whose
// difference overflows give 0 (rejected by width_representable).
PAU_HOST_DEVICE double inverse_width_upper(double left, double right, int intervals) {
  const double width = right - left;
  const double back = width - right;
  const double width_error = (right - (width - back)) + (-left - back);  // exact: TwoSum
  double q = intervals / width;
  if (width_error < 0 || fma(q, width, -static_cast<double>(intervals)) < 0) {
    for (int i = 0; i < 3; ++i) q = nextafter(q, INFINITY);
  }
  return q;
}

// Derived parameters of one group, computed in double and rounded once to T
// (locate upward, the rest to nearest).
template <class T>
PAU_HOST_DEVICE void make_params(double left, double right, double slope_left, double slope_right,
                                 double first, double last, int intervals, T* out) {
  out[kLeft] = round_to(left, T());
  out[kRight] = round_to(right, T());
  out[kInvWidth] = round_to(intervals / (right - left), T());
  out[kLocate] = round_up_to(inverse_width_upper(left, right, intervals), T());
  out[kInvCount] = round_to(1.0 / intervals, T());
  out[kSlopeLeft] = round_to(slope_left, T());
  out[kSlopeRight] = round_to(slope_right, T());
  out[kFirst] = round_to(first, T());
  out[kLast] = round_to(last, T());
}

// The tables the kernels read, built from the parameters (dtype P: float or
// double) in double and rounded once to T; the host (CPU backend) and the
// device (CUDA backend) build them with this one function, so bit for bit
// alike. Entry j in [0, N] of group g: points[g][j] = Y_j, steps[g][j] =
// Y_{j+1} - Y_j (0 for j = N), and for j = 0 the group's make_params row.
template <class P, class T>
PAU_HOST_DEVICE void table_entry(const P* points, const P* bounds, const P* slopes, int64_t g,
                                 int n, int j, T* point_table, T* step_table, T* param_table) {
  const P* row = points + g * (n + 1);
  point_table[g * (n + 1) + j] = round_to(static_cast<double>(row[j]), T());
  step_table[g * (n + 1) + j] =
      j < n ? round_to(static_cast<double>(row[j + 1]) - static_cast<double>(row[j]), T())
            : T(0);
  if (j == 0) {
    make_params(bounds[2 * g], bounds[2 * g + 1], slopes[2 * g], slopes[2 * g + 1], row[0],
                row[n], n, param_table + g * kParams);
  }
}

// Whether a group's bounds (as given) are finite with B_L < B_R.
PAU_HOST_DEVICE bool bounds_valid(double left, double right) {
  return isfinite(left) && isfinite(right) && left < right;
}

// Whether the group's N / (B_R - B_L), rounded to T, is finite and positive
// (bounds that are valid but too close for N intervals in T are not, nor
// bounds whose difference overflows double).
template <class T>
PAU_HOST_DEVICE bool width_representable(const T* params_row) {
  const double inv_width = static_cast<double>(params_row[kInvWidth]);
  return isfinite(inv_width) && inv_width > 0 &&
         isfinite(static_cast<double>(params_row[kLocate]));
}

// Whether the group's bounds, rounded to T, are still finite with B_L < B_R:
// float64 bounds beyond float's range (or too close to stay apart in float)
// would otherwise make every output of float32 x inf or NaN.
template <class T>
PAU_HOST_DEVICE bool bounds_representable(const T* params_row) {
  return bounds_valid(static_cast<double>(params_row[kLeft]),
                      static_cast<double>(params_row[kRight]));
}

// The parameters as element values (broadcast or one group per lane).
template <class V>
struct Params {
  V left, right, inv_width, locate, inv_count, slope_left, slope_right, first, last;
  V top;  // N - 1, the last interval
};

// One group's row of make_params as element values V (a scalar, or a vector
// that broadcasts each value).
template <class V, class T>
PAU_HOST_DEVICE Params<V> unpack_params(const T* q, int intervals) {
  Params<V> r;
  r.left = V(q[kLeft]);
  r.right = V(q[kRight]);
  r.inv_width = V(q[kInvWidth]);
  r.locate = V(q[kLocate]);
  r.inv_count = V(q[kInvCount]);
  r.slope_left = V(q[kSlopeLeft]);
  r.slope_right = V(q[kSlopeRight]);
  r.first = V(q[kFirst]);
  r.last = V(q[kLast]);
  r.top = V(T(intervals - 1));
  return r;
}

// Element operations beyond pau_math.h's for a plain scalar.
PAU_HOST_DEVICE float floor_of(float v) { return floorf(v); }
PAU_HOST_DEVICE double floor_of(double v) { return floor(v); }

template <class T>
struct ScalarOps : math::ScalarOps<T> {
  using index = int64_t;
  using mask = bool;
  static PAU_HOST_DEVICE T floor(T v) { return floor_of(v); }
  static PAU_HOST_DEVICE mask less(T a, T b) { return a < b; }
  static PAU_HOST_DEVICE mask greater_equal(T a, T b) { return a >= b; }
  static PAU_HOST_DEVICE mask equal(T a, T b) { return a == b; }
  static PAU_HOST_DEVICE mask either(mask a, mask b) { return a || b; }
  static PAU_HOST_DEVICE index to_index(T v) { return static_cast<index>(v); }
};

// Table lookups take a `Tables` object so that kernels can choose how to
// fetch (memory, registers):
//   index     the type of a table index (per lane)
//   index_of(k)  the table index of interval k (k: Ops::index) for the element
//   point(i)  Y at table index i,  step(i)  S at table index i
// Tables for scalars: rows of N+1 entries starting at `base`.
template <class T>
struct ScalarTables {
  using index = int64_t;
  const T* points;
  const T* steps;
  int64_t base;
  PAU_HOST_DEVICE int64_t index_of(int64_t k) const { return base + k; }
  PAU_HOST_DEVICE T point(int64_t i) const { return points[i]; }
  PAU_HOST_DEVICE T step(int64_t i) const { return steps[i]; }
};

// The interval k as a value: clamp(floor(u), 0, N-1), and 0 for NaN so that
// the table index is always valid.
template <class Ops>
PAU_HOST_DEVICE typename Ops::value interval(const typename Ops::value& u,
                                             const typename Ops::value& top) {
  using V = typename Ops::value;
  const V zero = Ops::broadcast(0);
  V k = Ops::floor(u);
  k = Ops::select(Ops::greater_equal(k, zero), k, zero);
  return Ops::select(Ops::less(k, top), k, top);
}

// F(x) for one element or lane vector.
template <class Ops, class Tables>
PAU_HOST_DEVICE typename Ops::value forward(const typename Ops::value& x,
                                            const Params<typename Ops::value>& p,
                                            const Tables& tables) {
  using V = typename Ops::value;
  using M = typename Ops::mask;
  const V zero = Ops::broadcast(0);
  const V dx_left = x - p.left;
  const V u = dx_left * p.inv_width;
  const V k = interval<Ops>(dx_left * p.locate, p.top);
  const typename Tables::index i = tables.index_of(Ops::to_index(k));
  const V inside = Ops::fma(u - k, tables.step(i), tables.point(i));
  const M left = Ops::less(x, p.left);
  const M right = Ops::greater_equal(x, p.right);
  const V edge = Ops::select(left, p.left, p.right);
  const V slope = Ops::select(left, p.slope_left, p.slope_right);
  const V end = Ops::select(left, p.first, p.last);
  const V dx = Ops::select(Ops::equal(slope, zero), zero, x - edge);
  return Ops::select(Ops::either(left, right), Ops::fma(dx, slope, end), inside);
}

// What one element contributes to the gradients besides the four sums that
// backward() accumulates itself.
template <class V, class I>
struct PointGradient {
  I index;  // table index of Y_k: Tables::index_of(k)
  V lower;  // dL/dY_k
  V upper;  // dL/dY_{k+1}
};

// Gradients of F at x scaled by g. Returns dL/dx, adds dL/dB_L, dL/dB_R,
// dL/dK_L, dL/dK_R to acc[kGradLeft..kGradSlopeRight] and leaves the two
// point gradients in *points_grad for the kernel to scatter.
template <class Ops, class Tables>
PAU_HOST_DEVICE typename Ops::value backward(
    const typename Ops::value& x, const typename Ops::value& g,
    const Params<typename Ops::value>& p, const Tables& tables, typename Ops::value* acc,
    PointGradient<typename Ops::value, typename Tables::index>* points_grad) {
  using V = typename Ops::value;
  using M = typename Ops::mask;
  const V zero = Ops::broadcast(0);
  const V one = Ops::broadcast(1);
  const V dx_left = x - p.left;
  const V u = dx_left * p.inv_width;
  const V k = interval<Ops>(dx_left * p.locate, p.top);
  const typename Tables::index i = tables.index_of(Ops::to_index(k));
  const M left = Ops::less(x, p.left);
  const M right = Ops::greater_equal(x, p.right);

  const V inside_slope = tables.step(i) * p.inv_width;
  const V grad_x =
      g * Ops::select(left, p.slope_left, Ops::select(right, p.slope_right, inside_slope));
  const V w = Ops::select(left, zero, Ops::select(right, one, u * p.inv_count));
  acc[kGradLeft] = acc[kGradLeft] - grad_x * (one - w);
  acc[kGradRight] = acc[kGradRight] - grad_x * w;
  const V g_dx = g * (x - Ops::select(left, p.left, p.right));
  acc[kGradSlopeLeft] = acc[kGradSlopeLeft] + Ops::select(left, g_dx, zero);
  acc[kGradSlopeRight] = acc[kGradSlopeRight] + Ops::select(right, g_dx, zero);

  const V t = Ops::select(left, zero, Ops::select(right, one, u - k));
  points_grad->index = i;
  points_grad->upper = g * t;
  points_grad->lower = g - points_grad->upper;
  return grad_x;
}

}  // namespace pwlu
}  // namespace pau
