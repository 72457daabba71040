// pau::forward and pau::backward: schemas, argument checks, meta (fake)
// kernels and the autograd kernel. The CPU entry points are in
// cpu/pau_cpu.cpp, the CUDA ones in cuda/pau_cuda.cu; the math in
// math/pau_math.h.
#include "ops/pau.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>
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

PauArgs check_pau_double_backward_args(const Tensor& grad_grad_x,
                                       const Tensor& grad_grad_numerator,
                                       const Tensor& grad_grad_denominator,
                                       const Tensor& grad_output, const Tensor& x,
                                       const Tensor& numerator, const Tensor& denominator,
                                       c10::string_view variant, int64_t dim) {
  PauArgs args = check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  check_like_x(grad_grad_x, "grad_grad_x", x, "pau");
  auto check_like = [](const Tensor& t, const char* name, const Tensor& like,
                       const char* like_name) {
    TORCH_CHECK(t.defined(), "pau: ", name, " must be a defined tensor");
    TORCH_CHECK_VALUE(t.sym_sizes() == like.sym_sizes(), "pau: ", name, " shape ",
                      t.sym_sizes(), " must match ", like_name, " shape ", like.sym_sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "pau: ", name,
                     " must be a floating tensor, got ", t.scalar_type());
    TORCH_CHECK(t.device() == like.device(), "pau: ", name, " is on ", t.device(), " but ",
                like_name, " is on ", like.device());
  };
  check_like(grad_grad_numerator, "grad_grad_numerator", numerator, "numerator");
  check_like(grad_grad_denominator, "grad_grad_denominator", denominator, "denominator");
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

std::tuple<Tensor, Tensor, Tensor, Tensor> double_backward_meta(
    const Tensor& grad_grad_x, const Tensor& grad_grad_numerator,
    const Tensor& grad_grad_denominator, const Tensor& grad_output, const Tensor& x,
    const Tensor& numerator, const Tensor& denominator, c10::string_view variant, int64_t dim) {
  check_pau_double_backward_args(grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                 grad_output, x, numerator, denominator, variant, dim);
  return {at::empty_like(x), at::empty_like(x),
          at::empty_like(numerator, at::MemoryFormat::Contiguous),
          at::empty_like(denominator, at::MemoryFormat::Contiguous)};
}

const c10::TypedOperatorHandle<PauDoubleBackward>& double_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("pau::double_backward", "")
                             .typed<PauDoubleBackward>();
  return op;
}

// Devices with a pau::double_backward kernel (Meta: the fake kernel).
bool has_fused_double_backward(const Tensor& x) {
  return x.device().is_cpu() || x.device().is_meta();
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
  // Double backward through the fused kernels (autograd.h); defined below
  // PauBackwardFunction.
  static std::tuple<Tensor, Tensor, Tensor> graph_backward(const Tensor& grad_output,
                                                           const Tensor& x,
                                                           const Tensor& numerator,
                                                           const Tensor& denominator,
                                                           c10::string_view variant,
                                                           int64_t dim);
};

// pau::backward with a graph to build (create_graph=True): the fused backward
// kernel, differentiated by the fused double backward (pau::double_backward).
class PauBackwardFunction : public torch::autograd::Function<PauBackwardFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx,
                                                const Tensor& grad_output, const Tensor& x,
                                                const Tensor& numerator,
                                                const Tensor& denominator,
                                                c10::string_view variant, int64_t dim) {
    ctx->save_for_backward({grad_output, x, numerator, denominator});
    ctx->saved_data["variant"] = std::string(variant);
    ctx->saved_data["dim"] = dim;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [grad_x, grad_numerator, grad_denominator] =
        autograd::Signature<PauOp>::backward_op().call(grad_output, x, numerator, denominator,
                                                       variant, dim);
    return {grad_x, grad_numerator, grad_denominator};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const Tensor& x = saved[1];
    // An output nothing used has no gradient: zero.
    auto or_zeros = [](const Tensor& g, const Tensor& like) {
      return g.defined() ? g : at::zeros_like(like, at::MemoryFormat::Contiguous);
    };
    const Tensor grad_grad_x = or_zeros(grads[0], x);
    const Tensor grad_grad_numerator = or_zeros(grads[1], saved[2]);
    const Tensor grad_grad_denominator = or_zeros(grads[2], saved[3]);
    const std::string variant = ctx->saved_data["variant"].toStringRef();
    const int64_t dim = ctx->saved_data["dim"].toInt();
    const bool needs_graph = composite::builds_graph(
        {grad_grad_x, grad_grad_numerator, grad_grad_denominator, saved[0], x, saved[2],
         saved[3]});
    std::tuple<Tensor, Tensor, Tensor, Tensor> result;
    if (needs_graph || !has_fused_double_backward(x)) {
      // A graph to build (third order), or no fused kernel: the composite, for
      // the inputs whose gradients autograd asks for only.
      std::array<bool, 4> needed{};
      for (std::size_t i = 0; i < needed.size(); ++i) needed[i] = ctx->needs_input_grad(i);
      result = composite::pau_double_backward(grad_grad_x, grad_grad_numerator,
                                              grad_grad_denominator, saved[0], x, saved[2],
                                              saved[3], variant, dim, needed);
    } else {
      result = double_backward_op().call(grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                         saved[0], x, saved[2], saved[3], variant, dim);
    }
    auto [grad_grad_output, grad_x, grad_numerator, grad_denominator] = result;
    return {grad_grad_output, grad_x, grad_numerator, grad_denominator, Tensor(), Tensor()};
  }
};

// The Autograd kernel of pau::double_backward: the fused CPU kernel where no
// graph is needed; the composite (differentiable to any order) for third and
// higher order, under torch.func and on devices without a fused kernel.
std::tuple<Tensor, Tensor, Tensor, Tensor> double_backward_autograd(
    const Tensor& grad_grad_x, const Tensor& grad_grad_numerator,
    const Tensor& grad_grad_denominator, const Tensor& grad_output, const Tensor& x,
    const Tensor& numerator, const Tensor& denominator, c10::string_view variant, int64_t dim) {
  check_pau_double_backward_args(grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                 grad_output, x, numerator, denominator, variant, dim);
  const std::array<Tensor, 7> tensors{grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                      grad_output, x, numerator, denominator};
  if (composite::builds_graph(tensors) || !has_fused_double_backward(x) ||
      composite::needed_for(tensors)) {
    return composite::pau_double_backward(grad_grad_x, grad_grad_numerator,
                                          grad_grad_denominator, grad_output, x, numerator,
                                          denominator, variant, dim);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  return double_backward_op().call(grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                   grad_output, x, numerator, denominator, variant, dim);
}

std::tuple<Tensor, Tensor, Tensor> PauOp::graph_backward(const Tensor& grad_output,
                                                        const Tensor& x, const Tensor& numerator,
                                                        const Tensor& denominator,
                                                        c10::string_view variant, int64_t dim) {
  auto grads = PauBackwardFunction::apply(grad_output, x, numerator, denominator, variant, dim);
  return {grads[0], grads[1], grads[2]};
}

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
  m.def(
      "double_backward(Tensor grad_grad_x, Tensor grad_grad_numerator, "
      "Tensor grad_grad_denominator, Tensor grad_output, Tensor x, Tensor numerator, "
      "Tensor denominator, str variant=\"safe\", int dim=1) -> (Tensor grad_grad_output, "
      "Tensor grad_x, Tensor grad_numerator, Tensor grad_denominator)");
}

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("forward", &forward_meta);
  m.impl("backward", &backward_meta);
  m.impl("double_backward", &double_backward_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("forward", &autograd::Kernels<PauOp>::forward);
  m.impl("backward", &autograd::Kernels<PauOp>::backward);
  m.impl("double_backward", &double_backward_autograd);
}

}  // namespace pau
