// Device building blocks shared by the PAU/RPAU kernels (pau_kernels.cuh) and
// the PWLU kernels (pwlu_kernels.cuh): storage <-> compute conversions, item
// loads and stores, dynamic shared memory, and the fixed-order block and
// per-group sums that keep gradients bitwise reproducible. Torch-free.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "../cpp/math/pau_math.h"
#include "tiling.h"

namespace pau {
namespace cuda {
namespace detail {

// The items of a broadcast tile (tiling.h) in flattened (row, item) order:
// item i holds count(i) (<= L; 0 past the last item) elements from offset(i).
template <int L>
struct BroadcastItems {
  int64_t row_begin;
  int64_t column_begin;
  int64_t row_length;
  int width;    // elements of the tile's rows
  int per_row;  // items per row
  int items;

  __device__ __forceinline__ BroadcastItems(const Plan& plan, const Tile& tile)
      : row_begin(tile.row_begin),
        column_begin(tile.column_begin),
        row_length(plan.row_length),
        width(static_cast<int>(tile.column_end - tile.column_begin)),
        per_row((width + L - 1) / L),
        items(static_cast<int>(tile.row_end - tile.row_begin) * per_row) {}

  __device__ __forceinline__ int column(int i) const { return (i - i / per_row * per_row) * L; }
  __device__ __forceinline__ int64_t offset(int i) const {
    return (row_begin + i / per_row) * row_length + column_begin + column(i);
  }
  __device__ __forceinline__ int count(int i) const {
    if (i >= items) return 0;
    const int left = width - column(i);
    return left < L ? left : L;
  }
};

// A thread's place in a per-lane tile (tiling.h): its fixed item column of L
// lanes, its row slot, and its element count (0 for a column past the tile's
// width or a slot past plan.row_slots, as in blocks rounded up to whole warps).
struct LanePlace {
  int column;
  int slot;
  int count;
};

template <int L>
__device__ __forceinline__ LanePlace lane_place(const Plan& plan, const Tile& tile) {
  LanePlace p;
  p.column = static_cast<int>(threadIdx.x % plan.vectors_per_row) * L;
  p.slot = static_cast<int>(threadIdx.x / plan.vectors_per_row);
  const int width = static_cast<int>(tile.column_end - tile.column_begin);
  p.count = width - p.column < L ? width - p.column : L;
  if (p.count < 0 || p.slot >= plan.row_slots) p.count = 0;
  return p;
}

// Entries per warp in block_sum's shared buffer: the most coefficients of a
// PAU group (m + 1 + n, m, n <= 32).
constexpr int kBlockSumStride = 2 * math::kMaxTerms;

// Storage <-> compute conversions. Explicit intrinsics, so the kernels also
// compile with torch's -D__CUDA_NO_HALF_CONVERSIONS__ style flags.
template <class S>
struct Element;

template <>
struct Element<float> {
  using compute = float;
  static __device__ __forceinline__ float to_compute(float v) { return v; }
  static __device__ __forceinline__ float from_compute(float v) { return v; }
};

template <>
struct Element<double> {
  using compute = double;
  static __device__ __forceinline__ double to_compute(double v) { return v; }
  static __device__ __forceinline__ double from_compute(double v) { return v; }
};

template <>
struct Element<__half> {
  using compute = float;
  static __device__ __forceinline__ float to_compute(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_compute(float v) { return __float2half_rn(v); }
};

template <>
struct Element<__nv_bfloat16> {
  using compute = float;
  static __device__ __forceinline__ float to_compute(__nv_bfloat16 v) {
    return __bfloat162float(v);
  }
  static __device__ __forceinline__ __nv_bfloat16 from_compute(float v) {
    return __float2bfloat16_rn(v);
  }
};

template <class S>
using compute_t = typename Element<S>::compute;

// Elements per item: 128 bits in broadcast tiles; in per-lane tiles 4 (2 for
// double), because each lane keeps its own gradient accumulators.
template <class S>
constexpr int kBroadcastLanes = static_cast<int>(16 / sizeof(S));
template <class S>
constexpr int kPerLaneLanes = sizeof(S) == 8 ? 2 : 4;

// L elements loaded or stored with one instruction when aligned.
template <class S, int L>
struct alignas(sizeof(S) * L) Pack {
  S v[L];
};

// Loads the `count` (<= L) elements of an item; lanes past count read as 0.
// `vector`: the item start is aligned for a Pack.
template <class S, int L>
__device__ __forceinline__ void load_item(const S* __restrict__ src, int count, bool vector,
                                          compute_t<S> (&out)[L]) {
  if (vector && count == L) {
    const Pack<S, L> pack = *reinterpret_cast<const Pack<S, L>*>(src);
#pragma unroll
    for (int l = 0; l < L; ++l) out[l] = Element<S>::to_compute(pack.v[l]);
  } else {
#pragma unroll
    for (int l = 0; l < L; ++l) {
      out[l] = l < count ? Element<S>::to_compute(src[l]) : compute_t<S>(0);
    }
  }
}

template <class S, int L>
__device__ __forceinline__ void store_item(S* __restrict__ dst, int count, bool vector,
                                           const compute_t<S> (&in)[L]) {
  if (vector && count == L) {
    Pack<S, L> pack;
#pragma unroll
    for (int l = 0; l < L; ++l) pack.v[l] = Element<S>::from_compute(in[l]);
    *reinterpret_cast<Pack<S, L>*>(dst) = pack;
  } else {
#pragma unroll
    for (int l = 0; l < L; ++l) {
      if (l < count) dst[l] = Element<S>::from_compute(in[l]);
    }
  }
}

// Dynamic shared memory of a block. tests/cuda_emulation/emulator.h, which runs
// these kernels on the CPU, provides its own.
#if !defined(PAU_CUDA_EMULATION)
__device__ __forceinline__ unsigned char* dynamic_shared_memory() {
  extern __shared__ __align__(16) unsigned char pau_dynamic_shared[];
  return pau_dynamic_shared;
}
#endif

// Sums acc[0..K) over the block (fixed order) and writes the K doubles to dst.
// Every thread of the (whole-warp) block calls it. warp_sums: (blockDim.x / 32)
// * kBlockSumStride doubles of shared memory; K <= kBlockSumStride.
template <int KA, bool unroll, class T>
__device__ __forceinline__ void block_sum(const T (&acc)[KA], int K, double* warp_sums,
                                          double* __restrict__ dst) {
  constexpr int kStride = kBlockSumStride;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll(unroll ? KA : 1)
  for (int k = 0; k < KA; ++k) {
    if (k < K) {
      double v = static_cast<double>(acc[k]);
#pragma unroll
      for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
      if (lane == 0) warp_sums[warp * kStride + k] = v;
    }
  }
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x >> 5);
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    double total = 0.0;
    for (int w = 0; w < warps; ++w) total += warp_sums[w * kStride + k];
    dst[k] = total;
  }
  // warp_sums is reused by the next tile.
  __syncthreads();
}

// Per-lane tiles (tiling.h): each thread owns the item column `column` (L
// lanes) in row slot `slot`, and acc[l][k] is lane l's sum of entry k of its
// group. Sums every group's entries k < K over its R columns and all row slots
// in a fixed order and writes them to dst[local * dst_stride + k] for the
// tile's groups. sums: shared memory of blockDim.x * L doubles (threads of a
// slot past plan.row_slots publish but are not read). Every thread calls it.
template <int KA, int L, bool unroll, class T>
__device__ __forceinline__ void per_lane_group_sums(const T (&acc)[L][KA], int K, const Plan& plan,
                                                    const Tile& tile, int column, int slot,
                                                    double* sums, double* dst,
                                                    int64_t dst_stride) {
  const int stride = plan.vectors_per_row * L;
#pragma unroll(unroll ? KA : 1)
  for (int k = 0; k < KA; ++k) {
    if (k < K) {
      __syncthreads();
#pragma unroll
      for (int l = 0; l < L; ++l) sums[slot * stride + column + l] = static_cast<double>(acc[l][k]);
      __syncthreads();
      for (int64_t local = threadIdx.x; local < plan.groups_per_tile; local += blockDim.x) {
        double total = 0.0;
        if (local < tile.group_count) {
          for (int64_t c = local * plan.run; c < (local + 1) * plan.run; ++c) {
            for (int s = 0; s < plan.row_slots; ++s) total += sums[s * stride + c];
          }
        }
        dst[local * dst_stride + k] = total;
      }
    }
  }
}

// The sum of group g's partials of entry k (tiling.h: partial_index; K
// entries per partial) in a fixed order: a fixed strided split over the
// kReduceThreads threads of the block, then a shared-memory tree. Every thread
// calls it; the result is returned to thread 0. sums: kReduceThreads doubles
// of shared memory.
__device__ __forceinline__ double group_partials_sum(const Plan& plan, int K,
                                                     const double* __restrict__ workspace,
                                                     int64_t g, int k, double* sums) {
  const int64_t count = partials_per_group(plan);
  double total = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kReduceThreads) {
    total += workspace[partial_index(plan, g, i) * K + k];
  }
  sums[threadIdx.x] = total;
  __syncthreads();
#pragma unroll
  for (int half = kReduceThreads / 2; half > 0; half >>= 1) {
    if (static_cast<int>(threadIdx.x) < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  const double result = sums[0];
  // sums is reused by the next call.
  __syncthreads();
  return result;
}

}  // namespace detail
}  // namespace cuda
}  // namespace pau
