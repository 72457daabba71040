// Argument checking shared by every backend of pau::pwlu_forward /
// pau::pwlu_backward.
#pragma once

#include <ATen/core/Tensor.h>

namespace pau {

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

}  // namespace pau
