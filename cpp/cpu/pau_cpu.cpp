// The CPU entry points of pau::forward and pau::backward: checked arguments
// to a kernel launch (cpu/pau_kernel.cpp) and back to tensors.
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/launch.h"
#include "ops/pau.h"

namespace pau {

using at::Tensor;

namespace {

Tensor forward_cpu(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                   c10::string_view variant, int64_t dim) {
  const PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  const Tensor xd = dense(x);
  Tensor out = at::empty_like(xd);
  if (xd.numel() == 0) return out;
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type());
  const cpu::ForwardArgs launch{coefficients.problem(xd, args), xd.const_data_ptr(),
                                out.mutable_data_ptr()};
  run_tiles(cpu::kernel_table().forward[kernel_index(x, "pau")], launch);
  return out;
}

std::tuple<Tensor, Tensor, Tensor> backward_cpu(const Tensor& grad_output, const Tensor& x,
                                                const Tensor& numerator,
                                                const Tensor& denominator,
                                                c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  Tensor grad_x = at::empty_like(xd);
  if (xd.numel() == 0) {
    return {grad_x, at::zeros_like(numerator), at::zeros_like(denominator)};
  }
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type());
  const cpu::Problem problem = coefficients.problem(xd, args);
  std::vector<double> partials = partials_buffer(problem.layout, problem.coefficients());
  const cpu::BackwardArgs launch{problem, grad.const_data_ptr(), xd.const_data_ptr(),
                                 grad_x.mutable_data_ptr(), partials.data()};
  run_tiles(cpu::kernel_table().backward[kernel_index(x, "pau")], launch);
  auto [grad_numerator, grad_denominator] = coefficient_gradients(problem, partials, numerator);
  return {grad_x, grad_numerator, grad_denominator};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> double_backward_cpu(
    const Tensor& grad_grad_x, const Tensor& grad_grad_numerator,
    const Tensor& grad_grad_denominator, const Tensor& grad_output, const Tensor& x,
    const Tensor& numerator, const Tensor& denominator, c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_double_backward_args(grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                     grad_output, x, numerator, denominator, variant, dim);
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  const Tensor upstream = in_memory_order_of(grad_grad_x, xd);
  Tensor grad_grad = at::empty_like(xd);
  Tensor grad_x = at::empty_like(xd);
  if (xd.numel() == 0) {
    return {grad_grad, grad_x, at::zeros_like(numerator, at::MemoryFormat::Contiguous),
            at::zeros_like(denominator, at::MemoryFormat::Contiguous)};
  }
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type());
  const at::ScalarType compute = compute_type(x.scalar_type());
  const std::vector<double> alpha = host_values(grad_grad_numerator, compute);
  const std::vector<double> beta = host_values(grad_grad_denominator, compute);
  std::vector<math::ExtendedDegrees> degrees(static_cast<size_t>(args.groups));
  for (int64_t g = 0; g < args.groups; ++g) {
    degrees[g] = math::extended_degrees(
        coefficients.numerator.data() + g * (args.m + 1),
        coefficients.denominator.data() + g * args.n, alpha.data() + g * (args.m + 1),
        beta.data() + g * args.n, args.m, args.n);
  }
  const cpu::Problem problem = coefficients.problem(xd, args);
  std::vector<double> partials = partials_buffer(problem.layout, problem.coefficients());
  const cpu::DoubleBackwardArgs launch{problem,
                                       alpha.data(),
                                       beta.data(),
                                       degrees.data(),
                                       grad.const_data_ptr(),
                                       xd.const_data_ptr(),
                                       upstream.const_data_ptr(),
                                       grad_grad.mutable_data_ptr(),
                                       grad_x.mutable_data_ptr(),
                                       partials.data()};
  run_tiles(cpu::kernel_table().double_backward[kernel_index(x, "pau")], launch);
  auto [grad_numerator, grad_denominator] = coefficient_gradients(problem, partials, numerator);
  return {grad_grad, grad_x, grad_numerator, grad_denominator};
}

}  // namespace

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
  m.impl("double_backward", &double_backward_cpu);
}

}  // namespace pau
