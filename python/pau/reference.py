"""Plain-PyTorch reference implementations.

These follow the formulas literally (no overflow protection, no fused
gradients) and are what the tests compare the custom operators against and
what the benchmarks time as the "reference". Autograd gives their gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

VARIANTS = ("safe", "abs_sum", "plain")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the operators compute in for an input of ``dtype``."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _per_channel(coefficients: Tensor, x: Tensor, dim: int) -> Tensor:
    """Expand (G, K) group coefficients to shape (K, 1.., C, ..1) broadcasting against x."""
    groups = coefficients.shape[0]
    channels = x.shape[dim]
    per_channel = coefficients.repeat_interleave(channels // groups, dim=0)  # (C, K)
    shape = [1] * x.dim()
    shape[dim] = channels
    return per_channel.t().reshape(coefficients.shape[1], *shape)


def pau_reference(
    x: Tensor, numerator: Tensor, denominator: Tensor, variant: str = "safe", dim: int = 1
) -> Tensor:
    """F(x) = P(x) / Q(x) with P(x) = sum_j a_j x^j and, with A(x) = sum_k b_k x^k,

    * ``safe``:    Q = 1 + |A(x)|
    * ``abs_sum``: Q = 1 + sum_k |b_k x^k|
    * ``plain``:   Q = 1 + A(x)

    ``numerator`` is (G, m+1), ``denominator`` is (G, n); channels along ``dim``
    are split into G equal groups. Computes in float32 (float64 for float64
    input) and returns ``x.dtype``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}, expected one of {VARIANTS}")
    dim = dim % x.dim() if x.dim() else 0
    ctype = compute_dtype(x.dtype)
    xc = x.to(ctype) if x.dim() else x.to(ctype).reshape(1)
    a = _per_channel(numerator.to(ctype), xc, dim)
    b = _per_channel(denominator.to(ctype), xc, dim)
    return _rational(xc, a, b, variant).reshape(x.shape).to(x.dtype)


def rpau_reference(
    x: Tensor,
    numerator: Tensor,
    denominator: Tensor,
    noise: Tensor,
    variant: str = "safe",
    dim: int = 1,
) -> Tensor:
    """Randomized PAU (PAU paper Eq. 3) with the perturbations given explicitly.

    ``noise`` has shape ``x.shape + (m+1+n,)``: coefficient j (a_0..a_m, then
    b_1..b_n) of element ``x[idx]`` is c_j * (1 + noise[idx + (j,)]).
    :func:`pau.functional.rpau_noise` returns the operator's noise for a seed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}, expected one of {VARIANTS}")
    m1 = numerator.shape[1]
    if noise.shape != (*x.shape, m1 + denominator.shape[1]):
        raise ValueError(f"noise must have shape {(*x.shape, m1 + denominator.shape[1])}, "
                         f"got {tuple(noise.shape)}")
    dim = dim % x.dim() if x.dim() else 0
    ctype = compute_dtype(x.dtype)
    xc = x.to(ctype) if x.dim() else x.to(ctype).reshape(1)
    factor = 1 + noise.to(ctype).reshape(*xc.shape, -1).movedim(-1, 0)  # (K, *x.shape)
    a = _per_channel(numerator.to(ctype), xc, dim) * factor[:m1]
    b = _per_channel(denominator.to(ctype), xc, dim) * factor[m1:]
    return _rational(xc, a, b, variant).reshape(x.shape).to(x.dtype)


def _rational(xc: Tensor, a: Tensor, b: Tensor, variant: str) -> Tensor:
    """P(x) / Q(x) for coefficient tensors a (m+1, ...), b (n, ...) broadcasting against xc."""
    p = torch.zeros_like(xc)
    for j in range(a.shape[0] - 1, -1, -1):
        p = p * xc + a[j]
    if variant == "abs_sum":
        q = torch.zeros_like(xc)
        power = torch.ones_like(xc)
        for k in range(b.shape[0]):
            power = power * xc
            q = q + (b[k] * power).abs()
    else:
        a_of_x = torch.zeros_like(xc)
        for k in range(b.shape[0] - 1, -1, -1):
            a_of_x = (a_of_x + b[k]) * xc
        q = a_of_x.abs() if variant == "safe" else a_of_x
    return p / (1 + q)


def pwlu_reference(
    x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor, dim: int = 1
) -> Tensor:
    """Piecewise Linear Unit (Zhou et al. 2021), written with plain PyTorch ops.

    ``points`` is (G, N+1) holding Y_0..Y_N, ``bounds`` (G, 2) holding (B_L, B_R)
    and ``slopes`` (G, 2) holding (K_L, K_R); channels along ``dim`` are split
    into G equal groups. With u = (x - B_L) * N / (B_R - B_L):

    * x < B_L:  Y_0 + (x - B_L) K_L
    * x >= B_R: Y_N + (x - B_R) K_R
    * else:     k = clamp(floor(u), 0, N-1), Y_k + (u - k) (Y_{k+1} - Y_k)

    Computes in float32 (float64 for float64 input) and returns ``x.dtype``.
    Autograd gives the gradients of all four tensors.
    """
    dim = dim % x.dim() if x.dim() else 0
    ctype = compute_dtype(x.dtype)
    xc = x.to(ctype) if x.dim() else x.to(ctype).reshape(1)
    groups, count = points.shape
    n = count - 1
    channels = xc.shape[dim]
    shape = [1] * xc.dim()
    shape[dim] = channels

    def per_channel(t: Tensor) -> Tensor:  # (G,) -> broadcastable against xc
        return t.repeat_interleave(channels // groups).reshape(shape)

    b = bounds.to(ctype)
    k = slopes.to(ctype)
    y = points.to(ctype)
    left, right = per_channel(b[:, 0]), per_channel(b[:, 1])
    u = (xc - left) * (n / (right - left))
    interval = torch.floor(u).clamp(0, n - 1).nan_to_num(0).detach()
    # Flat index of Y_k in points: group * (N+1) + k.
    group = torch.arange(channels, device=x.device).div(channels // groups, rounding_mode="floor")
    index = group.reshape(shape) * count + interval.long()
    y_flat = y.reshape(-1)
    lower = y_flat.take(index)
    upper = y_flat.take(index + 1)
    inside = lower + (u - interval) * (upper - lower)
    outside_left = (xc - left) * per_channel(k[:, 0]) + per_channel(y[:, 0])
    outside_right = (xc - right) * per_channel(k[:, 1]) + per_channel(y[:, n])
    out = torch.where(xc < left, outside_left, torch.where(xc >= right, outside_right, inside))
    return out.reshape(x.shape).to(x.dtype)
