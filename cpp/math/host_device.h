// What the torch-free math headers need from their compilers: functions that
// are host and device code at once (nvcc) and always inlined, and the
// element operations of a plain scalar that the CPU kernels' vector lanes
// mirror. Included by math/pau_math.h, math/pwlu_math.h, math/counter_rng.h.
#pragma once

// Always inlined: the CPU kernels rely on these functions being inlined into
// their vector loops (FixedDegrees keeps the term arrays in registers), and
// GCC's unit-growth limits otherwise stop inlining once a translation unit
// instantiates more kernels (adding the RPAU kernels made PAU 2.5x slower).
#if defined(__CUDACC__) || defined(__HIPCC__)
#define PAU_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define PAU_HOST_DEVICE inline __attribute__((always_inline))
#else
#define PAU_HOST_DEVICE inline
#endif

namespace pau {
namespace math {

// Element operations for a plain scalar (float or double). The CPU kernels
// provide the same interface for at::vec::Vectorized lanes, so the formulas
// of pau_math.h and pwlu_math.h are written once. Array<N>: the type of the
// per-element arrays of N values (the vector version leaves them
// uninitialised: Vectorized's default constructor zero-fills, a store per
// value per element vector).
template <class T>
struct ScalarOps {
  using value = T;
  using mask = bool;
  template <int N>
  using Array = T[N];
  static PAU_HOST_DEVICE T broadcast(T v) { return v; }
  static PAU_HOST_DEVICE T abs(T v) { return v < T(0) ? -v : v; }
  // sign(0) = 0, as torch.sign and the gradient of torch.abs.
  static PAU_HOST_DEVICE T sign(T v) { return T(v > T(0)) - T(v < T(0)); }
  static PAU_HOST_DEVICE mask abs_greater_than_one(T v) { return abs(v) > T(1); }
  static PAU_HOST_DEVICE mask is_nan(T v) { return v != v; }
  // False for ±inf and NaN (inf - inf and NaN - NaN are NaN).
  static PAU_HOST_DEVICE mask is_finite(T v) { return v - v == T(0); }
  static PAU_HOST_DEVICE T select(mask m, T if_true, T if_false) {
    return m ? if_true : if_false;
  }
  static PAU_HOST_DEVICE T fma(T a, T b, T c) { return a * b + c; }
};

}  // namespace math
}  // namespace pau
