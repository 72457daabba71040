// Public launchers of the CUDA kernels (pau_kernels.h): validate the problem,
// decide vector access and the grid, switch on the dtype (the kernels live in
// the per-dtype files of cmake/cuda_instantiations.cmake) and run the final
// per-group reduction of the backward. Torch-free, so CI compiles it with plain
// nvcc (.ci/cuda_compile_and_emulate.sh).
#include <cstdint>

#include "pau_kernels.cuh"
#include "pau_kernels.h"
#include "pau_launch.h"
#include "storage_types.h"

namespace pau {
namespace cuda {
namespace {

bool noisy(const Problem& p) { return p.alpha.values != nullptr; }

bool valid(const Problem& p) {
  const bool noise_ok = noisy(p) ? p.plan.tables == 3 && p.alpha.group_stride >= 0 &&
                                       p.alpha.coefficient_stride >= 0 &&
                                       p.stream.words == p.m + 1 + p.n
                                 : p.plan.tables == 1;
  return noise_ok && p.plan.numel > 0 && p.plan.tiles() > 0 && p.m >= 0 && p.n >= 0 &&
         p.m <= math::kMaxDegree && p.n <= math::kMaxDegree &&
         p.plan.coefficients == p.m + 1 + p.n &&
         p.plan.element_size == element_size(p.dtype) && p.numerator != nullptr &&
         (p.n == 0 || p.denominator != nullptr) &&
         p.plan.shared_bytes(compute_size(p.dtype), true) <= 48 * 1024;
}

detail::KernelArgs kernel_args(const Problem& p) {
  detail::KernelArgs args{};
  args.plan = p.plan;
  args.m = p.m;
  args.n = p.n;
  args.coefficients_double = p.coefficients_double;
  args.numerator = p.numerator;
  args.denominator = p.denominator;
  args.alpha = p.alpha;
  args.stream = p.stream;
  return args;
}

template <bool kNoisy>
cudaError_t forward_for_dtype(const Problem& p, const detail::KernelArgs& args,
                              unsigned int blocks, cudaStream_t stream) {
  return with_storage_type(p.dtype, [&](auto storage) {
    return detail::launch_forward_typed<decltype(storage), kNoisy>(p, args, blocks, stream);
  });
}

template <bool kNoisy>
cudaError_t backward_for_dtype(const Problem& p, const detail::KernelArgs& args,
                               unsigned int blocks, cudaStream_t stream) {
  return with_storage_type(p.dtype, [&](auto storage) {
    return detail::launch_backward_typed<decltype(storage), kNoisy>(p, args, blocks, stream);
  });
}

}  // namespace

cudaError_t launch_forward(const Problem& p, const void* x, void* out, cudaStream_t stream) {
  if (!valid(p) || x == nullptr || out == nullptr) return cudaErrorInvalidValue;
  detail::KernelArgs args = kernel_args(p);
  args.x = x;
  args.out = out;
  args.vector = p.plan.vector_layout && items_aligned(p.plan, {x, out});
  const unsigned int blocks = grid_blocks(p.plan, p.max_blocks);
  return noisy(p) ? forward_for_dtype<true>(p, args, blocks, stream)
                  : forward_for_dtype<false>(p, args, blocks, stream);
}

cudaError_t launch_backward(const Problem& p, const void* grad, const void* x, void* grad_x,
                            double* workspace, void* grad_numerator, void* grad_denominator,
                            cudaStream_t stream) {
  if (!valid(p) || grad == nullptr || x == nullptr || grad_x == nullptr ||
      workspace == nullptr || grad_numerator == nullptr ||
      (p.n > 0 && grad_denominator == nullptr)) {
    return cudaErrorInvalidValue;
  }
  detail::KernelArgs args = kernel_args(p);
  args.grad = grad;
  args.x = x;
  args.out = grad_x;
  args.workspace = workspace;
  // The alignment only selects vector or scalar loads of the same items, so
  // the results do not depend on it.
  args.vector = p.plan.vector_layout && items_aligned(p.plan, {grad, x, grad_x});
  const unsigned int blocks = grid_blocks(p.plan, p.max_blocks);
  const cudaError_t error = noisy(p) ? backward_for_dtype<true>(p, args, blocks, stream)
                                      : backward_for_dtype<false>(p, args, blocks, stream);
  if (error != cudaSuccess) return error;
  int64_t groups = p.plan.groups;
  if (groups > 65535) groups = 65535;  // the kernel loops over the rest
  const auto reduce_blocks = static_cast<unsigned int>(groups);
  if (p.coefficients_double) {
    detail::reduce_partials<double><<<reduce_blocks, kReduceThreads, 0, stream>>>(
        p.plan, p.m, p.n, workspace, static_cast<double*>(grad_numerator),
        static_cast<double*>(grad_denominator));
  } else {
    detail::reduce_partials<float><<<reduce_blocks, kReduceThreads, 0, stream>>>(
        p.plan, p.m, p.n, workspace, static_cast<float*>(grad_numerator),
        static_cast<float*>(grad_denominator));
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace pau
