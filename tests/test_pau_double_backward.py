"""pau::double_backward, the fused second-order kernel of PAU on the CPU.

A loss of backward's outputs (a gradient penalty, a PINN residual) is
differentiated by this operator: pau::backward called with create_graph=True
runs the fused backward and records PauBackwardFunction, whose backward is
pau::double_backward. The reference is autograd through pau_reference in
float64 (tests/test_higher_order.py checks the same path through modules,
TorchScript, torch.func and large |x|).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pau
import pytest
import torch
from helpers.inputs import HALF_DTYPES, VARIANTS, random_x, smooth_inputs
from helpers.machine import check_each_isa
from pau.reference import pau_reference
from torch import Tensor

CASES = [
    # (shape, dim, groups, degrees): broadcast tiles, per-lane tiles, run-time degrees
    ((2, 3, 70), 1, 1, (5, 4)),
    ((2, 3, 70), 1, 3, (5, 4)),
    ((2, 4, 33), 1, 2, (3, 2)),
    ((5, 3, 7), -1, 7, (4, 3)),
    ((2, 3, 9), 1, 3, (2, 0)),
    ((2, 3, 9), 1, 1, (0, 1)),
    ((300,), 0, 1, (5, 4)),
]
CASE_IDS = [f"{c[0]}-dim{c[1]}-G{c[2]}-deg{c[3][0]}_{c[3][1]}" for c in CASES]


def upstream(x: Tensor, num: Tensor, den: Tensor, seed: int = 7) -> tuple[Tensor, Tensor, Tensor]:
    """Random upstream gradients of (grad_x, grad_numerator, grad_denominator)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype)
                 for t in (x, num, den))


def reference(u: Tensor, alpha: Tensor, beta: Tensor, grad: Tensor, x: Tensor, num: Tensor,
              den: Tensor, variant: str, dim: int) -> list[Tensor]:
    """(dL/dgrad_output, dL/dx, dL/dnumerator, dL/ddenominator) in float64 for
    L = <u, grad_x> + <alpha, grad_numerator> + <beta, grad_denominator>."""
    inputs = [t.detach().double().requires_grad_() for t in (grad, x, num, den)]
    g, xr, nr, dr = inputs
    y = pau_reference(xr, nr, dr, variant, dim)
    gx, gn, gd = torch.autograd.grad(y, (xr, nr, dr), g, create_graph=True, allow_unused=True)
    parts = [(t * w.double()).sum() for t, w in ((gx, u), (gn, alpha), (gd, beta))
             if t is not None]
    grads = torch.autograd.grad(sum(parts), inputs, allow_unused=True)
    return [torch.zeros_like(t) if d is None else d for d, t in zip(grads, inputs)]


def fused(u: Tensor, alpha: Tensor, beta: Tensor, grad: Tensor, x: Tensor, num: Tensor,
          den: Tensor, variant: str, dim: int) -> list[Tensor]:
    return list(torch.ops.pau.double_backward(u, alpha, beta, grad, x, num, den, variant, dim))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_the_float64_reference(case: tuple, variant: str) -> None:
    shape, dim, groups, degrees = case
    x, num, den = smooth_inputs(shape, groups, degrees, variant, dim, seed=3)
    grad = random_x(shape, seed=11)
    u, alpha, beta = upstream(x, num, den)
    got = fused(u, alpha, beta, grad, x, num, den, variant, dim)
    want = reference(u, alpha, beta, grad, x, num, den, variant, dim)
    for name, g, w in zip(("grad_grad_output", "grad_x", "numerator", "denominator"), got, want):
        assert g.shape == w.shape and g.dtype == torch.float64, name
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10, msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_coefficients_that_move(variant: str) -> None:
    """a_5 = 0 and b_4 = b_3 = 0 in one group, all non-zero in another, with non-zero
    upstream gradients for every coefficient: the zero ones still move F's derivatives
    (the sums run past the effective degrees, the powers keep their scaling degree).
    Per-lane tiles (dim -1, one group per channel) whose groups differ in degrees take
    the element-by-element path; broadcast tiles the vector one."""
    for shape, dim in (((4, 2, 80), 1), ((40, 2), -1)):
        x, num, den = smooth_inputs(shape, 2, (5, 4), variant, dim, seed=5)
        num[0, 5] = 0.0
        den[0, 2:] = 0.0
        grad = random_x(shape, seed=12)
        u, alpha, beta = upstream(x, num, den, seed=8)
        got = fused(u, alpha, beta, grad, x, num, den, variant, dim)
        want = reference(u, alpha, beta, grad, x, num, den, variant, dim)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_matches_the_float64_reference(variant: str) -> None:
    x, num, den = smooth_inputs((4, 3, 100), 3, (5, 4), variant, 1, seed=9)
    grad = random_x(x.shape, seed=13)
    u, alpha, beta = upstream(x, num, den)
    inputs32 = [t.float() for t in (u, alpha, beta, grad, x, num, den)]
    got = fused(*inputs32, variant, 1)
    want = reference(*(t.double() for t in inputs32), variant, 1)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        scale = max(1.0, w.abs().max().item())
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_half_types_compute_in_float(dtype: torch.dtype) -> None:
    """float16/bfloat16 x compute in float: equal to the float32 operator on the same
    (rounded) values, up to the rounding of the stored results."""
    x, num, den = smooth_inputs((3, 2, 90), 2, (5, 4), "safe", 1, seed=2)
    grad = random_x(x.shape, seed=14)
    u, alpha, beta = upstream(x, num, den)
    low = [t.to(dtype) for t in (u, alpha, beta, grad, x, num, den)]
    got = fused(*low, "safe", 1)
    want = fused(*(t.float() for t in low), "safe", 1)
    eps = torch.finfo(dtype).eps
    for g, w in zip(got, want):
        assert g.dtype == dtype
        scale = max(1.0, w.abs().max().item())
        torch.testing.assert_close(g.float(), w, rtol=eps, atol=eps * scale)


def test_coefficient_gradients_do_not_depend_on_the_thread_count() -> None:
    """Per-tile partial sums reduced in tile order: the same bits with 1 and 2 threads."""
    x, num, den = smooth_inputs((8, 4, 8192), 4, (5, 4), "safe", 1, seed=1)
    grad = random_x(x.shape, seed=15)
    u, alpha, beta = upstream(x, num, den)
    inputs = [t.float() for t in (u, alpha, beta, grad, x, num, den)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused(*inputs, "safe", 1)
        torch.set_num_threads(2)
        two = fused(*inputs, "safe", 1)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_create_graph_records_the_fused_backward_and_runs_the_kernel() -> None:
    x, num, den = smooth_inputs((2, 3, 70), 3, (5, 4), "safe", 1, seed=6)
    x, num, den = (t.float().requires_grad_() for t in (x, num, den))
    y = torch.ops.pau.forward(x, num, den, "safe", 1)
    (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert d1.grad_fn.name().endswith("PauBackwardFunction>"), d1.grad_fn.name()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        (d1 * d1).sum().backward()
    names = {e.name for e in prof.events()}
    assert "pau::double_backward" in names
    # The composite would differentiate pau_backward's ATen ops (pow of the scaled powers).
    assert "aten::pow" not in names, sorted(names)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in (x, num, den))


def test_only_some_outputs_used() -> None:
    """A loss of grad_numerator alone: the unused outputs' upstream gradients are zeros."""
    x, num, den = smooth_inputs((2, 3, 20), 1, (5, 4), "safe", 1, seed=4)
    x, num, den = (t.requires_grad_() for t in (x, num, den))
    y = torch.ops.pau.forward(x, num, den, "safe", 1)
    (gn,) = torch.autograd.grad(y.square().sum(), num, create_graph=True)
    got = torch.autograd.grad(gn.sum(), (x, num, den))
    xr, nr, dr = (t.detach().clone().requires_grad_() for t in (x, num, den))
    yr = pau_reference(xr, nr, dr, "safe", 1)
    (gnr,) = torch.autograd.grad(yr.square().sum(), nr, create_graph=True)
    want = torch.autograd.grad(gnr.sum(), (xr, nr, dr))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def test_third_order_takes_the_composite() -> None:
    """create_graph=True twice: pau::double_backward's autograd kernel builds the
    composite, which autograd differentiates further."""
    x, num, den = smooth_inputs((2, 3, 5), 3, (5, 4), "abs_sum", 1, seed=4)
    x.requires_grad_()
    num.requires_grad_()

    def third(f) -> tuple[Tensor, Tensor]:
        (d1,) = torch.autograd.grad(f(x, num, den).sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
        return torch.autograd.grad(d2.sum(), (x, num))

    got = third(lambda a, b, c: torch.ops.pau.forward(a, b, c, "abs_sum", 1))
    want = third(lambda a, b, c: pau_reference(a, b, c, "abs_sum", 1))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def test_fake_tensors_and_schema() -> None:
    x, num, den = smooth_inputs((2, 3, 8), 3, (5, 4), "safe", 1, seed=1)
    grad = random_x(x.shape, seed=2)
    u, alpha, beta = upstream(x, num, den)
    torch.library.opcheck(torch.ops.pau.double_backward.default,
                          (u, alpha, beta, grad, x, num, den, "safe", 1),
                          test_utils=("test_schema", "test_faketensor"))


def test_bad_arguments_name_the_problem() -> None:
    x, num, den = smooth_inputs((2, 3, 8), 3, (5, 4), "safe", 1, seed=1)
    grad = random_x(x.shape, seed=2)
    u, alpha, beta = upstream(x, num, den)
    op = torch.ops.pau.double_backward
    with pytest.raises(ValueError, match=r"pau: grad_grad_x shape .* must match x shape"):
        op(u[:, :, :4], alpha, beta, grad, x, num, den, "safe", 1)
    with pytest.raises(TypeError, match=r"pau: grad_grad_x dtype \(Float\) must match x dtype"):
        op(u.float(), alpha, beta, grad, x, num, den, "safe", 1)
    with pytest.raises(ValueError,
                       match=r"pau: grad_grad_numerator shape .* must match numerator shape"):
        op(u, alpha[:, :3], beta, grad, x, num, den, "safe", 1)
    with pytest.raises(ValueError,
                       match=r"pau: grad_grad_denominator shape .* must match denominator shape"):
        op(u, alpha, beta[:1], grad, x, num, den, "safe", 1)
    with pytest.raises(TypeError, match=r"pau: grad_grad_numerator must be a floating tensor"):
        op(u, alpha.long(), beta, grad, x, num, den, "safe", 1)
    with pytest.raises(ValueError, match=r"pau: grad_output shape"):
        op(u, alpha, beta, grad[:1], x, num, den, "safe", 1)
    with pytest.raises(ValueError, match=r"pau: unknown variant 'wrong'"):
        op(u, alpha, beta, grad, x, num, den, "wrong", 1)


def test_each_isa_matches_the_reference(tmp_path: Path) -> None:
    """The DEFAULT, AVX2 and AVX-512 kernels (those this CPU runs), broadcast and
    per-lane tiles, against the float64 reference."""
    script = textwrap.dedent("""
        import sys, torch, pau
        sys.path.insert(0, TESTS)
        from test_pau_double_backward import fused, reference, upstream
        from helpers.inputs import random_x, smooth_inputs
        for shape, dim, groups in (((3, 2, 300), 1, 1), ((60, 4), -1, 4)):
            x, num, den = smooth_inputs(shape, groups, (5, 4), "safe", dim, seed=3)
            grad = random_x(shape, seed=4)
            u, alpha, beta = upstream(x, num, den)
            inputs = [t.float() for t in (u, alpha, beta, grad, x, num, den)]
            got = fused(*inputs, "safe", dim)
            want = reference(*(t.double() for t in inputs), "safe", dim)
            for g, w in zip(got, want):
                scale = max(1.0, w.abs().max().item())
                torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-5 * scale)
        print(pau._C.cpu_capability())
    """).replace("TESTS", repr(str(Path(__file__).parent)))
    check_each_isa(script)


def test_third_order_through_a_network() -> None:
    """Partial derivatives only: in a network, backward's grad_output depends on x through
    the later layers; the composite third order must not add that path to its result."""
    torch.manual_seed(0)

    class Reference(torch.nn.Module):
        def __init__(self, unit: torch.nn.Module) -> None:
            super().__init__()
            self.unit = unit

        def forward(self, x: Tensor) -> Tensor:
            return pau_reference(x, self.unit.numerator, self.unit.denominator, "safe", 1)

    model = torch.nn.Sequential(torch.nn.Linear(1, 8), pau.PAU((3, 2)), torch.nn.Linear(8, 8),
                                pau.PAU((3, 2)), torch.nn.Linear(8, 1)).double()
    reference = torch.nn.Sequential(
        *[Reference(m) if isinstance(m, pau.PAU) else m for m in model])

    def derivatives(net: torch.nn.Module) -> list[Tensor]:
        x = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None].requires_grad_()
        (d1,) = torch.autograd.grad(net(x).sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
        inputs = (x, *net.parameters())
        grads = torch.autograd.grad(d2.square().sum(), inputs, allow_unused=True)
        return [d1, d2, *(torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs))]

    for g, w in zip(derivatives(model), derivatives(reference)):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
