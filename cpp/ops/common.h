// Checks and tensor helpers every operator family uses (PAU, RPAU, PWLU), on
// every backend (the CPU entry points in cpu/, the CUDA glue in cuda/). `op`
// arguments prefix the error messages: "pau" or "pwlu".
#pragma once

#include <ATen/core/Tensor.h>

#include "math/dtype.h"

namespace pau {

// float32, float64, float16 or bfloat16: the dtypes the kernels accept for x.
bool is_input_dtype(at::ScalarType t);

// Checks dim against x's rank and that the channel count along it divides into
// `groups`; returns dim wrapped into [0, x.dim()) (0 for a 0-d x).
int64_t check_channel_dim(const at::Tensor& x, int64_t dim, int64_t groups, const char* op);

// grad_output of a backward: defined, with x's shape, dtype and device.
void check_grad_output(const at::Tensor& grad_output, const at::Tensor& x, const char* op);

// check_grad_output for a tensor called `name` in the messages.
void check_like_x(const at::Tensor& t, const char* name, const at::Tensor& x, const char* op);

// The type the kernels compute in for values of dtype t: double for float64,
// float for float32, float16 and bfloat16.
at::ScalarType compute_type(at::ScalarType t);

// The kernels' dtype of an x of dtype `type`; any other dtype is an error
// (the argument checks have rejected them already).
DType dtype_of(at::ScalarType type, const char* op);

// x itself when it is dense in memory (any permutation of a contiguous
// layout, e.g. channels_last), else a contiguous copy.
at::Tensor dense(const at::Tensor& x);

// grad_output with dense_x's strides (itself when it has them, else a copy):
// the backward kernels walk both in dense_x's memory order.
at::Tensor in_memory_order_of(const at::Tensor& grad_output, const at::Tensor& dense_x);

// `computed` (contiguous, x's shape) in x's layout: itself when x's layout is
// the contiguous one, else a copy. For the kernels that index by the logical
// element (RPAU's noise) and so run on a contiguous copy of x.
at::Tensor like_x(const at::Tensor& x, const at::Tensor& computed);

// Number of elements of x sharing one group's coefficients per row when x is
// laid out densely in memory (see cpu/tiling.h): (C / G) * stride(dim), or
// numel for a single group. dim is already wrapped.
int64_t group_run(const at::Tensor& dense_x, int64_t dim, int64_t groups);

}  // namespace pau
