// Argument checking shared by every backend of pau::forward / pau::backward.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include "pau_math.h"

namespace pau {

struct PauArgs {
  math::Variant variant;
  int64_t dim;     // wrapped into [0, x.dim()) (0 for a 0-d x)
  int64_t groups;  // G
  int m;           // numerator degree
  int n;           // denominator degree
};

math::Variant parse_variant(c10::string_view variant);

// Validates x and the coefficients; errors name the offending argument. Works
// on real and on fake/meta tensors (sizes may be symbolic).
PauArgs check_pau_args(const at::Tensor& x, const at::Tensor& numerator,
                       const at::Tensor& denominator, c10::string_view variant, int64_t dim);

// Additionally checks grad_output against x.
PauArgs check_pau_backward_args(const at::Tensor& grad_output, const at::Tensor& x,
                                const at::Tensor& numerator, const at::Tensor& denominator,
                                c10::string_view variant, int64_t dim);

// Number of elements of x sharing one group's coefficients per row when x is
// laid out densely in memory (see cpu/tiling.h): (C / G) * stride(dim), or
// numel for a single group. dim is already wrapped.
int64_t group_run(const at::Tensor& dense_x, int64_t dim, int64_t groups);
int64_t group_run(const at::Tensor& dense_x, const PauArgs& args);

// Helpers for the checks of every operator family; `op` prefixes the messages.
// float32, float64, float16 or bfloat16: the dtypes the kernels accept for x.
bool is_input_dtype(at::ScalarType t);
// Checks dim against x's rank and that the channel count along it divides into
// `groups`; returns dim wrapped into [0, x.dim()) (0 for a 0-d x).
int64_t check_channel_dim(const at::Tensor& x, int64_t dim, int64_t groups, const char* op);

// The type the kernels compute in for values of dtype t: double for float64,
// float for float32, float16 and bfloat16.
at::ScalarType compute_type(at::ScalarType t);

// x itself when it is dense in memory (any permutation of a contiguous
// layout, e.g. channels_last), else a contiguous copy.
at::Tensor dense(const at::Tensor& x);

// grad_output with dense_x's strides (itself when it has them, else a copy):
// the backward kernels walk both in dense_x's memory order.
at::Tensor in_memory_order_of(const at::Tensor& grad_output, const at::Tensor& dense_x);

}  // namespace pau
