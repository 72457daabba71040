// PAU and RPAU written as compositions of differentiable at:: ops: the path
// autograd takes where the fused kernels' autograd cannot go.
//
// * Double backward: pau::backward (and rpau_backward) called with a graph to
//   build (create_graph=True) runs backward_* here; autograd differentiates it
//   to any order.
// * torch.func transforms (grad, vmap, jvp, jacrev, jacfwd, hessian) and
//   forward-mode AD: a C++ torch::autograd::Function cannot run under them, so
//   pau::forward / rpau_forward compute forward_* here instead, and their
//   FuncTorchBatched kernels are these functions (a decomposition into ops that
//   have batching rules).
//
// The first-order path without a transform never comes here: it stays the
// fused kernels.
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
// Nothing here reads tensor values on the host, so the functions trace under
// torch.compile and vmap; in particular RPAU's alpha is not range-checked
// here (the kernels check it; the composite is reached after a kernel call for
// double backward, and directly only under torch.func).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <tuple>

namespace pau {
namespace composite {

at::Tensor pau_forward(const at::Tensor& x, const at::Tensor& numerator,
                       const at::Tensor& denominator, c10::string_view variant, int64_t dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor> pau_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, c10::string_view variant, int64_t dim);

// RPAU: the noise comes from pau::rpau_noise for seed_offset (the numbers the
// kernels generate); no gradient flows to it, to alpha or to seed_offset.
at::Tensor rpau_forward(const at::Tensor& x, const at::Tensor& numerator,
                        const at::Tensor& denominator, const at::Tensor& alpha,
                        const at::Tensor& seed_offset, c10::string_view variant, int64_t dim);

std::tuple<at::Tensor, at::Tensor, at::Tensor> rpau_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& numerator,
    const at::Tensor& denominator, const at::Tensor& alpha, const at::Tensor& seed_offset,
    c10::string_view variant, int64_t dim);

// Whether autograd must take the composite path for these inputs: a
// torch.func transform is active, or an input carries a forward-mode tangent.
bool needed_for(std::initializer_list<at::Tensor> inputs);

}  // namespace composite
}  // namespace pau
