// Public launchers of the PWLU CUDA kernels (pwlu_kernels.h): validate the
// problem, decide vector access and the grid, switch on the dtype and run the
// final per-group reduction of the backward. Torch-free, so CI compiles it
// with plain nvcc (.ci/cuda_compile_and_emulate.sh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "pwlu_kernels.cuh"
#include "pwlu_kernels.h"
#include "storage_types.h"

namespace pau {
namespace cuda {
namespace {

bool valid(const PwluProblem& p) {
  const Plan& plan = p.plan;
  return pwlu_intervals_supported(p.intervals, p.dtype) && plan.numel > 0 && plan.tiles() > 0 &&
         plan.coefficients == pwlu_gradient_entries(p.intervals) &&
         plan.element_size == element_size(p.dtype) && p.points != nullptr &&
         p.steps != nullptr && p.params != nullptr &&
         pwlu_histogram_copies(plan, p.intervals, compute_size(p.dtype)) >= 1;
}

detail::PwluKernelArgs kernel_args(const PwluProblem& p) {
  detail::PwluKernelArgs args{};
  args.plan = p.plan;
  args.intervals = p.intervals;
  args.histogram_copies = pwlu_histogram_copies(p.plan, p.intervals, compute_size(p.dtype));
  args.points = p.points;
  args.steps = p.steps;
  args.params = p.params;
  return args;
}

template <class S>
cudaError_t forward_typed(const PwluProblem& p, const detail::PwluKernelArgs& args,
                          cudaStream_t stream) {
  const unsigned int blocks = grid_blocks(p.plan, p.max_blocks);
  if (p.plan.per_lane) {
    detail::pwlu_forward_per_lane<S><<<blocks, pwlu_threads(p.plan), 0, stream>>>(args);
  } else {
    detail::pwlu_forward_broadcast<S><<<blocks, kThreads, 0, stream>>>(args);
  }
  return cudaGetLastError();
}

template <class S>
cudaError_t backward_typed(const PwluProblem& p, const detail::PwluKernelArgs& args,
                           cudaStream_t stream) {
  const unsigned int blocks = grid_blocks(p.plan, p.max_blocks);
  const auto shared = static_cast<size_t>(
      pwlu_backward_shared_bytes(p.plan, p.intervals, static_cast<int>(sizeof(detail::compute_t<S>))));
  if (p.plan.per_lane) {
    detail::pwlu_backward_per_lane<S><<<blocks, pwlu_threads(p.plan), shared, stream>>>(args);
  } else {
    detail::pwlu_backward_broadcast<S><<<blocks, kThreads, shared, stream>>>(args);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_pwlu_tables(DType dtype, bool parameters_double, int64_t groups,
                               int intervals, const void* points, const void* bounds,
                               const void* slopes, void* tables, cudaStream_t stream) {
  if (groups < 1 || intervals < 1 || intervals > pwlu::kMaxIntervals || points == nullptr ||
      bounds == nullptr || slopes == nullptr || tables == nullptr) {
    return cudaErrorInvalidValue;
  }
  constexpr int kThreadsPerBlock = 256;
  int64_t blocks = (groups * (intervals + 1) + kThreadsPerBlock - 1) / kThreadsPerBlock;
  if (blocks > 4096) blocks = 4096;  // the kernel loops over the rest
  const auto grid = static_cast<unsigned int>(blocks);
  auto launch = [&](auto parameter_tag, auto table_tag) {
    using P = decltype(parameter_tag);
    using T = decltype(table_tag);
    detail::pwlu_build_tables<P, T><<<grid, kThreadsPerBlock, 0, stream>>>(
        static_cast<const P*>(points), static_cast<const P*>(bounds),
        static_cast<const P*>(slopes), groups, intervals, static_cast<T*>(tables));
  };
  if (compute_size(dtype) == 8) {
    parameters_double ? launch(double(), double()) : launch(float(), double());
  } else {
    parameters_double ? launch(double(), float()) : launch(float(), float());
  }
  return cudaGetLastError();
}

cudaError_t launch_pwlu_forward(const PwluProblem& p, const void* x, void* out,
                                cudaStream_t stream) {
  if (!valid(p) || x == nullptr || out == nullptr) return cudaErrorInvalidValue;
  detail::PwluKernelArgs args = kernel_args(p);
  args.x = x;
  args.out = out;
  args.vector = p.plan.vector_layout && items_aligned(p.plan, {x, out});
  return with_storage_type(p.dtype, [&](auto storage) {
    return forward_typed<decltype(storage)>(p, args, stream);
  });
}

cudaError_t launch_pwlu_backward(const PwluProblem& p, const void* grad, const void* x,
                                 void* grad_x, double* workspace, double* gradients,
                                 cudaStream_t stream) {
  if (!valid(p) || grad == nullptr || x == nullptr || grad_x == nullptr ||
      workspace == nullptr || gradients == nullptr) {
    return cudaErrorInvalidValue;
  }
  detail::PwluKernelArgs args = kernel_args(p);
  args.grad = grad;
  args.x = x;
  args.out = grad_x;
  args.workspace = workspace;
  // The alignment only selects vector or scalar loads of the same items, so
  // the results do not depend on it.
  args.vector = p.plan.vector_layout && items_aligned(p.plan, {grad, x, grad_x});
  const cudaError_t error =
      with_storage_type(p.dtype, [&](auto storage) {
        return backward_typed<decltype(storage)>(p, args, stream);
      });
  if (error != cudaSuccess) return error;
  const int K = pwlu_gradient_entries(p.intervals);
  int64_t blocks = p.plan.groups * K;
  if (blocks > 65535) blocks = 65535;  // the kernel loops over the rest
  detail::pwlu_reduce_partials<<<static_cast<unsigned int>(blocks), kReduceThreads, 0, stream>>>(
      p.plan, K, workspace, gradients);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace pau
