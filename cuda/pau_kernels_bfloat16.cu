// The CUDA kernels of pau::forward / pau::backward for __nv_bfloat16 storage: one
// translation unit per dtype, so that nvcc compiles them in parallel.
#include "pau_kernels.cuh"

namespace pau {
namespace cuda {
namespace detail {

PAU_CUDA_TYPED_LAUNCHERS(, __nv_bfloat16, false)

}  // namespace detail
}  // namespace cuda
}  // namespace pau
