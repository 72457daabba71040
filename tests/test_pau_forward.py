"""pau::forward against the plain-PyTorch reference: dtypes, variants, degrees, ISAs."""

from __future__ import annotations

from pathlib import Path

import pau
import pytest
import torch
from helpers.inputs import DEGREES, HALF_DTYPES, VARIANTS, X_DTYPES, random_coefficients, random_x
from helpers.machine import cpu_flags
from helpers.processes import run_python
from helpers.references import check_against_reference, reference_forward
from helpers.tolerances import compute_dtype
from torch import Tensor

TESTS = Path(__file__).resolve().parent


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("degrees", DEGREES, ids=lambda d: f"deg{d[0]}_{d[1]}")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_forward_matches_reference(
    device: str, dtype: torch.dtype, variant: str, degrees: tuple[int, int], groups: int
) -> None:
    x = random_x((2, 6, 45), dtype, seed=11, device=device)
    numerator, denominator = random_coefficients(
        groups, degrees, variant, compute_dtype(dtype), seed=sum(degrees) + groups, device=device
    )
    check_against_reference(x, numerator, denominator, variant, 1, grad_seed=None)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "x_dtype,coefficient_dtype",
    [
        (torch.float32, torch.float64),
        (torch.float16, torch.float64),
        (torch.bfloat16, torch.float64),
        (torch.float64, torch.float32),
    ],
    ids=str,
)
def test_mixed_coefficient_dtype(
    device: str, x_dtype: torch.dtype, coefficient_dtype: torch.dtype, variant: str
) -> None:
    """Coefficients in the other float dtype are rounded to the compute dtype (or widened)."""
    x = random_x((3, 4, 50), x_dtype, seed=3, device=device)
    numerator, denominator = random_coefficients(
        2, (5, 4), variant, coefficient_dtype, seed=4, device=device
    )
    check_against_reference(x, numerator, denominator, variant, 1)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "zeroed", ["a_m", "b_n", "all_b", "all_a", "b_middle"], ids=lambda z: f"zero_{z}"
)
def test_zero_leading_coefficients(device: str, variant: str, zeroed: str) -> None:
    """Zero leading coefficients lower the effective degrees (a different kernel path)."""
    x = random_x((4, 2, 300), torch.float32, seed=5, device=device)
    numerator, denominator = random_coefficients(
        2, (5, 4), variant, torch.float32, seed=6, device=device
    )
    if zeroed == "a_m":
        numerator[:, -1] = 0
    elif zeroed == "b_n":
        denominator[:, -1] = 0
    elif zeroed == "all_b":
        denominator.zero_()
    elif zeroed == "all_a":
        numerator.zero_()
    else:
        denominator[:, 1:3] = 0
    check_against_reference(x, numerator, denominator, variant, 1)
    check_against_reference(x.double(), numerator.double(), denominator.double(), variant, 1)


@pytest.mark.parametrize("coefficient_dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("x_dtype", [torch.float32, *HALF_DTYPES], ids=str)
@pytest.mark.parametrize("groups", [1, 6])
def test_half_precision_coefficients(
    device: str, groups: int, x_dtype: torch.dtype, coefficient_dtype: torch.dtype
) -> None:
    """model.half(): float16/bfloat16 coefficients are used in float32, and their gradients
    come back in their dtype."""
    x = random_x((3, 6, 33), x_dtype, seed=15, device=device)
    numerator, denominator = random_coefficients(
        groups, (5, 4), "safe", coefficient_dtype, seed=16, device=device
    )
    check_against_reference(x, numerator, denominator, "safe", 1)


def test_groups_use_their_own_coefficients(device: str) -> None:
    """Each channel group must use its row: swapping rows swaps the output channels."""
    x = random_x((2, 4, 33), torch.float32, seed=8, device=device)
    numerator, denominator = random_coefficients(
        2, (3, 2), "safe", torch.float32, seed=9, device=device
    )
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 1)
    swapped = torch.ops.pau.forward(x, numerator.flip(0), denominator.flip(0), "safe", 1)
    assert not torch.equal(y, swapped)
    single = [
        torch.ops.pau.forward(
            x[:, 2 * g : 2 * g + 2], numerator[g : g + 1], denominator[g : g + 1], "safe", 1
        )
        for g in range(2)
    ]
    torch.testing.assert_close(y, torch.cat(single, dim=1), rtol=0, atol=0)


def test_paper_identity_coefficients(device: str) -> None:
    """Known values: a_1 = 1, b = 0 is the identity; constant a_0 with n = 0 is constant."""
    x = random_x((1000,), torch.float32, seed=1, high=100.0, device=device)
    one, zeros = torch.tensor([[0.0, 1.0]], device=device), torch.zeros(1, 2, device=device)
    identity = torch.ops.pau.forward(x, one, zeros, "safe", 0)
    torch.testing.assert_close(identity, x, rtol=0, atol=0)
    constant = torch.ops.pau.forward(
        x, torch.tensor([[2.5]], device=device), torch.zeros(1, 0, device=device), "plain", 0
    )
    torch.testing.assert_close(constant, torch.full_like(x, 2.5), rtol=0, atol=0)
    # F(x) = x / (1 + |x|) (softsign) for safe and abs_sum with b_1 = 1.
    for variant in ("safe", "abs_sum"):
        softsign = torch.ops.pau.forward(
            x.double(),
            torch.tensor([[0.0, 1.0]], dtype=torch.float64, device=device),
            torch.tensor([[1.0]], dtype=torch.float64, device=device),
            variant,
            0,
        )
        torch.testing.assert_close(
            softsign, torch.nn.functional.softsign(x.double()), rtol=1e-15, atol=1e-15
        )


@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_defaults_are_safe_and_dim_1(device: str, dtype: torch.dtype) -> None:
    x = random_x((2, 4, 9), dtype, seed=2, device=device)
    numerator, denominator = random_coefficients(
        4, (5, 4), "safe", compute_dtype(dtype), seed=3, device=device
    )
    default = torch.ops.pau.forward(x, numerator, denominator)
    explicit = torch.ops.pau.forward(x, numerator, denominator, "safe", 1)
    torch.testing.assert_close(default, explicit, rtol=0, atol=0)
    # safe and plain differ where A(x) < 0, so the default is not silently "plain".
    plain = torch.ops.pau.forward(x, numerator, denominator, "plain", 1)
    assert not torch.equal(default, plain)


@pytest.mark.parametrize("variant", VARIANTS)
def test_functional_matches_operator(variant: str) -> None:
    x = random_x((3, 8, 5), torch.float32, seed=4)
    numerator, denominator = random_coefficients(8, (5, 4), variant, torch.float32, seed=5)
    y = pau.functional.pau(x, numerator, denominator, variant=variant, dim=1)
    torch.testing.assert_close(
        y, torch.ops.pau.forward(x, numerator, denominator, variant, 1), rtol=0, atol=0
    )


@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_inputs_are_not_modified(device: str, dtype: torch.dtype) -> None:
    x = random_x((4, 6, 7), dtype, seed=6, device=device)
    numerator, denominator = random_coefficients(
        3, (5, 4), "safe", compute_dtype(dtype), seed=7, device=device
    )
    copies = [t.clone() for t in (x, numerator, denominator)]
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 1)
    grad = torch.ones_like(y)
    torch.ops.pau.backward(grad, x, numerator, denominator, "safe", 1)
    for original, copy in zip((x, numerator, denominator), copies):
        torch.testing.assert_close(original, copy, rtol=0, atol=0)
    assert y.data_ptr() != x.data_ptr()


def ulps(actual: Tensor, expected: Tensor, dtype: torch.dtype) -> Tensor:
    """|actual - expected| in units of the last place of ``dtype`` at ``expected``."""
    _, exponent = torch.frexp(expected.float())
    finfo = torch.finfo(dtype)
    subnormal = finfo.smallest_normal * finfo.eps
    ulp = torch.ldexp(torch.full(exponent.shape, finfo.eps), exponent - 1).clamp(min=subnormal)
    return (actual.float() - expected.float()).abs() / ulp


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_half_is_float32_rounded_once(device: str, dtype: torch.dtype) -> None:
    """Halves compute in float32: the result is the float32 value rounded to the dtype.

    Rounding the float32 reference gives the same value except where the two
    float32 computations straddle a rounding boundary (then one ulp apart).
    Evaluating in half/bfloat16 arithmetic would be many ulps off.
    """
    x = random_x((8, 4, 256), dtype, seed=12, device=device)
    numerator, denominator = random_coefficients(
        1, (5, 4), "safe", torch.float32, seed=13, device=device
    )
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 1).cpu()
    rounded = reference_forward(x, numerator, denominator, "safe", 1).to(dtype)
    assert (ulps(y, rounded, dtype) <= 1.0).all()
    assert (y == rounded).double().mean() > 0.99


# ---------------------------------------------------------------------------
# Every instruction set the CPU offers, in a fresh process each.

_ISA_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch, pau
from helpers.inputs import VARIANTS, X_DTYPES, random_coefficients, random_x
from helpers.references import check_against_reference
from helpers.tolerances import compute_dtype
from pau.reference import rpau_reference
from pau.functional import rpau_noise as noise

assert pau._C.cpu_capability() == {expected!r}, pau._C.cpu_capability()
checked = 0
for dtype in X_DTYPES:
    cdtype = compute_dtype(dtype)
    for variant in VARIANTS:
        # (shape, dim, groups, degrees, channels_last): broadcast tiles with the
        # compile-time (5, 4) path and run-time degrees, per-lane tiles.
        for shape, dim, groups, degrees, channels_last in [
            ((3, 2, 301), 1, 1, (5, 4), False),
            ((3, 2, 301), 1, 2, (3, 2), False),
            ((2, 12, 5, 3), 1, 12, (5, 4), True),
            ((2, 7, 20), -1, 20, (8, 7), False),
        ]:
            x = random_x(shape, dtype, seed=checked)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            num, den = random_coefficients(groups, degrees, variant, cdtype, seed=checked)
            check_against_reference(x, num, den, variant, dim)
            checked += 1
# Blocks holding an |x| beyond the plain-powers limit take the scaled powers.
for dtype in X_DTYPES:
    x = random_x((3, 2, 301), dtype, seed=checked, high=2e3 if dtype == torch.float16 else 1e4)
    num, den = random_coefficients(1, (5, 4), "safe", compute_dtype(dtype), seed=checked)
    check_against_reference(x, num, den, "safe", 1)
    checked += 1
# RPAU, forward and backward, against the reference with the same noise.
seed = torch.tensor([1234, 5])
alpha = torch.tensor(0.2, dtype=torch.float64)
for dtype in (torch.float32, torch.float64):
    x = random_x((3, 4, 301), dtype, seed=checked).requires_grad_()
    num, den = (t.requires_grad_() for t in random_coefficients(4, (5, 4), "safe", dtype, seed=1))
    y = torch.ops.pau.rpau_forward(x, num, den, alpha, seed, "safe", 1)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, num, den), grad)
    e = noise(x.shape, seed, alpha, (5, 4), 4, 1)
    xr, nr, dr = (t.detach().double().requires_grad_() for t in (x, num, den))
    yr = rpau_reference(xr, nr, dr, e, "safe", 1)
    want = torch.autograd.grad(yr, (xr, nr, dr), grad.double())
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(y.double(), yr, rtol=tol, atol=tol)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, rtol=tol, atol=tol * w.abs().max().item())
    checked += 1
print("checked", checked)
"""

_ISAS = {
    "default": ("DEFAULT", frozenset()),
    "avx2": ("AVX2", frozenset({"avx2", "fma"})),
    "avx512": ("AVX512", frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})),
}


@pytest.mark.parametrize("isa", list(_ISAS))
def test_each_isa_matches_reference(isa: str) -> None:
    expected, flags = _ISAS[isa]
    if not flags <= cpu_flags():
        pytest.skip(f"this CPU lacks {sorted(flags - cpu_flags())}")
    out = run_python(
        _ISA_SCRIPT.format(tests=str(TESTS), expected=expected),
        env={"ATEN_CPU_CAPABILITY": isa},
    )
    assert "checked 54" in out
