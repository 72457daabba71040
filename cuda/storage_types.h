// The launchers' switch from a run-time DType to the storage type the kernels
// are instantiated for (pau_kernels.cu, pwlu_kernels.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "pau_kernels.h"  // DType

namespace pau {
namespace cuda {

// Returns f(S()) for the storage type S of `dtype`: float, double, __half or
// __nv_bfloat16. f launches kernels and returns the launch's error.
template <class F>
cudaError_t with_storage_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::float32: return f(float());
    case DType::float64: return f(double());
    case DType::float16: return f(__half());
    case DType::bfloat16: return f(__nv_bfloat16());
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace pau
