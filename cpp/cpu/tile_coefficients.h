// Per-tile state shared by the CPU kernels of PAU's operators
// (pau_kernel.cpp: forward and backward, PAU and RPAU;
// pau_double_backward_kernel.cpp): the tile's coefficients as vector lanes,
// the compile-time dispatch on degrees and on flags, and the deterministic
// accumulation of coefficient gradients. Per ISA like vec_ops.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/tiling.h"
#include "cpu/vec_ops.h"
#include "math/pau_math.h"

namespace pau {
namespace cpu {
namespace CPU_CAPABILITY {

using math::Degrees;

// Calls f with compile-time degrees for the paper's (5, 4), else run-time ones.
template <class F>
void with_degrees(const Degrees& d, F&& f) {
  if (d.m == 5 && d.n == 4 && d.m_eff == 5 && d.n_eff == 4) {
    f(math::FixedDegrees<5, 4>{});
  } else {
    f(d);
  }
}

// A plain-powers limit in T: one beyond T's range becomes T's largest value,
// which every finite |x| is within and inf is not.
template <class T>
T limit_in(double limit) {
  return static_cast<T>(std::fmin(limit, static_cast<double>(std::numeric_limits<T>::max())));
}

// m + 1 + n of compile-time degrees, 0 for run-time ones.
template <class Deg>
constexpr int fixed_coefficients() {
  if constexpr (std::is_same_v<Deg, Degrees>) {
    return 0;
  } else {
    return Deg::m + 1 + Deg::n;
  }
}

// p with other (G, m + 1) and (G, n) tables in place of its coefficients:
// RPAU's noise tables, the double backward's directions.
inline Problem with_tables(const Problem& p, const double* numerator, const double* denominator) {
  Problem q = p;
  q.numerator = numerator;
  q.denominator = denominator;
  return q;
}

// Coefficients of one tile, as vectors: broadcast (one group) or per lane
// (a table with one column per tensor column, padded to whole vectors).
template <class T>
class TileCoefficients {
 public:
  TileCoefficients(const Problem& p, const Tile& tile) : per_lane_(p.layout.per_lane()) {
    const int count = p.coefficients();
    if (!per_lane_) {
      const int64_t g = tile.first_group;
      degrees_ = p.degrees[g];
      plain_limit_ = limit_in<T>(p.plain_limits[g]);
      for (int j = 0; j <= p.m; ++j) a_[j] = Vec<T>(static_cast<T>(p.numerator[g * (p.m + 1) + j]));
      for (int k = 0; k < p.n; ++k) b_[k] = Vec<T>(static_cast<T>(p.denominator[g * p.n + k]));
      return;
    }
    const int64_t columns = tile.column_end - tile.column_begin;
    stride_ = ceil_div(columns, Vec<T>::size()) * Vec<T>::size();
    table_.assign(static_cast<size_t>(count * stride_), T(0));
    degrees_ = p.degrees[tile.first_group];
    double plain_limit = HUGE_VAL;
    for (int64_t c = 0; c < columns; ++c) {
      const int64_t g = tile.first_group + c / p.layout.run;
      plain_limit = std::fmin(plain_limit, p.plain_limits[g]);
      for (int j = 0; j <= p.m; ++j) {
        table_[j * stride_ + c] = static_cast<T>(p.numerator[g * (p.m + 1) + j]);
      }
      for (int k = 0; k < p.n; ++k) {
        table_[(p.m + 1 + k) * stride_ + c] = static_cast<T>(p.denominator[g * p.n + k]);
      }
      // Lanes share one scaling degree only if their groups agree on it.
      mixed_ = mixed_ || p.degrees[g].m_eff != degrees_.m_eff ||
               p.degrees[g].n_eff != degrees_.n_eff;
    }
    plain_limit_ = limit_in<T>(plain_limit);
  }

  const Degrees& degrees() const { return degrees_; }
  bool per_lane() const { return per_lane_; }
  // Per-lane tile whose groups differ in effective degrees: no shared scaling
  // degree is safe for all lanes (a b = 0 lane scaled by its neighbours' x^-4
  // underflows to 0/0), so such tiles are evaluated one element at a time.
  bool mixed() const { return mixed_; }
  int64_t padded_columns() const { return stride_; }
  // The smallest math::plain_powers_limit of the tile's groups, in T.
  const Vec<T>& plain_limit() const { return plain_limit_; }

  // The m + 1 + n coefficients of tile column `column` (per-lane tiles).
  void column_coefficients(int64_t column, T* c) const {
    const int count = degrees_.m + 1 + degrees_.n;
    for (int j = 0; j < count; ++j) c[j] = table_[j * stride_ + column];
  }

  // Coefficient vectors for the lanes starting at tile column `column`.
  // Per-lane tiles fill `a` and `b` and point to them. kPerLane: per_lane().
  template <bool kPerLane>
  PAU_INLINE void lanes(int64_t column, const Vec<T>*& a, const Vec<T>*& b, Vec<T>* a_buffer,
                        Vec<T>* b_buffer) const {
    if constexpr (!kPerLane) {
      a = a_;
      b = b_;
      return;
    }
    const int m = degrees_.m;
    for (int j = 0; j <= m; ++j) a_buffer[j] = Vec<T>::loadu(&table_[j * stride_ + column]);
    for (int k = 0; k < degrees_.n; ++k) {
      b_buffer[k] = Vec<T>::loadu(&table_[(m + 1 + k) * stride_ + column]);
    }
    a = a_buffer;
    b = b_buffer;
  }

 private:
  bool per_lane_;
  bool mixed_ = false;
  Degrees degrees_{};
  Vec<T> plain_limit_;
  Vec<T> a_[math::kMaxTerms];
  Vec<T> b_[math::kMaxTerms];
  std::vector<T> table_;
  int64_t stride_ = 0;
};

// Calls f with `value` as a compile-time constant (std::true_type or
// std::false_type). For the tile kind, so that a broadcast tile's loops
// neither test it per vector nor keep their gradient accumulators in memory
// that a per-lane tile's pointer might alias; for plain powers, so that each
// block's vector loop holds one kind of powers only (with both, GCC kept the
// dead kind's terms in stack slots).
template <class F>
PAU_INLINE void with_constant(bool value, F&& f) {
  if (value) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}


// The coefficient gradients of one tile, accumulated deterministically: float
// accumulators (the caller's, for a broadcast tile's block, where they stay in
// registers; one set per vector position of a per-lane tile, flushed every
// kFlushRows rows) are added lane by lane to double sums in a fixed order,
// then summed per local group into the tile's partials (kernels.h).
template <class T>
class GradientSums {
  using V = Vec<T>;
  static constexpr int64_t kLanes = V::size();

 public:
  GradientSums(const TileCoefficients<T>& coefficients, int count)
      : count_(count),
        per_lane_(coefficients.per_lane()),
        positions_(per_lane_ ? coefficients.padded_columns() / kLanes : 1),
        stride_(per_lane_ ? coefficients.padded_columns() : kLanes),
        accumulators_(static_cast<size_t>(per_lane_ ? positions_ * count : 0), V(T(0))),
        sums_(static_cast<size_t>(count * stride_), 0.0) {}

  // Per-lane tiles: the accumulators of the vector at tile column `column`.
  PAU_INLINE V* position(int64_t column) {
    return &accumulators_[column / kLanes * count_];
  }

  // Adds a broadcast tile's block accumulators (count vectors) to the sums.
  void flush(const V* from) { add(from, 1); }

  // Per-lane tiles: after `rows_done` rows of the tile, flushes the
  // per-position accumulators when due (every kFlushRows rows, and at the end).
  void flush_positions(int64_t rows_done, bool last) {
    if (!per_lane_ || (!last && rows_done % kFlushRows != 0)) return;
    add(accumulators_.data(), positions_);
    std::fill(accumulators_.begin(), accumulators_.end(), V(T(0)));
  }

  // For element-by-element evaluation: coefficient k of tile column c is
  // sums()[k * stride() + c].
  double* sums() { return sums_.data(); }
  int64_t stride() const { return stride_; }

  // The tile's partials: (layout.groups_per_tile, count) doubles.
  void write_partials(const Layout& layout, const Tile& tile, double* partials) const {
    for (int64_t local = 0; local < layout.groups_per_tile; ++local) {
      for (int k = 0; k < count_; ++k) {
        double total = 0.0;
        if (local < tile.group_count) {
          const int64_t first = per_lane_ ? local * layout.run : 0;
          const int64_t last = per_lane_ ? first + layout.run : kLanes;
          for (int64_t c = first; c < last; ++c) total += sums_[k * stride_ + c];
        }
        partials[local * count_ + k] = total;
      }
    }
  }

 private:
  void add(const V* from, int64_t positions) {
    for (int64_t pos = 0; pos < positions; ++pos) {
      for (int k = 0; k < count_; ++k) {
        add_lanes_to(from[pos * count_ + k], &sums_[k * stride_ + pos * kLanes]);
      }
    }
  }

  int count_;
  bool per_lane_;
  int64_t positions_;
  int64_t stride_;
  std::vector<V> accumulators_;
  std::vector<double> sums_;
};

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace pau
