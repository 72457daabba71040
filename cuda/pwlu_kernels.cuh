// CUDA kernels of pau::pwlu_forward and pau::pwlu_backward. Torch-free: the
// per-element math is pwlu_math.h (the functions the CPU kernels call), the
// geometry is tiling.h (the tiles of the PAU kernels); these kernels load,
// loop and reduce. Templated on the storage type S of x; half and bfloat16
// compute in float, double in double.
//
// The group tables (points, steps, derived parameters) are read from global
// memory: they are small, so the interval lookups hit L1.
//
// Point gradients are a scatter: an element in interval k adds g (1 - t) to
// Y_k and g t to Y_{k+1}. They are summed without floating-point atomics and
// in a fixed order, so the gradients are bitwise reproducible:
//  1. In each warp, __match_any_sync finds the lanes that hit the same
//     (group, interval); the lowest such lane sums their values in lane order
//     (shuffles) and alone adds the sum to the warp's copy of the block's
//     histogram in shared memory. A warp owns its copy, so its adds happen
//     in program order; where shared memory holds fewer copies than warps,
//     the warps sharing one take turns between block barriers.
//  2. After a tile, the block sums the copies per point in copy order into
//     the tile's partial in the workspace, as the PAU kernels do for their
//     coefficients; the four bound and slope gradients use the PAU kernels'
//     block and per-lane sums.
//  3. pwlu_reduce_partials sums each group's partials in a fixed order.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../cpp/math/pwlu_math.h"
#include "device_common.cuh"
#include "pwlu_kernels.h"
#include "tiling.h"

namespace pau {
namespace cuda {
namespace detail {

using pwlu::kExtras;
using pwlu::kParams;

// Everything a PWLU kernel needs, passed by value (kernel parameter space).
struct PwluKernelArgs {
  Plan plan;
  int intervals;         // N
  int histogram_copies;  // backward: pwlu_histogram_copies
  bool vector;           // plan.vector_layout and every data pointer aligned for an item
  const void* points;    // (G, N + 1) in the compute type
  const void* steps;     // (G, N + 1)
  const void* params;    // (G, kParams)
  const void* grad;      // backward only
  const void* x;
  void* out;             // forward: F(x); backward: grad_x
  double* workspace;     // backward only: (tiles, groups_per_tile, N + 1 + kExtras)
};

constexpr unsigned int kFullMask = 0xffffffffu;
// Histogram key of a lane with no element.
constexpr unsigned int kNoKey = 0xffffffffu;

// One group's view of the tables.
template <class T>
struct Group {
  pwlu::Params<T> params;
  pwlu::ScalarTables<T> tables;
};

template <class T>
__device__ __forceinline__ Group<T> group_at(const PwluKernelArgs& args, int64_t group) {
  const auto* params = static_cast<const T*>(args.params);
  Group<T> r;
  r.params = pwlu::unpack_params<T>(params + group * kParams, args.intervals);
  r.tables.points = static_cast<const T*>(args.points);
  r.tables.steps = static_cast<const T*>(args.steps);
  r.tables.base = group * (args.intervals + 1);
  return r;
}

// What one element adds to the point histogram: its key (local group of the
// tile * (N + 1) + interval, or kNoKey) and the two values.
template <class T>
struct PointAdd {
  unsigned int key = kNoKey;
  T lower = T(0);
  T upper = T(0);
};

// dL/dx of one element; adds the bound and slope gradients to acc and
// describes the point gradients in *add.
template <class T>
__device__ __forceinline__ T element_backward(T x, T g, const Group<T>& group, int64_t local,
                                              int intervals, T* acc, PointAdd<T>* add) {
  pwlu::PointGradient<T, int64_t> point;
  const T grad_x = pwlu::backward<pwlu::ScalarOps<T>>(x, g, group.params, group.tables, acc, &point);
  add->key = static_cast<unsigned int>(local * (intervals + 1) + (point.index - group.tables.base));
  add->lower = point.lower;
  add->upper = point.upper;
  return grad_x;
}

// A backward block's histogram copies in dynamic shared memory: copy h,
// local group, then N + 1 lower and N + 1 upper sums (pwlu_kernels.h).
template <class T>
struct Histograms {
  T* data;
  int64_t copy_entries;
  int intervals;
  int copies;
  int turns;  // warps sharing a copy

  __device__ __forceinline__ Histograms(unsigned char* base, const PwluKernelArgs& args)
      : data(reinterpret_cast<T*>(base)),
        copy_entries(pwlu_histogram_entries(args.plan, args.intervals)),
        intervals(args.intervals),
        copies(args.histogram_copies),
        turns((static_cast<int>(blockDim.x >> 5) + args.histogram_copies - 1) /
              args.histogram_copies) {}

  // Every thread calls it; callers synchronise before the first add.
  __device__ __forceinline__ void clear() const {
    for (int64_t e = threadIdx.x; e < copies * copy_entries; e += blockDim.x) data[e] = T(0);
  }

  // Adds the L elements of every lane of the block. Every thread calls it
  // (block-uniform: the turns use block barriers).
  template <int L>
  __device__ __forceinline__ void add(const PointAdd<T> (&adds)[L]) const {
    const int lane = static_cast<int>(threadIdx.x & 31);
    const int warp = static_cast<int>(threadIdx.x >> 5);
    T lower[L];
    T upper[L];
    bool leader[L];
#pragma unroll
    for (int l = 0; l < L; ++l) {
      // Lanes with the same key (the idle lanes share kNoKey) are peers; each
      // sums all its peers' values in increasing lane order.
      const unsigned int peers = __match_any_sync(kFullMask, adds[l].key);
      unsigned int rest = peers;
      lower[l] = T(0);
      upper[l] = T(0);
      while (__any_sync(kFullMask, rest != 0u)) {
        const int source = rest != 0u ? __ffs(static_cast<int>(rest)) - 1 : lane;
        const T lo = __shfl_sync(kFullMask, adds[l].lower, source);
        const T up = __shfl_sync(kFullMask, adds[l].upper, source);
        if (rest != 0u) {
          lower[l] += lo;
          upper[l] += up;
          rest &= rest - 1u;
        }
      }
      leader[l] = adds[l].key != kNoKey && lane == __ffs(static_cast<int>(peers)) - 1;
    }
    T* mine = data + (warp % copies) * copy_entries;
    const int row = intervals + 1;
    for (int turn = 0; turn < turns; ++turn) {
      if (warp / copies == turn) {
#pragma unroll
        for (int l = 0; l < L; ++l) {
          if (leader[l]) {
            const unsigned int local = adds[l].key / static_cast<unsigned int>(row);
            const unsigned int k = adds[l].key - local * static_cast<unsigned int>(row);
            T* group = mine + static_cast<int64_t>(local) * 2 * row;
            group[k] += lower[l];
            group[row + k] += upper[l];
          }
          // Another lane of this warp may add to the same entry for the next l.
          __syncwarp();
        }
      }
      if (turns > 1) __syncthreads();
    }
  }

  // dst[local * K + j] = dL/dY_j of the tile's group `local` (0 past
  // group_count): the copies in order, lower then upper. Callers synchronise
  // before (the adds) and after (before the next clear).
  __device__ __forceinline__ void sum_into(double* dst, int K, int64_t group_count,
                                           int64_t groups_per_tile) const {
    const int row = intervals + 1;
    for (int64_t e = threadIdx.x; e < groups_per_tile * row; e += blockDim.x) {
      const int64_t local = e / row;
      const int j = static_cast<int>(e - local * row);
      double total = 0.0;
      if (local < group_count) {
        for (int h = 0; h < copies; ++h) {
          const T* group = data + h * copy_entries + local * 2 * row;
          if (j < intervals) total += static_cast<double>(group[j]);
          if (j > 0) total += static_cast<double>(group[row + j - 1]);
        }
      }
      dst[local * K + j] = total;
    }
  }
};

// ---------------------------------------------------------------------------
// Group tables

// Builds the group tables (pwlu_kernels.h: points, steps, params) from the
// parameters with pwlu::table_entry, as the CPU backend does on the host. A
// group whose bounds are not finite with B_L < B_R (as given or rounded to
// T), or too close for N intervals in T, gets NaN parameters, so that all
// its outputs and gradients are NaN: the CPU backend raises instead, which
// here would cost a device-to-host copy and a stream synchronisation on
// every call.
template <class P, class T>
__global__ void pwlu_build_tables(const P* __restrict__ points, const P* __restrict__ bounds,
                                  const P* __restrict__ slopes, const int64_t groups,
                                  const int intervals, T* __restrict__ tables) {
  const int64_t row = intervals + 1;
  T* point_table = tables;
  T* step_table = tables + groups * row;
  T* param_table = tables + 2 * groups * row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < groups * row;
       e += stride) {
    const int64_t g = e / row;
    const int j = static_cast<int>(e - g * row);
    pwlu::table_entry(points, bounds, slopes, g, intervals, j, point_table, step_table,
                      param_table);
    if (j == 0) {
      T* q = param_table + g * kParams;
      if (!pwlu::bounds_valid(static_cast<double>(bounds[2 * g]),
                              static_cast<double>(bounds[2 * g + 1])) ||
          !pwlu::bounds_representable(q) || !pwlu::width_representable(q)) {
        for (int k = 0; k < kParams; ++k) q[k] = static_cast<T>(NAN);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Forward

template <class S>
__global__ void __launch_bounds__(kThreads) pwlu_forward_broadcast(const PwluKernelArgs args) {
  using T = compute_t<S>;
  constexpr int L = kBroadcastLanes<S>;
  const Plan& plan = args.plan;
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ out = static_cast<S*>(args.out);
  for (int64_t index = blockIdx.x; index < plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(plan, index);
    const Group<T> group = group_at<T>(args, tile.first_group);
    const BroadcastItems<L> item(plan, tile);
    for (int i = threadIdx.x; i < item.items; i += blockDim.x) {
      const int64_t offset = item.offset(i);
      const int count = item.count(i);
      T v[L];
      load_item<S, L>(x + offset, count, args.vector, v);
#pragma unroll
      for (int l = 0; l < L; ++l) {
        v[l] = pwlu::forward<pwlu::ScalarOps<T>>(v[l], group.params, group.tables);
      }
      store_item<S, L>(out + offset, count, args.vector, v);
    }
  }
}

template <class S>
__global__ void __launch_bounds__(kThreads) pwlu_forward_per_lane(const PwluKernelArgs args) {
  using T = compute_t<S>;
  constexpr int L = kPerLaneLanes<S>;
  const Plan& plan = args.plan;
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ out = static_cast<S*>(args.out);
  for (int64_t index = blockIdx.x; index < plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(plan, index);
    const LanePlace place = lane_place<L>(plan, tile);
    if (place.count == 0) continue;
    // This thread's lanes always hold the same columns, hence the same groups.
    Group<T> group[L];
#pragma unroll
    for (int l = 0; l < L; ++l) {
      const int64_t local = l < place.count ? (place.column + l) / plan.run : 0;
      group[l] = group_at<T>(args, tile.first_group + local);
    }
    for (int64_t row = tile.row_begin + place.slot; row < tile.row_end; row += plan.row_slots) {
      const int64_t offset = row * plan.row_length + tile.column_begin + place.column;
      T v[L];
      load_item<S, L>(x + offset, place.count, args.vector, v);
#pragma unroll
      for (int l = 0; l < L; ++l) {
        v[l] = pwlu::forward<pwlu::ScalarOps<T>>(v[l], group[l].params, group[l].tables);
      }
      store_item<S, L>(out + offset, place.count, args.vector, v);
    }
  }
}

// ---------------------------------------------------------------------------
// Backward

template <class S>
__global__ void __launch_bounds__(kThreads) pwlu_backward_broadcast(const PwluKernelArgs args) {
  using T = compute_t<S>;
  constexpr int L = kBroadcastLanes<S>;
  __shared__ double warp_sums[(kThreads / 32) * kBlockSumStride];
  const Histograms<T> histograms(dynamic_shared_memory(), args);
  const Plan& plan = args.plan;
  const int K = pwlu_gradient_entries(args.intervals);
  const auto* __restrict__ grad = static_cast<const S*>(args.grad);
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ grad_x = static_cast<S*>(args.out);
  for (int64_t index = blockIdx.x; index < plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(plan, index);
    double* dst = args.workspace + index * K;
    histograms.clear();
    __syncthreads();
    const Group<T> group = group_at<T>(args, tile.first_group);
    T acc[kExtras];
#pragma unroll
    for (int e = 0; e < kExtras; ++e) acc[e] = T(0);
    const BroadcastItems<L> item(plan, tile);
    // Rounds of blockDim.x items, the same number for every thread: the
    // histogram adds are warp- and block-wide.
    for (int first = 0; first < item.items; first += blockDim.x) {
      const int i = first + static_cast<int>(threadIdx.x);
      const int64_t offset = item.offset(i);
      const int count = item.count(i);
      PointAdd<T> adds[L];
      if (count > 0) {
        T xv[L];
        T gv[L];
        load_item<S, L>(x + offset, count, args.vector, xv);
        load_item<S, L>(grad + offset, count, args.vector, gv);
#pragma unroll
        for (int l = 0; l < L; ++l) {
          if (l < count) {
            xv[l] = element_backward(xv[l], gv[l], group, 0, args.intervals, acc, &adds[l]);
          }
        }
        store_item<S, L>(grad_x + offset, count, args.vector, xv);
      }
      histograms.add(adds);
    }
    __syncthreads();
    histograms.sum_into(dst, K, 1, 1);
    // Its barriers also keep the next tile's clear after sum_into.
    block_sum<kExtras, true>(acc, kExtras, warp_sums, dst + args.intervals + 1);
  }
}

template <class S>
__global__ void __launch_bounds__(kThreads) pwlu_backward_per_lane(const PwluKernelArgs args) {
  using T = compute_t<S>;
  constexpr int L = kPerLaneLanes<S>;
  const Plan& plan = args.plan;
  unsigned char* shared = dynamic_shared_memory();
  const Histograms<T> histograms(shared, args);
  auto* sums = reinterpret_cast<double*>(
      shared + pwlu_histogram_bytes(plan, args.intervals, static_cast<int>(sizeof(T))));
  const int K = pwlu_gradient_entries(args.intervals);
  const auto* __restrict__ grad = static_cast<const S*>(args.grad);
  const auto* __restrict__ x = static_cast<const S*>(args.x);
  auto* __restrict__ grad_x = static_cast<S*>(args.out);
  for (int64_t index = blockIdx.x; index < plan.tiles(); index += gridDim.x) {
    const Tile tile = tile_at(plan, index);
    double* dst = args.workspace + index * plan.groups_per_tile * K;
    histograms.clear();
    __syncthreads();
    const LanePlace place = lane_place<L>(plan, tile);
    Group<T> group[L];
    int64_t local[L];
    T acc[L][kExtras];
#pragma unroll
    for (int l = 0; l < L; ++l) {
      local[l] = l < place.count ? (place.column + l) / plan.run : 0;
      group[l] = group_at<T>(args, tile.first_group + local[l]);
#pragma unroll
      for (int e = 0; e < kExtras; ++e) acc[l][e] = T(0);
    }
    // The same number of rounds for every thread (see the broadcast kernel).
    const int64_t rounds = ceil_div(tile.row_end - tile.row_begin, plan.row_slots);
    for (int64_t round = 0; round < rounds; ++round) {
      const int64_t row = tile.row_begin + place.slot + round * plan.row_slots;
      const int count = row < tile.row_end ? place.count : 0;
      const int64_t offset = row * plan.row_length + tile.column_begin + place.column;
      PointAdd<T> adds[L];
      if (count > 0) {
        T xv[L];
        T gv[L];
        load_item<S, L>(x + offset, count, args.vector, xv);
        load_item<S, L>(grad + offset, count, args.vector, gv);
#pragma unroll
        for (int l = 0; l < L; ++l) {
          if (l < count) {
            xv[l] = element_backward(xv[l], gv[l], group[l], local[l], args.intervals, acc[l],
                                     &adds[l]);
          }
        }
        store_item<S, L>(grad_x + offset, count, args.vector, xv);
      }
      histograms.add(adds);
    }
    __syncthreads();
    histograms.sum_into(dst, K, tile.group_count, plan.groups_per_tile);
    // Its barriers also keep the next tile's clear after sum_into.
    per_lane_group_sums<kExtras, L, true>(acc, kExtras, plan, tile, place.column, place.slot,
                                          sums, dst + args.intervals + 1, K);
  }
}

// gradients[g * K + k]: the sum of group g's partials of entry k, one block
// per (g, k) at a time, each in group_partials_sum's fixed order.
__global__ void __launch_bounds__(kReduceThreads)
    pwlu_reduce_partials(const Plan plan, const int K, const double* __restrict__ workspace,
                         double* __restrict__ gradients) {
  __shared__ double sums[kReduceThreads];
  for (int64_t e = blockIdx.x; e < plan.groups * K; e += gridDim.x) {
    const int64_t g = e / K;
    const int k = static_cast<int>(e - g * K);
    const double total = group_partials_sum(plan, K, workspace, g, k, sums);
    if (threadIdx.x == 0) gradients[e] = total;
  }
}

}  // namespace detail
}  // namespace cuda
}  // namespace pau
