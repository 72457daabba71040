// pau::rpau_forward, pau::rpau_backward and pau::rpau_noise: schemas, argument
// checks, meta (fake) kernels and the autograd kernel. The CPU entry points
// are in cpu/rpau_cpu.cpp, the CUDA ones in cuda/pau_cuda.cu.
//
// Randomized PAU (PAU paper Section 3.2, Eq. 3). Every coefficient c_j of every element x_i is
// c_j * (1 + e_ij), e_ij = alpha_j * (2 u_ij - 1), u_ij from the counter-based
// generator of math/counter_rng.h keyed by (seed, offset). Backward regenerates the
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
#include "ops/rpau.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "ops/autograd.h"
#include "ops/composite.h"

namespace pau {

using at::Tensor;

void check_seed_offset(const Tensor& seed_offset) {
  TORCH_CHECK_TYPE(seed_offset.scalar_type() == at::kLong,
                   "pau: seed_offset must be an int64 tensor, got ", seed_offset.scalar_type());
  TORCH_CHECK_VALUE(seed_offset.dim() == 1 && seed_offset.sym_size(0) == 2,
                    "pau: seed_offset must have shape (2,) holding (seed, offset), got shape ",
                    seed_offset.sym_sizes());
}

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
  check_seed_offset(seed_offset);
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
  // The callers have checked seed_offset (check_rpau_args, or rpau_noise's
  // arguments on its CPU dispatch key): this only guards the host read.
  TORCH_INTERNAL_ASSERT(seed_offset.device().is_cpu(), "pau: stream_of needs seed_offset on the ",
                        "CPU, got ", seed_offset.device());
  const Tensor so = seed_offset.contiguous();
  const int64_t* v = so.const_data_ptr<int64_t>();
  return rng::make_stream(static_cast<uint64_t>(v[0]), static_cast<uint64_t>(v[1]), words);
}

void check_rpau_noise_args(const Tensor& seed_offset, int64_t numel, int64_t coefficients) {
  TORCH_CHECK_VALUE(numel >= 0, "pau: numel must be non-negative, got ", numel);
  TORCH_CHECK_VALUE(coefficients >= 1 && coefficients <= rng::kMaxWords,
                    "pau: coefficients must be in [1, ", rng::kMaxWords, "], got ", coefficients);
  check_seed_offset(seed_offset);
}

namespace {

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
  check_rpau_noise_args(seed_offset, numel, coefficients);
  return at::empty({numel, coefficients}, seed_offset.options().dtype(at::kDouble));
}

class RpauFunction;

struct RpauOp {
  using Forward = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                         const Tensor&, c10::string_view, int64_t);
  using Backward = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&,
                                                      const Tensor&, const Tensor&,
                                                      const Tensor&, const Tensor&,
                                                      c10::string_view, int64_t);
  using Function = RpauFunction;
  static constexpr const char* kForward = "pau::rpau_forward";
  static constexpr const char* kBackward = "pau::rpau_backward";
  static constexpr const char* kUndefined =
      "pau: x, numerator, denominator, alpha and seed_offset must be defined tensors, not None";
  static constexpr auto composite_forward = &composite::rpau_forward;
  static constexpr auto composite_backward = &composite::rpau_backward;

  // The noise's half-widths are hyperparameters: no gradient flows to them.
  static void check_inputs(const Tensor&, const Tensor&, const Tensor&, const Tensor& alpha,
                           const Tensor&, c10::string_view, int64_t) {
    TORCH_CHECK(!alpha.requires_grad(),
                "pau: alpha is a hyperparameter and cannot require grad");
  }
};

// A class of its own: its name is the autograd node's (the output's grad_fn).
class RpauFunction : public autograd::FusedFunction<RpauOp, RpauFunction> {};

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

TORCH_LIBRARY_IMPL(pau, Meta, m) {
  m.impl("rpau_forward", &rpau_forward_meta);
  m.impl("rpau_backward", &rpau_backward_meta);
  m.impl("rpau_noise", &rpau_noise_meta);
}

TORCH_LIBRARY_IMPL(pau, Autograd, m) {
  m.impl("rpau_forward", &autograd::Kernels<RpauOp>::forward);
  m.impl("rpau_backward", &autograd::Kernels<RpauOp>::backward);
}

}  // namespace pau
