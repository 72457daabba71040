// Differentiable compositions of at:: ops for PAU and RPAU (see composite.h).
// The formulas are those of pau_math.h, written on whole tensors: x is viewed
// as (1, pre, G, C / G, post) and the coefficients as (K, 1, G, 1, 1), K of
// them stacked along dim 0 so that they broadcast against it (RPAU multiplies
// them by per-element factors), and coefficient gradients are sums over dims
// 1, 3, 4.
#include "ops/composite.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <vector>

#include "ops/pau.h"
#include "ops/rpau.h"

namespace pau {
namespace composite {

using at::Tensor;

namespace {

// Whether a torch.func transform is active: functorch includes its
// DynamicLayerFrontMode key in the thread's dispatch keys exactly while its
// transform stack is not empty (setDynamicLayerFrontBackKeysIncluded). The
// stack itself is declared in ATen/functorch/DynamicLayer.h, which needs
// nlohmann/json, which torch does not install.
bool transform_active() {
  return c10::impl::tls_is_dispatch_key_included(
      c10::DispatchKey::FuncTorchDynamicLayerFrontMode);
}

}  // namespace

bool builds_graph(c10::ArrayRef<Tensor> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

bool needed_for(c10::ArrayRef<Tensor> inputs) {
  if (transform_active()) return true;
  for (const Tensor& t : inputs) {
    // Level 0: the forward-AD level of torch.autograd.forward_ad.dual_level.
    if (t.defined() && t._fw_grad(/*level=*/0).defined()) return true;
  }
  return false;
}

bool readable_on_host(const Tensor& t) {
  constexpr c10::DispatchKeySet kWrapped({c10::DispatchKey::Python,
                                           c10::DispatchKey::Functionalize,
                                           c10::DispatchKey::FuncTorchBatched,
                                           c10::DispatchKey::FuncTorchGradWrapper});
  return t.device().is_cpu() && !t.key_set().has_any(kWrapped) && t.has_storage();
}

std::vector<c10::SymInt> grouped_shape(const Tensor& x, int64_t dim, int64_t groups) {
  if (x.dim() == 0) return {1, 1, 1, 1};
  const auto sizes = x.sym_sizes();
  c10::SymInt pre = 1;
  c10::SymInt post = 1;
  for (int64_t i = 0; i < dim; ++i) pre = pre * sizes[i];
  for (int64_t i = dim + 1; i < x.dim(); ++i) post = post * sizes[i];
  return {pre, c10::SymInt(groups), sizes[dim] / groups, post};
}

namespace {

// Per-coefficient tensors are stacked along a leading dim: (K, pre, G, C / G, post)
// for per-element values, (K, 1, G, 1, 1) for per-group ones. One op then
// handles every coefficient (a few dozen ops per call instead of a few per
// coefficient, which matters at the sizes where op overhead dominates).
Tensor stacked_columns(const Tensor& c) {  // (G, K) -> (K, 1, G, 1, 1)
  return c.t().reshape({c.size(1), 1, c.size(0), 1, 1});
}

// 0, 1, ..., count - 1 (plus `first`) as (count, 1, 1, 1, 1) in `like`'s type.
Tensor indices(int64_t first, int64_t count, const Tensor& like) {
  return at::arange(first, first + count, like.options()).reshape({count, 1, 1, 1, 1});
}

// The coefficients every element sees, stacked: (m + 1, 1, G, 1, 1) and
// (n, 1, G, 1, 1) for PAU; RPAU multiplies them by per-element factors.
struct Coefficients {
  Tensor a;         // a_0..a_m
  Tensor b;         // b_1..b_n
  Tensor factor_a;  // undefined for PAU
  Tensor factor_b;
};

// The effective denominator degree of every group (highest k with b_k != 0,
// NaN counting as non-zero, as math::effective_degree), as (1, 1, G, 1, 1) in
// the compute type: the scaling degree s. A tensor, so nothing is read on the host.
Tensor scaling_degree(const Tensor& denominator) {
  const Tensor b = denominator.detach();
  if (b.size(1) == 0) return at::zeros({1, 1, b.size(0), 1, 1}, b.options());
  const Tensor k = at::arange(1, b.size(1) + 1, b.options());
  const Tensor nonzero = b.ne(0).logical_or(b.isnan()).to(b.scalar_type());
  return (nonzero * k).amax(1).reshape({1, 1, -1, 1, 1});
}

// The scaling degree shared by every group, when the denominator can be read
// on the host without cost or effect: a plain CPU tensor (not a fake tensor
// under torch.compile, not wrapped by a torch.func transform; on CUDA the read
// would synchronise). Then the powers are those of one degree (scaled_powers_of)
// instead of every candidate's (scaled_powers).
std::optional<int64_t> common_scaling_degree(const Tensor& denominator) {
  if (!readable_on_host(denominator)) return std::nullopt;
  const Tensor b = denominator.detach().to(at::kDouble).contiguous();
  const double* values = b.const_data_ptr<double>();
  const int n = static_cast<int>(b.size(1));
  std::optional<int64_t> common;
  for (int64_t g = 0; g < b.size(0); ++g) {
    const int64_t s = math::effective_degree(values + g * n, n, 0) + 1;
    if (common && *common != s) return std::nullopt;
    common = s;
  }
  return common;
}

// The scaled powers without selects: with M = max(1, |x|), v = x / M (x where
// |x| <= 1, sgn(x) beyond) and 1/M, both in [-1, 1],
//   E_j = x^j / M^s = v^j (1/M)^(s-j)   (j <= s),   v^j M^(j-s)   (j > s),
// the values of pau_math.h's scaled_powers (there sgn(x)^s w^(s-j) with w = 1/x
// for |x| > 1, which is v^j (1/M)^(s-j)). Nothing overflows for j <= s, and
// every factor has a finite derivative (v's is 0 where |x| > 1): no branch to
// sanitise. Autograd's derivative of M at |x| = 1 is one-sided, which F
// (a ratio in which M^s cancels) does not see.
struct Scaling {
  Tensor v;        // x / M
  Tensor inverse;  // 1 / M
  Tensor m;        // M
  Tensor nan;      // 1, or NaN where x is NaN (for E_0 when s = 0)
};

Scaling scaling_of(const Tensor& x) {
  Scaling r;
  r.m = x.abs().clamp_min(1.0);
  r.inverse = r.m.reciprocal();
  r.v = x * r.inverse;
  // clamp_min keeps NaN, so M, 1/M and v are NaN where x is: E_j for j >= 1
  // and any s follow; v * 0 + 1 carries it into E_0 = 1 of a constant group.
  r.nan = r.v * 0 + 1;
  return r;
}

// v^0..v^(count-1), the first being r.nan.
std::vector<Tensor> powers_of_v(const Scaling& r, int64_t count) {
  std::vector<Tensor> p{r.nan};
  for (int64_t j = 1; j < count; ++j) p.push_back(j == 1 ? r.v : p.back() * r.v);
  return p;
}

// E_j for one scaling degree s known on the host, stacked. For count - 1 - s
// <= 1 only: beyond, E_j = v^j M^(j-s) can be infinite where a zero
// coefficient's term is dropped (guarded), and the product's gradient then
// is 0 * inf = NaN; scaled_powers_by_selects handles those degrees.
Tensor scaled_powers_of(const Tensor& x, int64_t s, int64_t count) {
  const Scaling r = scaling_of(x);
  const std::vector<Tensor> v = powers_of_v(r, count);
  std::vector<Tensor> e(static_cast<size_t>(count));
  Tensor factor;  // (1/M)^(s-j) walking j down from s, then M^(j-s) up from s
  for (int64_t j = std::min(s, count - 1); j >= 0; --j) {
    factor = j == s ? Tensor() : (factor.defined() ? factor * r.inverse : r.inverse);
    e[j] = factor.defined() ? v[j] * factor : v[j];
  }
  factor = Tensor();
  for (int64_t j = s + 1; j < count; ++j) {
    factor = factor.defined() ? factor * r.m : r.m;
    e[j] = v[j] * factor;
  }
  return at::cat(e, 0);  // each E_j is (1, pre, G, C / G, post)
}

// E_j for one scaling degree s known on the host, as pau_math.h's
// scaled_powers computes them: products of w = 1/x, the two branches (|x| <= 1
// and beyond) selected. Stacked. Slower than scaled_powers_of; used where that
// one's products can be infinite (see there): here E_j, j > s, is a chain of
// products of x, whose gradient is NaN only where |x|^(j-s-1) overflows too.
Tensor scaled_powers_by_selects(const Tensor& x, int64_t s, int64_t count) {
  const Tensor large = x.abs().gt(1);
  const Tensor small = at::where(large.logical_not(), x, 0.0);
  const Tensor x_large = at::where(large, x, 1.0);  // sanitised as in scaled_powers
  const Tensor w = x_large.reciprocal();
  const Tensor sign_s = s % 2 == 1 ? x_large.sign() : Tensor();
  std::vector<Tensor> w_power{at::ones_like(x)};
  for (int64_t i = 1; i <= std::max(count - 1, s); ++i) w_power.push_back(w_power.back() * w);
  std::vector<Tensor> e;
  // 1 everywhere, NaN where x is NaN (a constant group must not swallow NaN).
  Tensor small_power = small * 0 + 1;
  Tensor x_power;  // x^(j-s) for j > s
  for (int64_t j = 0; j < count; ++j) {
    if (j > 0) small_power = small_power * small;
    Tensor scaled;
    if (j <= s) {
      scaled = w_power[s - j];
    } else {
      x_power = j == s + 1 ? x_large : x_power * x_large;
      scaled = x_power;
    }
    if (sign_s.defined()) scaled = scaled * sign_s;
    e.push_back(at::where(large, scaled, small_power));
  }
  return at::cat(e, 0);  // each E_j is (1, pre, G, C / G, post)
}

// E_j = x^j / M^s for j = 0..count-1 with a scaling degree s per group (a
// (1, 1, G, 1, 1) tensor, values 0..n), stacked: x^j where |x| <= 1,
// sgn(x)^j |x|^(j-s) where |x| > 1. Each branch reads a sanitised x (1 or 0
// in the other branch's lanes) so that the discarded branch has finite values
// and derivatives: where()'s zero gradient times an infinite local derivative
// would be NaN. x: (1, pre, G, C / G, post).
Tensor powers_by_pow(const Tensor& x, const Tensor& s, int64_t count) {
  const Tensor magnitude = x.abs();
  const Tensor large = magnitude.gt(1);
  const Tensor big = at::where(large, magnitude, 1.0);
  const Tensor small = at::where(large.logical_not(), x, 0.0);
  const Tensor j = indices(0, count, x);
  const Tensor large_value = at::pow(big, j - s) * at::pow(x.sign(), j);
  // pow(NaN, 0) is 1: adding 0 * x keeps NaN (a constant group must not swallow it).
  const Tensor small_value = at::pow(small, j) + small * 0;
  return at::where(large, large_value, small_value);
}

// The same values without pow(): for every candidate degree c, scaled_powers_of
// for c on x where the group's degree is c (0 elsewhere, so the candidate's
// values and derivatives stay finite), then each group's own candidate.
Tensor powers_by_selection(const Tensor& x, const Tensor& s, int64_t n, int64_t count) {
  Tensor e;
  for (int64_t c = 0; c <= n; ++c) {
    const Tensor selected = s.eq(static_cast<double>(c));
    const Tensor candidate = scaled_powers_by_selects(at::where(selected, x, 0.0), c, count);
    e = e.defined() ? at::where(selected, candidate, e) : candidate;
  }
  return e;
}

// Per-group degrees: op by op (eager), pow() does it in fewer ops, each a
// transcendental function per element; traced for code generation
// (torch.compile traces under fake-tensor and proxy dispatch modes; fake
// tensors carry the Python key), the selection fuses
// into a few loops whereas the generated CPU code for pow(tensor, tensor) is
// scalar. Measured at 2^16 float32, one thread, a torch.func second-order
// step: eager 65-80 ms (pow) vs 113 ms (selection); compiled 41-47 ms (pow)
// vs 20 ms (selection).
Tensor scaled_powers(const Tensor& x, const Tensor& s, int64_t n, int64_t count) {
  const bool traced = c10::impl::TorchDispatchModeTLS::any_modes_set() ||
                      x.key_set().has(c10::DispatchKey::Python);
  if (traced) return powers_by_selection(x, s, n, count);
  return powers_by_pow(x, s, count);
}

// The first `count` of the stacked values: narrow() only when it drops some,
// as its gradient is a zero-filled copy of the whole stack.
Tensor leading(const Tensor& stacked, int64_t count) {
  return count == stacked.size(0) ? stacked : stacked.narrow(0, 0, count);
}

// E_j for the sums of coefficient times power: where the coefficient is zero,
// E_j clamped to the finite range (NaN kept), so that a term the kernels skip
// (they sum to the effective degrees) is 0 rather than 0 * inf = NaN, while its
// gradient with respect to the coefficient is still E_j (saturated). Only
// E_j with j - s >= 2 can overflow for finite x, so with a known scaling
// degree and no such j (the common degrees) it is E_j itself.
Tensor guarded(const Tensor& coefficients, const Tensor& e, bool needed) {
  if (!needed) return e;
  const double largest = e.scalar_type() == at::kDouble ? std::numeric_limits<double>::max()
                                                        : std::numeric_limits<float>::max();
  const Tensor finite = e.nan_to_num(std::numeric_limits<double>::quiet_NaN(), largest, -largest);
  return at::where(coefficients.eq(0), finite, e);
}

// Per-element quantities shared by forward and backward (math::Evaluation).
struct Evaluation {
  Tensor e;      // E_0..E_max(m, n), stacked
  Tensor sum_a;  // sum_j a_j E_j
  Tensor sum_b;  // sum_k b_k E_k (abs_sum: sum_k |b_k E_k|)
  Tensor d;      // D = Q / M^s
  bool guard;    // whether sums need guarded() powers
};

Evaluation evaluate(const Tensor& x, const Coefficients& c, const Tensor& s,
                    std::optional<int64_t> common_s, math::Variant variant) {
  Evaluation r;
  const int64_t m = c.a.size(0) - 1;
  const int64_t n = c.b.size(0);
  const int64_t count = std::max(m, n) + 1;
  if (common_s) {
    r.e = count - 1 - *common_s <= 1 ? scaled_powers_of(x, *common_s, count)
                                     : scaled_powers_by_selects(x, *common_s, count);
  } else {
    r.e = scaled_powers(x, s, n, count);
  }
  r.guard = !common_s || count - 1 - *common_s >= 2;
  r.sum_a = (c.a * guarded(c.a, leading(r.e, m + 1), r.guard)).sum(0);
  if (n == 0) {
    r.sum_b = at::zeros_like(r.sum_a);
  } else {
    const Tensor terms = c.b * guarded(c.b, r.e.narrow(0, 1, n), r.guard);
    r.sum_b = (variant == math::Variant::abs_sum ? terms.abs() : terms).sum(0);
  }
  r.d = r.e[0] + (variant == math::Variant::safe ? r.sum_b.abs() : r.sum_b);
  return r;
}

// The inputs of one call in the compute type, x viewed as (1, pre, G, C / G, post).
struct Grouped {
  Tensor x;
  Tensor numerator;
  Tensor denominator;
  Tensor s;                          // per group, (1, 1, G, 1, 1)
  std::optional<int64_t> common_s;  // the same for every group, when known on the host
};

Grouped grouped(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                const PauArgs& args) {
  const at::ScalarType type = compute_type(x.scalar_type());
  Grouped g;
  g.x = x.to(type).reshape_symint(grouped_shape(x, args.dim, args.groups)).unsqueeze(0);
  g.numerator = numerator.to(type);
  g.denominator = denominator.to(type);
  g.common_s = common_scaling_degree(g.denominator);
  if (!g.common_s) g.s = scaling_degree(g.denominator);
  return g;
}

Coefficients columns(const Grouped& g) {
  return {stacked_columns(g.numerator), stacked_columns(g.denominator), Tensor(), Tensor()};
}

// RPAU's factors 1 + alpha_j (2 u_j - 1) with u from pau::rpau_noise, indexed
// by the element's logical (row-major) index as in the kernels.
void add_noise(Coefficients& c, const Tensor& x, const Grouped& g, const Tensor& alpha,
               const Tensor& seed_offset) {
  const int64_t m1 = c.a.size(0);
  const int64_t count = m1 + c.b.size(0);
  static const auto noise_op = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("pau::rpau_noise", "")
                                   .typed<Tensor(const Tensor&, int64_t, int64_t)>();
  const int64_t numel = x.sym_numel().guard_int(__FILE__, __LINE__);
  std::vector<c10::SymInt> shape(g.x.sym_sizes().begin() + 1, g.x.sym_sizes().end());
  shape.emplace_back(count);
  const Tensor u = noise_op.call(seed_offset, numel, count)
                       .to(g.x.device(), g.x.scalar_type())
                       .reshape_symint(shape)
                       .movedim(-1, 0);  // (K, pre, G, C / G, post)
  if (readable_on_host(alpha)) {  // as the kernels check it
    const Tensor a = alpha.detach().to(at::kDouble).contiguous();
    const double* v = a.const_data_ptr<double>();
    for (int64_t i = 0; i < a.numel(); ++i) {
      TORCH_CHECK_VALUE(rng::alpha_usable(v[i]), "pau: alpha must be in [0, 1), got ", v[i]);
    }
  }
  const Tensor a =
      alpha.detach().to(g.x.scalar_type()).expand({g.numerator.size(0), count}).contiguous();
  const Tensor factor = stacked_columns(a) * (u * 2 - 1) + 1;
  c.factor_a = factor.narrow(0, 0, m1);
  c.factor_b = factor.narrow(0, m1, count - m1);
  c.a = c.a * c.factor_a;
  c.b = c.b * c.factor_b;
}

Tensor forward_of(const Tensor& x, const Grouped& g, const Coefficients& c,
                  math::Variant variant) {
  const Evaluation r = evaluate(g.x, c, g.s, g.common_s, variant);
  return (r.sum_a / r.d).reshape_symint(x.sym_sizes()).to(x.scalar_type());
}

// Coefficient gradients: per coefficient, the sum over a group's elements
// (times RPAU's factor), as (G, K) in `like`'s dtype.
Tensor group_sums(const Tensor& per_element, const Tensor& factor, const Tensor& like) {
  if (per_element.size(0) == 0) return at::zeros_like(like, at::MemoryFormat::Contiguous);
  const Tensor t = factor.defined() ? per_element * factor : per_element;
  return t.sum({1, 3, 4}).t().contiguous().to(like.scalar_type());
}

// pau_math.h's backward on whole tensors.
std::tuple<Tensor, Tensor, Tensor> backward_of(const Tensor& grad_output, const Tensor& x,
                                               const Tensor& numerator,
                                               const Tensor& denominator, const Grouped& g,
                                               const Coefficients& c, math::Variant variant) {
  const Evaluation r = evaluate(g.x, c, g.s, g.common_s, variant);
  const Tensor grad = grad_output.to(g.x.scalar_type()).reshape_symint(r.d.sym_sizes());
  const Tensor inv_d = r.d.reciprocal();
  const Tensor g_over_d = grad * inv_d;
  const int64_t m = c.a.size(0) - 1;
  const int64_t n = c.b.size(0);

  const Tensor grad_a = group_sums(g_over_d * leading(r.e, m + 1), c.factor_a, numerator);

  const Tensor sign_a = r.sum_b.sign();
  const Tensor minus_f =
      (variant == math::Variant::safe ? -(r.sum_a * sign_a) : -r.sum_a) * inv_d;
  const Tensor e_b = r.e.narrow(0, 1, n);
  const Tensor c_b = variant == math::Variant::abs_sum ? c.b.sign() * e_b.abs() : e_b;
  const Tensor grad_b = group_sums((g_over_d * minus_f) * c_b, c.factor_b, denominator);

  // P'(x) / M^s and Q'(x) / M^s.
  Tensor dp = at::zeros_like(r.sum_a);
  if (m > 0) {
    const Tensor a = c.a.narrow(0, 1, m);
    dp = ((a * indices(1, m, g.x)) * guarded(a, leading(r.e, m), r.guard)).sum(0);
  }
  Tensor dq = at::zeros_like(r.sum_a);
  if (n > 0) {
    const Tensor e_prev = guarded(c.b, leading(r.e, n), r.guard);
    const Tensor k = indices(1, n, g.x);
    dq = variant == math::Variant::abs_sum ? ((c.b.abs() * k) * e_prev.abs()).sum(0)
                                           : ((c.b * k) * e_prev).sum(0);
  }
  if (variant == math::Variant::safe) dq = dq * sign_a;
  if (variant == math::Variant::abs_sum) dq = dq * g.x[0].sign();
  const Tensor grad_x = g_over_d * (dp - r.sum_a * (dq * inv_d));
  return {grad_x.reshape_symint(x.sym_sizes()).to(x.scalar_type()), grad_a, grad_b};
}

}  // namespace

Tensor pau_forward(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                   c10::string_view variant, int64_t dim) {
  const PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  return forward_of(x, g, columns(g), args.variant);
}

std::tuple<Tensor, Tensor, Tensor> pau_backward(const Tensor& grad_output, const Tensor& x,
                                                const Tensor& numerator,
                                                const Tensor& denominator,
                                                c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  return backward_of(grad_output, x, numerator, denominator, g, columns(g), args.variant);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pau_double_backward(
    const Tensor& grad_grad_x, const Tensor& grad_grad_numerator,
    const Tensor& grad_grad_denominator, const Tensor& grad_output, const Tensor& x,
    const Tensor& numerator, const Tensor& denominator, c10::string_view variant, int64_t dim,
    std::array<bool, 4> needed) {
  check_pau_double_backward_args(grad_grad_x, grad_grad_numerator, grad_grad_denominator,
                                 grad_output, x, numerator, denominator, variant, dim);
  const std::array<Tensor, 3> upstream{grad_grad_x, grad_grad_numerator, grad_grad_denominator};
  const std::array<Tensor, 4> inputs{grad_output, x, numerator, denominator};
  const bool create_graph = builds_graph(upstream) || builds_graph(inputs);
  at::AutoGradMode enable_grad(true);
  // The local graph starts from aliases of the inputs: a view for an input
  // that requires grad (so the results stay connected to it), a detached
  // tensor otherwise, which requires grad if its result is needed.
  // Differentiating with respect to the inputs themselves would add the paths
  // through the outer graph (grad_output of a network's later layers depends
  // on x) to these partial derivatives.
  std::array<Tensor, 4> leaves;
  std::vector<Tensor> wanted;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    leaves[i] = t.requires_grad() ? t.view_as(t) : t.detach().requires_grad_(needed[i]);
    if (needed[i]) wanted.push_back(leaves[i]);
  }
  std::array<Tensor, 4> results;
  if (wanted.empty()) return {results[0], results[1], results[2], results[3]};
  auto [grad_x, grad_numerator, grad_denominator] =
      pau_backward(leaves[0], leaves[1], leaves[2], leaves[3], variant, dim);
  // Outputs that do not depend on a wanted input (no grad_fn) drop out.
  std::vector<Tensor> outputs;
  std::vector<Tensor> weights;
  const std::array<Tensor, 3> computed{grad_x, grad_numerator, grad_denominator};
  for (std::size_t k = 0; k < computed.size(); ++k) {
    if (!computed[k].requires_grad()) continue;
    outputs.push_back(computed[k]);
    weights.push_back(upstream[k].to(computed[k].scalar_type()));
  }
  std::vector<Tensor> grads(wanted.size());
  if (!outputs.empty()) {
    grads = torch::autograd::grad(outputs, wanted, weights, /*retain_graph=*/create_graph,
                                  /*create_graph=*/create_graph, /*allow_unused=*/true);
  }
  std::size_t next = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    if (!needed[i]) continue;
    const Tensor& g = grads[next++];
    results[i] = g.defined() ? g : at::zeros_like(inputs[i], at::MemoryFormat::Contiguous);
  }
  return {results[0], results[1], results[2], results[3]};
}

Tensor rpau_forward(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                    const Tensor& alpha, const Tensor& seed_offset, c10::string_view variant,
                    int64_t dim) {
  const PauArgs args =
      check_rpau_args(x, numerator, denominator, alpha, seed_offset, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  Coefficients c = columns(g);
  add_noise(c, x, g, alpha, seed_offset);
  return forward_of(x, g, c, args.variant);
}

std::tuple<Tensor, Tensor, Tensor> rpau_backward(const Tensor& grad_output, const Tensor& x,
                                                 const Tensor& numerator,
                                                 const Tensor& denominator, const Tensor& alpha,
                                                 const Tensor& seed_offset,
                                                 c10::string_view variant, int64_t dim) {
  const PauArgs args = check_rpau_backward_args(grad_output, x, numerator, denominator, alpha,
                                                seed_offset, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  Coefficients c = columns(g);
  add_noise(c, x, g, alpha, seed_offset);
  return backward_of(grad_output, x, numerator, denominator, g, c, args.variant);
}

// Under vmap the operators decompose into the ops above, which have batching
// rules (as torch's own composite operators do).
TORCH_LIBRARY_IMPL(pau, FuncTorchBatched, m) {
  m.impl("forward", &pau_forward);
  m.impl("backward", &pau_backward);
  m.impl("rpau_forward", &rpau_forward);
  m.impl("rpau_backward", &rpau_backward);
}

}  // namespace composite
}  // namespace pau
