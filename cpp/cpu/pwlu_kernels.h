// Interface between the PWLU operator glue and its CPU kernels (compiled once
// per instruction set from cpu/pwlu_kernel.cpp).
#pragma once

#include <cstdint>

#include "cpu/kernels.h"  // DType, kDTypes
#include "cpu/tiling.h"
#include "math/pwlu_math.h"

namespace pau {
namespace cpu {

// Group tables in the compute type (float for float32/float16/bfloat16 x,
// double for float64 x), one row per group, prepared once per call.
struct PwluProblem {
  Layout layout;
  int intervals = 0;             // N
  const void* points = nullptr;  // (G, N+1): Y_0..Y_N
  const void* steps = nullptr;   // (G, N+1): Y_{k+1} - Y_k, last column unused
  const void* params = nullptr;  // (G, pwlu::kParams): see pwlu_math.h
  // Per-group gradient entries: the N+1 points, then pwlu::kExtras.
  int coefficients() const { return intervals + 1 + pwlu::kExtras; }
};

struct PwluForwardArgs {
  PwluProblem problem;
  const void* x;
  void* out;
};

// The backward runs in waves of whole column tiles (every row tile of column
// tiles [first_column_tile, first_column_tile + wave_columns)), so that its
// partials stay bounded for large G x N. partials: (layout.row_tiles,
// wave_columns, layout.groups_per_tile, problem.coefficients()) doubles; tile
// t writes slot partial_slot(t).
struct PwluBackwardArgs {
  PwluProblem problem;
  const void* grad;
  const void* x;
  void* grad_x;
  double* partials;
  int64_t first_column_tile;
  int64_t wave_columns;

  int64_t partial_slot(int64_t tile) const {
    const int64_t columns = problem.layout.column_tiles;
    return (tile / columns) * wave_columns + (tile % columns - first_column_tile);
  }
};

struct PwluKernelTable {
  void (*forward[kDTypes])(const PwluForwardArgs&, int64_t tile);
  void (*backward[kDTypes])(const PwluBackwardArgs&, int64_t tile);
};

namespace DEFAULT { const PwluKernelTable& pwlu_kernels(); }
namespace AVX2 { const PwluKernelTable& pwlu_kernels(); }
namespace AVX512 { const PwluKernelTable& pwlu_kernels(); }

const PwluKernelTable& pwlu_kernel_table();

}  // namespace cpu
}  // namespace pau
