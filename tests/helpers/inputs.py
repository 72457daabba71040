"""Inputs of the operator tests: parameter grids, random inputs and coefficients, layouts.

Everything is drawn on the CPU from a seeded generator and then moved to the
requested device, so a test gets the same numbers on every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import pau
import torch
from torch import Tensor

Device = Union[str, torch.device]

VARIANTS: tuple[str, ...] = ("safe", "abs_sum", "plain")
X_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
HALF_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16)
# (m, n) pairs from the trivial constant to the largest supported degree.
DEGREES: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (3, 2), (5, 4), (8, 7), (16, 16), (32, 32))
# Inputs are drawn from [-X_MAX, X_MAX].
X_MAX = 3.0

# PAU paper, Table 6: the (5, 4) coefficients of LReLU(0.01), fitted in the
# abs_sum form; used for the large-|x| tests of safe and abs_sum.
PAPER_LRELU_NUMERATOR = (0.02979246, 0.61837738, 2.32335207, 3.05202660, 1.48548002, 0.25103717)
PAPER_LRELU_DENOMINATOR = (1.14201226, 4.39322834, 0.87154450, 0.34720652)


def random_coefficients(
    groups: int,
    degrees: tuple[int, int] = (5, 4),
    variant: str = "safe",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: Device = "cpu",
) -> tuple[Tensor, Tensor]:
    """(numerator (G, m+1), denominator (G, n)) with every term mattering on [-X_MAX, X_MAX].

    a_j ~ U(-1, 1) * 0.35^j and |b_k| ~ U(0.25, 1) * 0.35^(k-1) with random signs,
    so no b_k is near 0 (abs_sum's kink). For ``plain`` the denominator is
    scaled so that sum_k |b_k| X_MAX^k = 0.5, i.e. 1 + A(x) >= 0.5 (no poles).
    """
    m, n = degrees
    g = torch.Generator().manual_seed(seed)
    j = torch.arange(m + 1, dtype=torch.float64)
    numerator = (torch.rand(groups, m + 1, generator=g, dtype=torch.float64) * 2 - 1) * 0.35**j
    k = torch.arange(n, dtype=torch.float64)
    magnitude = (0.25 + 0.75 * torch.rand(groups, n, generator=g, dtype=torch.float64)) * 0.35**k
    sign = torch.randint(0, 2, (groups, n), generator=g).to(torch.float64) * 2 - 1
    denominator = magnitude * sign
    if variant == "plain" and n:
        bound = (denominator.abs() * X_MAX ** (k + 1)).sum(dim=1, keepdim=True)
        denominator = denominator * (0.5 / bound)
    return numerator.to(device, dtype), denominator.to(device, dtype)


def random_x(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
    seed: int = 1,
    high: float = X_MAX,
    device: Device = "cpu",
) -> Tensor:
    """Uniform on [-high, high], drawn in float64 then rounded to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(tuple(shape), generator=g, dtype=torch.float64) * 2 - 1) * high
    return x.to(device, dtype)


def paper_coefficients(
    groups: int = 1, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """The PAU paper's (5, 4) LReLU(0.01) coefficients, repeated for ``groups`` groups."""
    numerator = torch.tensor(PAPER_LRELU_NUMERATOR, dtype=dtype).repeat(groups, 1)
    denominator = torch.tensor(PAPER_LRELU_DENOMINATOR, dtype=dtype).repeat(groups, 1)
    return numerator, denominator


def _per_channel(coefficients: Tensor, x: Tensor, dim: int) -> list[Tensor]:
    """Column k of the (G, K) coefficients, expanded to broadcast against x (float64)."""
    groups, count = coefficients.shape
    dim = dim % x.dim()
    channels = x.shape[dim]
    per_channel = coefficients.detach().double().repeat_interleave(channels // groups, dim=0)
    shape = [1] * x.dim()
    shape[dim] = channels
    return [per_channel[:, k].reshape(shape) for k in range(count)]


def denominator_terms(x: Tensor, denominator: Tensor, dim: int) -> list[Tensor]:
    """b_k x^k per element (float64) for k = 1..n."""
    xd = x.detach().double()
    xd = xd.reshape(1) if xd.dim() == 0 else xd
    terms = [b * xd ** (k + 1) for k, b in enumerate(_per_channel(denominator, xd, dim))]
    return [t.reshape(x.shape) for t in terms]


def smooth_inputs(
    shape: Sequence[int],
    groups: int,
    degrees: tuple[int, int],
    variant: str,
    dim: int = 1,
    seed: int = 0,
    margin: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor]:
    """float64 (x, numerator, denominator) where F is smooth in every argument.

    Keeps x away from the kinks: |A(x)| >= margin for safe (sign changes of
    A), |b_k x^k| >= margin * 0.01 for abs_sum (zeros of x and b_k), and
    1 + A(x) >= 0.5 for plain (by construction of the coefficients).
    """
    numerator, denominator = random_coefficients(groups, degrees, variant, seed=seed)
    x = random_x(shape, seed=seed + 100)
    threshold = margin if variant == "safe" else margin * 0.01
    for attempt in range(50):
        if variant == "plain" or degrees[1] == 0:
            break
        terms = denominator_terms(x, denominator, dim)
        if variant == "abs_sum":
            bad = torch.stack([t.abs() for t in terms]).amin(dim=0) < threshold
        else:
            bad = sum(terms).abs() < threshold
        if not bad.any():
            break
        fresh = random_x(shape, seed=seed + 1000 + attempt)
        x = torch.where(bad, fresh, x)
    else:
        raise AssertionError("could not draw inputs away from the kinks")
    return x, numerator, denominator


def preset_like_coefficients(
    groups: int,
    degrees: tuple[int, int] = (5, 4),
    variant: str = "safe",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: Device = "cpu",
) -> tuple[Tensor, Tensor]:
    """Coefficients near the leaky_relu (5, 4) preset, one random perturbation per group.

    Other degrees take the preset's leading terms and random ones beyond. For
    ``plain`` the denominator is scaled down so that 1 + A(x) stays away from
    zero on the tests' input range.
    """
    generator = torch.Generator().manual_seed(seed)
    num, den = pau.presets.coefficients("leaky_relu", (5, 4), variant)
    m, n = degrees
    numerator = torch.randn(groups, m + 1, generator=generator, dtype=torch.float64) * 0.1
    denominator = torch.randn(groups, n, generator=generator, dtype=torch.float64) * 0.1
    numerator[:, : min(m + 1, 6)] += num[: m + 1]
    denominator[:, : min(n, 4)] += den[:n]
    if variant == "plain":
        denominator = denominator * 0.05
    return numerator.to(device, dtype), denominator.to(device, dtype)


def pwlu_parameters(
    groups: int,
    intervals: int = 16,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: Device = "cpu",
) -> tuple[Tensor, Tensor, Tensor]:
    """PWLU (points (G, N+1), bounds (G, 2), slopes (G, 2)) for the CPU and CUDA tests.

    Random bounds around [-3, 3], points near relu plus noise, random outer slopes.
    """
    gen = torch.Generator().manual_seed(seed)
    left = -3 + 0.5 * torch.rand(groups, generator=gen, dtype=torch.float64)
    right = 3 - 0.5 * torch.rand(groups, generator=gen, dtype=torch.float64)
    bounds = torch.stack([left, right], dim=1)
    steps = torch.arange(intervals + 1, dtype=torch.float64)
    x = left[:, None] + steps * ((right - left) / intervals)[:, None]
    points = x.clamp_min(0) + 0.3 * torch.randn(
        groups, intervals + 1, generator=gen, dtype=torch.float64
    )
    slopes = torch.randn(groups, 2, generator=gen, dtype=torch.float64)
    return points.to(device, dtype), bounds.to(device, dtype), slopes.to(device, dtype)


# (shape, dim, groups, channels_last) of the operator tests: one group; per
# channel; groups of several channels; channels-last per channel; (batch,
# tokens, C) per channel and in groups. The CPU tests add a 1-d tensor, the
# CUDA ones the layouts that reach their other tile kinds.
BASIC_LAYOUTS = [
    ((4, 6, 5, 7), 1, 1, False),
    ((4, 6, 5, 7), 1, 6, False),
    ((4, 6, 5, 7), 1, 3, False),
    ((4, 6, 5, 7), 1, 6, True),
    ((2, 9, 48), -1, 48, False),
    ((2, 9, 48), -1, 4, False),
]
OP_LAYOUTS = [*BASIC_LAYOUTS, ((129,), 0, 1, False)]


def layout_x(
    shape: Sequence[int],
    dtype: torch.dtype = torch.float64,
    channels_last: bool = False,
    seed: int = 1,
    scale: float = 2.0,
    device: Device = "cpu",
) -> Tensor:
    """Standard-normal inputs times ``scale``, drawn in float64, cast, channels-last on request."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(device, dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
