// The pau._C extension module. The operators are registered by the pau_ops
// library this module links against; importing the module loads it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <limits>
#include <vector>

#include "library.h"
#include "math/pau_math.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "pau operator library loader";
  m.def("cpu_capability", &pau::cpu_capability,
        "Instruction set of the CPU kernels in use: 'AVX512', 'AVX2' or 'DEFAULT'.");
  m.def("has_cuda_kernels", &pau::has_cuda_kernels,
        "Whether this build contains the CUDA kernels.");
  m.def("parallel_backend", &pau::parallel_backend,
        "Parallel backend of the CPU operators: 'OpenMP', or 'none' (one thread).");
  m.def(
      "plain_powers_limit",
      [](std::vector<double> numerator, std::vector<double> denominator, bool float64,
         double growth) {
        // Rounded to the compute type first, as the operators do (beyond
        // float's range: infinite, as torch converts).
        auto to_float = [](double& c) {
          c = std::fabs(c) > std::numeric_limits<float>::max() ? std::copysign(HUGE_VAL, c)
                                                               : static_cast<float>(c);
        };
        if (!float64) {
          for (double& c : numerator) to_float(c);
          for (double& c : denominator) to_float(c);
        }
        const double largest = float64 ? std::numeric_limits<double>::max()
                                       : std::numeric_limits<float>::max();
        return pau::math::plain_powers_limit(numerator.data(),
                                             static_cast<int>(numerator.size()) - 1,
                                             denominator.data(),
                                             static_cast<int>(denominator.size()), growth,
                                             largest);
      },
      pybind11::arg("numerator"), pybind11::arg("denominator"), pybind11::arg("float64") = false,
      pybind11::arg("growth") = 1.0,
      "The |x| up to which the CPU kernels evaluate one group with plain powers of x "
      "(pau_math.h), or -1: numerator a_0..a_m, denominator b_1..b_n, computed in float64 or "
      "float32, coefficients up to `growth` times larger (RPAU: 2).");
}
