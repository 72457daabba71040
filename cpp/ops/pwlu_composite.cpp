// PWLU written as a composition of differentiable at:: ops (see composite.h):
// the path for double backward and torch.func, as composite.cpp is for PAU.
// x is viewed as (pre, G, C / G, post) and each group's parameters as
// (1, G, 1, 1) columns that broadcast against it.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

#include "ops/composite.h"
#include "ops/pau.h"
#include "ops/pwlu.h"

namespace pau {
namespace composite {

using at::Tensor;

namespace {

// Column j of a (G, K) parameter as (1, G, 1, 1).
Tensor column(const Tensor& p, int64_t j) { return p.select(1, j).reshape({1, -1, 1, 1}); }

// (x - b) k, except k = 0 at an infinite x gives 0 (the end point), as the
// kernels do, rather than inf * 0 = NaN.
Tensor outer_offset(const Tensor& x, const Tensor& b, const Tensor& k) {
  const Tensor offset = (x - b) * k;
  return at::where(x.isinf().logical_and(k.eq(0)), 0.0, offset);
}

}  // namespace

Tensor pwlu_forward(const Tensor& x, const Tensor& points, const Tensor& bounds,
                    const Tensor& slopes, int64_t dim) {
  const PwluArgs args = check_pwlu_args(x, points, bounds, slopes, dim);
  if (readable_on_host(bounds)) check_pwlu_bounds(bounds);  // as the kernels do
  const at::ScalarType type = compute_type(x.scalar_type());
  const Tensor xg = x.to(type).reshape_symint(grouped_shape(x, args.dim, args.groups));
  const Tensor y = points.to(type);
  const Tensor b = bounds.to(type);
  const Tensor k = slopes.to(type);
  const int64_t n = args.intervals;
  const Tensor left = column(b, 0);
  const Tensor right = column(b, 1);
  const Tensor is_left = xg.lt(left);
  const Tensor is_right = xg.ge(right);
  // The inner piece reads a sanitised position (0 outside, where it is
  // discarded) so that its values and derivatives stay finite for any x.
  const Tensor u = at::where(is_left.logical_or(is_right), 0.0,
                             (xg - left) * ((right - left).reciprocal() * static_cast<double>(n)));
  const Tensor interval = at::floor(u.detach()).nan_to_num(0.0).clamp(0, n - 1);
  const Tensor t = u - interval;
  const Tensor first_point = at::arange(args.groups, xg.options().dtype(at::kLong))
                                 .mul(n + 1)
                                 .reshape({1, -1, 1, 1});
  const Tensor index = first_point + interval.to(at::kLong);
  // index_select of the flat points (take() has no batching rule under vmap).
  const Tensor flat = y.reshape(-1);
  auto point = [&](const Tensor& i) {
    return flat.index_select(0, i.reshape(-1)).reshape_symint(i.sym_sizes());
  };
  const Tensor lower = point(index);
  const Tensor inside = lower + t * (point(index + 1) - lower);
  const Tensor outside_left = column(y, 0) + outer_offset(xg, left, column(k, 0));
  const Tensor outside_right = column(y, n) + outer_offset(xg, right, column(k, 1));
  const Tensor out = at::where(is_left, outside_left, at::where(is_right, outside_right, inside));
  return out.reshape_symint(x.sym_sizes()).to(x.scalar_type());
}

std::tuple<Tensor, Tensor, Tensor, Tensor> pwlu_backward(const Tensor& grad_output,
                                                         const Tensor& x, const Tensor& points,
                                                         const Tensor& bounds,
                                                         const Tensor& slopes, int64_t dim) {
  check_pwlu_backward_args(grad_output, x, points, bounds, slopes, dim);
  // The gradient of the composite forward, itself differentiable: inputs
  // that carry no gradient of their own stand in as fresh leaves.
  auto leaf = [](const Tensor& t) { return t.requires_grad() ? t : t.detach().requires_grad_(); };
  const std::vector<Tensor> inputs{leaf(x), leaf(points), leaf(bounds), leaf(slopes)};
  at::AutoGradMode grad_mode(true);
  const Tensor out = pwlu_forward(inputs[0], inputs[1], inputs[2], inputs[3], dim);
  std::vector<Tensor> grads = torch::autograd::grad({out}, inputs, {grad_output},
                                                    /*retain_graph=*/true,
                                                    /*create_graph=*/true,
                                                    /*allow_unused=*/true);
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) grads[i] = at::zeros_like(inputs[i]);
  }
  return {grads[0], grads[1], grads[2], grads[3]};
}

// Under vmap pau::pwlu_forward decomposes into the ops above, as PAU's does.
TORCH_LIBRARY_IMPL(pau, FuncTorchBatched, m) { m.impl("pwlu_forward", &pwlu_forward); }

}  // namespace composite
}  // namespace pau
