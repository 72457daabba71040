"""Numerics users hit in practice: large |x| without overflow, pure polynomials, NaN and
±inf inputs, NaN coefficients, |x| near 1 (where the evaluation switches to 1/x), zeros.

Expected values come from 200-digit decimal arithmetic (:func:`helpers.exact.exact_pau`) on
the operator's actual inputs, rounded to the result's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pau
import pytest
import torch
from helpers.exact import exact_pau, to_dtype_float
from helpers.inputs import (
    HALF_DTYPES,
    VARIANTS,
    X_DTYPES,
    paper_coefficients,
    random_coefficients,
    random_x,
)
from helpers.references import check_against_reference, reference_forward, reference_grads
from helpers.tolerances import compute_dtype, tolerance
from torch import Tensor

# The largest |x| each dtype is tested at, per the design notes.
LARGE = {
    torch.float32: 1e30,
    torch.float16: 6e4,
    torch.float64: 1e300,
    torch.bfloat16: 3e38,
}


def magnitudes(dtype: torch.dtype) -> list[float]:
    """Positive test magnitudes from 2 up to LARGE[dtype] (and the dtype's max for float)."""
    top = LARGE[dtype]
    values = [2.0, 10.0] + [10.0**e for e in range(2, int(math.log10(top)) + 1, 3)] + [top]
    if dtype in (torch.float32, torch.float64):
        values.append(torch.finfo(dtype).max)
    return sorted(set(values))


def exact_outputs(
    x: Tensor, numerator: Sequence[float], denominator: Sequence[float], variant: str
) -> Tensor:
    """F(x) per element, exact then rounded to x's dtype (inf where it overflows)."""
    values = [
        to_dtype_float(exact_pau(v, numerator, denominator, variant)[0], x.dtype)
        for v in x.double().tolist()
    ]
    return torch.tensor(values, dtype=torch.float64)


def assert_relative(actual: Tensor, expected: Tensor, rtol: float, atol: float = 0.0) -> None:
    """Elementwise |actual - expected| <= atol + rtol |expected|; infinities must match."""
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("variant", ["safe", "abs_sum"])
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_large_x_paper_coefficients(dtype: torch.dtype, variant: str) -> None:
    """The paper's (5, 4) LReLU coefficients: finite, and F(x) ~ a_5 / |b_4| x."""
    numerator, denominator = paper_coefficients(1, compute_dtype(dtype))
    values = magnitudes(dtype)
    x = torch.tensor([s * v for v in values for s in (1, -1)], dtype=torch.float64).to(dtype)
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
    assert torch.isfinite(y).all(), f"non-finite outputs at {x[~torch.isfinite(y)].tolist()}"
    expected = exact_outputs(x, numerator[0].tolist(), denominator[0].tolist(), variant)
    assert torch.isfinite(expected).all()
    assert_relative(y, expected, rtol=tolerance(dtype)[0])
    # The limit itself, a_5 / |b_4| * x, at the largest input.
    slope = numerator[0, 5].item() / abs(denominator[0, 3].item())
    big = x[x.double().abs().argmax()].double()
    limit = torch.tensor(slope, dtype=torch.float64) * big
    got = y[x.double().abs().argmax()].double()
    torch.testing.assert_close(got, limit, rtol=max(tolerance(dtype)[0], 1e-6), atol=0)


@pytest.mark.parametrize("degrees", [(3, 3), (8, 7), (16, 16), (32, 32)], ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_large_x_high_degrees(dtype: torch.dtype, variant: str, degrees: tuple[int, int]) -> None:
    """x^32 overflows for |x| > 16 in float32, F does not."""
    numerator, denominator = random_coefficients(1, degrees, variant, dtype, seed=3)
    if variant == "plain":
        denominator = denominator.abs()  # no poles for x > 0; test x > 0 only
        x = torch.tensor(magnitudes(dtype), dtype=dtype)
    else:
        x = torch.tensor([s * v for v in magnitudes(dtype) for s in (1, -1)], dtype=dtype)
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
    expected = exact_outputs(x, numerator[0].tolist(), denominator[0].tolist(), variant)
    finite = torch.isfinite(expected)
    assert torch.isfinite(y[finite]).all(), (
        f"non-finite outputs at {x[finite & ~torch.isfinite(y)]}"
    )
    # Underflowing leading terms are fine; results are relative to their own size.
    assert_relative(y, expected, rtol=tolerance(dtype)[0], atol=torch.finfo(dtype).tiny)


# ---------------------------------------------------------------------------
# The range of the scaled terms x^j / max(1, |x|)^n (README, Numerics).

STEEP_32 = ([1.0], [0.0] * 31 + [1e-30])  # 1 / (1 + 1e-30 x^32)


def exact_all(x: Tensor, numerator: Sequence[float], denominator: Sequence[float], variant: str):
    """(F, dF/dx) per element and the coefficient gradients summed over x, float64."""
    rows = [exact_pau(v, numerator, denominator, variant) for v in x.double().tolist()]
    f = torch.tensor([float(r[0]) for r in rows], dtype=torch.float64)
    dfdx = torch.tensor([float(r[1]) for r in rows], dtype=torch.float64)
    da = torch.tensor([[float(sum(r[2][j] for r in rows)) for j in range(len(numerator))]])
    db = torch.tensor([[float(sum(r[3][k] for r in rows)) for k in range(len(denominator))]])
    return f, dfdx, da.double(), db.double()


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_where_products_of_scaled_terms_underflow(variant: str) -> None:
    """1 / (1 + 1e-30 x^32) in float32: E_0 = |x|^-32 is normal up to |x| = 15, but products
    of two scaled terms (M^-64) are not; dF/dx was 0 at x = 6..15 and dF/db_k (k < 32)
    lost most of its value. F and every gradient must keep float32 accuracy there."""
    numerator, denominator = STEEP_32
    a = torch.tensor([numerator])
    b = torch.tensor([denominator])
    x = torch.tensor([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0, -6.0, -15.0])
    y = torch.ops.pau.forward(x, a, b, variant, 0)
    gx, ga, gb = torch.ops.pau.backward(torch.ones_like(x), x, a, b, variant, 0)
    f, dfdx, da, db = exact_all(x, numerator, denominator, variant)
    rtol = tolerance(torch.float32)[0]
    assert_relative(y, f, rtol=rtol)
    assert_relative(gx, dfdx, rtol=rtol)
    assert_relative(ga, da, rtol=rtol)
    assert_relative(gb, db, rtol=rtol)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("x_value", [0.5, 2.0])
def test_gradient_of_a_steep_ratio_is_finite(variant: str, x_value: float) -> None:
    """1e25 x / (1 + 1e25 |x|): P Q' = 5e49 overflows float32 (dF/dx was -inf). dF/dx is
    P'/Q - F Q'/Q, two terms of about 1/x that cancel: its error is bounded by a few
    roundings of those terms, not by the (tiny) true value."""
    numerator, denominator = [0.0, 1e25], [1e25]
    x = torch.tensor([x_value])
    gx = torch.ops.pau.backward(torch.ones_like(x), x, torch.tensor([numerator]),
                                torch.tensor([denominator]), variant, 0)[0]
    assert torch.isfinite(gx).all(), gx
    exact = float(exact_pau(x_value, numerator, denominator, variant)[1])
    terms = 2 * 1e25 / (1 + 1e25 * x_value)  # |P'/Q| + |F Q'/Q|
    assert abs(gx.item() - exact) <= 8 * torch.finfo(torch.float32).eps * terms


@pytest.mark.parametrize("numerator, denominator", [([0.0, 0.0, 1e-30], []),
                                                     ([0.0, 0.0, 0.0, 1e-30], [1.0])],
                         ids=["(2,0)", "(3,1)"])
def test_polynomial_part_overflows_with_x_to_the_m_minus_n(
    numerator: list[float], denominator: list[float]
) -> None:
    """The documented limit for m > n: the terms above degree n are x^(j - n), not scaled,
    so F (= 1e-30 x^2 here, for large x) is right while x^2 is finite in float32 and inf
    from there, although 1e-30 x^2 itself would be finite."""
    a = torch.tensor([numerator])
    b = torch.tensor([denominator]).reshape(1, len(denominator))
    below = torch.tensor([1e19, 1.8e19, -1.8e19])  # x^2 <= 3.24e38 < float32 max
    y = torch.ops.pau.forward(below, a, b, "safe", 0)
    f = exact_outputs(below, numerator, denominator, "safe")
    assert_relative(y, f, rtol=tolerance(torch.float32)[0])
    above = torch.tensor([2e19, -2e19])  # x^2 = 4e38 overflows
    assert torch.isinf(torch.ops.pau.forward(above, a, b, "safe", 0)).all()


@pytest.mark.parametrize("x_value", [20.0, 30.0, 100.0])
def test_underflowed_terms_bound_the_absolute_error(x_value: float) -> None:
    """The documented limit where scaled terms underflow: beyond |x| = 15, E_0 = |x|^-32 of
    1 / (1 + 1e-30 x^32) is subnormal or 0 in float32 and F loses its relative accuracy,
    but its error stays within max|a_j| * tiny * |x|^n / Q(x) (README, Numerics)."""
    numerator, denominator = STEEP_32
    x = torch.tensor([x_value])
    y = torch.ops.pau.forward(x, torch.tensor([numerator]), torch.tensor([denominator]),
                              "safe", 0)
    exact = float(exact_pau(x_value, numerator, denominator, "safe")[0])
    q = 1 + 1e-30 * x_value**32
    bound = max(map(abs, numerator)) * torch.finfo(torch.float32).tiny * x_value**32 / q
    assert abs(y.item() - exact) <= 2 * bound, (y.item(), exact, bound)


# Known operator bugs these tests found (still open); strict
# xfails so that each test must be re-enabled as soon as its bug is fixed.
GRADIENT_POINTS = [(dtype, magnitude) for dtype in X_DTYPES for magnitude in magnitudes(dtype)]


@pytest.mark.parametrize("variant", ["safe", "abs_sum"])
@pytest.mark.parametrize(
    "dtype,magnitude", GRADIENT_POINTS, ids=[f"{d}-{m:g}" for d, m in GRADIENT_POINTS]
)
def test_large_x_gradients(dtype: torch.dtype, magnitude: float, variant: str) -> None:
    """Gradients at large |x| are finite where the true value is representable, and right.

    Paper (5, 4) coefficients; where an exact coefficient gradient overflows the
    coefficient dtype, inf is the right answer.
    """
    numerator, denominator = paper_coefficients(1, compute_dtype(dtype))
    for sign in (1, -1):
        x = torch.tensor([sign * magnitude], dtype=torch.float64).to(dtype)
        # dF/dx of these coefficients is representable at every x in every dtype.
        dfdx = exact_pau(x.item(), numerator[0].tolist(), denominator[0].tolist(), variant)[1]
        assert math.isfinite(to_dtype_float(dfdx, dtype))
        check_gradients_of_one_element(x, numerator, denominator, variant, f"x = {x.item():g}")


def check_gradients_of_one_element(
    x: Tensor, numerator: Tensor, denominator: Tensor, variant: str, where: str
) -> None:
    """pau::backward at the one element x (g = 1) against the exact gradients: finite where
    they are (an exact gradient that overflows its dtype is inf), and within the tolerances."""
    dtype = x.dtype
    cdtype = compute_dtype(dtype)
    gx, gn, gd = torch.ops.pau.backward(torch.ones_like(x), x, numerator, denominator, variant, 0)
    _, dfdx, dfda, dfdb = exact_pau(
        x.item(), numerator[0].tolist(), denominator[0].tolist(), variant
    )
    want_x = torch.tensor([to_dtype_float(dfdx, dtype)], dtype=torch.float64)
    want_n = torch.tensor([[to_dtype_float(v, cdtype) for v in dfda]], dtype=torch.float64)
    want_d = torch.tensor([[to_dtype_float(v, cdtype) for v in dfdb]], dtype=torch.float64)
    for name, got, want in (
        ("grad_x", gx, want_x),
        ("grad_numerator", gn, want_n),
        ("grad_denominator", gd, want_d),
    ):
        finite = torch.isfinite(want)
        assert torch.isfinite(got[finite]).all(), (
            f"{where}: {name} {got.tolist()} is not finite where the exact {want.tolist()} is"
        )
    rtol_x = 2 * tolerance(dtype)[0]
    torch.testing.assert_close(
        gx.double(), want_x, rtol=rtol_x, atol=0, msg=lambda m, w=where: f"{w}: {m}"
    )
    # The low-order terms use scaled powers |x|^(j-n), subnormal (or 0) once
    # below the smallest normal: their absolute error (half the subnormal
    # spacing) is then scaled by g F / D ~ 3 |x|. Relative accuracy holds
    # everywhere else.
    finfo = torch.finfo(cdtype)
    atol = 8 * finfo.tiny * finfo.eps * max(1.0, abs(x.item()))
    rtol_c = 2 * tolerance(cdtype)[0]
    for got, want in ((gn, want_n), (gd, want_d)):
        torch.testing.assert_close(
            got.double(), want, rtol=rtol_c, atol=atol, msg=lambda m, w=where: f"{w}: {m}"
        )


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "tokens"])
def test_large_x_per_channel(layout: str) -> None:
    """Per-lane tiles (one group per channel) are overflow-safe too."""
    channels = 8
    numerator, denominator = paper_coefficients(channels, torch.float32)
    numerator = numerator * torch.linspace(0.5, 1.5, channels).unsqueeze(1)
    values = torch.tensor([1e3, -1e10, 1e20, -1e30, 3e38], dtype=torch.float32)
    if layout == "tokens":
        x, dim = values.reshape(5, 1).expand(5, channels).contiguous(), -1
    else:
        x, dim = values.reshape(5, 1, 1, 1).expand(5, channels, 3, 3).contiguous(), 1
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", dim)
    assert torch.isfinite(y).all()
    for c in range(channels):
        got = y.select(dim, c).reshape(5, -1)
        want = exact_outputs(values, numerator[c].tolist(), denominator[c].tolist(), "safe")
        assert_relative(got, want.unsqueeze(1).expand_as(got), rtol=tolerance(torch.float32)[0])


# ---------------------------------------------------------------------------
# Pure polynomials (b = 0) and mixed effective degrees.


@pytest.mark.parametrize("variant", VARIANTS)
def test_identity_polynomial_at_large_x(variant: str) -> None:
    """a_1 = 1, b = 0 is the identity: 1e12 must give 1e12, not NaN or inf."""
    x = torch.tensor([1e12, -1e12, 3e38, -3e38, 1e-12, 0.0], dtype=torch.float32)
    numerator = torch.tensor([[0.0, 1.0]])
    for n in (0, 1, 4):  # no denominator, or an all-zero one
        y = torch.ops.pau.forward(x, numerator, torch.zeros(1, n), variant, 0)
        torch.testing.assert_close(y, x, rtol=0, atol=0, msg=f"n = {n}")
    # The same with a zero-padded (5, 4) pair (not the compile-time (5, 4) path).
    padded = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]])
    y = torch.ops.pau.forward(x, padded, torch.zeros(1, 4), variant, 0)
    torch.testing.assert_close(y, x, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_polynomial_and_lower_denominator_degree_at_large_x(dtype: torch.dtype) -> None:
    """m > n: F grows like x^(m-n) and stays finite while that is representable."""
    cdtype = compute_dtype(dtype)
    numerator = torch.tensor([[0.5, -1.0, 0.25, 2.0]], dtype=cdtype)  # (3, 2)
    denominator = torch.tensor([[0.0, 4.0]], dtype=cdtype)
    top = {torch.float16: 2e2, torch.bfloat16: 1e18, torch.float32: 1e18, torch.float64: 1e150}
    x = torch.tensor([2.0, -7.0, 1e3, -1e6, top[dtype]], dtype=torch.float64).to(dtype)
    x = x[x.double().abs() <= top[dtype]]
    for variant in VARIANTS:
        y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
        want = exact_outputs(x, numerator[0].tolist(), denominator[0].tolist(), variant)
        assert torch.isfinite(y).all(), variant
        assert_relative(y, want, rtol=tolerance(dtype)[0])


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "tokens"])
def test_mixed_effective_degrees_per_channel_at_large_x(layout: str) -> None:
    """Channel 0 is the identity (b = 0), the others the paper's (5, 4) PAU.

    Each channel must be evaluated with its own effective degrees: channel 0 at
    x = 1e12 is 1e12 exactly as when it is alone (scaling it by x^-4 for its
    neighbours' sake underflows its denominator to 0 and gives inf).
    """
    channels = 4
    numerator, denominator = paper_coefficients(channels, torch.float32)
    numerator[0] = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    denominator[0] = 0.0
    values = torch.tensor([1e12, -1e12, 1e20, 5.0], dtype=torch.float32)
    if layout == "tokens":
        x, dim = values.reshape(4, 1).expand(4, channels).contiguous(), -1
    else:
        x, dim = values.reshape(4, 1, 1, 1).expand(4, channels, 2, 3).contiguous(), 1
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", dim)
    alone = torch.ops.pau.forward(values, numerator[:1], denominator[:1], "safe", 0)
    torch.testing.assert_close(alone, values, rtol=0, atol=0)
    channel0 = y.select(dim, 0).reshape(4, -1)
    torch.testing.assert_close(channel0, values.unsqueeze(1).expand_as(channel0), rtol=0, atol=0)
    grad_x = torch.ops.pau.backward(torch.ones_like(x), x, numerator, denominator, "safe", dim)[0]
    torch.testing.assert_close(
        grad_x.select(dim, 0), torch.ones_like(grad_x.select(dim, 0)), rtol=0, atol=0
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["channels_last", "tokens"])
def test_mixed_effective_degrees_match_reference(
    layout: str, dtype: torch.dtype, variant: str
) -> None:
    """Per-lane tiles whose channels differ in effective degrees, at ordinary x.

    Channels: full (5, 4); b_4 = 0; b = 0 (a polynomial); a_5 = a_4 = 0; all a = 0;
    then full again. Forward and all gradients against the reference.
    """
    channels = 6
    numerator, denominator = random_coefficients(channels, (5, 4), variant, seed=3)
    denominator[1, 3] = 0.0
    denominator[2] = 0.0
    numerator[3, 4:] = 0.0
    numerator[4] = 0.0
    if layout == "tokens":
        x, dim = random_x((7, 5, channels), dtype, seed=4), -1
    else:
        x, dim = random_x((3, channels, 5, 7), dtype, seed=4), 1
        x = x.contiguous(memory_format=torch.channels_last)
    check_against_reference(x, numerator, denominator, variant, dim)


def test_float64_coefficient_below_float32_range() -> None:
    """A float64 b_4 that rounds to 0 in float32 must act as 0 for float32 inputs.

    F(x) = x / (1 + |1e-60 x^4|) evaluated in float32 (b_4 -> 0) is x; the
    reference (coefficients cast to float32 first) agrees.
    """
    x = torch.tensor([1e12, -1e12, 3.0], dtype=torch.float32)
    numerator = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    denominator = torch.tensor([[0.0, 0.0, 0.0, 1e-60]], dtype=torch.float64)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 0)
    reference = reference_forward(x, numerator, denominator, "safe", 0)
    torch.testing.assert_close(reference, x.double(), rtol=0, atol=0)
    assert torch.isfinite(y).all(), y
    torch.testing.assert_close(y, x, rtol=tolerance(torch.float32)[0], atol=0)


# ---------------------------------------------------------------------------
# NaN, infinities, NaN coefficients.


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_nan_input_gives_nan(dtype: torch.dtype, variant: str) -> None:
    x = torch.tensor([0.5, float("nan"), -2.0, float("nan"), 1e3], dtype=dtype)
    numerator, denominator = paper_coefficients(1, compute_dtype(dtype))
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
    assert torch.isnan(y[[1, 3]]).all()
    assert torch.isfinite(y[[0, 2, 4]]).all()
    gx = torch.ops.pau.backward(torch.ones_like(x), x, numerator, denominator, variant, 0)[0]
    assert torch.isnan(gx[[1, 3]]).all()
    assert torch.isfinite(gx[[0, 2, 4]]).all()
    # NaN elements among many (vector lanes, per-lane tiles) stay confined to themselves.
    many = torch.linspace(-3, 3, 300, dtype=torch.float64).to(dtype).reshape(3, 100)
    many[1, 37] = float("nan")
    out = torch.ops.pau.forward(many, numerator, denominator, variant, 0)
    assert torch.isnan(out).sum() == 1 and torch.isnan(out[1, 37])


@pytest.mark.parametrize(
    "numerator, denominator",
    [([2.0], []), ([2.0, 0.0, 0.0], [0.0, 0.0]), ([0.0, 0.0], [0.0]), ([-3.0, 0.0], [0.0] * 4)],
    ids=["constant(0,0)", "constant(2,2)", "zero(1,1)", "constant(1,4)"],
)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_nan_input_gives_nan_for_effective_degrees_zero(
    dtype: torch.dtype, variant: str, numerator: list[float], denominator: list[float]
) -> None:
    """A constant or all-zero group (effective degrees (0, 0)) never evaluates a power of
    x, but NaN must still propagate, to F and grad_x, in vector lanes and the tail."""
    a = torch.tensor([numerator], dtype=compute_dtype(dtype))
    b = torch.tensor([denominator], dtype=compute_dtype(dtype)).reshape(1, len(denominator))
    x = torch.linspace(-5, 5, 300, dtype=torch.float64).to(dtype)
    nan_at = [0, 37, 150, 299]
    x[nan_at] = float("nan")
    x[[10, 20]] = torch.tensor([float("inf"), float("-inf")], dtype=dtype)
    finite = torch.ones(300, dtype=torch.bool)
    finite[nan_at] = False
    y = torch.ops.pau.forward(x, a, b, variant, 0)
    assert torch.isnan(y[nan_at]).all(), y[nan_at]
    assert (y[finite] == numerator[0]).all()
    gx = torch.ops.pau.backward(torch.ones_like(x), x, a, b, variant, 0)[0]
    assert torch.isnan(gx[nan_at]).all(), gx[nan_at]
    assert (gx[finite] == 0).all()
    alpha = torch.tensor(0.1, dtype=compute_dtype(dtype))
    seed = torch.tensor([3, 4])
    yr = torch.ops.pau.rpau_forward(x, a, b, alpha, seed, variant, 0)
    assert torch.isnan(yr[nan_at]).all() and torch.isfinite(yr[finite]).all()


def inf_limit(numerator: Tensor, denominator: Tensor, variant: str, sign: int) -> float:
    """lim F(x) as x -> sign * inf, from the leading coefficients."""
    m, n = numerator.numel() - 1, denominator.numel()
    a_m = numerator[-1].item()
    b_n = denominator[-1].item() if n else 0.0
    if n == 0:
        if m == 0:
            return a_m
        return math.copysign(math.inf, a_m * sign**m)
    b_eff = b_n * sign**n if variant == "plain" else abs(b_n)
    if m < n:
        return 0.0
    if m == n:
        return a_m * sign**m / b_eff
    return math.copysign(math.inf, a_m * sign**m / b_eff)


@pytest.mark.parametrize("degrees", [(5, 5), (4, 4), (5, 4), (2, 5), (1, 0), (0, 0)], ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_infinite_input_gives_limit(
    dtype: torch.dtype, variant: str, degrees: tuple[int, int]
) -> None:
    """±inf gives the limit of F: a_n sgn^n / |b_n| for m == n (a_n / b_n for plain)."""
    numerator, denominator = random_coefficients(1, degrees, variant, compute_dtype(dtype), seed=5)
    x = torch.tensor([float("inf"), float("-inf")], dtype=dtype)
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
    want = torch.tensor(
        [inf_limit(numerator[0], denominator[0], variant, s) for s in (1, -1)], dtype=torch.float64
    ).to(dtype)
    torch.testing.assert_close(y, want, rtol=tolerance(dtype)[0], atol=0)


@pytest.mark.parametrize("which", ["a_0", "a_m", "b_1", "b_n"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_nan_coefficient_propagates(variant: str, which: str) -> None:
    """A NaN coefficient is never silently dropped (e.g. by effective-degree logic)."""
    numerator, denominator = paper_coefficients(1, torch.float32)
    target, index = {
        "a_0": (numerator, 0),
        "a_m": (numerator, 5),
        "b_1": (denominator, 0),
        "b_n": (denominator, 3),
    }[which]
    target[0, index] = float("nan")
    x = torch.tensor([-1e6, -2.0, 0.5, 3.0, 1e6])
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
    assert torch.isnan(y).all(), y


# ---------------------------------------------------------------------------
# Around |x| = 1 (the switch to the 1/x evaluation), zero and tiny inputs.


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_around_one_and_zero(dtype: torch.dtype, variant: str) -> None:
    one = torch.tensor(1.0, dtype=dtype)
    up = torch.nextafter(one, torch.tensor(2.0, dtype=dtype))
    down = torch.nextafter(one, torch.tensor(0.0, dtype=dtype))
    tiny = torch.finfo(dtype).tiny
    values = torch.stack([one, up, down, -one, -up, -down])
    extra = torch.tensor([0.0, -0.0, tiny, -tiny, tiny * torch.finfo(dtype).eps], dtype=dtype)
    x = torch.cat([values, extra])
    numerator, denominator = random_coefficients(1, (5, 4), variant, compute_dtype(dtype), seed=8)
    check_against_reference(x, numerator, denominator, variant, 0)
    # F is continuous across |x| = 1: neighbours differ by about F'(1) ulp(1).
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 0).double()
    _, gx, _, _ = reference_grads(torch.ones_like(x), x, numerator, denominator, variant, 0)
    step = (up.double() - one.double()).item()
    for i, j in ((0, 1), (0, 2), (3, 4), (3, 5)):
        bound = 2 * step * gx[[i, j]].abs().max().item() + 2 * tolerance(dtype)[0] * y[i].abs()
        assert (y[i] - y[j]).abs() <= bound, (i, j, y[i].item(), y[j].item())


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_input_gradients_use_sign_zero(variant: str) -> None:
    """At x = 0, sign(0) = 0 as in torch.abs's gradient: gradients equal the reference's."""
    x = torch.zeros(5, dtype=torch.float64)
    numerator, denominator = random_coefficients(1, (5, 4), variant, seed=9)
    grad = torch.linspace(-1, 1, 5, dtype=torch.float64)
    got = torch.ops.pau.backward(grad, x, numerator, denominator, variant, 0)
    want = reference_grads(grad, x, numerator, denominator, variant, 0)[1:]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_overflowing_true_value_gives_inf(dtype: torch.dtype) -> None:
    """Where F itself exceeds the dtype's range the result is inf of the right sign."""
    x = torch.tensor([torch.finfo(dtype).max, -torch.finfo(dtype).max], dtype=dtype)
    y = torch.ops.pau.forward(x, torch.tensor([[0.0, 3.0]]), torch.zeros(1, 0), "safe", 0)
    assert y.tolist() == [math.inf, -math.inf]


# Plain powers: the CPU kernels evaluate a vector of elements with
# plain powers x^j when every |x| in it is within pau._C.plain_powers_limit of
# the coefficients, else with the scaled powers. Both must be right, alone and
# side by side in one vector.
def plain_limit(numerator: Tensor, denominator: Tensor, growth: float = 1.0) -> float:
    return pau._C.plain_powers_limit(
        numerator[0].tolist(),
        denominator[0].tolist(),
        numerator.dtype == torch.float64,
        growth,
    )


def test_plain_powers_limit_of_the_paper_coefficients() -> None:
    numerator, denominator = paper_coefficients(1, torch.float32)
    limit = plain_limit(numerator, denominator)
    # Far beyond any activation's input, far below where x^9 overflows float32.
    assert 1e3 < limit < 1e5
    # RPAU's perturbed coefficients may be up to twice as large.
    assert 1.0 < plain_limit(numerator, denominator, growth=2.0) < limit
    assert plain_limit(numerator.double(), denominator.double()) > 1e30


def test_plain_powers_limit_refuses_unusable_coefficients() -> None:
    numerator, denominator = paper_coefficients(1, torch.float64)
    with_nan = numerator.clone()
    with_nan[0, 2] = math.nan
    assert plain_limit(with_nan, denominator) == -1
    assert plain_limit(numerator, denominator.clone().fill_(math.nan)) == -1
    huge = numerator.clone()
    huge[0, 5] = 1e37  # in float32 even |x| = 1 could overflow the bounds' room
    assert plain_limit(huge.float(), denominator.float()) == -1
    assert plain_limit(huge, denominator) > 1  # not in float64
    # No denominator and a constant numerator: nothing can overflow.
    assert plain_limit(numerator[:, :1], denominator[:, :0]) == math.inf


def large_leading_coefficient(dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(5, 4) coefficients with a_5 so large that x^5 a_5 overflows where F = a_5 x does not."""
    a5 = 1e290 if dtype == torch.float64 else 1e30
    numerator = torch.tensor([[0.5, 1.0, -0.25, 0.125, 0.5, a5]], dtype=dtype)
    denominator = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=dtype)
    return numerator, denominator


def points_around(limit: float, dtype: torch.dtype) -> list[float]:
    """|x| on both sides of ``limit``, each sign, all representable in ``dtype``."""
    top = torch.finfo(dtype).max
    within = [0.5, 2.0, 0.9 * limit, 0.999 * limit]
    beyond = [1.001 * limit, 1.1 * limit, 10 * limit, 1e3 * limit]
    return [s * v for v in within + beyond if v < top for s in (1, -1)]


CASES = [(dtype, which) for dtype in X_DTYPES for which in ("paper", "large")]


@pytest.mark.parametrize("variant", ["safe", "abs_sum"])
@pytest.mark.parametrize("dtype,which", CASES, ids=[f"{d}-{w}" for d, w in CASES])
def test_both_sides_of_the_plain_powers_limit(dtype: torch.dtype, which: str, variant: str) -> None:
    """Forward and backward just within and beyond the limit, and far beyond, alone and in
    one vector: finite where the exact value is, and as accurate as anywhere else."""
    cdtype = compute_dtype(dtype)
    if which == "paper":
        numerator, denominator = paper_coefficients(1, cdtype)
    else:
        numerator, denominator = large_leading_coefficient(cdtype)
    limit = plain_limit(numerator, denominator)
    assert limit > 1
    if which == "large":
        # The case this guards: plain powers would overflow where F does not.
        assert limit < 1e2
    values = points_around(limit, dtype)
    # One tensor (vectors with both kinds of elements), then each element alone.
    together = torch.tensor(values, dtype=torch.float64).to(dtype)
    singles = [together[i : i + 1] for i in range(len(values))]
    rtol = tolerance(dtype)[0]
    for x in [together, *singles]:
        y = torch.ops.pau.forward(x, numerator, denominator, variant, 0)
        expected = exact_outputs(x, numerator[0].tolist(), denominator[0].tolist(), variant)
        assert_relative(y, expected, rtol=rtol)
    for x in singles:
        check_gradients_of_one_element(
            x, numerator, denominator, variant, f"x = {x.item():g} (limit {limit:g})"
        )
