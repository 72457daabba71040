// CUDA backend of pau::pwlu_forward and pau::pwlu_backward: torch glue only,
// in the manner of pau_cuda.cu. Checks the arguments (the CPU backend's shape,
// dtype and device checks), makes x dense, picks the device and stream, builds
// the group tables on the device, allocates outputs and the workspace through
// torch, and calls the torch-free launchers of pwlu_kernels.h.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "ops/pau.h"
#include "ops/pwlu.h"
#include "glue.h"
#include "pwlu_kernels.h"

namespace pau {
namespace {

using at::Tensor;

const char* dtype_name(cuda::DType dtype) {
  switch (dtype) {
    case cuda::DType::float32: return "float32";
    case cuda::DType::float64: return "float64";
    case cuda::DType::float16: return "float16";
    default: return "bfloat16";
  }
}

// The CUDA backward keeps each group's point-gradient histogram in shared
// memory, which bounds N for float64 x below the operators' own limit; the
// launchers of both directions refuse such an N (as cudaErrorInvalidValue),
// so both check it here first to say why.
void check_intervals_supported(const PwluArgs& args, cuda::DType dtype) {
  TORCH_CHECK_VALUE(cuda::pwlu_intervals_supported(args.intervals, dtype),
                    "pwlu: the CUDA kernels support at most N = ", cuda::pwlu_max_intervals(dtype),
                    " intervals for ", dtype_name(dtype),
                    " x (the backward sums each group's N + 1 point gradients in shared "
                    "memory), got N = ", args.intervals,
                    "; use fewer intervals, float32 x, or the CPU");
}

// The group tables (pwlu_kernels.h), built on x's device by the table kernel
// from the parameters, float16/bfloat16 ones in float as on the CPU. Nothing
// is copied to or from the host, so a call never waits for the stream; the
// price is that unusable bounds (not finite with B_L < B_R, or too close for
// N intervals), which the CPU backend rejects, make their group's outputs
// and gradients NaN here instead.
Tensor device_tables(const Tensor& points, const Tensor& bounds, const Tensor& slopes,
                     const PwluArgs& args, const Tensor& x, cuda::DType dtype) {
  const at::ScalarType type = compute_type(points.scalar_type());
  const Tensor y = points.detach().to(type).contiguous();
  const Tensor b = bounds.detach().to(type).contiguous();
  const Tensor k = slopes.detach().to(type).contiguous();
  Tensor tables = at::empty({cuda::pwlu_table_elements(args.groups, args.intervals)},
                            x.options().dtype(compute_type(x.scalar_type())));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(cuda::launch_pwlu_tables(dtype, type == at::kDouble, args.groups,
                                          args.intervals, y.const_data_ptr(), b.const_data_ptr(),
                                          k.const_data_ptr(), tables.mutable_data_ptr(), stream));
  return tables;
}

cuda::PwluProblem make_problem(const Tensor& dense_x, const PwluArgs& args, cuda::DType dtype,
                               const Tensor& tables) {
  TORCH_CHECK(tables.device() == dense_x.device(),
              "pwlu: internal error: group tables on ", tables.device(), " but x on ",
              dense_x.device());
  const PwluTablePointers pointers = pwlu_table_pointers(tables, args);
  cuda::PwluProblem p;
  p.dtype = dtype;
  p.intervals = args.intervals;
  p.points = pointers.points;
  p.steps = pointers.steps;
  p.params = pointers.params;
  p.plan = cuda::make_pwlu_plan(dense_x.numel(), args.groups,
                                group_run(dense_x, args.dim, args.groups), args.intervals, dtype);
  p.max_blocks = glue::max_blocks(dense_x);
  TORCH_CHECK(p.plan.tiles() > 0, "pwlu: internal error: empty CUDA tile plan for ",
              dense_x.numel(), " elements");
  return p;
}

Tensor pwlu_forward_cuda(const Tensor& x, const Tensor& points, const Tensor& bounds,
                         const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_args(x, points, bounds, slopes, dim);
  glue::check_cuda_inputs("pwlu: pwlu_forward", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const cuda::DType dtype = dtype_of(x.scalar_type(), "pwlu");
  check_intervals_supported(args, dtype);
  const Tensor xd = dense(x);
  Tensor out = at::empty_like(xd);
  if (xd.numel() == 0) return out;
  const Tensor tables = device_tables(points, bounds, slopes, args, x, dtype);
  const cuda::PwluProblem problem = make_problem(xd, args, dtype, tables);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(
      cuda::launch_pwlu_forward(problem, xd.const_data_ptr(), out.mutable_data_ptr(), stream));
  return out;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pwlu_backward_cuda(const Tensor& grad_output,
                                                              const Tensor& x,
                                                              const Tensor& points,
                                                              const Tensor& bounds,
                                                              const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_backward_args(grad_output, x, points, bounds, slopes, dim);
  glue::check_cuda_inputs("pwlu: pwlu_backward", x);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const cuda::DType dtype = dtype_of(x.scalar_type(), "pwlu");
  check_intervals_supported(args, dtype);
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  if (xd.numel() == 0) return pwlu_empty_input_gradients(xd, points, bounds, slopes);
  Tensor grad_x = at::empty_like(xd);
  const Tensor tables = device_tables(points, bounds, slopes, args, x, dtype);
  const cuda::PwluProblem problem = make_problem(xd, args, dtype, tables);
  const int64_t workspace_bytes = cuda::pwlu_backward_workspace_bytes(problem);
  constexpr int64_t kDoubleBytes = sizeof(double);
  TORCH_CHECK(workspace_bytes > 0 && workspace_bytes % kDoubleBytes == 0,
              "pwlu: internal error: CUDA workspace of ", workspace_bytes, " bytes");
  const auto doubles = xd.options().dtype(at::kDouble);
  const Tensor workspace =
      at::empty({workspace_bytes / kDoubleBytes}, doubles);
  Tensor sums = at::empty({args.groups, cuda::pwlu_gradient_entries(args.intervals)}, doubles);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  C10_CUDA_CHECK(cuda::launch_pwlu_backward(
      problem, grad.const_data_ptr(), xd.const_data_ptr(), grad_x.mutable_data_ptr(),
      workspace.mutable_data_ptr<double>(), sums.mutable_data_ptr<double>(), stream));
  auto [grad_points, grad_bounds, grad_slopes] =
      split_pwlu_gradients(sums, args, points.scalar_type());
  return {grad_x, grad_points, grad_bounds, grad_slopes};
}

}  // namespace

TORCH_LIBRARY_IMPL(pau, CUDA, m) {
  m.impl("pwlu_forward", &pwlu_forward_cuda);
  m.impl("pwlu_backward", &pwlu_backward_cuda);
}

}  // namespace pau
