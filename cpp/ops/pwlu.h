// pau::pwlu_forward / pau::pwlu_backward: the checks and group tables every
// backend uses (cpu/pwlu_cpu.cpp, cuda/pwlu_cuda.cu) and the operators'
// signatures.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace pau {

using PwluGrads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using PwluForward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               const at::Tensor&, int64_t);
using PwluBackward = PwluGrads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&, int64_t);

struct PwluArgs {
  int64_t dim;     // wrapped into [0, x.dim()) (0 for a 0-d x)
  int64_t groups;  // G
  int intervals;   // N
};

// Validates x and the parameter shapes, dtypes and devices; errors name the
// offending argument. Works on real and on fake/meta tensors (sizes may be
// symbolic): the values of the bounds are checked by check_pwlu_bounds.
PwluArgs check_pwlu_args(const at::Tensor& x, const at::Tensor& points, const at::Tensor& bounds,
                         const at::Tensor& slopes, int64_t dim);

// Additionally checks grad_output against x.
PwluArgs check_pwlu_backward_args(const at::Tensor& grad_output, const at::Tensor& x,
                                  const at::Tensor& points, const at::Tensor& bounds,
                                  const at::Tensor& slopes, int64_t dim);

// Checks the values of bounds (G, 2): finite with B_L < B_R in every group.
void check_pwlu_bounds(const at::Tensor& bounds);

// The group tables the CPU kernels read, built on the host from the checked
// parameters (on any device, any input dtype) in one contiguous 1-d host
// tensor of dtype compute_type (float or double); the CUDA backend builds the
// same tables on the device with the same pwlu::table_entry:
//   points (G, N + 1)          Y_0..Y_N
//   steps  (G, N + 1)          Y_{k+1} - Y_k in double, rounded once; last column 0
//   params (G, pwlu::kParams)  pwlu::make_params
// Raises if the bounds of a group are not finite with B_L < B_R once rounded to
// compute_type, or too close for N intervals in it.
at::Tensor pwlu_group_tables(const at::Tensor& points, const at::Tensor& bounds,
                             const at::Tensor& slopes, const PwluArgs& args,
                             at::ScalarType compute_type);

// Where the three tables start in `tables` (a pwlu_group_tables result, on
// the host or copied to a device).
struct PwluTablePointers {
  const void* points;
  const void* steps;
  const void* params;
};
PwluTablePointers pwlu_table_pointers(const at::Tensor& tables, const PwluArgs& args);

// (grad_points (G, N + 1), grad_bounds (G, 2), grad_slopes (G, 2)), contiguous,
// in dtype `type` (the parameters'), from the (G, N + 1 + pwlu::kExtras)
// double sums every backend's reduction produces.
std::tuple<at::Tensor, at::Tensor, at::Tensor> split_pwlu_gradients(const at::Tensor& sums,
                                                                    const PwluArgs& args,
                                                                    at::ScalarType type);

// The backward's result for an x with no elements: an empty grad_x and zero,
// contiguous parameter gradients.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_empty_input_gradients(
    const at::Tensor& dense_x, const at::Tensor& points, const at::Tensor& bounds,
    const at::Tensor& slopes);

}  // namespace pau
