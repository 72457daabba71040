// Building blocks shared by the per-ISA CPU kernels (pau_kernel.cpp,
// pwlu_kernel.cpp): the element-operation interface of the math headers on
// at::vec::Vectorized lanes, the compute type, and block/lane loads and stores
// that convert half types to float once per block.
//
// Only included from kernel sources that CMake compiles once per instruction
// set, so everything lives in the namespace CPU_CAPABILITY (DEFAULT, AVX2,
// AVX512) and each copy is built with its ISA flags.
#pragma once

#include <ATen/cpu/vec/functional.h>  // at::vec::load_to_float
#include <ATen/cpu/vec/vec.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace pau {
namespace cpu {
namespace CPU_CAPABILITY {

// The per-vector helpers of the kernels must be inlined into their loops
// (see PAU_HOST_DEVICE in pau_math.h).
#define PAU_INLINE inline __attribute__((always_inline))
#define PAU_INLINE_LAMBDA __attribute__((always_inline))

template <class T>
using Vec = at::vec::Vectorized<T>;

// Storage for N vectors that, unlike an array of at::vec::Vectorized (whose
// default constructor zero-fills), costs nothing to create: for the kernels'
// per-vector scratch, declared inside the vector loop so that the compiler can
// keep it in registers and drop the stores nothing reads. Vectorized is
// trivially copyable, so assigning to its elements is all the use it needs.
template <class T, int N>
struct Scratch {
  alignas(64) unsigned char bytes[N * sizeof(Vec<T>)];
  PAU_INLINE Vec<T>* data() { return reinterpret_cast<Vec<T>*>(bytes); }
  PAU_INLINE Vec<T>& operator[](std::ptrdiff_t i) { return data()[i]; }
  PAU_INLINE operator Vec<T>*() { return data(); }
};

// pau_math.h's element operations on vector lanes.
template <class T>
struct VecOps {
  using value = Vec<T>;
  using mask = Vec<T>;  // all bits set in true lanes
  template <int N>
  using Array = Scratch<T, N>;
  static PAU_INLINE value broadcast(T v) { return value(v); }
  static PAU_INLINE value abs(const value& v) { return v.abs(); }
  static PAU_INLINE value sign(const value& v) {
    const value zero(T(0));
    return v.gt(zero) - v.lt(zero);
  }
  static PAU_INLINE mask abs_greater_than_one(const value& v) { return v.abs() > value(T(1)); }
  static PAU_INLINE mask is_nan(const value& v) { return v.isnan(); }
  static PAU_INLINE mask is_finite(const value& v) { return (v - v) == value(T(0)); }
  static PAU_INLINE value select(const mask& m, const value& if_true, const value& if_false) {
    return value::blendv(if_false, if_true, m);
  }
  static PAU_INLINE value fma(const value& a, const value& b, const value& c) {
    return at::vec::fmadd(a, b, c);
  }
};

// Half and bfloat16 compute in float, double in double.
template <class scalar_t>
using opmath_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// Elements per load/convert/compute/store step within a row segment.
constexpr int64_t kBlock = 256;
// Per-lane tiles flush their float accumulators to double after this many rows.
constexpr int64_t kFlushRows = 16;

// `count` elements of src in the compute type T: src itself, or converted into
// buffer (kBlock elements) for half types.
template <class scalar_t, class T>
const T* load_block(const scalar_t* src, int64_t count, T* buffer) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    return src;
  } else {
    // Whole vectors through at::vec's widening loads, then the scalar tail.
    constexpr int64_t kStep = 2 * Vec<float>::size();
    int64_t i = 0;
    for (; i + kStep <= count; i += kStep) {
      Vec<float> low, high;
      at::vec::load_to_float<scalar_t>(src + i, low, high);
      low.store(buffer + i);
      high.store(buffer + i + Vec<float>::size());
    }
    for (; i < count; ++i) buffer[i] = static_cast<T>(src[i]);
    return buffer;
  }
}

// Where to compute a block of output: dst itself, or buffer for half types
// (store_block converts it afterwards).
template <class scalar_t, class T>
T* output_block(scalar_t* dst, T* buffer) {
  if constexpr (std::is_same_v<scalar_t, T>) {
    return dst;
  } else {
    return buffer;
  }
}

template <class scalar_t, class T>
void store_block(const T* computed, int64_t count, scalar_t* dst) {
  if constexpr (!std::is_same_v<scalar_t, T>) at::vec::convert(computed, dst, count);
}

// How a kernel compiled for the compute type T reads and writes a tensor of a
// storage dtype (T itself, or float16/bfloat16 for T = float), a block at a
// time through load_block/output_block/store_block. Function pointers, called
// once per block: the kernels are compiled once per compute type instead of
// once per storage dtype.
template <class T>
struct BlockStorage {
  const T* (*load)(const void* base, int64_t offset, int64_t count, T* buffer);
  T* (*output)(void* base, int64_t offset, T* buffer);
  void (*store)(const T* computed, int64_t count, void* base, int64_t offset);
};

template <class scalar_t>
const BlockStorage<opmath_t<scalar_t>>& block_storage() {
  using T = opmath_t<scalar_t>;
  static const BlockStorage<T> storage{
      [](const void* base, int64_t offset, int64_t count, T* buffer) {
        return load_block(static_cast<const scalar_t*>(base) + offset, count, buffer);
      },
      [](void* base, int64_t offset, T* buffer) {
        return output_block(static_cast<scalar_t*>(base) + offset, buffer);
      },
      [](const T* computed, int64_t count, void* base, int64_t offset) {
        store_block(computed, count, static_cast<scalar_t*>(base) + offset);
      },
  };
  return storage;
}

// Lanes past `lanes` read as zero.
template <class T>
PAU_INLINE Vec<T> load_lanes(const T* p, int64_t lanes) {
  return lanes == Vec<T>::size() ? Vec<T>::loadu(p) : Vec<T>::loadu(p, lanes);
}

template <class T>
PAU_INLINE void store_lanes(const Vec<T>& v, T* p, int64_t lanes) {
  if (lanes == Vec<T>::size()) {
    v.store(p);
  } else {
    v.store(p, static_cast<int>(lanes));
  }
}

// Whether every |src[i]|, i < count, is at most `limit`; false for a NaN
// element, so that NaN blocks take the scaled powers, which keep NaN also
// where the effective degrees are (0, 0) and no power of x is formed.
template <class T>
bool all_abs_at_most(const T* src, int64_t count, const Vec<T>& limit) {
  // Lanes stay all ones while every |x| seen is <= limit.
  Vec<T> within = Vec<T>(T(0)) == Vec<T>(T(0));
  int64_t i = 0;
  for (; i + Vec<T>::size() <= count; i += Vec<T>::size()) {
    within = within & (Vec<T>::loadu(src + i).abs() <= limit);
  }
  // loadu fills the lanes past count with zeros, which are within.
  if (i < count) within = within & (Vec<T>::loadu(src + i, count - i).abs() <= limit);
  return within.zero_mask() == 0;
}

// Calls vector_at(i, lanes) for the vectors of a block of `count` elements:
// whole vectors (lanes a constant the loads and stores fold), then the tail.
template <class T, class F>
PAU_INLINE void for_each_vector(int64_t count, F&& vector_at) {
  constexpr int64_t kLanes = Vec<T>::size();
  int64_t i = 0;
  for (; i + kLanes <= count; i += kLanes) vector_at(i, kLanes);
  if (i < count) vector_at(i, count - i);
}

// sums[l] += v[l] in double, lane by lane.
template <class T>
void add_lanes_to(const Vec<T>& v, double* sums) {
  alignas(64) T lanes[Vec<T>::size()];
  v.store(lanes);
  // Without `omp simd` GCC 12 converts and adds one lane at a time: a quarter
  // of the AVX-512 backward's time went to these flushes (one per block and
  // coefficient). The lanes stay independent, so the sums are the same bits.
#if defined(_OPENMP)
#pragma omp simd
#endif
  for (int64_t l = 0; l < Vec<T>::size(); ++l) sums[l] += static_cast<double>(lanes[l]);
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace pau
