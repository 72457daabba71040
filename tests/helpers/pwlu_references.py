"""PWLU against the plain-PyTorch reference with bounds from the operator's error model.

The operator runs on its inputs' device; the reference in float64 on the CPU,
on the same rounded inputs, with x placed away from the breakpoints, where
dF/dx jumps and a last-ulp difference in the position u would pick another
interval (:func:`pwlu_x`).

Tolerances follow the error of the operator's arithmetic (compute type c,
eps_c its machine epsilon, N intervals):

* the position u = (x - B_L) N / (B_R - B_L) is off by up to about
  3 eps_c N (three roundings of a value up to N), so F and the point gradients
  carry an error of that size times |S_k| and |g|: the forward bound is
  4 eps_c (max|Y| + N max|S| + max|x - B| max|K|), as test_pwlu's
  segments_tolerance, plus the final rounding to x's dtype;
* dL/dx = g S_k N / (B_R - B_L) is a product of a few rounded values:
  4 eps_c relative, plus the final rounding;
* a parameter gradient is a sum over elements: within 1e-5 (float32 compute)
  or 1e-13 (float64) of sum_i |g_i dF_i/dc| (helpers.tolerances' rule for PAU), plus
  for a point 4 eps_c N times sum |g_i| over the elements of its two
  intervals (the position error), plus the final rounding to the
  parameters' dtype.

The CUDA and CPU operators evaluate the same position from the same tables
(pwlu_math.h, pwlu_group_tables), so against each other only the rounding
and summation-order terms apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional

import torch
from pau.reference import pwlu_reference
from torch import Tensor

from helpers.tolerances import compute_dtype

# Relative tolerance of a parameter gradient against sum_i |g_i dF_i/dc|.
SUM_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-13}


def eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def per_element(values: Tensor, shape: Sequence[int], dim: int) -> Tensor:
    """(G,) per-group values broadcast to ``shape`` (G equal groups of channels along dim)."""
    dim = dim % len(shape)
    channels = shape[dim]
    view = [1] * len(shape)
    view[dim] = channels
    return values.repeat_interleave(channels // values.shape[0]).reshape(view).expand(*shape)


def interval_fraction(x: Tensor, bounds: Tensor, intervals: int, dim: int) -> Tensor:
    """(x - B_L) / d - floor((x - B_L) / d) in float64, d the interval width of x's group."""
    b = bounds.double()
    left = per_element(b[:, 0], x.shape, dim)
    width = per_element((b[:, 1] - b[:, 0]) / intervals, x.shape, dim)
    u = (x.double() - left) / width
    return u - u.floor()


def pwlu_x(
    shape: Sequence[int],
    bounds: Tensor,
    intervals: int,
    dim: int,
    dtype: torch.dtype,
    channels_last: bool = False,
    seed: int = 1,
) -> Tensor:
    """x of ``dtype`` inside intervals at 10-90% of their width or up to two widths outside.

    After rounding to ``dtype`` every element is still at 5-95% of an interval
    (elements that rounding moved closer to a breakpoint are drawn again), so the
    operators and the reference pick the same piece.
    """
    shape = tuple(shape)
    gen = torch.Generator().manual_seed(seed)
    b = bounds.to(compute_dtype(dtype)).double()
    left = per_element(b[:, 0], shape, dim)
    width = per_element((b[:, 1] - b[:, 0]) / intervals, shape, dim)

    def draw() -> Tensor:
        k = torch.randint(-2, intervals + 2, shape, generator=gen).double()
        fraction = 0.1 + 0.8 * torch.rand(shape, generator=gen, dtype=torch.float64)
        return (left + (k + fraction) * width).to(dtype)

    x = draw()
    for _ in range(50):
        f = interval_fraction(x, b, intervals, dim)
        bad = (f < 0.05) | (f > 0.95)
        if not bad.any():
            break
        x = torch.where(bad, draw(), x)
    else:
        raise AssertionError("could not draw x away from the breakpoints")
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def random_grad(x: Tensor, seed: int = 2) -> Tensor:
    """A random grad_output in x's dtype and memory layout."""
    values = torch.randn(
        x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    ).to(x.dtype)
    return torch.empty_like(x).copy_(values)


class Result(NamedTuple):
    y: Tensor
    grad_x: Tensor
    grad_points: Tensor
    grad_bounds: Tensor
    grad_slopes: Tensor


def run_op(
    x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor, dim: int, grad: Tensor
) -> Result:
    """Forward and all four gradients through autograd."""
    inputs = [t.detach().clone().requires_grad_() for t in (x, points, bounds, slopes)]
    y = torch.ops.pau.pwlu_forward(*inputs, dim)
    grads = torch.autograd.grad(y, inputs, grad)
    return Result(y.detach(), *grads)


class Reference(NamedTuple):
    result: Result  # float64, on the CPU
    magnitudes: tuple[Tensor, Tensor, Tensor]  # sum_i |g_i dF_i/dc| for points, bounds, slopes
    touches: Tensor  # (G, N+1): sum |g_i| over the elements of each point's two intervals


def reference(
    x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor, dim: int, grad: Tensor
) -> Reference:
    """The reference in float64 on the operator's inputs (parameters rounded to its compute type).

    Besides the gradients, the scales of their rounding errors: dF/dY >= 0,
    dF/dK_L <= 0 <= dF/dK_R and sign(dF/dB) = -sign(dF/dx), so each magnitude
    sum_i |g_i dF_i/dc| is a gradient of the reference for a grad_output of
    fixed sign pattern.
    """
    ctype = compute_dtype(x.dtype)
    x64 = x.detach().cpu().double()
    params = [t.detach().cpu().to(ctype).double() for t in (points, bounds, slopes)]
    g = grad.detach().cpu().double()

    def grads(weights: Tensor) -> tuple[Tensor, ...]:
        inputs = [t.clone().requires_grad_() for t in (x64, *params)]
        y = pwlu_reference(*inputs, dim)
        return (y.detach(), *torch.autograd.grad(y, inputs, weights))

    result = Result(*grads(g))
    _, dfdx, *_ = grads(torch.ones_like(g))  # F is element-wise: dF_i/dx_i
    _, _, mag_points, _, mag_slopes = grads(g.abs())
    _, _, _, mag_bounds, _ = grads(-g.abs() * dfdx.sign())

    groups, count = points.shape
    n = count - 1
    b = params[1]
    left = per_element(b[:, 0], x64.shape, dim)
    right = per_element(b[:, 1], x64.shape, dim)
    inside = (x64 >= left) & (x64 < right)
    k = ((x64 - left) * (n / (right - left))).floor().clamp(0, n - 1).nan_to_num(0).long()
    group = per_element(torch.arange(groups), x64.shape, dim)
    per_interval = torch.zeros(groups, n, dtype=torch.float64)
    per_interval.index_put_(
        (group.reshape(-1), k.reshape(-1)), (g.abs() * inside).reshape(-1), accumulate=True
    )
    touches = torch.zeros(groups, count, dtype=torch.float64)
    touches[:, :-1] += per_interval
    touches[:, 1:] += per_interval
    return Reference(result, (mag_points, mag_bounds, mag_slopes.abs()), touches)


def assert_within(got: Tensor, want: Tensor, bound: Tensor, what: str) -> None:
    """|got - want| <= bound element-wise (NaN only where want is NaN)."""
    got = got.detach().cpu().double()
    want = want.detach().cpu().double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    error = (got - want).abs()
    bound = bound.expand_as(error)
    bad = ~(error <= bound) & ~(got.isnan() & want.isnan())
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.numel()} entries off; worst error/bound "
        f"{(error[bad] / bound[bad]).max().item():.3g}, e.g. got {got[bad][:4].tolist()} "
        f"want {want[bad][:4].tolist()}"
    )


def output_rounding(dtype: torch.dtype, values: Tensor) -> Tensor:
    """The final rounding of a float32/float64 result to ``dtype``: one ulp of the value.

    eps(dtype) |value|, or the subnormal spacing where that is larger (float16's
    subnormals start at 6e-5, where gradients of tiny grad_output values land).
    """
    info = torch.finfo(dtype)
    return (info.eps * values.detach().cpu().double().abs()).clamp_min(
        info.smallest_normal * info.eps
    )


def forward_bound(
    x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor, want: Tensor, position: bool = True
) -> Tensor:
    """4 eps_c (max|Y| + N max|S| + max|x - B| max|K|) plus the final rounding to x's dtype.

    ``position`` False drops the factor N (operators that share the position u).
    """
    ctype = compute_dtype(x.dtype)
    p, b, k = (t.detach().cpu().to(ctype).double() for t in (points, bounds, slopes))
    n = p.shape[1] - 1 if position else 1
    reach = x.detach().cpu().double().abs().max() + b.abs().max()
    scale = p.abs().max() + n * p.diff(dim=1).abs().max() + reach * k.abs().max()
    return 4 * eps(ctype) * scale + output_rounding(x.dtype, want)


def grad_x_bound(x: Tensor, want: Tensor) -> Tensor:
    ctype = compute_dtype(x.dtype)
    w = want.detach().cpu().double().abs()
    return 4 * eps(ctype) * w + output_rounding(x.dtype, want)


def parameter_bounds(
    x: Tensor, points: Tensor, ref: Reference, want: Sequence[Tensor], position: bool
) -> list[Tensor]:
    """Bounds for (grad_points, grad_bounds, grad_slopes); ``position``: add the position term."""
    ctype = compute_dtype(x.dtype)
    tol = SUM_TOLERANCE[ctype]
    n = points.shape[1] - 1
    bounds = []
    for i, (magnitude, w) in enumerate(zip(ref.magnitudes, want)):
        bound = tol * magnitude + output_rounding(points.dtype, w) + 1e-300
        if i == 0 and position:
            bound = bound + 4 * eps(ctype) * n * ref.touches
        bounds.append(bound)
    return bounds


def check_pwlu_against_reference(
    x: Tensor,
    points: Tensor,
    bounds: Tensor,
    slopes: Tensor,
    dim: int,
    grad: Optional[Tensor] = None,
) -> tuple[Result, Reference]:
    """The operator on x's device against the reference: forward and all four gradients.

    grad may be given on x's device, to keep a layout that a copy would not (a
    strided view, an expanded grad); the parameters are moved to x's device.
    Returns the operator's results (on x's device) and the reference.
    """
    device = x.device
    grad = (random_grad(x) if grad is None else grad).to(device)
    got = run_op(x, points.to(device), bounds.to(device), slopes.to(device), dim, grad)
    assert got.y.dtype == x.dtype and got.y.device == device
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    # Dense layouts (channels-last included) are kept, anything else comes back contiguous.
    if x.is_contiguous() or channels_last:
        assert got.y.stride() == x.stride() and got.grad_x.stride() == x.stride()
    else:
        assert got.y.is_contiguous() and got.grad_x.is_contiguous()
    for g, param in zip(got[2:], (points, bounds, slopes)):
        assert g.dtype == param.dtype and g.shape == param.shape and g.is_contiguous()

    x, grad = x.cpu(), grad.cpu()
    ref = reference(x, points, bounds, slopes, dim, grad)
    want = ref.result
    where = f"{device.type} vs reference"
    assert_within(got.y, want.y, forward_bound(x, points, bounds, slopes, want.y), f"{where}: y")
    assert_within(got.grad_x, want.grad_x, grad_x_bound(x, want.grad_x), f"{where}: grad_x")
    names = ("grad_points", "grad_bounds", "grad_slopes")
    limits = parameter_bounds(x, points, ref, want[2:], position=True)
    for name, g, w, bound in zip(names, got[2:], want[2:], limits):
        assert_within(g, w, bound, f"{where}: {name}")
    return got, ref


def parameter_dtype(dtype: torch.dtype) -> torch.dtype:
    """The parameters' dtype for x of ``dtype``: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
