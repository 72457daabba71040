// The pau._C extension module. The operators are registered by the pau_ops
// library this module links against; importing the module loads it.
#include <pybind11/pybind11.h>

#include "library.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "pau operator library loader";
  m.def("cpu_capability", &pau::cpu_capability,
        "Instruction set of the CPU kernels in use: 'AVX512', 'AVX2' or 'DEFAULT'.");
  m.def("has_cuda_kernels", &pau::has_cuda_kernels,
        "Whether this build contains the CUDA kernels.");
  m.def("parallel_backend", &pau::parallel_backend,
        "Parallel backend of the CPU operators: 'OpenMP', or 'none' (one thread).");
}
