// pau::forward and pau::backward: schemas, argument checks, CPU entry points,
// meta (fake) kernels and the autograd kernel. The CPU math lives in
// cpu/pau_kernel.cpp and pau_math.h; this file is glue.
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/launch.h"
#include "library.h"
#include "pau_ops.h"

namespace pau {

using at::Tensor;

math::Variant parse_variant(c10::string_view variant) {
  if (variant == "safe") return math::Variant::safe;
  if (variant == "abs_sum") return math::Variant::abs_sum;
  if (variant == "plain") return math::Variant::plain;
  TORCH_CHECK_VALUE(false, "pau: unknown variant '", std::string(variant),
                    "', expected 'safe', 'abs_sum' or 'plain'");
}

bool is_input_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

int64_t check_channel_dim(const Tensor& x, int64_t dim, int64_t groups, const char* op) {
  const int64_t rank = x.dim();
  TORCH_CHECK_INDEX(rank == 0 ? (dim == 0 || dim == -1) : (dim >= -rank && dim < rank), op,
                    ": dim ", dim, " is out of range for x with ", rank, " dimensions");
  const int64_t wrapped = rank == 0 ? 0 : (dim < 0 ? dim + rank : dim);
  const c10::SymInt channels = rank == 0 ? c10::SymInt(1) : x.sym_size(wrapped);
  TORCH_CHECK_VALUE(channels % groups == 0, op, ": the size of dimension ", wrapped, " of x (",
                    channels, ") is not divisible by the number of groups (", groups, ")");
  return wrapped;
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
  TORCH_CHECK(grad_output.defined(), "pau: grad_output must be a defined tensor");
  TORCH_CHECK_VALUE(grad_output.sym_sizes() == x.sym_sizes(), "pau: grad_output shape ",
                    grad_output.sym_sizes(), " must match x shape ", x.sym_sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "pau: grad_output dtype (",
                   grad_output.scalar_type(), ") must match x dtype (", x.scalar_type(), ")");
  TORCH_CHECK(grad_output.device() == x.device(), "pau: grad_output is on ",
              grad_output.device(), " but x is on ", x.device());
  return args;
}

at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

Tensor dense(const Tensor& x) {
  return x.is_non_overlapping_and_dense() ? x : x.contiguous();
}

Tensor in_memory_order_of(const Tensor& grad_output, const Tensor& dense_x) {
  return grad_output.strides() == dense_x.strides() ? grad_output
                                                    : at::empty_like(dense_x).copy_(grad_output);
}

int64_t group_run(const Tensor& dense_x, int64_t dim, int64_t groups) {
  if (groups == 1) return dense_x.numel();
  return dense_x.size(dim) / groups * dense_x.stride(dim);
}

int64_t group_run(const Tensor& dense_x, const PauArgs& args) {
  return group_run(dense_x, args.dim, args.groups);
}

const char* cpu_capability() { return cpu::capability_name(); }

bool has_cuda_kernels() {
#if defined(PAU_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

// This translation unit instantiates run_tiles (at::parallel_for) like the
// other operator files, with the same flags.
const char* parallel_backend() {
#if defined(_OPENMP)
  return "OpenMP";
#else
  return "none";
#endif
}

cpu::DType dtype_of(const Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat: return cpu::DType::float32;
    case at::kDouble: return cpu::DType::float64;
    case at::kHalf: return cpu::DType::float16;
    default: return cpu::DType::bfloat16;
  }
}

Tensor reduce_partials(const cpu::Problem& p, const Tensor& partials) {
  return reduce_partials(p.layout, p.coefficients(), partials);
}

Tensor reduce_partials(const cpu::Layout& l, int64_t count, const Tensor& partials) {
  Tensor sums = at::empty({l.groups, count}, partials.options());
  const double* in = partials.const_data_ptr<double>();
  double* out = sums.mutable_data_ptr<double>();
  at::parallel_for(0, l.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      for (int64_t k = 0; k < count; ++k) {
        double total = 0.0;
        for (int64_t rt = 0; rt < l.row_tiles; ++rt) {
          if (l.per_lane()) {
            const int64_t tile = rt * l.column_tiles + g / l.groups_per_tile;
            total += in[(tile * l.groups_per_tile + g % l.groups_per_tile) * count + k];
          } else {
            for (int64_t ct = g * l.tiles_per_group; ct < (g + 1) * l.tiles_per_group; ++ct) {
              total += in[(rt * l.column_tiles + ct) * count + k];
            }
          }
        }
        out[g * count + k] = total;
      }
    }
  });
  return sums;
}

namespace {

Tensor forward_cpu(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                   c10::string_view variant, int64_t dim) {
  const PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  const Tensor xd = dense(x);
  Tensor out = at::empty_like(xd);
  if (xd.numel() == 0) return out;
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type());
  const cpu::ForwardArgs launch{coefficients.problem(xd, args), xd.const_data_ptr(),
                                out.mutable_data_ptr()};
  run_tiles(cpu::kernel_table().forward[static_cast<int>(dtype_of(x))], launch);
  return out;
}

std::tuple<Tensor, Tensor, Tensor> backward_cpu(const Tensor& grad_output, const Tensor& x,
                                                const Tensor& numerator,
                                                const Tensor& denominator,
                                                c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  const Tensor xd = dense(x);
  const Tensor grad = in_memory_order_of(grad_output, xd);
  Tensor grad_x = at::empty_like(xd);
  if (xd.numel() == 0) {
    return {grad_x, at::zeros_like(numerator), at::zeros_like(denominator)};
  }
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type());
  const cpu::Problem problem = coefficients.problem(xd, args);
  const cpu::Layout& l = problem.layout;
  Tensor partials = at::empty({l.tiles() * l.groups_per_tile * problem.coefficients()},
                              x.options().dtype(at::kDouble));
  const cpu::BackwardArgs launch{problem, grad.const_data_ptr(), xd.const_data_ptr(),
                                 grad_x.mutable_data_ptr(), partials.mutable_data_ptr<double>()};
  run_tiles(cpu::kernel_table().backward[static_cast<int>(dtype_of(x))], launch);
  const Tensor sums = reduce_partials(problem, partials);
  return {grad_x, sums.narrow(1, 0, args.m + 1).to(numerator.scalar_type()).contiguous(),
          sums.narrow(1, args.m + 1, args.n).to(denominator.scalar_type()).contiguous()};
}

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

using ForwardSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, c10::string_view,
                                int64_t);
using BackwardSignature = std::tuple<Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, c10::string_view, int64_t);

// Autograd is registered in C++ so that it also works in TorchScript and in
// LibTorch programs that never load Python.
class PauFunction : public torch::autograd::Function<PauFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                        const Tensor& numerator, const Tensor& denominator,
                        const std::string& variant, int64_t dim) {
    ctx->save_for_backward({x, numerator, denominator});
    ctx->saved_data["variant"] = variant;
    ctx->saved_data["dim"] = dim;
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::forward", "")
                               .typed<ForwardSignature>();
    return op.call(x, numerator, denominator, variant, dim);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::backward", "")
                               .typed<BackwardSignature>();
    auto [grad_x, grad_numerator, grad_denominator] =
        op.call(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["variant"].toStringRef(),
                ctx->saved_data["dim"].toInt());
    return {grad_x, grad_numerator, grad_denominator, Tensor(), Tensor()};
  }
};

Tensor forward_autograd(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                        c10::string_view variant, int64_t dim) {
  return PauFunction::apply(x, numerator, denominator, std::string(variant), dim);
}

std::tuple<Tensor, Tensor, Tensor> backward_autograd(const Tensor& grad_output, const Tensor& x,
                                                     const Tensor& numerator,
                                                     const Tensor& denominator,
                                                     c10::string_view variant, int64_t dim) {
  const bool needs_graph =
      at::GradMode::is_enabled() && (grad_output.requires_grad() || x.requires_grad() ||
                                     numerator.requires_grad() || denominator.requires_grad());
  TORCH_CHECK(!needs_graph,
              "pau: the gradient of pau::backward (double backward, create_graph=True) is not "
              "implemented");
  at::AutoDispatchBelowADInplaceOrView guard;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("pau::backward", "")
                             .typed<BackwardSignature>();
  return op.call(grad_output, x, numerator, denominator, variant, dim);
}

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

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("forward", &forward_cpu);
  m.impl("backward", &backward_cpu);
}

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("forward", &forward_meta);
  m.impl("backward", &backward_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("forward", &forward_autograd);
  m.impl("backward", &backward_autograd);
}

}  // namespace pau
