// The CPU entry points of pau::pwlu_forward and pau::pwlu_backward: the
// group tables on the host, then a launch of cpu/pwlu_kernel.cpp's kernels
// (the backward in waves that bound its partial sums' memory).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "cpu/launch.h"
#include "cpu/pwlu_kernels.h"
#include "math/pwlu_math.h"
#include "ops/common.h"
#include "ops/pwlu.h"

namespace pau {

using at::Tensor;

namespace {

// The group tables in the compute type on the host, in one allocation that
// lives for the duration of a kernel launch.
struct HostTables {
  Tensor storage;

  HostTables(const Tensor& points, const Tensor& bounds, const Tensor& slopes,
             const PwluArgs& args, at::ScalarType ctype)
      : storage(pwlu_group_tables(points, bounds, slopes, args, ctype)) {}

  cpu::PwluProblem problem(const Tensor& dense_x, const PwluArgs& args) const {
    const int64_t run = group_run(dense_x, args.dim, args.groups);
    const bool per_lane = run < cpu::kMinRun && args.groups > 1;
    // Per-tile gradient state is N + 1 + 4 doubles per lane (broadcast tiles,
    // at most 16 lanes) or per group of a per-lane tile: keep tiles at least
    // 8 times that large so zeroing and reducing it stays cheap.
    const int64_t tables =
        per_lane ? std::min(args.groups, cpu::ceil_div(cpu::kPerLaneColumns, run)) : 16;
    const int64_t tile_elements =
        std::max(cpu::kTileElements, 8 * tables * (args.intervals + 1 + pwlu::kExtras));
    const PwluTablePointers pointers = pwlu_table_pointers(storage, args);
    cpu::PwluProblem p;
    p.layout = cpu::make_layout(dense_x.numel(), args.groups, run, tile_elements);
    p.intervals = args.intervals;
    p.points = pointers.points;
    p.steps = pointers.steps;
    p.params = pointers.params;
    return p;
  }
};

// The backward's per-tile partial gradients are (tiles, groups per tile, N + 5)
// doubles; for all tiles at once that is at least G (N + 5) doubles and grows
// with the tiles per group (G = 65536, N = 1000 needed 0.5 GB on top of as much
// again for the sums). Run the tiles in waves of whole column tiles instead,
// each reduced into the outputs before the next, with at most this many bytes
// of partials (or one column tile's, if larger).
constexpr int64_t kWavePartialBytes = int64_t{32} << 20;

// Doubles of partials one column tile (every row tile of it) writes.
int64_t column_tile_partials(const cpu::PwluProblem& p) {
  return p.layout.row_tiles * p.layout.groups_per_tile * p.coefficients();
}

// Column tiles per wave: as many as fit kWavePartialBytes, whole groups
// (broadcast tiles split a group's run over tiles_per_group column tiles).
int64_t wave_column_tiles(const cpu::PwluProblem& p) {
  const cpu::Layout& l = p.layout;
  const int64_t unit = l.per_lane() ? 1 : l.tiles_per_group;
  const int64_t fit = kWavePartialBytes / static_cast<int64_t>(sizeof(double)) /
                      std::max<int64_t>(1, unit * column_tile_partials(p));
  return std::min(l.column_tiles, unit * std::max<int64_t>(1, fit));
}

int64_t partial_elements(const cpu::PwluProblem& p, int64_t wave_columns) {
  return wave_columns * column_tile_partials(p);
}

// Runs the tiles of launch's wave, in parallel.
void run_wave(void (*kernel)(const cpu::PwluBackwardArgs&, int64_t),
              const cpu::PwluBackwardArgs& launch) {
  const cpu::Layout& l = launch.problem.layout;
  const int64_t columns = launch.wave_columns;
  at::parallel_for(0, l.row_tiles * columns, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      kernel(launch, (i / columns) * l.column_tiles + launch.first_column_tile + i % columns);
    }
  });
}

// Sums the wave's partials of each of its groups in tile order (row tile, then
// column tile: the same order for every wave size and thread count, so
// bitwise reproducible) and writes them, rounded to the parameters' dtype,
// into that group's rows of the gradients in `result`.
void reduce_wave(const cpu::PwluBackwardArgs& launch, const PwluArgs& args, PwluGrads& result) {
  const cpu::Layout& l = launch.problem.layout;
  const int64_t count = launch.problem.coefficients();
  const int64_t columns = launch.wave_columns;
  const int64_t first_group = l.per_lane() ? launch.first_column_tile * l.groups_per_tile
                                           : launch.first_column_tile / l.tiles_per_group;
  const int64_t last_group =
      l.per_lane()
          ? std::min(l.groups, (launch.first_column_tile + columns) * l.groups_per_tile)
          : (launch.first_column_tile + columns) / l.tiles_per_group;
  const int64_t groups = last_group - first_group;
  Tensor sums = at::empty({groups, count}, std::get<0>(result).options().dtype(at::kDouble));
  double* out = sums.mutable_data_ptr<double>();
  const double* in = launch.partials;
  // Below about this many additions a thread team costs more than it saves.
  constexpr int64_t kParallelWork = 1 << 15;
  const int64_t per_group = count * l.row_tiles * (l.per_lane() ? 1 : l.tiles_per_group);
  const int64_t grain = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, per_group));
  at::parallel_for(0, groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t local = begin; local < end; ++local) {
      const int64_t g = first_group + local;
      for (int64_t k = 0; k < count; ++k) {
        double total = 0.0;
        for (int64_t rt = 0; rt < l.row_tiles; ++rt) {
          if (l.per_lane()) {
            const int64_t slot = rt * columns + g / l.groups_per_tile - launch.first_column_tile;
            total += in[(slot * l.groups_per_tile + g % l.groups_per_tile) * count + k];
          } else {
            for (int64_t ct = g * l.tiles_per_group; ct < (g + 1) * l.tiles_per_group; ++ct) {
              total += in[(rt * columns + ct - launch.first_column_tile) * count + k];
            }
          }
        }
        out[local * count + k] = total;
      }
    }
  });
  // copy_ rounds as split_pwlu_gradients' .to(type) does.
  const int64_t n = args.intervals;
  std::get<1>(result).narrow(0, first_group, groups).copy_(sums.narrow(1, 0, n + 1));
  std::get<2>(result)
      .narrow(0, first_group, groups)
      .copy_(sums.narrow(1, n + 1 + pwlu::kGradLeft, 2));
  std::get<3>(result)
      .narrow(0, first_group, groups)
      .copy_(sums.narrow(1, n + 1 + pwlu::kGradSlopeLeft, 2));
}

Tensor pwlu_forward_cpu(const Tensor& x, const Tensor& points, const Tensor& bounds,
                        const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_args(x, points, bounds, slopes, dim);
  check_pwlu_bounds(bounds);
  const Tensor xd = dense(x);
  Tensor out = at::empty_like(xd);
  if (xd.numel() == 0) return out;
  const HostTables tables(points, bounds, slopes, args, compute_type(x.scalar_type()));
  const cpu::PwluForwardArgs launch{tables.problem(xd, args), xd.const_data_ptr(),
                                    out.mutable_data_ptr()};
  run_tiles(cpu::pwlu_kernel_table().forward[kernel_index(x, "pwlu")], launch);
  return out;
}

PwluGrads pwlu_backward_cpu(const Tensor& grad_output, const Tensor& x, const Tensor& points,
                        const Tensor& bounds, const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_backward_args(grad_output, x, points, bounds, slopes, dim);
  check_pwlu_bounds(bounds);
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  if (xd.numel() == 0) return pwlu_empty_input_gradients(xd, points, bounds, slopes);
  Tensor grad_x = at::empty_like(xd);
  const HostTables tables(points, bounds, slopes, args, compute_type(x.scalar_type()));
  const cpu::PwluProblem problem = tables.problem(xd, args);
  const auto contiguous = at::MemoryFormat::Contiguous;
  PwluGrads result{grad_x, at::empty_like(points, contiguous), at::empty_like(bounds, contiguous),
               at::empty_like(slopes, contiguous)};
  const auto kernel = cpu::pwlu_kernel_table().backward[kernel_index(x, "pwlu")];
  cpu::PwluBackwardArgs launch{problem,  grad.const_data_ptr(), xd.const_data_ptr(),
                               grad_x.mutable_data_ptr(), nullptr, 0, 0};
  const int64_t wave = wave_column_tiles(problem);
  std::vector<double> partials(static_cast<size_t>(partial_elements(problem, wave)));
  launch.partials = partials.data();
  for (int64_t first = 0; first < problem.layout.column_tiles; first += wave) {
    launch.first_column_tile = first;
    launch.wave_columns = std::min(wave, problem.layout.column_tiles - first);
    run_wave(kernel, launch);
    reduce_wave(launch, args, result);
  }
  return result;
}

}  // namespace

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("pwlu_forward", &pwlu_forward_cpu);
  m.impl("pwlu_backward", &pwlu_backward_cpu);
}

}  // namespace pau
