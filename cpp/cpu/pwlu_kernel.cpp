// CPU kernels of pau::pwlu_forward and pau::pwlu_backward for one tile (see
// tiling.h). CMake compiles this file once per instruction set, like
// pau_kernel.cpp. The math is pwlu_math.h on at::vec::Vectorized lanes; this
// file loads, loops and accumulates.
//
// Point gradients are a scatter: each element adds to Y_k and Y_{k+1} for its
// own interval k. They are added in double, lane by lane, into a table that
// is private to each lane for broadcast tiles (so consecutive elements in the
// same interval do not form one long chain of dependent adds) and has one row
// per group for per-lane tiles (where lanes of a vector mostly belong to
// different groups). The order of the adds is fixed by the tile, so the
// result is bitwise reproducible. The four bound/slope sums are vector
// accumulators flushed to double as in pau_kernel.cpp.
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <vector>

#include "cpu/pwlu_kernels.h"
#include "cpu/vec_ops.h"
#include "pwlu_math.h"

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
  using scalar = T;
  using index = IndexVec<T>;
  static value floor(const value& v) { return v.floor(); }
  static mask less(const value& a, const value& b) { return a < b; }
  static mask greater_equal(const value& a, const value& b) { return a >= b; }
  static mask equal(const value& a, const value& b) { return a == b; }
  static mask either(const mask& a, const mask& b) { return a | b; }
  static index to_index(const value& v) { return at::vec::convert_to_int_of_same_size(v); }
  static index add_index(const index& a, const index& b) { return a + b; }
  static value gather(const T* table, const index& i) {
    return at::vec::gather<sizeof(T)>(table, i);
  }
};

// A tile's parameters: broadcast vectors (one group), or a table with one
// column per tensor column (per-lane tiles, padded to whole vectors with the
// last group's values so padding lanes compute finite numbers).
template <class T>
class TileParams {
 public:
  using V = Vec<T>;

  TileParams(const PwluProblem& p, const Tile& tile) : row_(p.intervals + 1) {
    const T* params = static_cast<const T*>(p.params);
    points_ = static_cast<const T*>(p.points) + tile.first_group * row_;
    steps_ = static_cast<const T*>(p.steps) + tile.first_group * row_;
    if (!p.layout.per_lane()) {
      broadcast_ = unpack(params + tile.first_group * kParams, p.intervals);
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
      bases_[c] = static_cast<Index<T>>(local * row_);
    }
    broadcast_.top = V(T(p.intervals - 1));
  }

  const T* points() const { return points_; }
  const T* steps() const { return steps_; }
  const Params<V>& broadcast() const { return broadcast_; }
  int64_t padded_columns() const { return stride_; }

  // Per-lane tiles: the parameters of the lanes starting at tile column `column`.
  void lanes(int64_t column, Params<V>& out, IndexVec<T>& base) const {
    const T* c = &table_[column];
    out.left = V::loadu(c + pwlu::kLeft * stride_);
    out.right = V::loadu(c + pwlu::kRight * stride_);
    out.inv_width = V::loadu(c + pwlu::kInvWidth * stride_);
    out.inv_count = V::loadu(c + pwlu::kInvCount * stride_);
    out.slope_left = V::loadu(c + pwlu::kSlopeLeft * stride_);
    out.slope_right = V::loadu(c + pwlu::kSlopeRight * stride_);
    out.first = V::loadu(c + pwlu::kFirst * stride_);
    out.last = V::loadu(c + pwlu::kLast * stride_);
    out.top = broadcast_.top;
    base = IndexVec<T>::loadu(&bases_[column]);
  }

 private:
  static Params<V> unpack(const T* q, int intervals) {
    Params<V> r;
    r.left = V(q[pwlu::kLeft]);
    r.right = V(q[pwlu::kRight]);
    r.inv_width = V(q[pwlu::kInvWidth]);
    r.inv_count = V(q[pwlu::kInvCount]);
    r.slope_left = V(q[pwlu::kSlopeLeft]);
    r.slope_right = V(q[pwlu::kSlopeRight]);
    r.first = V(q[pwlu::kFirst]);
    r.last = V(q[pwlu::kLast]);
    r.top = V(T(intervals - 1));
    return r;
  }

  int64_t row_;
  const T* points_ = nullptr;
  const T* steps_ = nullptr;
  Params<V> broadcast_{};
  std::vector<T> table_;
  std::vector<Index<T>> bases_;
  int64_t stride_ = 0;
};

template <class scalar_t, bool kPerLane>
void forward_tile(const PwluForwardArgs& args, const Tile& tile) {
  using T = opmath_t<scalar_t>;
  using V = Vec<T>;
  using Ops = PwluVecOps<T>;
  const PwluProblem& p = args.problem;
  const Layout& layout = p.layout;
  const TileParams<T> params(p, tile);
  const auto* x = static_cast<const scalar_t*>(args.x);
  auto* out = static_cast<scalar_t*>(args.out);
  alignas(64) T x_buffer[kBlock];
  alignas(64) T y_buffer[kBlock];
  Params<V> lane_params = params.broadcast();
  IndexVec<T> base(Index<T>(0));

  for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
    for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
      const int64_t count = std::min(kBlock, tile.column_end - begin);
      const int64_t offset = row * layout.row_length + begin;
      const T* xs = load_block(x + offset, count, x_buffer);
      T* ys = output_block(out + offset, y_buffer);
      for (int64_t i = 0; i < count; i += V::size()) {
        const int64_t lanes = std::min<int64_t>(V::size(), count - i);
        if constexpr (kPerLane) params.lanes(begin - tile.column_begin + i, lane_params, base);
        const V y = pwlu::forward<Ops>(load_lanes(xs + i, lanes), lane_params, params.points(),
                                       params.steps(), base);
        store_lanes(y, ys + i, lanes);
      }
      store_block(ys, count, out + offset);
    }
  }
}

template <class scalar_t, bool kPerLane>
void backward_tile(const PwluBackwardArgs& args, int64_t index, const Tile& tile) {
  using T = opmath_t<scalar_t>;
  using V = Vec<T>;
  using Ops = PwluVecOps<T>;
  constexpr int64_t kLanes = V::size();
  const PwluProblem& p = args.problem;
  const Layout& layout = p.layout;
  const TileParams<T> params(p, tile);
  const int64_t row_size = p.intervals + 1;
  const int count_coefficients = p.coefficients();
  const auto* grad = static_cast<const scalar_t*>(args.grad);
  const auto* x = static_cast<const scalar_t*>(args.x);
  auto* grad_x = static_cast<scalar_t*>(args.grad_x);

  // Point gradients: lane-private rows (broadcast) or one row per group (per-lane).
  std::vector<double> point_sums(
      static_cast<size_t>(kPerLane ? tile.group_count * row_size : row_size * kLanes), 0.0);
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
  alignas(64) Index<T> lane_index[kLanes];
  alignas(64) T lane_lower[kLanes];
  alignas(64) T lane_upper[kLanes];
  Params<V> lane_params = params.broadcast();
  IndexVec<T> base(Index<T>(0));
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
        if constexpr (kPerLane) params.lanes(column, lane_params, base);
        // Lanes past `lanes` load x = 0 and g = 0, so they add exact zeros.
        V* acc = &accumulators[(kPerLane ? column / kLanes : 0) * kExtras];
        pwlu::PointGradient<V, IndexVec<T>> point;
        const V gx = pwlu::backward<Ops>(load_lanes(xs + i, lanes), load_lanes(gs + i, lanes),
                                         lane_params, params.steps(), base, acc, &point);
        store_lanes(gx, gxs + i, lanes);
        point.index.store(lane_index);
        point.lower.store(lane_lower);
        point.upper.store(lane_upper);
        for (int64_t l = 0; l < lanes; ++l) {
          const int64_t at = kPerLane ? lane_index[l] : lane_index[l] * kLanes + l;
          point_sums[at] += static_cast<double>(lane_lower[l]);
          point_sums[at + (kPerLane ? 1 : kLanes)] += static_cast<double>(lane_upper[l]);
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

  double* partials = args.partials + index * layout.groups_per_tile * count_coefficients;
  for (int64_t local = 0; local < layout.groups_per_tile; ++local) {
    double* out = partials + local * count_coefficients;
    if (local >= tile.group_count) {
      std::fill(out, out + count_coefficients, 0.0);
      continue;
    }
    for (int64_t j = 0; j < row_size; ++j) {
      double total = 0.0;
      if constexpr (kPerLane) {
        total = point_sums[local * row_size + j];
      } else {
        for (int64_t l = 0; l < kLanes; ++l) total += point_sums[j * kLanes + l];
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

template <class scalar_t>
void forward_entry(const PwluForwardArgs& args, int64_t index) {
  const Tile tile = tile_at(args.problem.layout, index);
  if (args.problem.layout.per_lane()) {
    forward_tile<scalar_t, true>(args, tile);
  } else {
    forward_tile<scalar_t, false>(args, tile);
  }
}

template <class scalar_t>
void backward_entry(const PwluBackwardArgs& args, int64_t index) {
  const Tile tile = tile_at(args.problem.layout, index);
  if (args.problem.layout.per_lane()) {
    backward_tile<scalar_t, true>(args, index, tile);
  } else {
    backward_tile<scalar_t, false>(args, index, tile);
  }
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
