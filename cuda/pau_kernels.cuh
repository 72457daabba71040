// CUDA kernels of pau::forward and pau::backward. Torch-free: the per-element
// math is pau_math.h (the same functions the CPU kernels call), the geometry is
// tiling.h; these kernels only load, loop and reduce.
//
// Templated on
//  * the variant (safe, abs_sum, plain),
//  * the storage type S of x (float, double, __half, __nv_bfloat16); half and
//    bfloat16 compute in float, double in double (compute_t<S>),
//  * a compile-time degree pair (FM, FN), or (-1, -1) for none: a tile whose
//    coefficients have exactly these effective degrees runs the
//    math::FixedDegrees path (unrolled, terms in registers); any other tile
//    (degrees up to kMaxDegree = 32, zero leading coefficients) runs the
//    run-time math::Degrees path.
//
// and on kNoisy: RPAU, the same kernels with every coefficient of every element
// multiplied by its noise factor (counter_rng.h, regenerated in backward).
//
// Coefficient gradients are never accumulated with atomics: every thread sums
// its elements in a fixed order in the compute type, the block sums the
// threads in a fixed order in double (warp shuffles with a fixed butterfly,
// then warps in index order), one partial per (tile, group) goes to a
// workspace, and reduce_partials sums each group's partials in a fixed order.
// Tiles depend only on the shape (tiling.h), so results are bitwise
// reproducible run to run and from GPU to GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "../cpp/math/counter_rng.h"
#include "../cpp/math/pau_math.h"
#include "device_common.cuh"
#include "pau_launch.h"
#include "tiling.h"

namespace pau {
namespace cuda {
namespace detail {

using math::Degrees;
using math::Variant;

// Loops over coefficients are unrolled on compile-time degrees only (see
// kUnroll below): the run-time path loops up to 33 times.
template <class Deg>
constexpr int kUnrollTerms = std::is_same_v<Deg, Degrees> ? 1 : Deg::max_terms;


// Coefficients of groups [first, first + count) into table[(g - first) * K + k]
// (a_0..a_m, then b_1..b_n), converted to the compute type as on the CPU.
template <class T>
__device__ __forceinline__ void load_coefficients(const KernelArgs& args, int64_t first,
                                                  int64_t count, T* table) {
  const int K = args.m + 1 + args.n;
  for (int64_t i = threadIdx.x; i < count * K; i += blockDim.x) {
    const int64_t local = i / K;
    const int k = static_cast<int>(i - local * K);
    const int64_t g = first + local;
    const bool in_numerator = k <= args.m;
    const int64_t index = in_numerator ? g * (args.m + 1) + k : g * args.n + (k - args.m - 1);
    const void* base = in_numerator ? args.numerator : args.denominator;
    table[i] = args.coefficients_double ? static_cast<T>(static_cast<const double*>(base)[index])
                                        : static_cast<T>(static_cast<const float*>(base)[index]);
  }
}

// alpha of group g, coefficient j, in double.
__device__ __forceinline__ double alpha_at(const Alpha& alpha, int64_t g, int j) {
  const int64_t at = g * alpha.group_stride + j * alpha.coefficient_stride;
  return alpha.is_double ? static_cast<const double*>(alpha.values)[at]
                         : static_cast<double>(static_cast<const float*>(alpha.values)[at]);
}

// RPAU's noise rows of groups [first, first + count): base and scale of the
// factor (counter_rng.h), computed in double from alpha as the CPU backend
// computes its tables, then rounded to the compute type, into
// base[(g - first) * K + j] and scale[...]. A group with an unusable alpha
// (outside [0, 1), NaN) gets NaN rows, so that all its outputs and gradients
// are NaN: the CPU backend raises there, which here would need a
// device-to-host copy and a stream synchronisation on every call. (Each entry
// checks its whole row: K loads of a few cached values, once per tile.)
template <class T>
__device__ __forceinline__ void load_noise_tables(const Alpha& alpha, int K, int64_t first,
                                                  int64_t count, T* base, T* scale) {
  for (int64_t i = threadIdx.x; i < count * K; i += blockDim.x) {
    const int64_t local = i / K;
    const int64_t g = first + local;
    bool usable = true;
    for (int j = 0; j < K; ++j) usable = usable && rng::alpha_usable(alpha_at(alpha, g, j));
    const double a = alpha_at(alpha, g, static_cast<int>(i - local * K));
    base[i] = static_cast<T>(usable ? rng::factor_base(a) : NAN);
    scale[i] = static_cast<T>(usable ? rng::factor_scale(a) : NAN);
  }
}

// One rounding, like the CPU kernels' at::vec::fmadd of the noise factor.
// multiply: a product nvcc may not contract into a later addition, so that a
// factor of exactly 1 (alpha = 0) leaves the coefficient, and then the
// result, exactly PAU's.
#if defined(PAU_CUDA_EMULATION)
template <class T>
inline T fused_multiply_add(T a, T b, T c) {
  return std::fma(a, b, c);
}
template <class T>
inline T multiply(T a, T b) {
  return a * b;
}
#else
__device__ __forceinline__ float fused_multiply_add(float a, float b, float c) {
  return __fmaf_rn(a, b, c);
}
__device__ __forceinline__ double fused_multiply_add(double a, double b, double c) {
  return __fma_rn(a, b, c);
}
__device__ __forceinline__ float multiply(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double multiply(double a, double b) { return __dmul_rn(a, b); }
#endif

// RPAU: one element's perturbed coefficients a' = a * f, b' = b * f and the
// factors f (m + 1 + n of them, as math::backward takes them), f_j = base_j +
// scale_j * k_ij (counter_rng.h) for the element's logical index i.
template <class T, class Deg>
struct Perturbed {
  T a[Deg::max_terms];
  T b[Deg::max_terms];
  T factor[2 * Deg::max_terms];
};

template <class T, class Deg>
__device__ __forceinline__ void perturb(const rng::Stream& stream, int64_t index, const T* a,
                                        const T* b, const T* base, const T* scale,
                                        const Deg& deg, Perturbed<T, Deg>& out) {
  const auto i = static_cast<uint64_t>(index);
  const uint32_t state = rng::element_state<rng::ScalarOps>(
      stream, static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32));
  // One word per pair of coefficients (2q, 2q + 1), in coefficient order
  // across the numerator and the denominator.
  uint32_t word = 0;
  auto factor = [&](int j) {
    if ((j & 1) == 0) word = rng::pair_word<rng::ScalarOps>(stream, state, j / 2);
    const T k = static_cast<T>(rng::level<rng::ScalarOps>(word, j));
    out.factor[j] = fused_multiply_add(scale[j], k, base[j]);
    return out.factor[j];
  };
#pragma unroll kUnrollTerms<Deg>
  for (int j = 0; j <= deg.m; ++j) out.a[j] = multiply(a[j], factor(j));
#pragma unroll kUnrollTerms<Deg>
  for (int q = 0; q < deg.n; ++q) out.b[q] = multiply(b[q], factor(deg.m + 1 + q));
}

// F(x) of one element, with RPAU's perturbation when kNoisy (base and scale:
// the group's noise rows; index: the element's logical index).
template <Variant variant, bool kNoisy, class T, class Deg>
__device__ __forceinline__ T element_forward(const KernelArgs& args, int64_t index, T x,
                                             const T* a, const T* b, const T* base,
                                             const T* scale, const Deg& deg) {
  if constexpr (kNoisy) {
    Perturbed<T, Deg> c;
    perturb(args.stream, index, a, b, base, scale, deg, c);
    return math::forward<variant, math::ScalarOps<T>, Deg>(x, c.a, c.b, deg);
  } else {
    (void)args, (void)index, (void)base, (void)scale;
    return math::forward<variant, math::ScalarOps<T>, Deg>(x, a, b, deg);
  }
}

// dL/dx of one element; adds its coefficient gradients to grad_a, grad_b.
template <Variant variant, bool kNoisy, class T, class Deg>
__device__ __forceinline__ T element_backward(const KernelArgs& args, int64_t index, T x, T g,
                                              const T* a, const T* b, const T* base,
                                              const T* scale, const Deg& deg, T* grad_a,
                                              T* grad_b) {
  if constexpr (kNoisy) {
    Perturbed<T, Deg> c;
    perturb(args.stream, index, a, b, base, scale, deg, c);
    return math::backward<variant, math::ScalarOps<T>, Deg>(x, g, c.a, c.b, deg, grad_a,
                                                            grad_b, c.factor);
  } else {
    (void)args, (void)index, (void)base, (void)scale;
    return math::backward<variant, math::ScalarOps<T>, Deg>(x, g, a, b, deg, grad_a, grad_b);
  }
}

// Effective degrees of one group's coefficients (table row), as
// HostCoefficients computes them for the CPU kernels.
template <class T>
__device__ __forceinline__ Degrees degrees_of(const T* coefficients, int m, int n) {
  Degrees d;
  d.m = m;
  d.n = n;
  const int m_eff = math::effective_degree(coefficients, m + 1, 0);
  d.m_eff = m_eff > 0 ? m_eff : 0;
  d.n_eff = math::effective_degree(coefficients + m + 1, n, 0) + 1;
  return d;
}

template <int FM, int FN>
__device__ __forceinline__ bool is_fixed(const Degrees& d) {
  return d.m == FM && d.n == FN && d.m_eff == FM && d.n_eff == FN;
}

// Loops over lanes and coefficients are unrolled on the compile-time-degree
// path only: unrolling the run-time path (loops of up to 33 terms per lane)
// multiplies code size and compile time for no gain.
template <class Deg>
constexpr bool kFixedDegrees = !std::is_same_v<Deg, Degrees>;
template <class Deg, int N>
constexpr int kUnroll = kFixedDegrees<Deg> ? N : 1;

// Gradient accumulators per lane: exactly K for compile-time degrees (so they
// stay in registers), the maximum for run-time degrees.
template <class Deg>
struct Accumulators {
  static constexpr int size = 2 * math::kMaxTerms;
};
template <int M, int N>
struct Accumulators<math::FixedDegrees<M, N>> {
  static constexpr int size = M + 1 + N;
};

// Degrees of a per-lane table group: the run-time ones from the table of
// effective degrees, or the compile-time ones.
template <class Deg>
__device__ __forceinline__ Deg lane_degrees(const int* effective, int64_t local, int m, int n) {
  if constexpr (std::is_same_v<Deg, Degrees>) {
    Degrees d;
    d.m = m;
    d.n = n;
    d.m_eff = effective[2 * local];
    d.n_eff = effective[2 * local + 1];
    return d;
  } else {
    return Deg{};
  }
}


// The per-lane dynamic shared memory: coefficient table (then, for RPAU, the
// noise base and scale tables), effective degrees, per-group sum buffer (the
// layout of Plan::shared_bytes).
template <class T>
struct PerLaneShared {
  T* coefficients;
  T* noise_base;   // RPAU only
  T* noise_scale;  // RPAU only
  int* degrees;
  double* sums;

  __device__ __forceinline__ PerLaneShared(unsigned char* base, const Plan& plan) {
    int64_t offset = 0;
    const int64_t table = plan.groups_per_tile * plan.coefficients;
    coefficients = reinterpret_cast<T*>(base);
    noise_base = coefficients + table;
    noise_scale = noise_base + table;
    offset += table * plan.tables * static_cast<int64_t>(sizeof(T));
    offset = (offset + 15) / 16 * 16;
    degrees = reinterpret_cast<int*>(base + offset);
    offset += plan.groups_per_tile * 2 * static_cast<int64_t>(sizeof(int));
    offset = (offset + 15) / 16 * 16;
    sums = reinterpret_cast<double*>(base + offset);
  }
};

// Loads a per-lane tile's coefficient table and effective degrees. Returns,
// to every thread, whether all its groups have the full degrees (m, n).
// Callers synchronise before (the previous tile may still read the table).
template <bool kNoisy, class T>
__device__ __forceinline__ bool load_table(const KernelArgs& args, const Tile& tile,
                                           const PerLaneShared<T>& shared) {
  const int K = args.m + 1 + args.n;
  load_coefficients(args, tile.first_group, tile.group_count, shared.coefficients);
  if constexpr (kNoisy) {
    load_noise_tables(args.alpha, K, tile.first_group, tile.group_count, shared.noise_base,
                      shared.noise_scale);
  }
  __syncthreads();
  bool full = true;
  for (int64_t local = threadIdx.x; local < tile.group_count; local += blockDim.x) {
    const Degrees d = degrees_of(shared.coefficients + local * K, args.m, args.n);
    shared.degrees[2 * local] = d.m_eff;
    shared.degrees[2 * local + 1] = d.n_eff;
    full = full && d.m_eff == args.m && d.n_eff == args.n;
  }
  return __syncthreads_and(full) != 0;
}

// ---------------------------------------------------------------------------
// Forward

template <Variant variant, class S, bool kNoisy, class Deg>
__device__ __forceinline__ void forward_broadcast_tile(const KernelArgs& args, const Tile& tile,
                                                       const compute_t<S>* a,
                                                       const compute_t<S>* b,
                                                       const compute_t<S>* base,
                                                       const compute_t<S>* scale,
                                                       const Deg& deg) {
  using T = compute_t<S>;
  constexpr int L = kBroadcastLanes<S>;
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ out = static_cast<S*>(args.out);
  const BroadcastItems<L> item(args.plan, tile);
  for (int i = threadIdx.x; i < item.items; i += blockDim.x) {
    const int64_t offset = item.offset(i);
    const int count = item.count(i);
    T v[L];
    load_item<S, L>(x + offset, count, args.vector, v);
#pragma unroll kUnroll<Deg, L>
    for (int l = 0; l < L; ++l) {
      v[l] = element_forward<variant, kNoisy>(args, offset + l, v[l], a, b, base, scale, deg);
    }
    store_item<S, L>(out + offset, count, args.vector, v);
  }
}

// A broadcast tile's group coefficients (and RPAU noise rows): shared memory,
// copied to registers on the compile-time-degree path.
template <class T>
struct BroadcastShared {
  T coefficients[2 * math::kMaxTerms];
  T noise_base[2 * math::kMaxTerms];
  T noise_scale[2 * math::kMaxTerms];
};

// Loads group `group` into `shared` unless it is there already (`loaded`).
// Block-uniform: every thread calls it with the same tile.
template <bool kNoisy, class T>
__device__ __forceinline__ void load_group(const KernelArgs& args, int64_t group,
                                           BroadcastShared<T>& shared, int64_t& loaded) {
  if (group == loaded) return;
  __syncthreads();  // the previous tile may still read the tables
  load_coefficients(args, group, 1, shared.coefficients);
  if constexpr (kNoisy) {
    const int K = args.m + 1 + args.n;
    load_noise_tables(args.alpha, K, group, 1, shared.noise_base, shared.noise_scale);
  }
  __syncthreads();
  loaded = group;
}

// Calls f(a, b, base, scale, degrees) with register copies and compile-time
// degrees when the group's effective degrees are exactly (FM, FN), else with
// the shared tables and run-time degrees.
template <int FM, int FN, bool kNoisy, class T, class F>
__device__ __forceinline__ void with_group(const KernelArgs& args,
                                           const BroadcastShared<T>& shared, F&& f) {
  const T* a = shared.coefficients;
  const T* b = shared.coefficients + args.m + 1;
  const Degrees deg = degrees_of(shared.coefficients, args.m, args.n);
  if constexpr (FM >= 0) {
    if (is_fixed<FM, FN>(deg)) {
      constexpr int K = FM + 1 + FN;
      T ra[FM + 1];
      T rb[FN > 0 ? FN : 1];
      T rbase[kNoisy ? K : 1];
      T rscale[kNoisy ? K : 1];
#pragma unroll
      for (int j = 0; j <= FM; ++j) ra[j] = a[j];
#pragma unroll
      for (int k = 0; k < FN; ++k) rb[k] = b[k];
      if constexpr (kNoisy) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
          rbase[k] = shared.noise_base[k];
          rscale[k] = shared.noise_scale[k];
        }
      }
      f(ra, rb, rbase, rscale, math::FixedDegrees<FM, FN>{});
      return;
    }
  }
  f(a, b, shared.noise_base, shared.noise_scale, deg);
}

template <Variant variant, class S, int FM, int FN, bool kNoisy>
__global__ void __launch_bounds__(kThreads) forward_broadcast(const KernelArgs args) {
  using T = compute_t<S>;
  __shared__ BroadcastShared<T> shared;
  const Plan& plan = args.plan;
  int64_t loaded = -1;
  for (int64_t index = blockIdx.x; index < plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(plan, index);
    load_group<kNoisy>(args, tile.first_group, shared, loaded);
    with_group<FM, FN, kNoisy>(args, shared, [&](const T* a, const T* b, const T* base,
                                                 const T* scale, const auto& deg) {
      forward_broadcast_tile<variant, S, kNoisy>(args, tile, a, b, base, scale, deg);
    });
  }
}

template <Variant variant, class S, bool kNoisy, class Deg>
__device__ __forceinline__ void forward_per_lane_tile(const KernelArgs& args, const Tile& tile,
                                                      const PerLaneShared<compute_t<S>>& shared) {
  using T = compute_t<S>;
  constexpr int L = kPerLaneLanes<S>;
  const Plan& plan = args.plan;
  const int K = args.m + 1 + args.n;
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ out = static_cast<S*>(args.out);
  const auto [column, slot, count] = lane_place<L>(plan, tile);
  if (count <= 0) return;
  // This thread's lanes always hold the same columns, hence the same groups.
  const T* a[L];
  int64_t row_of_group[L];
  Deg deg[L];
#pragma unroll
  for (int l = 0; l < L; ++l) {
    const int64_t local = l < count ? (column + l) / plan.run : 0;
    row_of_group[l] = local * K;
    a[l] = shared.coefficients + row_of_group[l];
    deg[l] = lane_degrees<Deg>(shared.degrees, local, args.m, args.n);
  }
  for (int64_t row = tile.row_begin + slot; row < tile.row_end; row += plan.row_slots) {
    const int64_t offset = row * plan.row_length + tile.column_begin + column;
    T v[L];
    load_item<S, L>(x + offset, count, args.vector, v);
#pragma unroll kUnroll<Deg, L>
    for (int l = 0; l < L; ++l) {
      if (l < count) {
        v[l] = element_forward<variant, kNoisy>(
            args, offset + l, v[l], a[l], a[l] + deg[l].m + 1,
            shared.noise_base + row_of_group[l], shared.noise_scale + row_of_group[l], deg[l]);
      }
    }
    store_item<S, L>(out + offset, count, args.vector, v);
  }
}

template <Variant variant, class S, int FM, int FN, bool kNoisy>
__global__ void __launch_bounds__(kThreads) forward_per_lane(const KernelArgs args) {
  using T = compute_t<S>;
  const PerLaneShared<T> shared(dynamic_shared_memory(), args.plan);
  for (int64_t index = blockIdx.x; index < args.plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(args.plan, index);
    __syncthreads();
    const bool full = load_table<kNoisy>(args, tile, shared);
    if constexpr (FM >= 0) {
      if (full && args.m == FM && args.n == FN) {
        forward_per_lane_tile<variant, S, kNoisy, math::FixedDegrees<FM, FN>>(args, tile,
                                                                              shared);
        continue;
      }
    }
    (void)full;
    forward_per_lane_tile<variant, S, kNoisy, Degrees>(args, tile, shared);
  }
}

// ---------------------------------------------------------------------------
// Backward

template <Variant variant, class S, bool kNoisy, class Deg>
__device__ __forceinline__ void backward_broadcast_tile(const KernelArgs& args, const Tile& tile,
                                                        const compute_t<S>* a,
                                                        const compute_t<S>* b,
                                                        const compute_t<S>* base,
                                                        const compute_t<S>* scale, const Deg& deg,
                                                        double* warp_sums, double* dst) {
  using T = compute_t<S>;
  constexpr int L = kBroadcastLanes<S>;
  constexpr int KA = Accumulators<Deg>::size;
  const int K = args.m + 1 + args.n;
  const auto* __restrict__ grad = static_cast<const S*>(args.grad);
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ grad_x = static_cast<S*>(args.out);
  T acc[KA];
#pragma unroll
  for (int k = 0; k < KA; ++k) acc[k] = T(0);
  const BroadcastItems<L> item(args.plan, tile);
  for (int i = threadIdx.x; i < item.items; i += blockDim.x) {
    const int64_t offset = item.offset(i);
    const int count = item.count(i);
    T xv[L];
    T gv[L];
    load_item<S, L>(x + offset, count, args.vector, xv);
    load_item<S, L>(grad + offset, count, args.vector, gv);
#pragma unroll kUnroll<Deg, L>
    for (int l = 0; l < L; ++l) {
      if (l < count) {
        xv[l] = element_backward<variant, kNoisy>(args, offset + l, xv[l], gv[l], a, b, base,
                                                  scale, deg, acc, acc + deg.m + 1);
      }
    }
    store_item<S, L>(grad_x + offset, count, args.vector, xv);
  }
  block_sum<KA, kFixedDegrees<Deg>>(acc, K, warp_sums, dst);
}

template <Variant variant, class S, int FM, int FN, bool kNoisy>
__global__ void __launch_bounds__(kThreads) backward_broadcast(const KernelArgs args) {
  using T = compute_t<S>;
  __shared__ BroadcastShared<T> shared;
  __shared__ double warp_sums[(kThreads / 32) * kBlockSumStride];
  const Plan& plan = args.plan;
  const int K = args.m + 1 + args.n;
  int64_t loaded = -1;
  for (int64_t index = blockIdx.x; index < plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(plan, index);
    load_group<kNoisy>(args, tile.first_group, shared, loaded);
    double* dst = args.workspace + index * K;
    double* warps = warp_sums;  // (named outside the lambda: GCC's unused-variable check)
    with_group<FM, FN, kNoisy>(args, shared, [&](const T* a, const T* b, const T* base,
                                                 const T* scale, const auto& deg) {
      backward_broadcast_tile<variant, S, kNoisy>(args, tile, a, b, base, scale, deg, warps,
                                                  dst);
    });
  }
}

template <Variant variant, class S, bool kNoisy, class Deg>
__device__ __forceinline__ void backward_per_lane_tile(const KernelArgs& args, const Tile& tile,
                                                       const PerLaneShared<compute_t<S>>& shared,
                                                       double* dst) {
  using T = compute_t<S>;
  constexpr int L = kPerLaneLanes<S>;
  constexpr int KA = Accumulators<Deg>::size;
  const Plan& plan = args.plan;
  const int K = args.m + 1 + args.n;
  const auto* __restrict__ grad = static_cast<const S*>(args.grad);
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ grad_x = static_cast<S*>(args.out);
  const auto [column, slot, count] = lane_place<L>(plan, tile);

  T acc[L][KA];
#pragma unroll
  for (int l = 0; l < L; ++l) {
#pragma unroll
    for (int k = 0; k < KA; ++k) acc[l][k] = T(0);
  }
  if (count > 0) {
    const T* a[L];
    int64_t row_of_group[L];
    Deg deg[L];
#pragma unroll
    for (int l = 0; l < L; ++l) {
      const int64_t local = l < count ? (column + l) / plan.run : 0;
      row_of_group[l] = local * K;
      a[l] = shared.coefficients + row_of_group[l];
      deg[l] = lane_degrees<Deg>(shared.degrees, local, args.m, args.n);
    }
    for (int64_t row = tile.row_begin + slot; row < tile.row_end; row += plan.row_slots) {
      const int64_t offset = row * plan.row_length + tile.column_begin + column;
      T xv[L];
      T gv[L];
      load_item<S, L>(x + offset, count, args.vector, xv);
      load_item<S, L>(grad + offset, count, args.vector, gv);
#pragma unroll kUnroll<Deg, L>
      for (int l = 0; l < L; ++l) {
        if (l < count) {
          xv[l] = element_backward<variant, kNoisy>(
              args, offset + l, xv[l], gv[l], a[l], a[l] + deg[l].m + 1,
              shared.noise_base + row_of_group[l], shared.noise_scale + row_of_group[l], deg[l],
              acc[l], acc[l] + deg[l].m + 1);
        }
      }
      store_item<S, L>(grad_x + offset, count, args.vector, xv);
    }
  }

  per_lane_group_sums<KA, L, kFixedDegrees<Deg>>(acc, K, plan, tile, column, slot, shared.sums,
                                                   dst, K);
}

template <Variant variant, class S, int FM, int FN, bool kNoisy>
__global__ void __launch_bounds__(kThreads) backward_per_lane(const KernelArgs args) {
  using T = compute_t<S>;
  const PerLaneShared<T> shared(dynamic_shared_memory(), args.plan);
  const int64_t partials_per_tile = args.plan.groups_per_tile * (args.m + 1 + args.n);
  for (int64_t index = blockIdx.x; index < args.plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(args.plan, index);
    double* dst = args.workspace + index * partials_per_tile;
    __syncthreads();
    const bool full = load_table<kNoisy>(args, tile, shared);
    if constexpr (FM >= 0) {
      if (full && args.m == FM && args.n == FN) {
        backward_per_lane_tile<variant, S, kNoisy, math::FixedDegrees<FM, FN>>(args, tile, shared,
                                                                               dst);
        continue;
      }
    }
    (void)full;
    backward_per_lane_tile<variant, S, kNoisy, Degrees>(args, tile, shared, dst);
  }
}

// Sums each group's partials (tiling.h: partial_index) in a fixed order: a
// fixed strided split over kReduceThreads threads, then a shared-memory tree,
// and writes the gradients in the coefficient dtype C.
template <class C>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_partials(const Plan plan, const int m, const int n,
                    const double* __restrict__ workspace, C* __restrict__ grad_numerator,
                    C* __restrict__ grad_denominator) {
  __shared__ double sums[kReduceThreads];
  const int K = m + 1 + n;
  for (int64_t g = blockIdx.x; g < plan.groups; g += gridDim.x) {
    for (int k = 0; k < K; ++k) {
      const double total = group_partials_sum(plan, K, workspace, g, k, sums);
      if (threadIdx.x == 0) {
        if (k <= m) {
          grad_numerator[g * (m + 1) + k] = static_cast<C>(total);
        } else {
          grad_denominator[g * n + (k - m - 1)] = static_cast<C>(total);
        }
      }
    }
  }
}

#if !defined(PAU_CUDA_EMULATION)
// ---------------------------------------------------------------------------
// Typed launchers (pau_launch.h): the variant and degree switch for one
// storage type.

// Calls f(variant tag, FM, FN tags) with compile-time degrees (5, 4) for the
// paper's default, as the CPU's with_degrees does, else (-1, -1): run-time
// degrees only. Add a pair here when benchmarks show it pays.
template <Variant V>
using VariantConstant = std::integral_constant<Variant, V>;
template <int M, int N>
struct DegreePair {
  static constexpr int m = M;
  static constexpr int n = N;
};

template <class F>
cudaError_t dispatch_variant_and_degrees(const Problem& p, F&& f) {
  auto with_degrees = [&](auto variant) -> cudaError_t {
    if (p.m == 5 && p.n == 4) return f(variant, DegreePair<5, 4>{});
    return f(variant, DegreePair<-1, -1>{});
  };
  switch (p.variant) {
    case Variant::safe: return with_degrees(VariantConstant<Variant::safe>{});
    case Variant::abs_sum: return with_degrees(VariantConstant<Variant::abs_sum>{});
    case Variant::plain: return with_degrees(VariantConstant<Variant::plain>{});
  }
  return cudaErrorInvalidValue;
}

template <class S, bool kNoisy>
cudaError_t launch_forward_typed(const Problem& p, const KernelArgs& args, unsigned int blocks,
                                 cudaStream_t stream) {
  return dispatch_variant_and_degrees(p, [&](auto variant, auto degrees) -> cudaError_t {
    constexpr Variant V = decltype(variant)::value;
    constexpr int FM = decltype(degrees)::m;
    constexpr int FN = decltype(degrees)::n;
    if (p.plan.per_lane) {
      const auto shared = static_cast<size_t>(p.plan.shared_bytes(sizeof(compute_t<S>), false));
      forward_per_lane<V, S, FM, FN, kNoisy><<<blocks, p.plan.threads, shared, stream>>>(args);
    } else {
      forward_broadcast<V, S, FM, FN, kNoisy><<<blocks, kThreads, 0, stream>>>(args);
    }
    return cudaGetLastError();
  });
}

template <class S, bool kNoisy>
cudaError_t launch_backward_typed(const Problem& p, const KernelArgs& args, unsigned int blocks,
                                  cudaStream_t stream) {
  return dispatch_variant_and_degrees(p, [&](auto variant, auto degrees) -> cudaError_t {
    constexpr Variant V = decltype(variant)::value;
    constexpr int FM = decltype(degrees)::m;
    constexpr int FN = decltype(degrees)::n;
    if (p.plan.per_lane) {
      const auto shared = static_cast<size_t>(p.plan.shared_bytes(sizeof(compute_t<S>), true));
      backward_per_lane<V, S, FM, FN, kNoisy><<<blocks, p.plan.threads, shared, stream>>>(args);
    } else {
      backward_broadcast<V, S, FM, FN, kNoisy><<<blocks, kThreads, 0, stream>>>(args);
    }
    return cudaGetLastError();
  });
}
#endif  // !defined(PAU_CUDA_EMULATION)

}  // namespace detail
}  // namespace cuda
}  // namespace pau
