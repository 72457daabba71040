// Host-side launch helpers shared by the CPU entry points of the operator
// families (cpu/pau_cpu.cpp, cpu/rpau_cpu.cpp, cpu/pwlu_cpu.cpp): coefficients
// as double, tile loop, deterministic reduction of per-tile partial gradients.
// Like the CUDA glue (cuda/*_cuda.cu) the entry points sit on both the
// operators' checks (ops/) and the kernels (cpu/kernels.h); neither of those
// includes anything of this layer.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "cpu/kernels.h"
#include "ops/pau.h"  // PauArgs, compute_type, group_run

namespace pau {

// The slot of x's dtype in the kernel tables.
inline int kernel_index(const at::Tensor& x, const char* op) {
  return static_cast<int>(dtype_of(x.scalar_type(), op));
}

// Sums the per-tile partial gradients of each group in tile order, so the
// result does not depend on the thread count. partials: (tiles,
// l.groups_per_tile, count) doubles as the backward kernels write them;
// sums: (G, count) doubles.
void reduce_partials(const cpu::Layout& l, int64_t count, const double* partials, double* sums);

// The per-tile partial-gradient buffer of a backward launch: (tiles,
// l.groups_per_tile, count) doubles. A std::vector, not a tensor: small, and
// the per-call cost of a tensor is most of a small input's time.
std::vector<double> partials_buffer(const cpu::Layout& l, int64_t count);

// The values of t, a 2-D CPU tensor of a floating dtype with any strides, as
// doubles in row-major order, each first rounded to `compute` (float or
// double) as t.to(compute) rounds. Allocates no tensor.
std::vector<double> host_values(const at::Tensor& t, at::ScalarType compute);

// A contiguous (rows, count) tensor of dtype `type` holding columns [first,
// first + count) of the row-major (rows, width) doubles, rounded as .to(type)
// rounds.
at::Tensor columns_as(const double* values, int64_t rows, int64_t width, int64_t first,
                      int64_t count, const at::TensorOptions& type);

// Coefficients as double on the host plus each group's effective degrees,
// kept alive for the duration of a kernel launch. The coefficients are first
// rounded to the kernels' compute type (double for float64 x, else float):
// the degrees must be those of the values the kernels use, or a b_k that
// rounds to 0 would still set the scaling degree and underflow D.
//
// coefficient_growth: how much larger the kernels may make a coefficient (RPAU
// multiplies each by up to 2), for the plain-powers limits.
struct HostCoefficients {
  std::vector<double> numerator;    // (G, m + 1)
  std::vector<double> denominator;  // (G, n)
  std::vector<math::Degrees> degrees;
  std::vector<double> plain_limits;

  HostCoefficients(const at::Tensor& num, const at::Tensor& den, const PauArgs& args,
                   at::ScalarType x_dtype, double coefficient_growth = 1.0)
      : numerator(host_values(num, compute_type(x_dtype))),
        denominator(host_values(den, compute_type(x_dtype))),
        degrees(static_cast<size_t>(args.groups)),
        plain_limits(static_cast<size_t>(args.groups)) {
    const double largest = compute_type(x_dtype) == at::kDouble
                               ? std::numeric_limits<double>::max()
                               : std::numeric_limits<float>::max();
    for (int64_t g = 0; g < args.groups; ++g) {
      const double* ag = numerator.data() + g * (args.m + 1);
      const double* bg = denominator.data() + g * args.n;
      math::Degrees& d = degrees[g];
      d.m = args.m;
      d.n = args.n;
      d.m_eff = std::max(0, math::effective_degree(ag, args.m + 1, 0));
      // b[k-1] holds b_k: an effective index i means degree i + 1.
      d.n_eff = math::effective_degree(bg, args.n, 0) + 1;
      plain_limits[g] =
          math::plain_powers_limit(ag, args.m, bg, args.n, coefficient_growth, largest);
    }
  }

  cpu::Problem problem(const at::Tensor& dense_x, const PauArgs& args) const {
    cpu::Problem p;
    p.layout = cpu::make_layout(dense_x.numel(), args.groups, group_run(dense_x, args));
    p.variant = args.variant;
    p.m = args.m;
    p.n = args.n;
    p.numerator = numerator.data();
    p.denominator = denominator.data();
    p.degrees = degrees.data();
    p.plain_limits = plain_limits.data();
    return p;
  }
};

// The coefficient gradients of a PAU/RPAU backward launch from its partials:
// (grad_numerator, grad_denominator) in the coefficients' dtype.
std::tuple<at::Tensor, at::Tensor> coefficient_gradients(const cpu::Problem& p,
                                                         const std::vector<double>& partials,
                                                         const at::Tensor& numerator);

template <class Args>
void run_tiles(void (*kernel)(const Args&, int64_t), const Args& args) {
  at::parallel_for(0, args.problem.layout.tiles(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) kernel(args, t);
  });
}

}  // namespace pau
