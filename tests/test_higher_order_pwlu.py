"""Higher-order autograd and torch.func for PWLU.

As for PAU (tests/test_higher_order.py): pau::pwlu_backward's autograd kernel
returns the gradient of a differentiable composite (cpp/ops/pwlu_composite.cpp)
when a graph is needed, and under torch.func pau::pwlu_forward is that
composite. PWLU is piecewise linear: d2F/dx2 = 0 between breakpoints, but the
mixed second derivatives (in x and the points, bounds, slopes) are not.
"""

from __future__ import annotations

from typing import Callable

import pau
import pytest
import torch
from helpers.inputs import pwlu_parameters, random_x
from pau.reference import pwlu_reference
from torch import Tensor
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap

CASES = [
    # (shape, dim, groups, intervals)
    ((2, 3, 4), 1, 1, 16),
    ((2, 3, 4), 1, 3, 8),
    ((2, 4, 5), 1, 2, 5),
    ((3, 2, 6), -1, 6, 4),
    ((7,), 0, 1, 3),
]
CASE_IDS = [f"{c[0]}-dim{c[1]}-G{c[2]}-N{c[3]}" for c in CASES]


def away_from_breakpoints(x: Tensor, bounds: Tensor, dim: int, intervals: int) -> Tensor:
    """x moved off the breakpoints by at least 1e-3 of an interval, where a finite
    difference of step 1e-6 would straddle a kink."""
    groups = bounds.shape[0]
    shape = [1] * x.dim()
    d = dim % x.dim()
    shape[d] = x.shape[d]
    per_channel = bounds.repeat_interleave(x.shape[d] // groups, dim=0)
    left = per_channel[:, 0].reshape(shape)
    width = (per_channel[:, 1] - per_channel[:, 0]).reshape(shape) / intervals
    u = (x - left) / width
    too_close = (u - u.round()).abs() < 1e-3
    return torch.where(too_close, x + 0.01 * width, x)


def inputs_for(case: tuple, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    shape, dim, groups, intervals = case
    points, bounds, slopes = pwlu_parameters(groups, intervals, seed=seed)
    x = random_x(shape, torch.float64, seed=seed + 7, high=4.0)  # inside and outside the bounds
    x = away_from_breakpoints(x, bounds, dim, intervals)
    return tuple(t.requires_grad_() for t in (x, points, bounds, slopes))


def pwlu_fn(dim: int) -> Callable[..., Tensor]:
    return lambda x, p, b, s: torch.ops.pau.pwlu_forward(x, p, b, s, dim)


def reference_fn(dim: int) -> Callable[..., Tensor]:
    return lambda x, p, b, s: pwlu_reference(x, p, b, s, dim)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradgradcheck(case: tuple) -> None:
    assert torch.autograd.gradgradcheck(pwlu_fn(case[1]), inputs_for(case), eps=1e-6,
                                        atol=1e-6, rtol=1e-4)


def second_order_terms(f: Callable[..., Tensor], *inputs: Tensor) -> list[Tensor]:
    y = f(*inputs)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    first = torch.autograd.grad((y * weights).sum(), inputs, create_graph=True)
    scalar = sum((g * g).sum() * (i + 1) for i, g in enumerate(first))
    second = torch.autograd.grad(scalar, inputs, allow_unused=True, materialize_grads=True)
    return [y, *first, *second]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_second_order_matches_reference(case: tuple) -> None:
    inputs = inputs_for(case, seed=3)
    got = second_order_terms(pwlu_fn(case[1]), *inputs)
    want = second_order_terms(reference_fn(case[1]), *inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-11)


def test_first_order_without_graph_is_the_kernel() -> None:
    x, points, bounds, slopes = inputs_for(CASES[1])
    y = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 1)
    g = torch.randn_like(y)
    plain = torch.autograd.grad(y, (x, points, bounds, slopes), g, retain_graph=True)
    kernel = torch.ops.pau.pwlu_backward(g, *(t.detach() for t in (x, points, bounds, slopes)), 1)
    for a, b in zip(plain, kernel):
        assert torch.equal(a, b)
    with_graph = torch.autograd.grad(y, (x, points, bounds, slopes), g, create_graph=True)
    for a, b in zip(with_graph, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_func_transforms_match_reference() -> None:
    x, points, bounds, slopes = (t.detach() for t in inputs_for(CASES[1], seed=5))
    op, ref = pwlu_fn(1), reference_fn(1)

    def close(a: Tensor, b: Tensor) -> None:
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)

    args = (x, points, bounds, slopes)
    for argnums in (0, 1, 2, 3, (0, 1, 2, 3)):
        got = grad(lambda *a: op(*a).pow(2).sum(), argnums=argnums)(*args)
        want = grad(lambda *a: ref(*a).pow(2).sum(), argnums=argnums)(*args)
        torch.utils._pytree.tree_map(close, got, want)
    close(jacrev(op, argnums=1)(*args), jacrev(ref, argnums=1)(*args))
    close(jacfwd(op, argnums=2)(*args), jacfwd(ref, argnums=2)(*args))
    tangents = tuple(torch.randn_like(t) for t in args)
    for got, want in zip(jvp(op, args, tangents), jvp(ref, args, tangents)):
        close(got, want)

    def loss(f: Callable[..., Tensor]) -> Callable[[Tensor], Tensor]:
        return lambda p: f(x, p, bounds, slopes).pow(2).sum()

    close(hessian(loss(op))(points), hessian(loss(ref))(points))
    got = vmap(lambda xi: op(xi.unsqueeze(0), points, bounds, slopes))(x)
    close(got.squeeze(1), ref(*args))


class _ReferencePWLU(torch.nn.Module):
    """A PWLU's own parameters under the same names, evaluated by the reference."""

    def __init__(self, module: pau.PWLU) -> None:
        super().__init__()
        self.points, self.bounds, self.slopes = module.points, module.bounds, module.slopes
        self.dim = module.dim

    def forward(self, x: Tensor) -> Tensor:
        return pwlu_reference(x, self.points, self.bounds, self.slopes, self.dim)


def test_per_sample_gradients_and_gradient_penalty_of_a_module() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6), pau.PWLU(groups=6, dim=-1),
                                torch.nn.Linear(6, 1)).double()
    with torch.no_grad():
        model[1].points.add_(0.1 * torch.randn_like(model[1].points))
    reference = torch.nn.Sequential(model[0], _ReferencePWLU(model[1]), model[2])
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(5, 3, dtype=torch.float64)

    def per_sample(module: torch.nn.Module) -> dict:
        def f(p: dict, xi: Tensor) -> Tensor:
            return functional_call(module, p, (xi.unsqueeze(0),)).pow(2).sum()
        return vmap(grad(f), in_dims=(None, 0))(params, x)

    got, want = per_sample(model), per_sample(reference)
    for name in params:
        torch.testing.assert_close(got[name], want[name], rtol=1e-11, atol=1e-12)

    def penalty_gradients(module: torch.nn.Module) -> tuple[Tensor, ...]:
        xi = x.clone().requires_grad_()
        (gx,) = torch.autograd.grad(module(xi).sum(), xi, create_graph=True)
        return torch.autograd.grad(gx.pow(2).sum(), list(model.parameters()),
                                   materialize_grads=True)

    for g, w in zip(penalty_gradients(model), penalty_gradients(reference)):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-12)
    # The points get a gradient from the penalty: the mixed second derivative.
    assert penalty_gradients(model)[2].abs().max() > 0


def test_float32_second_order_matches_float64_reference() -> None:
    x, points, bounds, slopes = (t.detach() for t in inputs_for(CASES[0], seed=2))
    x32 = [t.float().requires_grad_() for t in (x, points, bounds, slopes)]
    x64 = [t.float().double().requires_grad_() for t in (x, points, bounds, slopes)]
    got = second_order_terms(pwlu_fn(1), *x32)
    for g, w in zip(got, second_order_terms(reference_fn(1), *x64)):
        torch.testing.assert_close(g.double(), w, rtol=1e-4,
                                   atol=1e-4 * max(1.0, w.abs().max().item()))


def test_bounds_are_checked_under_vmap() -> None:
    """The composite checks readable bounds as the kernels do."""
    points, bounds, slopes = pwlu_parameters(1, 4)
    bounds = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\(B_L, B_R\) = \(1, 1\)"):
        vmap(lambda xi: torch.ops.pau.pwlu_forward(xi, points, bounds, slopes, 0))(
            torch.randn(3, 2, dtype=torch.float64))


def test_torch_compile_of_a_second_order_step() -> None:
    x, points, bounds, slopes = (t.detach().float() for t in inputs_for(CASES[1], seed=4))

    def penalty_gradient(p: Tensor) -> Tensor:
        def penalty(p: Tensor) -> Tensor:
            gx = grad(lambda v: torch.ops.pau.pwlu_forward(v, p, bounds, slopes, 1).sum())(x)
            return gx.pow(2).sum()
        return grad(penalty)(p)

    torch.testing.assert_close(torch.compile(penalty_gradient, fullgraph=True)(points),
                               penalty_gradient(points), rtol=1e-4, atol=1e-5)
    assert penalty_gradient(points).abs().max() > 0
