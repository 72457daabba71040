// Interface between the PWLU operator glue and its CPU kernels (compiled once
// per instruction set from cpu/pwlu_kernel.cpp).
#pragma once

#include <cstdint>

#include "cpu/kernels.h"  // DType, kDTypes
#include "cpu/tiling.h"
#include "pwlu_math.h"

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

// partials: (tiles, layout.groups_per_tile, problem.coefficients()) doubles.
struct PwluBackwardArgs {
  PwluProblem problem;
  const void* grad;
  const void* x;
  void* grad_x;
  double* partials;
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
