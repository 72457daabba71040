// CPU kernels of pau::pwlu_forward and pau::pwlu_backward for one tile (see
// tiling.h). CMake compiles this file once per instruction set, like
// pau_kernel.cpp. The math is pwlu_math.h on at::vec::Vectorized lanes; this
// file loads, loops and accumulates.
//
// Table lookups (Y_k, S_k for each lane's interval k): for one group with
// N <= 16 in float on AVX2, or N <= 32 in float (16 in double) on AVX-512, the
// tables sit in registers (vpermps, vpermt2ps/pd); otherwise one scalar load
// per lane, which on the CPUs measured (AMD Zen 3) beats the AVX2 gather
// instruction.
//
// Point gradients are a scatter: each element adds to Y_k and Y_{k+1} for its
// own interval k. They are added in double, lane by lane, into (lower, upper)
// pairs per interval that are private to each lane for broadcast tiles (so
// lanes never collide and consecutive elements in one interval do not form a
// single chain of dependent adds) and one row per group for per-lane tiles
// (where the lanes of a vector mostly belong to different groups). One place
// per element instead of two measured about 25% faster. The order of the adds
// is fixed by the tile, so the result is bitwise reproducible. The four
// bound/slope sums are vector accumulators flushed to double as in
// pau_kernel.cpp.
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/pwlu_kernels.h"
#include "cpu/vec_ops.h"
#include "math/pwlu_math.h"

namespace pau {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using pwlu::kExtras;
using pwlu::kParams;
using pwlu::Params;

template <class T>
using Index = at::vec::int_same_size_t<T>;
template <class T>
using IndexVec = Vec<Index<T>>;

// pwlu_math.h's element operations on vector lanes.
template <class T>
struct PwluVecOps : VecOps<T> {
  using value = Vec<T>;
  using mask = Vec<T>;
  using index = IndexVec<T>;
  static PAU_INLINE value floor(const value& v) { return v.floor(); }
  static PAU_INLINE mask less(const value& a, const value& b) { return a < b; }
  static PAU_INLINE mask greater_equal(const value& a, const value& b) { return a >= b; }
  static PAU_INLINE mask equal(const value& a, const value& b) { return a == b; }
  static PAU_INLINE mask either(const mask& a, const mask& b) { return a | b; }
  static PAU_INLINE index to_index(const value& v) { return at::vec::convert_to_int_of_same_size(v); }
};

// Table index of every lane, as a vector and stored once for the scalar
// loads of the lookups and the scatter of the point gradients.
template <class T>
struct LaneIndex {
  alignas(64) Index<T> lanes[Vec<T>::size()];
};

template <class T, size_t... L>
PAU_INLINE Vec<T> load_lanes_at(const T* table, const Index<T>* lanes, std::index_sequence<L...>) {
  return Vec<T>(table[lanes[L]]...);
}

// Tables in memory, read with one scalar load per lane. kOffset: lanes carry
// their group's row offset (per-lane tiles).
template <class T, bool kOffset>
struct MemoryTables {
  using index = LaneIndex<T>;
  const T* points;
  const T* steps;
  IndexVec<T> base;

  PAU_INLINE index index_of(const IndexVec<T>& k) const {
    index i;
    if constexpr (kOffset) {
      (base + k).store(i.lanes);
    } else {
      k.store(i.lanes);
    }
    return i;
  }
  PAU_INLINE Vec<T> point(const index& i) const { return lookup(points, i); }
  PAU_INLINE Vec<T> step(const index& i) const { return lookup(steps, i); }
  static const Index<T>* lanes(const index& i) { return i.lanes; }

 private:
  static PAU_INLINE Vec<T> lookup(const T* table, const index& i) {
    return load_lanes_at(table, i.lanes, std::make_index_sequence<Vec<T>::size()>{});
  }
};

// Tables held in registers, for one group with few intervals: where the ISA
// has a lane permutation that looks up all lanes at once. kMaxIntervals: 0
// where there is none.
template <class T>
struct RegisterTables {
  static constexpr int kMaxIntervals = 0;
};

#if defined(CPU_CAPABILITY_AVX2)
// AVX2, float, N <= 16 intervals: Y_0..Y_15 and S_0..S_15 held in two
// registers each and looked up with vpermps (lanes pick by the low three
// index bits, bit 3 chooses the register), about twice as fast as memory.
template <>
struct RegisterTables<float> {
  using index = IndexVec<float>;
  static constexpr int kMaxIntervals = 16;
  __m256 points_low, points_high, steps_low, steps_high;

  RegisterTables(const float* points, const float* steps, int intervals) {
    alignas(32) float p[16] = {};
    alignas(32) float s[16] = {};
    for (int j = 0; j < intervals; ++j) {
      p[j] = points[j];
      s[j] = steps[j];
    }
    points_low = _mm256_load_ps(p);
    points_high = _mm256_load_ps(p + 8);
    steps_low = _mm256_load_ps(s);
    steps_high = _mm256_load_ps(s + 8);
  }
  PAU_INLINE index index_of(const index& k) const { return k; }
  PAU_INLINE Vec<float> point(const index& i) const {
    return pick(points_low, points_high, i);
  }
  PAU_INLINE Vec<float> step(const index& i) const { return pick(steps_low, steps_high, i); }

 private:
  static PAU_INLINE Vec<float> pick(__m256 low, __m256 high, const index& i) {
    const __m256i k = i;
    const __m256 use_high = _mm256_castsi256_ps(_mm256_slli_epi32(k, 28));  // bit 3 -> sign
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, k), _mm256_permutevar8x32_ps(high, k),
                            use_high);
  }
};
#endif

#if defined(CPU_CAPABILITY_AVX512)
// AVX-512, N <= 32 intervals in float (16 in double): Y_k and S_k in two
// registers each, every lane looked up by one two-register permutation
// (vpermt2ps/pd) instead of 16 (8) scalar loads.
template <class T>
struct Avx512RegisterTables {
  using index = IndexVec<T>;
  static constexpr int kMaxIntervals = 2 * Vec<T>::size();
  Vec<T> points_low, points_high, steps_low, steps_high;

  Avx512RegisterTables(const T* points, const T* steps, int intervals) {
    alignas(64) T p[kMaxIntervals] = {};
    alignas(64) T s[kMaxIntervals] = {};
    for (int j = 0; j < intervals; ++j) {
      p[j] = points[j];
      s[j] = steps[j];
    }
    points_low = Vec<T>::loadu(p);
    points_high = Vec<T>::loadu(p + Vec<T>::size());
    steps_low = Vec<T>::loadu(s);
    steps_high = Vec<T>::loadu(s + Vec<T>::size());
  }
  PAU_INLINE index index_of(const index& k) const { return k; }
  PAU_INLINE Vec<T> point(const index& i) const { return pick(points_low, points_high, i); }
  PAU_INLINE Vec<T> step(const index& i) const { return pick(steps_low, steps_high, i); }

 private:
  static PAU_INLINE Vec<T> pick(const Vec<T>& low, const Vec<T>& high, const index& i) {
    if constexpr (std::is_same_v<T, float>) {
      return _mm512_permutex2var_ps(low, i, high);
    } else {
      return _mm512_permutex2var_pd(low, i, high);
    }
  }
};
template <>
struct RegisterTables<float> : Avx512RegisterTables<float> {
  using Avx512RegisterTables<float>::Avx512RegisterTables;
};
template <>
struct RegisterTables<double> : Avx512RegisterTables<double> {
  using Avx512RegisterTables<double>::Avx512RegisterTables;
};
#endif

// A tile's parameters: broadcast vectors (one group), or a table with one
// column per tensor column (per-lane tiles, padded to whole vectors with the
// last group's values so padding lanes compute finite numbers) and each
// column's row offset in the group tables.
template <class T>
class TileParams {
 public:
  using V = Vec<T>;

  TileParams(const PwluProblem& p, const Tile& tile) {
    const int64_t row = p.intervals + 1;
    const T* params = static_cast<const T*>(p.params);
    points_ = static_cast<const T*>(p.points) + tile.first_group * row;
    steps_ = static_cast<const T*>(p.steps) + tile.first_group * row;
    if (!p.layout.per_lane()) {
      broadcast_ = pwlu::unpack_params<V>(params + tile.first_group * kParams, p.intervals);
      return;
    }
    const int64_t columns = tile.column_end - tile.column_begin;
    stride_ = ceil_div(columns, V::size()) * V::size();
    table_.assign(static_cast<size_t>(kParams * stride_), T(0));
    bases_.assign(static_cast<size_t>(stride_), Index<T>(0));
    for (int64_t c = 0; c < stride_; ++c) {
      const int64_t local = std::min(c, columns - 1) / p.layout.run;
      const T* q = params + (tile.first_group + local) * kParams;
      for (int j = 0; j < kParams; ++j) table_[j * stride_ + c] = q[j];
      bases_[c] = static_cast<Index<T>>(local * row);
    }
    broadcast_.top = V(T(p.intervals - 1));
  }

  // The tile's rows of the group tables.
  const T* points() const { return points_; }
  const T* steps() const { return steps_; }
  const Params<V>& broadcast() const { return broadcast_; }
  int64_t padded_columns() const { return stride_; }

  // Per-lane tiles: parameters and row offsets of the lanes starting at tile
  // column `column`.
  PAU_INLINE void lanes(int64_t column, Params<V>& out, IndexVec<T>& base) const {
    const T* c = &table_[column];
    out.left = V::loadu(c + pwlu::kLeft * stride_);
    out.right = V::loadu(c + pwlu::kRight * stride_);
    out.inv_width = V::loadu(c + pwlu::kInvWidth * stride_);
    out.locate = V::loadu(c + pwlu::kLocate * stride_);
    out.inv_count = V::loadu(c + pwlu::kInvCount * stride_);
    out.slope_left = V::loadu(c + pwlu::kSlopeLeft * stride_);
    out.slope_right = V::loadu(c + pwlu::kSlopeRight * stride_);
    out.first = V::loadu(c + pwlu::kFirst * stride_);
    out.last = V::loadu(c + pwlu::kLast * stride_);
    out.top = broadcast_.top;
    base = IndexVec<T>::loadu(&bases_[column]);
  }

 private:
  const T* points_ = nullptr;
  const T* steps_ = nullptr;
  Params<V> broadcast_{};
  std::vector<T> table_;
  std::vector<Index<T>> bases_;
  int64_t stride_ = 0;
};

template <class T>
PAU_INLINE const Index<T>* lane_indices(const LaneIndex<T>& i, Index<T>* /*buffer*/) {
  return i.lanes;
}

template <class T>
PAU_INLINE const Index<T>* lane_indices(const IndexVec<T>& i, Index<T>* buffer) {
  i.store(buffer);
  return buffer;
}

template <class scalar_t, bool kPerLane, class Tables>
void forward_tile(const PwluForwardArgs& args, const Tile& tile,
                  const TileParams<opmath_t<scalar_t>>& params, Tables tables) {
  using T = opmath_t<scalar_t>;
  using V = Vec<T>;
  using Ops = PwluVecOps<T>;
  const Layout& layout = args.problem.layout;
  const auto* x = static_cast<const scalar_t*>(args.x);
  auto* out = static_cast<scalar_t*>(args.out);
  alignas(64) T x_buffer[kBlock];
  alignas(64) T y_buffer[kBlock];
  Params<V> lane_params = params.broadcast();

  for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
    for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
      const int64_t count = std::min(kBlock, tile.column_end - begin);
      const int64_t offset = row * layout.row_length + begin;
      const T* xs = load_block(x + offset, count, x_buffer);
      T* ys = output_block(out + offset, y_buffer);
      for_each_vector<T>(count, [&](int64_t i, int64_t lanes) PAU_INLINE_LAMBDA {
        if constexpr (kPerLane) {
          params.lanes(begin - tile.column_begin + i, lane_params, tables.base);
        }
        const V y = pwlu::forward<Ops>(load_lanes(xs + i, lanes), lane_params, tables);
        store_lanes(y, ys + i, lanes);
      });
      store_block(ys, count, out + offset);
    }
  }
}

template <class scalar_t, bool kPerLane, class Tables>
void backward_tile(const PwluBackwardArgs& args, int64_t index, const Tile& tile,
                   const TileParams<opmath_t<scalar_t>>& params, Tables tables) {
  using T = opmath_t<scalar_t>;
  using V = Vec<T>;
  using Ops = PwluVecOps<T>;
  constexpr int64_t kLanes = V::size();
  const PwluProblem& p = args.problem;
  const Layout& layout = p.layout;
  const int64_t row_size = p.intervals + 1;
  const int count_coefficients = p.coefficients();
  const auto* grad = static_cast<const scalar_t*>(args.grad);
  const auto* x = static_cast<const scalar_t*>(args.x);
  auto* grad_x = static_cast<scalar_t*>(args.grad_x);

  // Point gradients as (lower, upper) pairs per interval: the pair at k sums
  // dL/dY_k and dL/dY_{k+1} of the elements in interval k, so each element
  // updates one place. Lane-private pairs (broadcast tiles) or one row of
  // pairs per group (per-lane tiles).
  std::vector<double> pairs(
      static_cast<size_t>(2 * (kPerLane ? tile.group_count * row_size : row_size * kLanes)),
      0.0);
  // Bound and slope sums: float vector accumulators (one set, or one per
  // vector position of a per-lane tile) flushed to double in a fixed order.
  const int64_t positions = kPerLane ? params.padded_columns() / kLanes : 1;
  const int64_t sums_stride = kPerLane ? params.padded_columns() : kLanes;
  std::vector<V> accumulators(static_cast<size_t>(positions * kExtras), V(T(0)));
  std::vector<double> sums(static_cast<size_t>(kExtras * sums_stride), 0.0);
  auto flush = [&]() {
    for (int64_t pos = 0; pos < positions; ++pos) {
      for (int e = 0; e < kExtras; ++e) {
        V& acc = accumulators[pos * kExtras + e];
        add_lanes_to(acc, &sums[e * sums_stride + pos * kLanes]);
        acc = V(T(0));
      }
    }
  };

  alignas(64) T x_buffer[kBlock];
  alignas(64) T g_buffer[kBlock];
  alignas(64) T gx_buffer[kBlock];
  alignas(64) Index<T> index_buffer[kLanes];
  alignas(64) T lane_lower[kLanes];
  alignas(64) T lane_upper[kLanes];
  Params<V> lane_params = params.broadcast();
  for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
    for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
      const int64_t count = std::min(kBlock, tile.column_end - begin);
      const int64_t offset = row * layout.row_length + begin;
      const T* xs = load_block(x + offset, count, x_buffer);
      const T* gs = load_block(grad + offset, count, g_buffer);
      T* gxs = output_block(grad_x + offset, gx_buffer);
      for (int64_t i = 0; i < count; i += kLanes) {
        const int64_t lanes = std::min<int64_t>(kLanes, count - i);
        const int64_t column = begin - tile.column_begin + i;
        if constexpr (kPerLane) params.lanes(column, lane_params, tables.base);
        // Lanes past `lanes` load x = 0 and g = 0, so they add exact zeros.
        V* acc = &accumulators[(kPerLane ? column / kLanes : 0) * kExtras];
        pwlu::PointGradient<V, typename Tables::index> point;
        const V gx = pwlu::backward<Ops>(load_lanes(xs + i, lanes), load_lanes(gs + i, lanes),
                                         lane_params, tables, acc, &point);
        store_lanes(gx, gxs + i, lanes);
        const Index<T>* lane_index = lane_indices<T>(point.index, index_buffer);
        point.lower.store(lane_lower);
        point.upper.store(lane_upper);
        for (int64_t l = 0; l < lanes; ++l) {
          double* pair = &pairs[2 * (kPerLane ? lane_index[l] : lane_index[l] * kLanes + l)];
          pair[0] += static_cast<double>(lane_lower[l]);
          pair[1] += static_cast<double>(lane_upper[l]);
        }
      }
      store_block(gxs, count, grad_x + offset);
      if constexpr (!kPerLane) flush();
    }
    if constexpr (kPerLane) {
      if ((row - tile.row_begin + 1) % kFlushRows == 0) flush();
    }
  }
  if constexpr (kPerLane) flush();

  double* partials =
      args.partials + args.partial_slot(index) * layout.groups_per_tile * count_coefficients;
  for (int64_t local = 0; local < layout.groups_per_tile; ++local) {
    double* out = partials + local * count_coefficients;
    if (local >= tile.group_count) {
      std::fill(out, out + count_coefficients, 0.0);
      continue;
    }
    // dL/dY_j: the lower sums of interval j plus the upper sums of j - 1.
    for (int64_t j = 0; j < row_size; ++j) {
      double total = 0.0;
      if constexpr (kPerLane) {
        const double* row_pairs = &pairs[2 * local * row_size];
        if (j < p.intervals) total += row_pairs[2 * j];
        if (j > 0) total += row_pairs[2 * (j - 1) + 1];
      } else {
        for (int64_t l = 0; l < kLanes; ++l) {
          if (j < p.intervals) total += pairs[2 * (j * kLanes + l)];
          if (j > 0) total += pairs[2 * ((j - 1) * kLanes + l) + 1];
        }
      }
      out[j] = total;
    }
    for (int e = 0; e < kExtras; ++e) {
      const int64_t first = kPerLane ? local * layout.run : 0;
      const int64_t last = kPerLane ? first + layout.run : kLanes;
      double total = 0.0;
      for (int64_t c = first; c < last; ++c) total += sums[e * sums_stride + c];
      out[row_size + e] = total;
    }
  }
}

// Runs `tile_fn(kPerLane, params, tables)` with the fastest table lookup that
// applies to the tile.
template <class scalar_t, class Args, class TileFn>
void with_tables(const Args& args, const Tile& tile, TileFn&& tile_fn) {
  using T = opmath_t<scalar_t>;
  const PwluProblem& p = args.problem;
  const TileParams<T> params(p, tile);
  const IndexVec<T> zero(Index<T>(0));
  if (p.layout.per_lane()) {
    tile_fn(std::true_type{}, params, MemoryTables<T, true>{params.points(), params.steps(), zero});
    return;
  }
  if constexpr (RegisterTables<T>::kMaxIntervals > 0) {
    if (p.intervals <= RegisterTables<T>::kMaxIntervals) {
      tile_fn(std::false_type{}, params,
              RegisterTables<T>(params.points(), params.steps(), p.intervals));
      return;
    }
  }
  tile_fn(std::false_type{}, params, MemoryTables<T, false>{params.points(), params.steps(), zero});
}

template <class scalar_t>
void forward_entry(const PwluForwardArgs& args, int64_t index) {
  const Tile tile = tile_at(args.problem.layout, index);
  with_tables<scalar_t>(args, tile, [&](auto per_lane, const auto& params, auto tables) {
    forward_tile<scalar_t, decltype(per_lane)::value>(args, tile, params, tables);
  });
}

template <class scalar_t>
void backward_entry(const PwluBackwardArgs& args, int64_t index) {
  const Tile tile = tile_at(args.problem.layout, index);
  with_tables<scalar_t>(args, tile, [&](auto per_lane, const auto& params, auto tables) {
    backward_tile<scalar_t, decltype(per_lane)::value>(args, index, tile, params, tables);
  });
}

}  // namespace

const PwluKernelTable& pwlu_kernels() {
  // Indexed by DType: float32, float64, float16, bfloat16.
  static const PwluKernelTable table{
      {forward_entry<float>, forward_entry<double>, forward_entry<c10::Half>,
       forward_entry<c10::BFloat16>},
      {backward_entry<float>, backward_entry<double>, backward_entry<c10::Half>,
       backward_entry<c10::BFloat16>},
  };
  return table;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace pau
