// Argument checking and noise keys shared by the backends of pau::rpau_forward
// / pau::rpau_backward / pau::rpau_noise (cpu/rpau_cpu.cpp for the CPU,
// cuda/pau_cuda.cu for CUDA).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include "math/counter_rng.h"
#include "ops/pau.h"

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

// seed_offset's dtype and shape: int64, (2,) holding (seed, offset).
void check_seed_offset(const at::Tensor& seed_offset);

// pau::rpau_noise's arguments: numel >= 0, coefficients in [1, rng::kMaxWords].
void check_rpau_noise_args(const at::Tensor& seed_offset, int64_t numel, int64_t coefficients);

// The counter-hash stream of (seed, offset) = seed_offset (a CPU tensor) for
// `words` coefficients per element; seed_offset has been checked.
rng::Stream stream_of(const at::Tensor& seed_offset, int words);

}  // namespace pau
