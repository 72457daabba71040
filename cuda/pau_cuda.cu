// CUDA backend of pau::forward and pau::backward, and of RPAU's
// pau::rpau_forward and pau::rpau_backward: torch glue only. Checks the
// arguments (the same checks as the CPU backend), makes x dense, picks the
// device and stream, allocates outputs and the workspace through torch, and
// calls the torch-free launchers of pau_kernels.h.
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h, which pulls in
// cuBLAS/cuSPARSE headers): the stream, the device guard and error checks are
// all c10's, and at::cuda::getCurrentCUDAStream is c10's function re-exported.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "math/counter_rng.h"
#include "ops/pau.h"
#include "ops/rpau.h"
#include "glue.h"
#include "pau_kernels.h"

namespace pau {
namespace {

using at::Tensor;

// The kernels read float or double coefficients. Half and bfloat16 ones (a
// model.half()'d PAU) are used in float, as on the CPU, and their gradients
// are computed in float and rounded once at the end.
Tensor kernel_coefficients(const Tensor& c) {
  return c.to(compute_type(c.scalar_type())).contiguous();
}

// noisy: the plan of RPAU's kernels (noise tables beside the coefficients).
cuda::Problem make_problem(const Tensor& dense_x, const Tensor& numerator,
                           const Tensor& denominator, const PauArgs& args, bool noisy = false) {
  TORCH_CHECK(numerator.is_contiguous() && denominator.is_contiguous(),
              "pau: internal error: coefficients must be contiguous here");
  TORCH_CHECK(numerator.scalar_type() == at::kFloat || numerator.scalar_type() == at::kDouble,
              "pau: internal error: the CUDA kernels take float or double coefficients, got ",
              numerator.scalar_type());
  cuda::Problem p;
  p.dtype = dtype_of(dense_x.scalar_type(), "pau");
  p.variant = args.variant;
  p.m = args.m;
  p.n = args.n;
  p.coefficients_double = numerator.scalar_type() == at::kDouble;
  p.numerator = numerator.const_data_ptr();
  p.denominator = args.n > 0 ? denominator.const_data_ptr() : nullptr;
  p.plan = cuda::make_problem_plan(dense_x.numel(), args.groups, group_run(dense_x, args), args.m,
                                   args.n, p.dtype, noisy);
  p.max_blocks = glue::max_blocks(dense_x);
  TORCH_CHECK(p.plan.tiles() > 0, "pau: internal error: empty CUDA tile plan for ",
              dense_x.numel(), " elements");
  TORCH_CHECK(p.plan.shared_bytes(compute_size(p.dtype), true) <= 48 * 1024,
              "pau: internal error: CUDA tile plan needs ",
              p.plan.shared_bytes(compute_size(p.dtype), true), " bytes of shared memory");
  return p;
}

Tensor forward_cuda(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                    c10::string_view variant, int64_t dim) {
  const PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  glue::check_cuda_inputs("pau: forward", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xd = dense(x);
  Tensor out = at::empty_like(xd);
  if (xd.numel() == 0) return out;
  const Tensor num = kernel_coefficients(numerator);
  const Tensor den = kernel_coefficients(denominator);
  const cuda::Problem problem = make_problem(xd, num, den, args);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(cuda::launch_forward(problem, xd.const_data_ptr(), out.mutable_data_ptr(), stream));
  return out;
}

std::tuple<Tensor, Tensor, Tensor> backward_cuda(const Tensor& grad_output, const Tensor& x,
                                                 const Tensor& numerator,
                                                 const Tensor& denominator,
                                                 c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  glue::check_cuda_inputs("pau: backward", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  Tensor grad_x = at::empty_like(xd);
  // Contiguous (G, m + 1) and (G, n), as the CPU and meta kernels return.
  const auto kernel_options = numerator.options().dtype(compute_type(numerator.scalar_type()));
  Tensor grad_numerator = at::empty({args.groups, args.m + 1}, kernel_options);
  Tensor grad_denominator = at::empty({args.groups, args.n}, kernel_options);
  // In the coefficients' own dtype, contiguous (G, m + 1) and (G, n).
  const auto as_coefficients = [&](const Tensor& g) { return g.to(numerator.scalar_type()); };
  if (xd.numel() == 0) {
    grad_numerator.zero_();
    grad_denominator.zero_();
    return {grad_x, as_coefficients(grad_numerator), as_coefficients(grad_denominator)};
  }
  const Tensor num = kernel_coefficients(numerator);
  const Tensor den = kernel_coefficients(denominator);
  const cuda::Problem problem = make_problem(xd, num, den, args);
  const int64_t workspace_elements = problem.plan.workspace_elements();
  TORCH_CHECK(workspace_elements > 0, "pau: internal error: empty CUDA workspace");
  const Tensor workspace = at::empty({workspace_elements}, xd.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(cuda::launch_backward(
      problem, grad.const_data_ptr(), xd.const_data_ptr(), grad_x.mutable_data_ptr(),
      workspace.mutable_data_ptr<double>(), grad_numerator.mutable_data_ptr(),
      args.n > 0 ? grad_denominator.mutable_data_ptr() : nullptr, stream));
  return {grad_x, as_coefficients(grad_numerator), as_coefficients(grad_denominator)};
}

// ---------------------------------------------------------------------------
// RPAU

// alpha as the kernels read it (cuda::Alpha): float or double in x's device
// memory, broadcast to (G, m + 1 + n) by strides. The glue never reads alpha
// on the host, so an RPAU call never waits for the stream (and can be captured
// in a CUDA graph); the kernels compute the noise tables from it, and a group
// with an alpha outside [0, 1) gets NaN results (the CPU backend raises).
// Half or bfloat16 alpha (a model.half()'d RPAU) goes through one small
// conversion to double.
struct KernelAlpha {
  Tensor values;  // holds the conversion, if any, until the launch
  cuda::Alpha alpha;

  KernelAlpha(const Tensor& alpha_in, const PauArgs& args) {
    const bool native =
        alpha_in.scalar_type() == at::kFloat || alpha_in.scalar_type() == at::kDouble;
    values = (native ? alpha_in : alpha_in.to(at::kDouble))
                 .expand({args.groups, args.m + 1 + args.n});
    alpha.values = values.const_data_ptr();
    alpha.is_double = values.scalar_type() == at::kDouble;
    alpha.group_stride = values.stride(0);
    alpha.coefficient_stride = values.stride(1);
  }
};

cuda::Problem make_rpau_problem(const Tensor& xc, const Tensor& num, const Tensor& den,
                                const PauArgs& args, const KernelAlpha& alpha,
                                const Tensor& seed_offset) {
  cuda::Problem p = make_problem(xc, num, den, args, /*noisy=*/true);
  p.alpha = alpha.alpha;
  p.stream = stream_of(seed_offset, args.m + 1 + args.n);
  return p;
}

Tensor rpau_forward_cuda(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                         const Tensor& alpha, const Tensor& seed_offset, c10::string_view variant,
                         int64_t dim) {
  const PauArgs args =
      check_rpau_args(x, numerator, denominator, alpha, seed_offset, variant, dim);
  glue::check_cuda_inputs("pau: rpau_forward", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous();
  Tensor out = at::empty_like(xc);
  if (xc.numel() == 0) return like_x(x, out);
  const Tensor num = kernel_coefficients(numerator);
  const Tensor den = kernel_coefficients(denominator);
  const KernelAlpha kernel_alpha(alpha, args);
  const cuda::Problem problem = make_rpau_problem(xc, num, den, args, kernel_alpha, seed_offset);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(
      cuda::launch_forward(problem, xc.const_data_ptr(), out.mutable_data_ptr(), stream));
  return like_x(x, out);
}

std::tuple<Tensor, Tensor, Tensor> rpau_backward_cuda(
    const Tensor& grad_output, const Tensor& x, const Tensor& numerator,
    const Tensor& denominator, const Tensor& alpha, const Tensor& seed_offset,
    c10::string_view variant, int64_t dim) {
  const PauArgs args = check_rpau_backward_args(grad_output, x, numerator, denominator, alpha,
                                                seed_offset, variant, dim);
  glue::check_cuda_inputs("pau: rpau_backward", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous();
  const Tensor grad = grad_output.contiguous();
  Tensor grad_x = at::empty_like(xc);
  const auto kernel_options = numerator.options().dtype(compute_type(numerator.scalar_type()));
  Tensor grad_numerator = at::empty({args.groups, args.m + 1}, kernel_options);
  Tensor grad_denominator = at::empty({args.groups, args.n}, kernel_options);
  const auto as_coefficients = [&](const Tensor& g) { return g.to(numerator.scalar_type()); };
  if (xc.numel() == 0) {
    grad_numerator.zero_();
    grad_denominator.zero_();
    return {like_x(x, grad_x), as_coefficients(grad_numerator),
            as_coefficients(grad_denominator)};
  }
  const Tensor num = kernel_coefficients(numerator);
  const Tensor den = kernel_coefficients(denominator);
  const KernelAlpha kernel_alpha(alpha, args);
  const cuda::Problem problem = make_rpau_problem(xc, num, den, args, kernel_alpha, seed_offset);
  const Tensor workspace =
      at::empty({problem.plan.workspace_elements()}, xc.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(cuda::launch_backward(
      problem, grad.const_data_ptr(), xc.const_data_ptr(), grad_x.mutable_data_ptr(),
      workspace.mutable_data_ptr<double>(), grad_numerator.mutable_data_ptr(),
      args.n > 0 ? grad_denominator.mutable_data_ptr() : nullptr, stream));
  return {like_x(x, grad_x), as_coefficients(grad_numerator), as_coefficients(grad_denominator)};
}

}  // namespace

TORCH_LIBRARY_IMPL(pau, CUDA, m) {
  m.impl("forward", &forward_cuda);
  m.impl("backward", &backward_cuda);
  m.impl("rpau_forward", &rpau_forward_cuda);
  m.impl("rpau_backward", &rpau_backward_cuda);
}

}  // namespace pau
