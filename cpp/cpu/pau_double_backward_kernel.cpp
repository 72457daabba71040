// CPU kernel of pau::double_backward for one tile (see tiling.h): the math is
// math/pau_double_backward.h on at::vec::Vectorized lanes; the tile walk and
// the deterministic coefficient sums are those of the backward
// (pau_kernel.cpp), from tile_coefficients.h. Compiled once per instruction
// set like pau_kernel.cpp.
#include <ATen/cpu/vec/vec.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <type_traits>

#include "cpu/kernels.h"
#include "cpu/tile_coefficients.h"
#include "cpu/vec_ops.h"
#include "math/pau_double_backward.h"

namespace pau {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using math::ExtendedDegrees;
using math::Variant;

// Calls f with compile-time degrees for the paper's (5, 4) with every
// coefficient non-zero, else with the run-time ones.
template <class F>
void with_extended_degrees(const ExtendedDegrees& d, F&& f) {
  if (d.m == 5 && d.n == 4 && d.m_eff == 5 && d.n_eff == 4 && d.scaling_degree == 4) {
    f(math::FixedDegrees<5, 4>{});
  } else {
    f(d);
  }
}

// Whether every group of a per-lane tile has the degrees of its first group:
// otherwise no scaling degree is safe for all lanes (TileCoefficients::mixed).
bool same_degrees(const DoubleBackwardArgs& args, const Tile& tile) {
  const ExtendedDegrees& first = args.degrees[tile.first_group];
  for (int64_t g = tile.first_group; g < tile.first_group + tile.group_count; ++g) {
    const ExtendedDegrees& d = args.degrees[g];
    if (d.m_eff != first.m_eff || d.n_eff != first.n_eff ||
        d.scaling_degree != first.scaling_degree) {
      return false;
    }
  }
  return true;
}

// The element inputs and outputs of one block, in the compute type.
template <class T>
struct Block {
  alignas(64) T x[kBlock];
  alignas(64) T g[kBlock];
  alignas(64) T u[kBlock];
  alignas(64) T grad_grad[kBlock];
  alignas(64) T grad_x[kBlock];
};

// Where a block's values are: the tensors themselves, or Block's buffers.
template <class T>
struct BlockPointers {
  const T* x;
  const T* g;
  const T* u;
  T* grad_grad;
  T* grad_x;
};

template <class T>
BlockPointers<T> load(const DoubleBackwardArgs& args, const BlockStorage<T>& storage,
                                   int64_t offset, int64_t count, Block<T>& block) {
  return {storage.load(args.x, offset, count, block.x),
          storage.load(args.grad, offset, count, block.g),
          storage.load(args.grad_grad_x, offset, count, block.u),
          storage.output(args.grad_grad, offset, block.grad_grad),
          storage.output(args.grad_x, offset, block.grad_x)};
}

template <class T>
void store(const DoubleBackwardArgs& args, const BlockStorage<T>& storage, int64_t offset,
           int64_t count, const BlockPointers<T>& b) {
  storage.store(b.grad_grad, count, args.grad_grad, offset);
  storage.store(b.grad_x, count, args.grad_x, offset);
}

// One element at a time, each with its own group's degrees: per-lane tiles
// whose groups differ in degrees. Adds to sums[k * stride + column].
template <Variant variant, class T>
void double_backward_tile_lanewise(const DoubleBackwardArgs& args,
                                   const BlockStorage<T>& storage, const Tile& tile,
                                   const TileCoefficients<T>& coefficients,
                                   const TileCoefficients<T>& directions, double* sums,
                                   int64_t stride) {
  const Problem& p = args.problem;
  const int total = p.coefficients();
  Block<T> block;
  for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
    for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
      const int64_t count = std::min(kBlock, tile.column_end - begin);
      const int64_t offset = row * p.layout.row_length + begin;
      const auto b = load(args, storage, offset, count, block);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t column = begin - tile.column_begin + i;
        const ExtendedDegrees& degrees = args.degrees[tile.first_group + column / p.layout.run];
        T c[2 * math::kMaxTerms];
        T d[2 * math::kMaxTerms];
        T gc[2 * math::kMaxTerms] = {};
        coefficients.column_coefficients(column, c);
        directions.column_coefficients(column, d);
        b.grad_x[i] = math::double_backward<variant, math::ScalarOps<T>>(
            b.x[i], b.g[i], b.u[i], c, c + p.m + 1, d, d + p.m + 1, degrees, gc, gc + p.m + 1,
            &b.grad_grad[i]);
        for (int k = 0; k < total; ++k) sums[k * stride + column] += gc[k];
      }
      store(args, storage, offset, count, b);
    }
  }
}

template <Variant variant, class T>
void double_backward_tile(const DoubleBackwardArgs& args, const BlockStorage<T>& storage,
                          int64_t index) {
  using V = Vec<T>;
  const Problem& p = args.problem;
  const Layout& layout = p.layout;
  const Tile tile = tile_at(layout, index);
  const TileCoefficients<T> coefficients(p, tile);
  const TileCoefficients<T> directions(with_tables(p, args.alpha, args.beta), tile);
  const int count_coefficients = p.coefficients();
  GradientSums<T> sums(coefficients, count_coefficients);

  if (!same_degrees(args, tile)) {
    double_backward_tile_lanewise<variant, T>(args, storage, tile, coefficients, directions,
                                              sums.sums(), sums.stride());
  } else {
    V a_lanes[math::kMaxTerms];
    V b_lanes[math::kMaxTerms];
    V alpha_lanes[math::kMaxTerms];
    V beta_lanes[math::kMaxTerms];
    Block<T> block;
    with_constant(coefficients.per_lane(), [&](auto kPerLane) {
      with_extended_degrees(args.degrees[tile.first_group], [&](const auto& degrees) {
        using Deg = std::decay_t<decltype(degrees)>;
        V acc[2 * math::kMaxTerms];  // a broadcast tile's, in registers for fixed degrees
        for (int64_t row = tile.row_begin; row < tile.row_end; ++row) {
          for (int64_t begin = tile.column_begin; begin < tile.column_end; begin += kBlock) {
            const int64_t count = std::min(kBlock, tile.column_end - begin);
            const int64_t offset = row * layout.row_length + begin;
            const auto b = load(args, storage, offset, count, block);
            if constexpr (!kPerLane) {
              for (int k = 0; k < count_coefficients; ++k) acc[k] = V(T(0));
            }
            for_each_vector<T>(count, [&](int64_t i, int64_t lanes) PAU_INLINE_LAMBDA {
              const int64_t column = begin - tile.column_begin + i;
              const V* a;
              const V* bk;
              const V* alpha;
              const V* beta;
              coefficients.template lanes<kPerLane>(column, a, bk, a_lanes, b_lanes);
              directions.template lanes<kPerLane>(column, alpha, beta, alpha_lanes, beta_lanes);
              // Lanes past `lanes` load x = g = u = 0 and add exact zeros.
              V* target = acc;
              if constexpr (kPerLane) target = sums.position(column);
              V grad_grad;
              const V grad_x = math::double_backward<variant, VecOps<T>, Deg>(
                  load_lanes(b.x + i, lanes), load_lanes(b.g + i, lanes),
                  load_lanes(b.u + i, lanes), a, bk, alpha, beta, degrees, target,
                  target + degrees.m + 1, &grad_grad);
              store_lanes(grad_x, b.grad_x + i, lanes);
              store_lanes(grad_grad, b.grad_grad + i, lanes);
            });
            store(args, storage, offset, count, b);
            if constexpr (!kPerLane) sums.flush(acc);
          }
          sums.flush_positions(row - tile.row_begin + 1, row + 1 == tile.row_end);
        }
      });
    });
  }
  sums.write_partials(layout, tile,
                      args.partials + index * layout.groups_per_tile * count_coefficients);
}

template <class scalar_t>
void double_backward_entry(const DoubleBackwardArgs& args, int64_t tile) {
  using T = opmath_t<scalar_t>;
  const BlockStorage<T>& storage = block_storage<scalar_t>();
  switch (args.problem.variant) {
    case Variant::safe: return double_backward_tile<Variant::safe, T>(args, storage, tile);
    case Variant::abs_sum:
      return double_backward_tile<Variant::abs_sum, T>(args, storage, tile);
    case Variant::plain: return double_backward_tile<Variant::plain, T>(args, storage, tile);
  }
}

}  // namespace

DoubleBackwardKernel double_backward_kernel(DType dtype) {
  switch (dtype) {
    case DType::float32: return double_backward_entry<float>;
    case DType::float64: return double_backward_entry<double>;
    case DType::float16: return double_backward_entry<c10::Half>;
    case DType::bfloat16: return double_backward_entry<c10::BFloat16>;
  }
  return nullptr;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace pau
