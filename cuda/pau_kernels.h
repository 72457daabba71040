// Launch API of the CUDA kernels of pau::forward / pau::backward: raw pointers
// and a stream, no torch. pau_cuda.cu (the torch glue) calls these;
// pau_kernels.cu implements them and is what CI compiles with plain nvcc.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../cpp/math/counter_rng.h"
#include "../cpp/math/dtype.h"
#include "../cpp/math/pau_math.h"
#include "tiling.h"

namespace pau {
namespace cuda {

// The emulation check (emulation.h) names the shared dtype cuda::DType.
using DType = pau::DType;

// RPAU's noise half-widths in device memory: alpha of group g and coefficient
// j (a_0..a_m, then b_1..b_n) is values[g * group_stride + j *
// coefficient_stride], float or double; a stride is 0 where alpha broadcasts.
struct Alpha {
  const void* values = nullptr;
  bool is_double = false;
  int64_t group_stride = 0;
  int64_t coefficient_stride = 0;
};

// One call's problem. x, out, grad, grad_x are dense in the same memory
// order (see tiling.h); the coefficients are contiguous (G, m + 1) and (G, n)
// arrays of float (coefficients_double false) or double.
struct Problem {
  DType dtype = DType::float32;
  math::Variant variant = math::Variant::safe;
  int m = 0;
  int n = 0;
  bool coefficients_double = false;
  const void* numerator = nullptr;
  const void* denominator = nullptr;
  // RPAU when alpha.values is set (PAU kernels otherwise): coefficient j of
  // group g is multiplied, for the element with logical index i (x
  // contiguous), by base(alpha_gj) + scale(alpha_gj) * k_ij (rng::factor_base,
  // factor_scale), with k_ij the level of the counter hash of counter_rng.h for
  // `stream`: the CPU kernels' noise bit for bit. The kernels read alpha
  // themselves, so the glue never copies it to the host; an alpha_gj outside
  // [0, 1) makes that group's results NaN (rng::alpha_usable). The plan must
  // come from make_problem_plan(..., noisy = true).
  Alpha alpha;
  rng::Stream stream{};
  Plan plan;
  // Upper bound for the grid (blocks loop over tiles); 0: one block per tile.
  // The results do not depend on it.
  int64_t max_blocks = 0;
};

// The plan of a problem; numel > 0.
inline Plan make_problem_plan(int64_t numel, int64_t groups, int64_t run, int m, int n,
                              DType dtype, bool noisy = false) {
  return make_plan(numel, groups, run, m + 1 + n, element_size(dtype), compute_size(dtype),
                   noisy ? 3 : 1);
}

// Bytes of the double workspace launch_backward needs.
inline int64_t backward_workspace_bytes(const Problem& p) {
  return p.plan.workspace_elements() * static_cast<int64_t>(sizeof(double));
}

// out = F(x), element-wise. Returns the launch's error (cudaSuccess if none).
cudaError_t launch_forward(const Problem& p, const void* x, void* out, cudaStream_t stream);

// grad_x = dL/dx, grad_numerator (G, m + 1) and grad_denominator (G, n) in the
// coefficient dtype. workspace: backward_workspace_bytes(p), 8-byte aligned,
// no initialisation needed. Bitwise deterministic: no floating-point atomics.
cudaError_t launch_backward(const Problem& p, const void* grad, const void* x, void* grad_x,
                            double* workspace, void* grad_numerator, void* grad_denominator,
                            cudaStream_t stream);

}  // namespace cuda
}  // namespace pau
