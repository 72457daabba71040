// PAU, RPAU and PWLU written as compositions of differentiable at:: ops: the
// path autograd takes where the fused kernels' autograd cannot go.
//
// * Double backward: pau::backward (rpau_backward, pwlu_backward) called with
//   a graph to build (create_graph=True) runs *_backward here; autograd
//   differentiates it to any order.
// * torch.func transforms (grad, vmap, jvp, jacrev, jacfwd, hessian) and
//   forward-mode AD: a C++ torch::autograd::Function cannot run under them, so
//   pau::forward (rpau_forward, pwlu_forward) compute *_forward here instead,
//   and their FuncTorchBatched kernels are these functions (a decomposition
//   into ops that have batching rules).
//
// * Third and higher order of PAU, and its double backward on devices without
//   a fused double-backward kernel (CUDA): pau_double_backward.
//
// The first-order path without a transform never comes here: it stays the
// fused kernels, and so does PAU's second order on the CPU
// (pau::double_backward). The composites are slower than the kernels
// (README, the second-order benchmark).
//
// The rest of this comment is about PAU (composite.cpp); PWLU's are below.
//
// Overflow: the formulas are those of pau_math.h in the scaled powers
// E_j = x^j / M^s (M = max(1, |x|), s = the group's effective denominator
// degree), so F and the first-order gradients stay finite wherever the
// kernels' do (terms of zero coefficients, which the kernels skip, use E_j
// clamped to the finite range, never 0 * inf). Second derivatives (what
// autograd makes of these formulas) were measured finite up to |x| = max / 100
// of the dtype (NaN at max / 10, where autograd's intermediates overflow);
// d2F/dx2 = O(1/x^3) is a difference of O(1/x) terms, so its absolute error
// is about eps |F'| / |x|, and 1 / |x| where x^-2 underflows (|x| > tiny^-1/2).
// Tensor values are read on the host only where readable_on_host allows (the
// groups' degrees, RPAU's alpha range): the functions trace under
// torch.compile and vmap, and there alpha and PWLU's bounds go unchecked (the
// kernels check them; for double backward a kernel has run first).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <array>
#include <tuple>
#include <vector>

namespace pau {
namespace composite {

at::Tensor pau_forward(const at::Tensor& x, const at::Tensor& numerator,
                       const at::Tensor& denominator, c10::string_view variant, int64_t dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor> pau_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, c10::string_view variant, int64_t dim);

// pau::double_backward as the gradient of pau_backward (a local graph, built
// also where grad mode is off): differentiable to any order when grad mode is
// on and an input requires grad, plain values otherwise. needed: which of the
// four results to compute (grad_output, x, numerator, denominator); the others
// come back undefined (autograd's "no gradient"), which saves a third order
// (a PINN's loss of u'') the work and the graph of the unused ones.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pau_double_backward(
    const at::Tensor& grad_grad_x, const at::Tensor& grad_grad_numerator,
    const at::Tensor& grad_grad_denominator, const at::Tensor& grad_output,
    const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
    c10::string_view variant, int64_t dim,
    std::array<bool, 4> needed = {true, true, true, true});

// RPAU: the noise comes from pau::rpau_noise for seed_offset (the numbers the
// kernels generate); no gradient flows to it, to alpha or to seed_offset.
at::Tensor rpau_forward(const at::Tensor& x, const at::Tensor& numerator,
                        const at::Tensor& denominator, const at::Tensor& alpha,
                        const at::Tensor& seed_offset, c10::string_view variant, int64_t dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor> rpau_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, const at::Tensor& alpha, const at::Tensor& seed_offset,
    c10::string_view variant, int64_t dim);

// PWLU (pwlu_composite.cpp): the reference formulas of pau.reference.pwlu_reference
// on whole tensors, and its backward as their gradient (create_graph), so that
// autograd differentiates it further. The bounds' values are not checked here
// (the kernels check them), and at an exact interior breakpoint the piece is
// floor() of the nearest position, which may be the left one where the
// kernels take the right (F is continuous; only the one-sided derivative
// differs).
at::Tensor pwlu_forward(const at::Tensor& x, const at::Tensor& points, const at::Tensor& bounds,
                        const at::Tensor& slopes, int64_t dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> pwlu_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& points,
    const at::Tensor& bounds, const at::Tensor& slopes, int64_t dim);

// x's shape as (pre, G, C / G, post) around channel dim `dim` (already wrapped).
std::vector<c10::SymInt> grouped_shape(const at::Tensor& x, int64_t dim, int64_t groups);

// Whether t's values can be read on the host without cost or effect: a plain
// CPU tensor (not a fake tensor under torch.compile, not wrapped by a
// torch.func transform; a CUDA tensor's read would synchronise). The
// composites check argument values (RPAU's alpha, PWLU's bounds) and find the
// groups' degrees only for such tensors.
bool readable_on_host(const at::Tensor& t);

// Whether differentiating with these inputs records a graph: grad mode is on
// and one of them requires grad.
bool builds_graph(c10::ArrayRef<at::Tensor> inputs);

// Whether autograd must take the composite path for these inputs: a
// torch.func transform is active, or an input carries a forward-mode tangent.
bool needed_for(c10::ArrayRef<at::Tensor> inputs);

}  // namespace composite
}  // namespace pau
