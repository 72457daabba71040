// Helpers shared by the torch glue of the CUDA kernels (pau_cuda.cu for PAU
// and RPAU, pwlu_cuda.cu for PWLU).
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h, which pulls in
// cuBLAS/cuSPARSE headers that a CPU wheel's copy cannot compile), so that
// .ci/cuda_compile_and_emulate.sh can syntax-check the glue against any torch.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <cstdint>


namespace pau {
namespace glue {

// Grid cap: blocks loop over tiles beyond it. 32 blocks per SM keeps every SM
// busy (8 resident blocks of 256 threads at most) with little tail; the
// results do not depend on it (tiling.h). The SM count is looked up once per
// device: the attribute query is a driver call on every launch otherwise. An
// inline function's statics are one object per program, so every glue file
// shares this cache.
inline int64_t max_blocks(const at::Tensor& x) {
  constexpr int kDevices = 64;
  static std::array<std::atomic<int>, kDevices> cached{};
  const int device = x.get_device();
  int multiprocessors = device < kDevices ? cached[device].load(std::memory_order_relaxed) : 0;
  if (multiprocessors == 0) {
    C10_CUDA_CHECK(
        cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    if (multiprocessors < 1) multiprocessors = 1;
    if (device < kDevices) cached[device].store(multiprocessors, std::memory_order_relaxed);
  }
  return static_cast<int64_t>(multiprocessors) * 32;
}

// The operators' argument checks have already required every tensor argument
// (grad_output included) to be on x's device, and a CUDA kernel is only
// reached with some CUDA tensor among them; this guards the glue against a
// check that ever stops doing so. `op` names the operator in the message,
// e.g. "pau: forward".
inline void check_cuda_inputs(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda(), op,
              ": x must be a CUDA tensor when the other arguments are, got x on ", x.device());
}

}  // namespace glue
}  // namespace pau
