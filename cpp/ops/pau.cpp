// pau::forward and pau::backward: schemas, argument checks, meta (fake)
// kernels and the autograd kernel. The CPU entry points are in
// cpu/pau_cpu.cpp, the CUDA ones in cuda/pau_cuda.cu; the math in
// math/pau_math.h.
#include "ops/pau.h"

#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "ops/autograd.h"
#include "ops/composite.h"

namespace pau {

using at::Tensor;

math::Variant parse_variant(c10::string_view variant) {
  if (variant == "safe") return math::Variant::safe;
  if (variant == "abs_sum") return math::Variant::abs_sum;
  if (variant == "plain") return math::Variant::plain;
  TORCH_CHECK_VALUE(false, "pau: unknown variant '", std::string(variant),
                    "', expected 'safe', 'abs_sum' or 'plain'");
}

PauArgs check_pau_args(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                       c10::string_view variant, int64_t dim) {
  PauArgs args{};
  args.variant = parse_variant(variant);
  TORCH_CHECK(x.defined() && numerator.defined() && denominator.defined(),
              "pau: x, numerator and denominator must be defined tensors");
  TORCH_CHECK_TYPE(is_input_dtype(x.scalar_type()),
                   "pau: x must be float32, float64, float16 or bfloat16, got ",
                   x.scalar_type());
  // Half and bfloat16 coefficients (a model.half()'d PAU) are used in float.
  TORCH_CHECK_TYPE(is_input_dtype(numerator.scalar_type()),
                   "pau: numerator must be float32, float64, float16 or bfloat16, got ",
                   numerator.scalar_type());
  TORCH_CHECK_TYPE(denominator.scalar_type() == numerator.scalar_type(),
                   "pau: denominator dtype (", denominator.scalar_type(),
                   ") must match numerator dtype (", numerator.scalar_type(), ")");
  TORCH_CHECK(numerator.device() == x.device() && denominator.device() == x.device(),
              "pau: x, numerator and denominator must be on the same device, got x on ",
              x.device(), ", numerator on ", numerator.device(), ", denominator on ",
              denominator.device());
  TORCH_CHECK_VALUE(numerator.dim() == 2,
                    "pau: numerator must have shape (G, m+1), got shape ",
                    numerator.sym_sizes());
  TORCH_CHECK_VALUE(denominator.dim() == 2,
                    "pau: denominator must have shape (G, n), got shape ",
                    denominator.sym_sizes());
  TORCH_CHECK_VALUE(numerator.sym_size(0) == denominator.sym_size(0),
                    "pau: numerator and denominator must have the same number of groups, got ",
                    numerator.sym_size(0), " and ", denominator.sym_size(0));
  TORCH_CHECK_VALUE(numerator.sym_size(0) >= 1, "pau: need at least one group, got shape ",
                    numerator.sym_sizes());
  TORCH_CHECK_VALUE(numerator.sym_size(1) >= 1 && numerator.sym_size(1) <= math::kMaxTerms,
                    "pau: numerator degree m must be in [0, ", math::kMaxDegree,
                    "], got numerator shape ", numerator.sym_sizes());
  TORCH_CHECK_VALUE(denominator.sym_size(1) <= math::kMaxDegree,
                    "pau: denominator degree n must be in [0, ", math::kMaxDegree,
                    "], got denominator shape ", denominator.sym_sizes());
  args.m = static_cast<int>(numerator.sym_size(1).guard_int(__FILE__, __LINE__)) - 1;
  args.n = static_cast<int>(denominator.sym_size(1).guard_int(__FILE__, __LINE__));
  args.groups = numerator.sym_size(0).guard_int(__FILE__, __LINE__);

  args.dim = check_channel_dim(x, dim, args.groups, "pau");
  return args;
}

PauArgs check_pau_backward_args(const Tensor& grad_output, const Tensor& x,
                                const Tensor& numerator, const Tensor& denominator,
                                c10::string_view variant, int64_t dim) {
  PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  check_grad_output(grad_output, x, "pau");
  return args;
}

int64_t group_run(const Tensor& dense_x, const PauArgs& args) {
  return group_run(dense_x, args.dim, args.groups);
}

namespace {

Tensor forward_meta(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                    c10::string_view variant, int64_t dim) {
  check_pau_args(x, numerator, denominator, variant, dim);
  return at::empty_like(x);
}

std::tuple<Tensor, Tensor, Tensor> backward_meta(const Tensor& grad_output, const Tensor& x,
                                                 const Tensor& numerator,
                                                 const Tensor& denominator,
                                                 c10::string_view variant, int64_t dim) {
  check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  return {at::empty_like(x), at::empty_like(numerator, at::MemoryFormat::Contiguous),
          at::empty_like(denominator, at::MemoryFormat::Contiguous)};
}

class PauFunction;

struct PauOp : autograd::OpDefaults {
  using Forward = PauForward;
  using Backward = PauBackward;
  using Function = PauFunction;
  static constexpr const char* kForward = "pau::forward";
  static constexpr const char* kBackward = "pau::backward";
  static constexpr const char* kUndefined =
      "pau: x, numerator and denominator must be defined tensors, not None";
  static constexpr auto composite_forward = &composite::pau_forward;
  static constexpr auto composite_backward = &composite::pau_backward;
};

// A class of its own: its name is the autograd node's (the output's grad_fn).
class PauFunction : public autograd::FusedFunction<PauOp, PauFunction> {};

}  // namespace

TORCH_LIBRARY(pau, m) {
  m.def(
      "forward(Tensor x, Tensor numerator, Tensor denominator, str variant=\"safe\", "
      "int dim=1) -> Tensor");
  m.def(
      "backward(Tensor grad_output, Tensor x, Tensor numerator, Tensor denominator, "
      "str variant=\"safe\", int dim=1) -> (Tensor grad_x, Tensor grad_numerator, "
      "Tensor grad_denominator)");
}

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("forward", &forward_meta);
  m.impl("backward", &backward_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("forward", &autograd::Kernels<PauOp>::forward);
  m.impl("backward", &autograd::Kernels<PauOp>::backward);
}

}  // namespace pau
