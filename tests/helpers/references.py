"""Plain-PyTorch references of pau::forward / pau::backward and the checks against them.

The references run on the CPU in float64 (float32 for half inputs, the
operator's compute dtype); the operator runs on whatever device its inputs
are on, and its results are moved to the CPU for the comparison.
"""

from __future__ import annotations

from typing import Optional

import torch
from pau.reference import pau_reference
from torch import Tensor

from helpers.inputs import HALF_DTYPES, denominator_terms, random_x
from helpers.machine import single_threaded
from helpers.tolerances import assert_close_scaled, assert_coefficient_grad_close, compute_dtype


def reference_forward(
    x: Tensor, numerator: Tensor, denominator: Tensor, variant: str, dim: int
) -> Tensor:
    """What the operator's output should be, unrounded.

    float32/float64 inputs: the reference in float64 on the same inputs with the
    coefficients rounded to the compute dtype. Half inputs: the reference in
    float32 on the same rounded inputs (the operator's compute dtype).
    """
    x, numerator, denominator = (t.detach().cpu() for t in (x, numerator, denominator))
    ctype = compute_dtype(x.dtype)
    num, den = numerator.to(ctype), denominator.to(ctype)
    with single_threaded():
        if x.dtype in HALF_DTYPES:
            return pau_reference(x.to(torch.float32), num, den, variant, dim)
        return pau_reference(x.double(), num.double(), den.double(), variant, dim)


def reference_grads(
    grad: Tensor, x: Tensor, numerator: Tensor, denominator: Tensor, variant: str, dim: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(output, grad_x, grad_numerator, grad_denominator) of the reference in float64.

    Evaluated on the operator's actual inputs (x and grad as given, already
    rounded for half dtypes; coefficients rounded to the compute dtype).
    """
    grad, x, numerator, denominator = (t.detach().cpu() for t in (grad, x, numerator, denominator))
    ctype = compute_dtype(x.dtype)
    xr = x.double().requires_grad_()
    nr = numerator.to(ctype).double().requires_grad_()
    dr = denominator.to(ctype).double().requires_grad_()
    with single_threaded():
        y = pau_reference(xr, nr, dr, variant, dim)
        gx, gn, gd = torch.autograd.grad(y, (xr, nr, dr), grad.double(), allow_unused=True)
    gd = torch.zeros_like(dr) if gd is None else gd
    return y.detach(), gx, gn, gd


def op_grads(
    grad: Tensor, x: Tensor, numerator: Tensor, denominator: Tensor, variant: str, dim: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(output, grad_x, grad_numerator, grad_denominator) of torch.ops.pau.forward via autograd."""
    xo = x.detach().clone().requires_grad_()
    no = numerator.detach().clone().requires_grad_()
    do = denominator.detach().clone().requires_grad_()
    y = torch.ops.pau.forward(xo, no, do, variant, dim)
    gx, gn, gd = torch.autograd.grad(y, (xo, no, do), grad, allow_unused=True)
    gd = torch.zeros_like(do) if gd is None else gd
    return y.detach(), gx, gn, gd


def check_against_reference(
    x: Tensor,
    numerator: Tensor,
    denominator: Tensor,
    variant: str,
    dim: int,
    grad_seed: Optional[int] = 7,
) -> None:
    """Forward (and, unless grad_seed is None, all three gradients) against the reference.

    The operator runs on x's device, the reference on the CPU.

    grad_x is elementwise: the tolerance of x's dtype (doubled: one more
    division than the output). Coefficient gradients are sums over many
    elements: see :func:`assert_coefficient_grad_close`.
    """
    # The operator runs with the default thread count; the checking around it
    # on one thread (see single_threaded).
    y = torch.ops.pau.forward(x, numerator, denominator, variant, dim)
    with single_threaded():
        assert y.shape == x.shape and y.dtype == x.dtype
        expected = reference_forward(x, numerator, denominator, variant, dim)
        assert_close_scaled(y, expected, x.dtype, msg="forward")
        if grad_seed is None:
            return
        grad = random_x(x.shape, x.dtype, seed=grad_seed, high=1.0, device=x.device)
    _, gx, gn, gd = op_grads(grad, x, numerator, denominator, variant, dim)
    with single_threaded():
        _, rx, rn, rd = reference_grads(grad, x, numerator, denominator, variant, dim)
        assert gx.dtype == x.dtype and gx.shape == x.shape
        assert gn.dtype == numerator.dtype and gn.shape == numerator.shape
        assert gd.dtype == denominator.dtype and gd.shape == denominator.shape
        assert_close_scaled(gx, rx, x.dtype, factor=2.0, msg="grad_x")
        mag_n, mag_d = coefficient_grad_magnitudes(grad, x, numerator, denominator, variant, dim)
        cdtype = compute_dtype(x.dtype)
        assert_coefficient_grad_close(gn, rn, mag_n, cdtype, "grad_numerator")
        assert_coefficient_grad_close(gd, rd, mag_d, cdtype, "grad_denominator")


def q_of(x: Tensor, denominator: Tensor, variant: str, dim: int) -> Tensor:
    """Q(x) per element in float64."""
    terms = denominator_terms(x, denominator, dim)
    zero = torch.zeros(x.shape, dtype=torch.float64)
    if variant == "abs_sum":
        return 1 + sum((t.abs() for t in terms), zero)
    big_a = sum(terms, zero)
    return 1 + (big_a.abs() if variant == "safe" else big_a)


def coefficient_grad_magnitudes(
    grad: Tensor, x: Tensor, numerator: Tensor, denominator: Tensor, variant: str, dim: int
) -> tuple[Tensor, Tensor]:
    """sum_i |g_i dF_i/dc| for every coefficient c: the scale of its gradient's rounding error.

    |dF/da_j| = |x|^j / Q and |dF/db_k| = |F| |x|^k / Q for every variant.
    """
    grad, x, numerator, denominator = (t.detach().cpu() for t in (grad, x, numerator, denominator))
    ctype = compute_dtype(x.dtype)
    num, den = numerator.to(ctype).double(), denominator.to(ctype).double()
    xd = x.double()
    xd = xd.reshape(1) if xd.dim() == 0 else xd
    g = grad.double().reshape(xd.shape).abs()
    q = q_of(xd, den, variant, dim)
    f = pau_reference(xd, num, den, variant, dim).abs()
    d = dim % xd.dim()
    groups = numerator.shape[0]

    def per_group(values: Tensor) -> Tensor:
        moved = values.movedim(d, -1)
        rows = moved.numel() // moved.shape[-1] if moved.shape[-1] else 0
        return moved.reshape(rows, groups, moved.shape[-1] // groups).sum(dim=(0, 2))

    mag_n = torch.stack([per_group(g * xd.abs() ** j / q) for j in range(num.shape[1])], dim=1)
    if den.shape[1] == 0:
        return mag_n, torch.zeros(groups, 0, dtype=torch.float64)
    terms = [per_group(g * f * xd.abs() ** (k + 1) / q) for k in range(den.shape[1])]
    return mag_n, torch.stack(terms, dim=1)
