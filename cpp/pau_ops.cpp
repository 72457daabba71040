// pau::forward and pau::backward: schemas, argument checks, CPU entry points,
// meta (fake) kernels and the autograd kernel. The CPU math lives in
// cpu/pau_kernel.cpp and pau_math.h; this file is glue.
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "composite.h"
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

std::vector<double> partials_buffer(const cpu::Layout& l, int64_t count) {
  return std::vector<double>(static_cast<size_t>(l.tiles() * l.groups_per_tile * count));
}

void reduce_partials(const cpu::Layout& l, int64_t count, const double* in, double* out) {
  // Below about this many additions per chunk a thread team costs more than it
  // saves: small inputs reduce on the calling thread.
  constexpr int64_t kParallelWork = 1 << 15;
  const int64_t per_group = count * l.row_tiles * (l.per_lane() ? 1 : l.tiles_per_group);
  const int64_t grain = std::max<int64_t>(1, kParallelWork / std::max<int64_t>(1, per_group));
  at::parallel_for(0, l.groups, grain, [&](int64_t begin, int64_t end) {
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
}

namespace {

// v rounded to float as a conversion of the tensor would: to nearest, inf
// beyond float's range (where a C++ cast of the double is undefined).
float to_float(double v) {
  constexpr double kOverflow = 0x1.ffffffp127;  // FLT_MAX + half an ulp
  if (std::fabs(v) >= kOverflow) return static_cast<float>(std::copysign(HUGE_VAL, v));
  return static_cast<float>(v);
}

template <class S>
void read_values(const Tensor& t, bool round_to_float, double* out) {
  const S* data = t.const_data_ptr<S>();
  const int64_t rows = t.size(0);
  const int64_t cols = t.size(1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const double v = static_cast<double>(data[r * t.stride(0) + c * t.stride(1)]);
      *out++ = round_to_float ? static_cast<double>(to_float(v)) : v;
    }
  }
}

template <class S>
void write_values(const double* values, int64_t rows, int64_t width, int64_t first,
                  int64_t count, S* out) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < count; ++c) {
      const double v = values[r * width + first + c];
      if constexpr (std::is_same_v<S, double>) {
        *out++ = v;
      } else {
        *out++ = static_cast<S>(to_float(v));
      }
    }
  }
}

}  // namespace

std::vector<double> host_values(const Tensor& t, at::ScalarType compute) {
  TORCH_CHECK(t.dim() == 2 && t.device().is_cpu(),
              "pau: internal error: host_values needs a 2-D CPU tensor, got ", t.sizes(), " on ",
              t.device());
  std::vector<double> values(static_cast<size_t>(t.numel()));
  const bool round_to_float = compute != at::kDouble;
  switch (t.scalar_type()) {
    case at::kFloat: read_values<float>(t, round_to_float, values.data()); break;
    case at::kDouble: read_values<double>(t, round_to_float, values.data()); break;
    case at::kHalf: read_values<c10::Half>(t, round_to_float, values.data()); break;
    case at::kBFloat16: read_values<c10::BFloat16>(t, round_to_float, values.data()); break;
    default:  // other floating types (e.g. RPAU's alpha): through torch's own conversion
      read_values<double>(t.to(compute).to(at::kDouble), false, values.data());
  }
  return values;
}

Tensor columns_as(const double* values, int64_t rows, int64_t width, int64_t first,
                  int64_t count, const at::TensorOptions& type) {
  Tensor out = at::empty({rows, count}, type);
  switch (out.scalar_type()) {
    case at::kFloat:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<float>());
      break;
    case at::kDouble:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<double>());
      break;
    case at::kHalf:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<c10::Half>());
      break;
    case at::kBFloat16:
      write_values(values, rows, width, first, count, out.mutable_data_ptr<c10::BFloat16>());
      break;
    default:
      TORCH_CHECK(false, "pau: internal error: gradients of dtype ", out.scalar_type());
  }
  return out;
}

std::tuple<Tensor, Tensor> coefficient_gradients(const cpu::Problem& p,
                                                 const std::vector<double>& partials,
                                                 const Tensor& numerator) {
  const int64_t count = p.coefficients();
  std::vector<double> sums(static_cast<size_t>(p.layout.groups * count));
  reduce_partials(p.layout, count, partials.data(), sums.data());
  const auto type = numerator.options().memory_format(at::MemoryFormat::Contiguous);
  return {columns_as(sums.data(), p.layout.groups, count, 0, p.m + 1, type),
          columns_as(sums.data(), p.layout.groups, count, p.m + 1, p.n, type)};
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
  std::vector<double> partials = partials_buffer(problem.layout, problem.coefficients());
  const cpu::BackwardArgs launch{problem, grad.const_data_ptr(), xd.const_data_ptr(),
                                 grad_x.mutable_data_ptr(), partials.data()};
  run_tiles(cpu::kernel_table().backward[static_cast<int>(dtype_of(x))], launch);
  auto [grad_numerator, grad_denominator] = coefficient_gradients(problem, partials, numerator);
  return {grad_x, grad_numerator, grad_denominator};
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
  // Before apply(), which reads every input's device and fails on an
  // undefined tensor (None from Python) with "tensor does not have a device".
  TORCH_CHECK(x.defined() && numerator.defined() && denominator.defined(),
              "pau: x, numerator and denominator must be defined tensors, not None");
  // torch.func transforms and forward-mode AD cannot run a C++ autograd
  // Function: there, the differentiable composite of at:: ops.
  if (composite::needed_for({x, numerator, denominator})) {
    return composite::pau_forward(x, numerator, denominator, variant, dim);
  }
  return PauFunction::apply(x, numerator, denominator, std::string(variant), dim);
}

std::tuple<Tensor, Tensor, Tensor> backward_autograd(const Tensor& grad_output, const Tensor& x,
                                                     const Tensor& numerator,
                                                     const Tensor& denominator,
                                                     c10::string_view variant, int64_t dim) {
  const bool needs_graph =
      at::GradMode::is_enabled() && (grad_output.requires_grad() || x.requires_grad() ||
                                     numerator.requires_grad() || denominator.requires_grad());
  // Double backward (create_graph=True) and torch.func: a composite that
  // autograd differentiates to any order. Otherwise the fused kernel.
  if (needs_graph || composite::needed_for({grad_output, x, numerator, denominator})) {
    return composite::pau_backward(grad_output, x, numerator, denominator, variant, dim);
  }
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
