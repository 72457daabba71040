// Host side of the tiled CPU kernels, shared by every operator family: the
// dtype tag that indexes a kernel table, the parallel loop over tiles and the
// fixed-order reduction of per-tile partial gradients (see tiling.h).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "cpu/kernels.h"
#include "cpu/tiling.h"

namespace pau {
namespace cpu {

inline DType dtype_of(const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return DType::float32;
    case at::kDouble: return DType::float64;
    case at::kHalf: return DType::float16;
    default: return DType::bfloat16;
  }
}

// Runs kernel(args, tile) for every tile of args.problem.layout. Tiles write
// disjoint outputs, so the split across threads does not affect the result.
template <class Args>
void run_tiles(void (*kernel)(const Args&, int64_t), const Args& args) {
  at::parallel_for(0, args.problem.layout.tiles(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) kernel(args, t);
  });
}

// partials: (tiles, layout.groups_per_tile, count) doubles, as the backward
// kernels write them. Returns (G, count) doubles: each group's partials summed
// in tile order, so the result does not depend on the thread count.
inline at::Tensor reduce_partials(const Layout& l, int64_t count, const at::Tensor& partials) {
  at::Tensor sums = at::empty({l.groups, count}, partials.options());
  const double* in = partials.const_data_ptr<double>();
  double* out = sums.mutable_data_ptr<double>();
  at::parallel_for(0, l.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      for (int64_t k = 0; k < count; ++k) {
        double total = 0.0;
        for (int64_t rt = 0; rt < l.row_tiles; ++rt) {
          if (l.per_lane()) {
            const int64_t tile = rt * l.column_tiles + g / l.groups_per_tile;
            total += in[(tile * l.groups_per_tile + g % l.groups_per_tile) * count + k];
          } else {
            for (int64_t ct = g * l.tiles_per_group; ct < (g + 1) * l.tiles_per_group; ++ct) {
              total += in[(rt * l.column_tiles + ct) * count + k];
            }
          }
        }
        out[g * count + k] = total;
      }
    }
  });
  return sums;
}

}  // namespace cpu
}  // namespace pau
