// The torch-free functions of library.h.
#include "library.h"

#include "cpu/kernels.h"

namespace pau {

const char* cpu_capability() { return cpu::capability_name(); }

bool has_cuda_kernels() {
#if defined(PAU_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

// Every source file of the library is compiled with the same OpenMP flags
// (CMakeLists.txt), so this file sees what the CPU entry points' at::parallel_for
// was compiled with.
const char* parallel_backend() {
#if defined(_OPENMP)
  return "OpenMP";
#else
  return "none";
#endif
}

}  // namespace pau
