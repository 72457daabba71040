// The CPU entry points of pau::rpau_forward, pau::rpau_backward and
// pau::rpau_noise: the noise tables from alpha, then a launch of the RPAU
// kernels of cpu/pau_kernel.cpp (or PAU's own where alpha is 0 everywhere).
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/launch.h"
#include "math/counter_rng.h"
#include "ops/pau.h"
#include "ops/rpau.h"

namespace pau {

using at::Tensor;

namespace {

// The noise factors' tables for the kernels (see cpu::Noise), built from alpha.
struct HostNoise {
  // base then scale, each laid out like the coefficients: (G, m + 1) for the
  // numerator, then (G, n) for the denominator.
  std::vector<double> tables;
  cpu::Noise noise;
  bool zero = true;  // alpha == 0 everywhere: RPAU is PAU

  HostNoise(const Tensor& alpha, const Tensor& seed_offset, const PauArgs& args) {
    const int64_t count = args.m + 1 + args.n;
    const std::vector<double> values =
        host_values(alpha.expand({args.groups, count}), at::kDouble);
    for (const double v : values) {
      TORCH_CHECK_VALUE(rng::alpha_usable(v), "pau: alpha must be in [0, 1), got ", v);
      zero = zero && v == 0.0;
    }
    const int64_t size = args.groups * count;
    tables.resize(static_cast<size_t>(2 * size));
    double* base = tables.data();
    double* scale = base + size;
    // The kernels index the numerator part as (G, m + 1) and the denominator
    // part as (G, n): split the rows.
    const int64_t numerator_size = args.groups * (args.m + 1);
    for (int64_t g = 0; g < args.groups; ++g) {
      for (int64_t j = 0; j < count; ++j) {
        const double a = values[g * count + j];
        const int64_t at = j <= args.m ? g * (args.m + 1) + j
                                       : numerator_size + g * args.n + (j - args.m - 1);
        base[at] = rng::factor_base(a);
        scale[at] = rng::factor_scale(a);
      }
    }
    noise.base_numerator = base;
    noise.base_denominator = base + numerator_size;
    noise.scale_numerator = scale;
    noise.scale_denominator = scale + numerator_size;
    noise.stream = stream_of(seed_offset, static_cast<int>(count));
  }
};

// alpha == 0 everywhere: RPAU is PAU, computed by PAU's own CPU kernel on x's
// own layout, so results and coefficient-gradient sums are PAU's bit for bit.
const c10::DispatchKeySet kCpuKeys(c10::DispatchKey::CPU);

Tensor rpau_forward_cpu(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                        const Tensor& alpha, const Tensor& seed_offset, c10::string_view variant,
                        int64_t dim) {
  const PauArgs args = check_rpau_args(x, numerator, denominator, alpha, seed_offset, variant,
                                       dim);
  const HostNoise host_noise(alpha, seed_offset, args);
  if (host_noise.zero) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::forward", "")
                               .typed<PauForward>();
    return op.redispatch(kCpuKeys, x, numerator, denominator, variant, dim);
  }
  // Element index = memory offset requires a contiguous x.
  const Tensor xc = x.contiguous();
  Tensor out = at::empty_like(xc);
  if (xc.numel() == 0) return like_x(x, out);
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type(),
                                           /*coefficient_growth=*/2.0);
  cpu::Problem problem = coefficients.problem(xc, args);
  const auto& table = cpu::kernel_table();
  const int dtype = kernel_index(x, "pau");
  problem.noise = &host_noise.noise;
  const cpu::ForwardArgs launch{problem, xc.const_data_ptr(), out.mutable_data_ptr()};
  run_tiles(table.rpau_forward[dtype], launch);
  return like_x(x, out);
}

std::tuple<Tensor, Tensor, Tensor> rpau_backward_cpu(const Tensor& grad_output, const Tensor& x,
                                                     const Tensor& numerator,
                                                     const Tensor& denominator,
                                                     const Tensor& alpha,
                                                     const Tensor& seed_offset,
                                                     c10::string_view variant, int64_t dim) {
  const PauArgs args = check_rpau_backward_args(grad_output, x, numerator, denominator, alpha,
                                                seed_offset, variant, dim);
  const HostNoise host_noise(alpha, seed_offset, args);
  if (host_noise.zero) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::backward", "")
                               .typed<PauBackward>();
    return op.redispatch(kCpuKeys, grad_output, x, numerator, denominator, variant, dim);
  }
  const Tensor xc = x.contiguous();
  const Tensor grad = grad_output.contiguous();
  Tensor grad_x = at::empty_like(xc);
  if (xc.numel() == 0) {
    return {like_x(x, grad_x), at::zeros_like(numerator), at::zeros_like(denominator)};
  }
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type(),
                                           /*coefficient_growth=*/2.0);
  cpu::Problem problem = coefficients.problem(xc, args);
  problem.noise = &host_noise.noise;
  std::vector<double> partials = partials_buffer(problem.layout, problem.coefficients());
  const cpu::BackwardArgs launch{problem, grad.const_data_ptr(), xc.const_data_ptr(),
                                 grad_x.mutable_data_ptr(), partials.data()};
  run_tiles(cpu::kernel_table().rpau_backward[kernel_index(x, "pau")], launch);
  auto [grad_numerator, grad_denominator] = coefficient_gradients(problem, partials, numerator);
  return {like_x(x, grad_x), grad_numerator, grad_denominator};
}

// u_ij for the first `numel` logical elements: (numel, coefficients) float64.
// For tests and debugging; the kernels never materialize the noise.
Tensor rpau_noise_cpu(const Tensor& seed_offset, int64_t numel, int64_t coefficients) {
  check_rpau_noise_args(seed_offset, numel, coefficients);
  const rng::Stream stream = stream_of(seed_offset, static_cast<int>(coefficients));
  Tensor u = at::empty({numel, coefficients}, seed_offset.options().dtype(at::kDouble));
  double* out = u.mutable_data_ptr<double>();
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t j = 0; j < coefficients; ++j) {
        out[i * coefficients + j] = rng::uniform(stream, static_cast<uint64_t>(i), int(j));
      }
    }
  });
  return u;
}

}  // namespace

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("rpau_forward", &rpau_forward_cpu);
  m.impl("rpau_backward", &rpau_backward_cpu);
  m.impl("rpau_noise", &rpau_noise_cpu);
}

}  // namespace pau
