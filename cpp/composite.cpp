// Differentiable compositions of at:: ops for PAU and RPAU (see composite.h).
// The formulas are those of pau_math.h, written on whole tensors: x is viewed
// as (pre, G, C / G, post) so that coefficient j of every group is a
// (1, G, 1, 1) tensor that broadcasts against it (RPAU multiplies it by a
// per-element factor), and coefficient gradients are sums over dims 0, 2, 3.
#include "composite.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/FuncTorchTLS.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "pau_ops.h"
#include "rpau_ops.h"

namespace pau {
namespace composite {

using at::Tensor;

namespace {

// Whether a torch.func transform is active, by the test that
// torch::autograd::Function::apply makes (it throws exactly then). The header
// with the transform stack itself (ATen/functorch/DynamicLayer.h) needs
// nlohmann/json, which torch does not install.
bool transform_active() {
  const auto& tls = at::functorch::functorchTLSAccessor();
  if (!tls) return false;
  try {
    tls->checkSupportsCppAutogradFunction();
  } catch (const c10::Error&) {
    return true;
  }
  return false;
}

}  // namespace

bool needed_for(std::initializer_list<Tensor> inputs) {
  if (transform_active()) return true;
  for (const Tensor& t : inputs) {
    // Level 0: the forward-AD level of torch.autograd.forward_ad.dual_level.
    if (t.defined() && t._fw_grad(/*level=*/0).defined()) return true;
  }
  return false;
}

namespace {

// x's shape as (pre, G, C / G, post) around channel dim `dim` (already wrapped).
std::vector<c10::SymInt> grouped_shape(const Tensor& x, int64_t dim, int64_t groups) {
  if (x.dim() == 0) return {1, 1, 1, 1};
  const auto sizes = x.sym_sizes();
  c10::SymInt pre = 1;
  c10::SymInt post = 1;
  for (int64_t i = 0; i < dim; ++i) pre = pre * sizes[i];
  for (int64_t i = dim + 1; i < x.dim(); ++i) post = post * sizes[i];
  return {pre, c10::SymInt(groups), sizes[dim] / groups, post};
}

// Coefficient j of every group as (1, G, 1, 1).
Tensor column(const Tensor& c, int64_t j) { return c.select(1, j).reshape({1, -1, 1, 1}); }

// The coefficients every element sees: (1, G, 1, 1) columns for PAU, times
// RPAU's per-element factors (pre, G, C / G, post) when there are any.
struct Coefficients {
  std::vector<Tensor> a;  // a_0..a_m
  std::vector<Tensor> b;  // b_1..b_n
  std::vector<Tensor> factor_a;  // empty for PAU
  std::vector<Tensor> factor_b;
};

Coefficients columns(const Tensor& numerator, const Tensor& denominator) {
  Coefficients c;
  for (int64_t j = 0; j < numerator.size(1); ++j) c.a.push_back(column(numerator, j));
  for (int64_t k = 0; k < denominator.size(1); ++k) c.b.push_back(column(denominator, k));
  return c;
}

// The effective denominator degree of every group (highest k with b_k != 0,
// NaN counting as non-zero, as math::effective_degree), as (1, G, 1, 1) in the
// compute type: the scaling degree s. A tensor, so nothing is read on the host.
Tensor scaling_degree(const Tensor& denominator) {
  const Tensor b = denominator.detach();
  if (b.size(1) == 0) return at::zeros({1, b.size(0), 1, 1}, b.options());
  const Tensor k = at::arange(1, b.size(1) + 1, b.options());
  const Tensor nonzero = b.ne(0).logical_or(b.isnan()).to(b.scalar_type());
  return (nonzero * k).amax(1).reshape({1, -1, 1, 1});
}

// E_j = x^j / M^s for j = 0..count-1 (pau_math.h's scaled_powers): x^j where
// |x| <= 1, sgn(x)^j |x|^(j-s) where |x| > 1. Each branch reads a sanitised x
// (1 or 0 in the other branch's lanes) so that the discarded branch has finite
// values and derivatives: where()'s zero gradient times an infinite local
// derivative would be NaN.
std::vector<Tensor> scaled_powers(const Tensor& x, const Tensor& s, int64_t count) {
  const Tensor magnitude = x.abs();
  const Tensor large = magnitude.gt(1);
  const Tensor big = at::where(large, magnitude, at::ones_like(magnitude));
  const Tensor small = at::where(large, at::zeros_like(x), x);
  const Tensor sign = x.sign();
  std::vector<Tensor> e;
  // 1 everywhere, NaN where x is NaN (a constant group must not swallow NaN).
  Tensor small_power = small * 0 + 1;
  for (int64_t j = 0; j < count; ++j) {
    if (j > 0) small_power = small_power * small;
    Tensor large_value = at::pow(big, s.neg() + static_cast<double>(j));
    if (j % 2 == 1) large_value = large_value * sign;
    e.push_back(at::where(large, large_value, small_power));
  }
  return e;
}

// Per-element quantities shared by forward and backward (math::Evaluation).
struct Evaluation {
  std::vector<Tensor> e;  // E_0..E_max(m, n)
  Tensor sum_a;           // sum_j a_j E_j
  Tensor sum_b;           // sum_k b_k E_k (abs_sum: sum_k |b_k E_k|)
  Tensor d;               // D = Q / M^s
};

Evaluation evaluate(const Tensor& x, const Coefficients& c, const Tensor& s,
                    math::Variant variant) {
  Evaluation r;
  const int64_t m = static_cast<int64_t>(c.a.size()) - 1;
  const int64_t n = static_cast<int64_t>(c.b.size());
  r.e = scaled_powers(x, s, std::max(m, n) + 1);
  r.sum_a = c.a[0] * r.e[0];
  for (int64_t j = 1; j <= m; ++j) r.sum_a = r.sum_a + c.a[j] * r.e[j];
  r.sum_b = at::zeros_like(x);
  for (int64_t k = 1; k <= n; ++k) {
    const Tensor term = c.b[k - 1] * r.e[k];
    r.sum_b = r.sum_b + (variant == math::Variant::abs_sum ? term.abs() : term);
  }
  r.d = r.e[0] + (variant == math::Variant::safe ? r.sum_b.abs() : r.sum_b);
  return r;
}

// The inputs of one call in the compute type, x viewed as (pre, G, C / G, post).
struct Grouped {
  Tensor x;
  Tensor numerator;
  Tensor denominator;
  Tensor s;
};

Grouped grouped(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                const PauArgs& args) {
  const at::ScalarType type = compute_type(x.scalar_type());
  Grouped g;
  g.x = x.to(type).reshape_symint(grouped_shape(x, args.dim, args.groups));
  g.numerator = numerator.to(type);
  g.denominator = denominator.to(type);
  g.s = scaling_degree(g.denominator);
  return g;
}

// RPAU's factors 1 + alpha_j (2 u_j - 1) with u from pau::rpau_noise, indexed
// by the element's logical (row-major) index as in the kernels.
void add_noise(Coefficients& c, const Tensor& x, const Grouped& g, const Tensor& alpha,
               const Tensor& seed_offset) {
  const int64_t count = static_cast<int64_t>(c.a.size() + c.b.size());
  static const auto noise_op = c10::Dispatcher::singleton()
                                   .findSchemaOrThrow("pau::rpau_noise", "")
                                   .typed<Tensor(const Tensor&, int64_t, int64_t)>();
  const int64_t numel = x.sym_numel().guard_int(__FILE__, __LINE__);
  std::vector<c10::SymInt> shape(g.x.sym_sizes().begin(), g.x.sym_sizes().end());
  shape.emplace_back(count);
  const Tensor u = noise_op.call(seed_offset, numel, count)
                       .to(g.x.device(), g.x.scalar_type())
                       .reshape_symint(shape);
  const Tensor a = alpha.detach().to(g.x.scalar_type()).expand({g.numerator.size(0), count});
  for (int64_t j = 0; j < count; ++j) {
    const Tensor factor = column(a, j) * (u.select(-1, j) * 2 - 1) + 1;
    const bool numerator_part = j < static_cast<int64_t>(c.a.size());
    auto& coefficient = numerator_part ? c.a[j] : c.b[j - c.a.size()];
    coefficient = coefficient * factor;
    (numerator_part ? c.factor_a : c.factor_b).push_back(factor);
  }
}

Tensor forward_of(const Tensor& x, const Grouped& g, const Coefficients& c,
                  math::Variant variant) {
  const Evaluation r = evaluate(g.x, c, g.s, variant);
  return (r.sum_a / r.d).reshape_symint(x.sym_sizes()).to(x.scalar_type());
}

// A coefficient gradient: the sum over a group's elements, times RPAU's factor.
Tensor group_sum(const Tensor& per_element, const std::vector<Tensor>& factors, size_t j) {
  const Tensor t = factors.empty() ? per_element : per_element * factors[j];
  return t.sum({0, 2, 3});
}

Tensor stacked(const std::vector<Tensor>& columns, const Tensor& like) {
  if (columns.empty()) return at::zeros_like(like, at::MemoryFormat::Contiguous);
  return at::stack(columns, 1).to(like.scalar_type());
}

// pau_math.h's backward on whole tensors.
std::tuple<Tensor, Tensor, Tensor> backward_of(const Tensor& grad_output, const Tensor& x,
                                               const Tensor& numerator,
                                               const Tensor& denominator, const Grouped& g,
                                               const Coefficients& c, math::Variant variant) {
  const Evaluation r = evaluate(g.x, c, g.s, variant);
  const Tensor grad = grad_output.to(g.x.scalar_type()).reshape_symint(g.x.sym_sizes());
  const Tensor inv_d = r.d.reciprocal();
  const Tensor g_over_d = grad * inv_d;
  const size_t m = c.a.size() - 1;
  const size_t n = c.b.size();

  std::vector<Tensor> grad_a;
  for (size_t j = 0; j <= m; ++j) grad_a.push_back(group_sum(g_over_d * r.e[j], c.factor_a, j));

  const Tensor sign_a = r.sum_b.sign();
  const Tensor minus_f =
      (variant == math::Variant::safe ? -(r.sum_a * sign_a) : -r.sum_a) * inv_d;
  std::vector<Tensor> grad_b;
  for (size_t k = 1; k <= n; ++k) {
    const Tensor ck =
        variant == math::Variant::abs_sum ? c.b[k - 1].sign() * r.e[k].abs() : r.e[k];
    grad_b.push_back(group_sum(g_over_d * (minus_f * ck), c.factor_b, k - 1));
  }

  Tensor dp = at::zeros_like(g.x);  // P'(x) / M^s
  for (size_t j = 1; j <= m; ++j) dp = dp + c.a[j] * static_cast<double>(j) * r.e[j - 1];
  Tensor dq = at::zeros_like(g.x);  // Q'(x) / M^s
  for (size_t k = 1; k <= n; ++k) {
    const Tensor term = variant == math::Variant::abs_sum
                            ? c.b[k - 1].abs() * r.e[k - 1].abs()
                            : c.b[k - 1] * r.e[k - 1];
    dq = dq + term * static_cast<double>(k);
  }
  if (variant == math::Variant::safe) dq = dq * sign_a;
  if (variant == math::Variant::abs_sum) dq = dq * g.x.sign();
  const Tensor grad_x = g_over_d * (dp - r.sum_a * (dq * inv_d));
  return {grad_x.reshape_symint(x.sym_sizes()).to(x.scalar_type()), stacked(grad_a, numerator),
          stacked(grad_b, denominator)};
}

}  // namespace

Tensor pau_forward(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                   c10::string_view variant, int64_t dim) {
  const PauArgs args = check_pau_args(x, numerator, denominator, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  return forward_of(x, g, columns(g.numerator, g.denominator), args.variant);
}

std::tuple<Tensor, Tensor, Tensor> pau_backward(const Tensor& grad_output, const Tensor& x,
                                                const Tensor& numerator,
                                                const Tensor& denominator,
                                                c10::string_view variant, int64_t dim) {
  const PauArgs args =
      check_pau_backward_args(grad_output, x, numerator, denominator, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  return backward_of(grad_output, x, numerator, denominator, g,
                     columns(g.numerator, g.denominator), args.variant);
}

Tensor rpau_forward(const Tensor& x, const Tensor& numerator, const Tensor& denominator,
                    const Tensor& alpha, const Tensor& seed_offset, c10::string_view variant,
                    int64_t dim) {
  const PauArgs args =
      check_rpau_args(x, numerator, denominator, alpha, seed_offset, variant, dim);
  const Grouped g = grouped(x, numerator, denominator, args);
  Coefficients c = columns(g.numerator, g.denominator);
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
  Coefficients c = columns(g.numerator, g.denominator);
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
