// The CUDA kernels of pau::rpau_forward / pau::rpau_backward for double storage: one
// translation unit per dtype, so that nvcc compiles them in parallel.
#include "pau_kernels.cuh"

namespace pau {
namespace cuda {
namespace detail {

PAU_CUDA_TYPED_LAUNCHERS(, double, true)

}  // namespace detail
}  // namespace cuda
}  // namespace pau
