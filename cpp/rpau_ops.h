// Argument checking and noise keys shared by the backends of pau::rpau_forward
// / pau::rpau_backward (rpau_ops.cpp for the CPU, cuda/pau_cuda.cu for CUDA).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include "counter_rng.h"
#include "pau_ops.h"

namespace pau {

// PAU's checks plus alpha (floating, on x's device, broadcastable to
// (G, m + 1 + n)) and seed_offset (int64, shape (2,)).
PauArgs check_rpau_args(const at::Tensor& x, const at::Tensor& numerator,
                        const at::Tensor& denominator, const at::Tensor& alpha,
                        const at::Tensor& seed_offset, c10::string_view variant, int64_t dim);
PauArgs check_rpau_backward_args(const at::Tensor& grad_output, const at::Tensor& x,
                                 const at::Tensor& numerator, const at::Tensor& denominator,
                                 const at::Tensor& alpha, const at::Tensor& seed_offset,
                                 c10::string_view variant, int64_t dim);

// The counter-hash stream of (seed, offset) = seed_offset (a CPU tensor) for
// `words` coefficients per element.
rng::Stream stream_of(const at::Tensor& seed_offset, int words);

}  // namespace pau
