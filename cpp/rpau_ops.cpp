// pau::rpau_forward, pau::rpau_backward and pau::rpau_noise: Randomized PAU
// (PAU paper Section 3.2, Eq. 3). Every coefficient c_j of every element x_i is
// c_j * (1 + e_ij), e_ij = alpha_j * (2 u_ij - 1), u_ij from the counter-based
// generator of counter_rng.h keyed by (seed, offset). Backward regenerates the
// noise: the autograd graph keeps what PAU keeps plus alpha and the (2,) seed.
//
// Arguments beyond PAU's:
//   alpha        floating tensor broadcastable to (G, m + 1 + n): a scalar (0-d or
//                (1,)), one value per coefficient ((m+1+n,), a_0..a_m then
//                b_1..b_n) or per group and coefficient. 0 <= alpha < 1 (below
//                1 a non-zero coefficient keeps its sign and stays non-zero).
//   seed_offset  int64 tensor of shape (2,) on the CPU holding (seed, offset).
//                A tensor rather than two ints so that torch.compile traces one
//                graph whose seed changes every step without recompiling, and so
//                that a CUDA caller can draw it on the CPU generator (no sync).
// The noise is indexed by the element's logical (row-major) index, so a
// channels_last x gets the same noise per element as its contiguous copy; the
// CPU kernels read such an x through a contiguous copy.
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "composite.h"
#include "counter_rng.h"
#include "cpu/kernels.h"
#include "cpu/launch.h"
#include "pau_ops.h"
#include "rpau_ops.h"

namespace pau {

using at::Tensor;

namespace {

void check_rpau_extra_args(const Tensor& x, const Tensor& alpha, const Tensor& seed_offset,
                           const PauArgs& args) {
  TORCH_CHECK(alpha.defined() && seed_offset.defined(),
              "pau: alpha and seed_offset must be defined tensors");
  TORCH_CHECK_TYPE(at::isFloatingType(alpha.scalar_type()),
                   "pau: alpha must be a floating-point tensor, got ", alpha.scalar_type());
  TORCH_CHECK(alpha.device() == x.device(), "pau: alpha must be on x's device (", x.device(),
              "), got ", alpha.device());
  const int64_t count = args.m + 1 + args.n;
  const int64_t rank = alpha.dim();
  const bool broadcastable =
      rank <= 2 && (rank < 1 || alpha.sym_size(-1) == 1 || alpha.sym_size(-1) == count) &&
      (rank < 2 || alpha.sym_size(0) == 1 || alpha.sym_size(0) == args.groups);
  TORCH_CHECK_VALUE(broadcastable,
                    "pau: alpha must be a scalar or broadcastable to (G, m+1+n) = (", args.groups,
                    ", ", count, "), got shape ", alpha.sym_sizes());
  TORCH_CHECK_TYPE(seed_offset.scalar_type() == at::kLong,
                   "pau: seed_offset must be an int64 tensor, got ", seed_offset.scalar_type());
  TORCH_CHECK_VALUE(seed_offset.dim() == 1 && seed_offset.sym_size(0) == 2,
                    "pau: seed_offset must have shape (2,) holding (seed, offset), got shape ",
                    seed_offset.sym_sizes());
  // A meta seed_offset dispatches to the meta kernels even for real x, which
  // would return an uninitialised tensor: allow it only beside a meta x.
  TORCH_CHECK(seed_offset.device().is_cpu() || (seed_offset.is_meta() && x.is_meta()),
              "pau: seed_offset must be a CPU tensor (the kernels read it on the host), got ",
              seed_offset.device(), " for x on ", x.device());
}

}  // namespace

PauArgs check_rpau_args(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                        const Tensor& alpha, const Tensor& seed_offset,
                        c10::string_view variant, int64_t dim) {
  const PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  check_rpau_extra_args(x, alpha, seed_offset, args);
  return args;
}

PauArgs check_rpau_backward_args(const Tensor& grad_output, const Tensor& x,
                                 const Tensor& numerator, const Tensor& denominator,
                                 const Tensor& alpha, const Tensor& seed_offset,
                                 c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  check_rpau_extra_args(x, alpha, seed_offset, args);
  return args;
}

rng::Stream stream_of(const Tensor& seed_offset, int words) {
  TORCH_CHECK(seed_offset.device().is_cpu(), "pau: seed_offset must be a CPU tensor, got ",
              seed_offset.device());
  const Tensor so = seed_offset.contiguous();
  const int64_t* v = so.const_data_ptr<int64_t>();
  return rng::make_stream(static_cast<uint64_t>(v[0]), static_cast<uint64_t>(v[1]), words);
}

namespace {

// The noise factors' tables for the kernels (see cpu::Noise), built from alpha.
struct HostNoise {
  // base then scale, each laid out like the coefficients: (G, m + 1) for the
  // numerator, then (G, n) for the denominator.
  std::vector<double> tables;
  cpu::Noise noise;
  bool zero = true;  // alpha == 0 everywhere: RPAU is PAU

  HostNoise(const Tensor& alpha, const Tensor& seed_offset, const PauArgs& args) {
    const int64_t count = args.m + 1 + args.n;
    const std::vector<double> values =
        host_values(alpha.expand({args.groups, count}), at::kDouble);
    for (const double v : values) {
      TORCH_CHECK_VALUE(rng::alpha_usable(v), "pau: alpha must be in [0, 1), got ", v);
      zero = zero && v == 0.0;
    }
    const int64_t size = args.groups * count;
    tables.resize(static_cast<size_t>(2 * size));
    double* base = tables.data();
    double* scale = base + size;
    // The kernels index the numerator part as (G, m + 1) and the denominator
    // part as (G, n): split the rows.
    const int64_t numerator_size = args.groups * (args.m + 1);
    for (int64_t g = 0; g < args.groups; ++g) {
      for (int64_t j = 0; j < count; ++j) {
        const double a = values[g * count + j];
        const int64_t at = j <= args.m ? g * (args.m + 1) + j
                                       : numerator_size + g * args.n + (j - args.m - 1);
        base[at] = rng::factor_base(a);
        scale[at] = rng::factor_scale(a);
      }
    }
    noise.base_numerator = base;
    noise.base_denominator = base + numerator_size;
    noise.scale_numerator = scale;
    noise.scale_denominator = scale + numerator_size;
    noise.stream = stream_of(seed_offset, static_cast<int>(count));
  }
};

// Writes `computed` (contiguous) into a tensor laid out like x.
Tensor like_x(const Tensor& x, const Tensor& computed) {
  Tensor out = at::empty_like(x);
  return out.is_contiguous() ? computed : out.copy_(computed);
}

using PauForwardSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, c10::string_view,
                                   int64_t);
using PauBackwardSignature = std::tuple<Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, c10::string_view, int64_t);

// alpha == 0 everywhere: RPAU is PAU, computed by PAU's own CPU kernel on x's
// own layout, so results and coefficient-gradient sums are PAU's bit for bit.
const c10::DispatchKeySet kCpuKeys(c10::DispatchKey::CPU);

Tensor rpau_forward_cpu(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                        const Tensor& alpha, const Tensor& seed_offset, c10::string_view variant,
                        int64_t dim) {
  const PauArgs args = check_rpau_args(x, numerator, denominator, alpha, seed_offset, variant,
                                       dim);
  const HostNoise host_noise(alpha, seed_offset, args);
  if (host_noise.zero) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::forward", "")
                               .typed<PauForwardSignature>();
    return op.redispatch(kCpuKeys, x, numerator, denominator, variant, dim);
  }
  // Element index = memory offset requires a contiguous x.
  const Tensor xc = x.contiguous();
  Tensor out = at::empty_like(xc);
  if (xc.numel() == 0) return like_x(x, out);
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type(),
                                           /*coefficient_growth=*/2.0);
  cpu::Problem problem = coefficients.problem(xc, args);
  const auto& table = cpu::kernel_table();
  const int dtype = static_cast<int>(dtype_of(x));
  problem.noise = &host_noise.noise;
  const cpu::ForwardArgs launch{problem, xc.const_data_ptr(), out.mutable_data_ptr()};
  run_tiles(table.rpau_forward[dtype], launch);
  return like_x(x, out);
}

std::tuple<Tensor, Tensor, Tensor> rpau_backward_cpu(const Tensor& grad_output, const Tensor& x,
                                                     const Tensor& numerator,
                                                     const Tensor& denominator,
                                                     const Tensor& alpha,
                                                     const Tensor& seed_offset,
                                                     c10::string_view variant, int64_t dim) {
  const PauArgs args = check_rpau_backward_args(grad_output, x, numerator, denominator, alpha,
                                                seed_offset, variant, dim);
  const HostNoise host_noise(alpha, seed_offset, args);
  if (host_noise.zero) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::backward", "")
                               .typed<PauBackwardSignature>();
    return op.redispatch(kCpuKeys, grad_output, x, numerator, denominator, variant, dim);
  }
  const Tensor xc = x.contiguous();
  const Tensor grad = grad_output.contiguous();
  Tensor grad_x = at::empty_like(xc);
  if (xc.numel() == 0) {
    return {like_x(x, grad_x), at::zeros_like(numerator), at::zeros_like(denominator)};
  }
  const HostCoefficients coefficients(numerator, denominator, args, x.scalar_type(),
                                           /*coefficient_growth=*/2.0);
  cpu::Problem problem = coefficients.problem(xc, args);
  problem.noise = &host_noise.noise;
  std::vector<double> partials = partials_buffer(problem.layout, problem.coefficients());
  const cpu::BackwardArgs launch{problem, grad.const_data_ptr(), xc.const_data_ptr(),
                                 grad_x.mutable_data_ptr(), partials.data()};
  run_tiles(cpu::kernel_table().rpau_backward[static_cast<int>(dtype_of(x))], launch);
  auto [grad_numerator, grad_denominator] = coefficient_gradients(problem, partials, numerator);
  return {like_x(x, grad_x), grad_numerator, grad_denominator};
}

void check_noise_args(const Tensor& seed_offset, int64_t numel, int64_t coefficients) {
  TORCH_CHECK_VALUE(numel >= 0, "pau: numel must be non-negative, got ", numel);
  TORCH_CHECK_VALUE(coefficients >= 1 && coefficients <= rng::kMaxWords,
                    "pau: coefficients must be in [1, ", rng::kMaxWords, "], got ", coefficients);
  TORCH_CHECK_TYPE(seed_offset.scalar_type() == at::kLong,
                   "pau: seed_offset must be an int64 tensor, got ", seed_offset.scalar_type());
  TORCH_CHECK_VALUE(seed_offset.dim() == 1 && seed_offset.sym_size(0) == 2,
                    "pau: seed_offset must have shape (2,) holding (seed, offset), got shape ",
                    seed_offset.sym_sizes());
}

// u_ij for the first `numel` logical elements: (numel, coefficients) float64.
// For tests and debugging; the kernels never materialize the noise.
Tensor rpau_noise_cpu(const Tensor& seed_offset, int64_t numel, int64_t coefficients) {
  check_noise_args(seed_offset, numel, coefficients);
  const rng::Stream stream = stream_of(seed_offset, static_cast<int>(coefficients));
  Tensor u = at::empty({numel, coefficients}, seed_offset.options().dtype(at::kDouble));
  double* out = u.mutable_data_ptr<double>();
  at::parallel_for(0, numel, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      for (int64_t j = 0; j < coefficients; ++j) {
        out[i * coefficients + j] = rng::uniform(stream, static_cast<uint64_t>(i), int(j));
      }
    }
  });
  return u;
}

Tensor rpau_forward_meta(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                         const Tensor& alpha, const Tensor& seed_offset,
                         c10::string_view variant, int64_t dim) {
  check_rpau_args(x, numerator, denominator, alpha, seed_offset, variant, dim);
  return at::empty_like(x);
}

std::tuple<Tensor, Tensor, Tensor> rpau_backward_meta(const Tensor& grad_output, const Tensor& x,
                                                      const Tensor& numerator,
                                                      const Tensor& denominator,
                                                      const Tensor& alpha,
                                                      const Tensor& seed_offset,
                                                      c10::string_view variant, int64_t dim) {
  check_rpau_backward_args(grad_output, x, numerator, denominator, alpha, seed_offset, variant,
                           dim);
  return {at::empty_like(x), at::empty_like(numerator, at::MemoryFormat::Contiguous),
          at::empty_like(denominator, at::MemoryFormat::Contiguous)};
}

Tensor rpau_noise_meta(const Tensor& seed_offset, int64_t numel, int64_t coefficients) {
  check_noise_args(seed_offset, numel, coefficients);
  return at::empty({numel, coefficients}, seed_offset.options().dtype(at::kDouble));
}

using ForwardSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const Tensor&, c10::string_view, int64_t);
using BackwardSignature = std::tuple<Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    c10::string_view, int64_t);

// Autograd in C++, as for PAU (TorchScript, LibTorch). Saves x and the
// coefficients like PAU, plus alpha and the (2,) seed_offset: never the noise.
class RpauFunction : public torch::autograd::Function<RpauFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& x,
                        const Tensor& numerator, const Tensor& denominator, const Tensor& alpha,
                        const Tensor& seed_offset, const std::string& variant, int64_t dim) {
    ctx->save_for_backward({x, numerator, denominator, alpha, seed_offset});
    ctx->saved_data["variant"] = variant;
    ctx->saved_data["dim"] = dim;
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::rpau_forward", "")
                               .typed<ForwardSignature>();
    return op.call(x, numerator, denominator, alpha, seed_offset, variant, dim);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("pau::rpau_backward", "")
                               .typed<BackwardSignature>();
    auto [grad_x, grad_numerator, grad_denominator] =
        op.call(grads[0], saved[0], saved[1], saved[2], saved[3], saved[4],
                ctx->saved_data["variant"].toStringRef(), ctx->saved_data["dim"].toInt());
    return {grad_x, grad_numerator, grad_denominator, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor rpau_forward_autograd(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                             const Tensor& alpha, const Tensor& seed_offset,
                             c10::string_view variant, int64_t dim) {
  // Before apply(), which reads every input's device and fails on an
  // undefined tensor (None from Python) with "tensor does not have a device".
  TORCH_CHECK(x.defined() && numerator.defined() && denominator.defined() && alpha.defined() &&
                  seed_offset.defined(),
              "pau: x, numerator, denominator, alpha and seed_offset must be defined tensors, "
              "not None");
  TORCH_CHECK(!alpha.requires_grad(), "pau: alpha is a hyperparameter and cannot require grad");
  // As pau::forward: torch.func and forward-mode AD take the composite.
  if (composite::needed_for({x, numerator, denominator})) {
    return composite::rpau_forward(x, numerator, denominator, alpha, seed_offset, variant, dim);
  }
  return RpauFunction::apply(x, numerator, denominator, alpha, seed_offset, std::string(variant),
                             dim);
}

std::tuple<Tensor, Tensor, Tensor> rpau_backward_autograd(
    const Tensor& grad_output, const Tensor& x, const Tensor& numerator,
    const Tensor& denominator, const Tensor& alpha, const Tensor& seed_offset,
    c10::string_view variant, int64_t dim) {
  const bool needs_graph =
      at::GradMode::is_enabled() && (grad_output.requires_grad() || x.requires_grad() ||
                                     numerator.requires_grad() || denominator.requires_grad());
  // As pau::backward: double backward and torch.func take the composite.
  if (needs_graph || composite::needed_for({grad_output, x, numerator, denominator})) {
    return composite::rpau_backward(grad_output, x, numerator, denominator, alpha, seed_offset,
                                    variant, dim);
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("pau::rpau_backward", "")
                             .typed<BackwardSignature>();
  return op.call(grad_output, x, numerator, denominator, alpha, seed_offset, variant, dim);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(pau, m) {
  m.def(
      "rpau_forward(Tensor x, Tensor numerator, Tensor denominator, Tensor alpha, "
      "Tensor seed_offset, str variant=\"safe\", int dim=1) -> Tensor");
  m.def(
      "rpau_backward(Tensor grad_output, Tensor x, Tensor numerator, Tensor denominator, "
      "Tensor alpha, Tensor seed_offset, str variant=\"safe\", int dim=1) -> "
      "(Tensor grad_x, Tensor grad_numerator, Tensor grad_denominator)");
  m.def("rpau_noise(Tensor seed_offset, int numel, int coefficients) -> Tensor");
}

TORCH_LIBRARY_IMPL(pau, CPU, m) {
  m.impl("rpau_forward", &rpau_forward_cpu);
  m.impl("rpau_backward", &rpau_backward_cpu);
  m.impl("rpau_noise", &rpau_noise_cpu);
}

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("rpau_forward", &rpau_forward_meta);
  m.impl("rpau_backward", &rpau_backward_meta);
  m.impl("rpau_noise", &rpau_noise_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("rpau_forward", &rpau_forward_autograd);
  m.impl("rpau_backward", &rpau_backward_autograd);
}

}  // namespace pau
