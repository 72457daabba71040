"""pau::backward and the autograd glue: reference gradients, gradcheck, opcheck."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from helpers.inputs import DEGREES, VARIANTS, X_DTYPES, random_coefficients, random_x, smooth_inputs
from helpers.references import check_against_reference, op_grads, reference_grads
from helpers.tolerances import assert_close_scaled, compute_dtype
from torch import Tensor


@pytest.mark.parametrize("degrees", DEGREES, ids=lambda d: f"deg{d[0]}_{d[1]}")
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_grads_match_reference(
    device: str, dtype: torch.dtype, variant: str, degrees: tuple[int, int]
) -> None:
    x = random_x((3, 6, 41), dtype, seed=21, device=device)
    numerator, denominator = random_coefficients(
        3, degrees, variant, compute_dtype(dtype), seed=sum(degrees), device=device
    )
    check_against_reference(x, numerator, denominator, variant, 1)


# ---------------------------------------------------------------------------
# gradcheck in float64, away from the kinks of |A(x)| and |b_k x^k|.


def pau_fn(variant: str, dim: int) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    return lambda x, num, den: torch.ops.pau.forward(x, num, den, variant, dim)


GRADCHECK_CASES = [
    # (shape, dim, groups, degrees, channels_last)
    ((2, 3, 4), 1, 1, (5, 4), False),
    ((2, 3, 4), 1, 3, (5, 4), False),
    ((2, 4, 5), 1, 2, (3, 2), False),
    ((3, 2, 7), -1, 7, (4, 3), False),  # per-lane tiles (dim=-1, one group per channel)
    ((2, 4, 3, 2), 1, 4, (5, 4), True),  # channels_last, per channel
    ((2, 3, 3), 1, 3, (2, 0), False),  # no denominator
    ((2, 3, 3), 1, 1, (0, 1), False),  # constant numerator
    ((2, 4, 70), 1, 2, (5, 4), False),  # runs of 70: broadcast tiles
]


@pytest.mark.parametrize(
    "shape,dim,groups,degrees,channels_last",
    GRADCHECK_CASES,
    ids=[f"{c[0]}-dim{c[1]}-G{c[2]}-deg{c[3][0]}_{c[3][1]}{'-cl' * c[4]}" for c in GRADCHECK_CASES],
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck(
    device: str,
    variant: str,
    shape: tuple[int, ...],
    dim: int,
    groups: int,
    degrees: tuple[int, int],
    channels_last: bool,
) -> None:
    x, numerator, denominator = smooth_inputs(shape, groups, degrees, variant, dim, seed=len(shape))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    inputs = tuple(t.to(device).requires_grad_() for t in (x, numerator, denominator))
    assert torch.autograd.gradcheck(pau_fn(variant, dim), inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_large_inputs(device: str, variant: str) -> None:
    """|x| > 1 takes the 1/x branch of the overflow-safe evaluation; check it too."""
    x, numerator, denominator = smooth_inputs((2, 2, 5), 2, (5, 4), variant, 1, seed=3)
    # |x| up to 6, most entries > 1. The third derivative in b_k grows like
    # x^(3k), so the central differences' truncation error (eps^2 x^(3k), about
    # 1e-3 relative for plain) needs gradcheck's default rtol = 1e-3 here; the
    # float64 reference tests check the same gradients to 1e-13.
    x = x * 2
    if variant == "plain":
        denominator = denominator / 2**4  # keep 1 + A(x) >= 0.5 on the wider range
    inputs = tuple(t.to(device).requires_grad_() for t in (x, numerator, denominator))
    assert torch.autograd.gradcheck(pau_fn(variant, 1), inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


# ---------------------------------------------------------------------------
# opcheck: schema, fake (meta) kernels, autograd registration, AOT dispatch.

OPCHECK_CASES = [
    # (x dtype, shape, dim, groups, channels_last)
    (torch.float32, (2, 6, 5), 1, 1, False),
    (torch.float32, (2, 6, 5), 1, 3, False),
    (torch.float64, (2, 4, 3, 3), 1, 4, True),
    (torch.bfloat16, (3, 5, 8), -1, 8, False),
]


@pytest.mark.parametrize(
    "dtype,shape,dim,groups,channels_last",
    OPCHECK_CASES,
    ids=[f"{c[0]}-{c[1]}-G{c[3]}{'-cl' * c[4]}" for c in OPCHECK_CASES],
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_opcheck_forward_and_backward(
    device: str,
    variant: str,
    dtype: torch.dtype,
    shape: tuple[int, ...],
    dim: int,
    groups: int,
    channels_last: bool,
) -> None:
    x = random_x(shape, dtype, seed=31, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    numerator, denominator = random_coefficients(
        groups, (5, 4), variant, compute_dtype(dtype), device=device
    )
    # Coefficients (and x) require grad so that the autograd tests run.
    torch.library.opcheck(
        torch.ops.pau.forward.default,
        (
            x.clone().requires_grad_(),
            numerator.requires_grad_(),
            denominator.requires_grad_(),
            variant,
            dim,
        ),
    )
    grad = random_x(shape, dtype, seed=32, device=device)
    torch.library.opcheck(
        torch.ops.pau.backward.default,
        (grad, x, numerator.detach(), denominator.detach(), variant, dim),
    )


def test_opcheck_no_denominator(device: str) -> None:
    x = random_x((4, 3), torch.float32, seed=2, device=device)
    numerator, denominator = random_coefficients(3, (2, 0), "safe", torch.float32, device=device)
    torch.library.opcheck(
        torch.ops.pau.forward.default,
        (x, numerator.requires_grad_(), denominator.requires_grad_(), "safe", 1),
    )
    torch.library.opcheck(
        torch.ops.pau.backward.default,
        (torch.ones_like(x), x, numerator.detach(), denominator.detach(), "safe", 1),
    )


# ---------------------------------------------------------------------------
# The backward operator and autograd behaviour.


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_backward_op_equals_autograd(device: str, dtype: torch.dtype, variant: str) -> None:
    x = random_x((2, 4, 37), dtype, seed=41, device=device)
    numerator, denominator = random_coefficients(
        2, (5, 4), variant, compute_dtype(dtype), device=device
    )
    grad = random_x(x.shape, dtype, seed=42, device=device)
    gx, gn, gd = torch.ops.pau.backward(grad, x, numerator, denominator, variant, 1)
    _, ax, an, ad = op_grads(grad, x, numerator, denominator, variant, 1)
    for got, want in ((gx, ax), (gn, an), (gd, ad)):
        assert got.dtype == want.dtype and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_sum_backward_expanded_grad_output(device: str, dtype: torch.dtype) -> None:
    """y.sum().backward() hands the operator a stride-0 (expanded) grad_output."""
    x = random_x((3, 4, 50), dtype, seed=43, device=device).requires_grad_()
    numerator, denominator = random_coefficients(4, (5, 4), "safe", torch.float32, device=device)
    numerator.requires_grad_()
    denominator.requires_grad_()
    torch.ops.pau.forward(x, numerator, denominator, "safe", 1).sum().backward()
    ones = torch.ones_like(x)
    _, rx, rn, rd = reference_grads(ones, x, numerator, denominator, "safe", 1)
    assert_close_scaled(x.grad, rx, dtype, factor=2.0)
    # Sums of at most 150 terms of size <= ~3: float32 accumulation error is tiny.
    torch.testing.assert_close(numerator.grad.double().cpu(), rn, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(denominator.grad.double().cpu(), rd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("wanted", ["x", "numerator", "denominator"])
def test_only_some_inputs_require_grad(device: str, wanted: str) -> None:
    x = random_x((2, 3, 20), torch.float64, seed=44, device=device)
    numerator, denominator = random_coefficients(3, (5, 4), "safe", device=device)
    tensors = {"x": x, "numerator": numerator, "denominator": denominator}
    tensors[wanted].requires_grad_()
    y = torch.ops.pau.forward(tensors["x"], tensors["numerator"], tensors["denominator"], "safe", 1)
    assert y.requires_grad
    grad = random_x(x.shape, seed=45, device=device)
    (got,) = torch.autograd.grad(y, tensors[wanted], grad)
    expected = reference_grads(grad, x, numerator, denominator, "safe", 1)
    want = expected[1 + list(tensors).index(wanted)]
    torch.testing.assert_close(got.cpu(), want, rtol=1e-12, atol=1e-12)
    for name, tensor in tensors.items():
        if name != wanted:
            assert tensor.grad is None


def test_no_grad_gives_no_graph(device: str) -> None:
    x = random_x((2, 3, 4), torch.float32, seed=46, device=device).requires_grad_()
    numerator, denominator = random_coefficients(3, (5, 4), "safe", torch.float32, device=device)
    with torch.no_grad():
        y = torch.ops.pau.forward(x, numerator.requires_grad_(), denominator, "safe", 1)
    assert not y.requires_grad and y.grad_fn is None


def test_gradients_accumulate(device: str) -> None:
    x = random_x((2, 3, 10), torch.float64, seed=47, device=device).requires_grad_()
    coefficients = random_coefficients(3, (3, 2), "safe", device=device)
    numerator, denominator = (t.requires_grad_() for t in coefficients)
    for _ in range(2):
        torch.ops.pau.forward(x, numerator, denominator, "safe", 1).sum().backward()
    _, rx, rn, rd = reference_grads(torch.ones_like(x), x, numerator, denominator, "safe", 1)
    for got, want in ((x.grad, rx), (numerator.grad, rn), (denominator.grad, rd)):
        torch.testing.assert_close(got.cpu(), 2 * want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", X_DTYPES, ids=str)
def test_empty_input_gives_zero_coefficient_grads(device: str, dtype: torch.dtype) -> None:
    x = torch.empty(0, 4, 3, dtype=dtype, device=device)
    numerator, denominator = random_coefficients(
        2, (5, 4), "safe", compute_dtype(dtype), device=device
    )
    gx, gn, gd = torch.ops.pau.backward(torch.empty_like(x), x, numerator, denominator, "safe", 1)
    assert gx.shape == x.shape and gx.dtype == dtype
    torch.testing.assert_close(gn, torch.zeros_like(numerator), rtol=0, atol=0)
    torch.testing.assert_close(gd, torch.zeros_like(denominator), rtol=0, atol=0)


def test_grad_dtypes_follow_inputs(device: str) -> None:
    """grad_x has x's dtype; coefficient grads have the coefficients' dtype."""
    x = random_x((2, 3, 5), torch.bfloat16, seed=48, device=device)
    numerator, denominator = random_coefficients(1, (5, 4), "safe", torch.float64, device=device)
    gx, gn, gd = torch.ops.pau.backward(torch.ones_like(x), x, numerator, denominator, "safe", 1)
    assert (gx.dtype, gn.dtype, gd.dtype) == (torch.bfloat16, torch.float64, torch.float64)
    assert gn.is_contiguous() and gd.is_contiguous()
