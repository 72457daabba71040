// Internal interface between pau_kernels.cu (argument checks, dtype switch,
// final reduction) and the per-dtype translation units that
// cmake/cuda_instantiations.cmake writes into the build directory, which
// instantiate the kernels of one storage type each. Splitting by dtype lets
// nvcc compile the instantiation sets in parallel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "pau_kernels.h"

namespace pau {
namespace cuda {
namespace detail {

// Everything a kernel needs, passed by value (kernel parameter space).
struct KernelArgs {
  Plan plan;
  int m;  // numerator degree
  int n;  // denominator degree
  bool coefficients_double;
  bool vector;  // plan.vector_layout and every data pointer aligned for an item
  const void* numerator;    // (G, m + 1), float or double
  const void* denominator;  // (G, n)
  const void* grad;         // backward only
  const void* x;
  void* out;                // forward: F(x); backward: grad_x
  double* workspace;        // backward only: (tiles, groups_per_tile, K)
  Alpha alpha;              // RPAU kernels only, see Problem
  rng::Stream stream;
};

// Launch the forward kernel / the backward kernel (without the final
// reduction) for storage type S (float, double, __half, __nv_bfloat16), PAU
// (kNoisy false) or RPAU (true). Defined in pau_kernels.cuh, instantiated in
// the generated pau_kernels_<dtype>.cu (PAU) and rpau_kernels_<dtype>.cu (RPAU),
// one per extern declaration below (keep cmake/cuda_instantiations.cmake in step).
template <class S, bool kNoisy>
cudaError_t launch_forward_typed(const Problem& p, const KernelArgs& args, unsigned int blocks,
                                 cudaStream_t stream);
template <class S, bool kNoisy>
cudaError_t launch_backward_typed(const Problem& p, const KernelArgs& args, unsigned int blocks,
                                  cudaStream_t stream);

// Instantiated only in the per-dtype files: other translation units that see
// the definitions must not compile the kernels again. (A macro because an
// explicit instantiation cannot be written by a template.)
#define PAU_CUDA_TYPED_LAUNCHERS(PREFIX, S, NOISY)                                      \
  PREFIX template cudaError_t launch_forward_typed<S, NOISY>(                          \
      const Problem&, const KernelArgs&, unsigned int, cudaStream_t);                  \
  PREFIX template cudaError_t launch_backward_typed<S, NOISY>(                         \
      const Problem&, const KernelArgs&, unsigned int, cudaStream_t);
PAU_CUDA_TYPED_LAUNCHERS(extern, float, false)
PAU_CUDA_TYPED_LAUNCHERS(extern, double, false)
PAU_CUDA_TYPED_LAUNCHERS(extern, __half, false)
PAU_CUDA_TYPED_LAUNCHERS(extern, __nv_bfloat16, false)
PAU_CUDA_TYPED_LAUNCHERS(extern, float, true)
PAU_CUDA_TYPED_LAUNCHERS(extern, double, true)
PAU_CUDA_TYPED_LAUNCHERS(extern, __half, true)
PAU_CUDA_TYPED_LAUNCHERS(extern, __nv_bfloat16, true)

}  // namespace detail
}  // namespace cuda
}  // namespace pau
