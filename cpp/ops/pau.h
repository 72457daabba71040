// pau::forward / pau::backward: the checks every backend runs (the CPU entry
// points in cpu/pau_cpu.cpp, the CUDA glue in cuda/pau_cuda.cu) and the
// operators' signatures.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

#include "math/pau_math.h"
#include "ops/common.h"

namespace pau {

using PauForward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                              c10::string_view, int64_t);
using PauBackward = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
    int64_t);

// pau::double_backward: (grad_grad_x, grad_grad_numerator,
// grad_grad_denominator, grad_output, x, numerator, denominator, variant, dim)
// -> (grad_grad_output, grad_x, grad_numerator, grad_denominator).
using PauDoubleBackward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view, int64_t);

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

// Additionally checks the upstream gradients of backward's outputs: like x,
// like the numerator and like the denominator in shape and device (any
// floating dtype for the coefficients' ones).
PauArgs check_pau_double_backward_args(const at::Tensor& grad_grad_x,
                                       const at::Tensor& grad_grad_numerator,
                                       const at::Tensor& grad_grad_denominator,
                                       const at::Tensor& grad_output, const at::Tensor& x,
                                       const at::Tensor& numerator,
                                       const at::Tensor& denominator, c10::string_view variant,
                                       int64_t dim);

// group_run (ops/common.h) for checked PAU arguments.
int64_t group_run(const at::Tensor& dense_x, const PauArgs& args);

}  // namespace pau
