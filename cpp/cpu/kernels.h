// Interface between the operator glue (which knows torch) and the CPU kernels
// (compiled once per instruction set, torch-free apart from at::vec).
#pragma once

#include <cstdint>

#include "cpu/tiling.h"
#include "math/counter_rng.h"
#include "math/dtype.h"
#include "math/pau_double_backward.h"
#include "math/pau_math.h"

namespace pau {
namespace cpu {

// RPAU's perturbation (see counter_rng.h): the coefficient c_j of the element
// with logical index i is multiplied by base_j + scale_j * k_ij. The
// tables have the coefficients' shapes, (G, m + 1) and (G, n). The kernels
// take the element index from the memory offset, so x must be contiguous.
struct Noise {
  const double* base_numerator = nullptr;
  const double* base_denominator = nullptr;
  const double* scale_numerator = nullptr;
  const double* scale_denominator = nullptr;
  rng::Stream stream{};
};

struct Problem {
  Layout layout;
  math::Variant variant;
  int m = 0;                          // numerator degree
  int n = 0;                          // denominator degree
  const double* numerator = nullptr;  // (G, m + 1)
  const double* denominator = nullptr;// (G, n)
  const math::Degrees* degrees = nullptr;  // (G): with effective degrees
  // (G): math::plain_powers_limit of each group's coefficients: vectors whose
  // |x| are all within it are evaluated with plain powers.
  const double* plain_limits = nullptr;
  const Noise* noise = nullptr;       // RPAU kernels only
  int coefficients() const { return m + 1 + n; }
};

struct ForwardArgs {
  Problem problem;
  const void* x;
  void* out;
};

// partials: (tiles, layout.groups_per_tile, problem.coefficients()) doubles,
// the a_j gradients first, then the b_k ones.
struct BackwardArgs {
  Problem problem;
  const void* grad;
  const void* x;
  void* grad_x;
  double* partials;
};

// pau::double_backward (math/pau_double_backward.h). problem holds the
// coefficients a, b (its degrees: of a and b alone); alpha, beta are the
// upstream gradients of the coefficient gradients, laid out like them, and
// degrees (G) the groups' extended degrees. partials: as for BackwardArgs.
struct DoubleBackwardArgs {
  Problem problem;
  const double* alpha = nullptr;
  const double* beta = nullptr;
  const math::ExtendedDegrees* degrees = nullptr;
  const void* grad;             // g: backward's incoming gradient
  const void* x;
  const void* grad_grad_x;      // u = dL/dgrad_x
  void* grad_grad;              // dL/dg
  void* grad_x;                 // dL/dx
  double* partials;             // dL/da, dL/db
};

struct KernelTable {
  void (*forward[kDTypes])(const ForwardArgs&, int64_t tile);
  void (*backward[kDTypes])(const BackwardArgs&, int64_t tile);
  // RPAU: the same kernels with per-element perturbed coefficients.
  void (*rpau_forward[kDTypes])(const ForwardArgs&, int64_t tile);
  void (*rpau_backward[kDTypes])(const BackwardArgs&, int64_t tile);
  void (*double_backward[kDTypes])(const DoubleBackwardArgs&, int64_t tile);
};

// The double_backward entries of one ISA's table (pau_double_backward_kernel.cpp).
using DoubleBackwardKernel = void (*)(const DoubleBackwardArgs&, int64_t tile);
namespace DEFAULT { DoubleBackwardKernel double_backward_kernel(DType dtype); }
namespace AVX2 { DoubleBackwardKernel double_backward_kernel(DType dtype); }
namespace AVX512 { DoubleBackwardKernel double_backward_kernel(DType dtype); }

// One table per instruction set; kernel_table() in dispatch.cpp picks one.
namespace DEFAULT { const KernelTable& kernels(); }
namespace AVX2 { const KernelTable& kernels(); }
namespace AVX512 { const KernelTable& kernels(); }

const KernelTable& kernel_table();
const char* capability_name();

}  // namespace cpu
}  // namespace pau
