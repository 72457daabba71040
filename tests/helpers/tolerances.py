"""Tolerances of the operator tests, all explicit (see :func:`tolerance`).

* float64: the operator and the float64 reference differ only by rounding in a
  few dozen multiply-adds, so ``rtol = atol = 1e-13`` (about 450 ulps; atol
  relative to the output scale ``max(1, max|reference|)``).
* float32: compared with the reference evaluated in float64 on the same inputs;
  ``rtol = atol = 1e-5`` (about 84 float32 ulps, covering degree-32 sums whose
  terms exceed the output).
* float16 / bfloat16: compute in float32 and round once, so the result is
  within half an ulp of the float32 value: ``rtol = eps / 2`` of the dtype plus
  the float32 tolerance (atol relative to the output scale). Compared with the
  reference evaluated in float32 on the same rounded inputs.
* gradients: grad_x gets twice the output tolerance; a coefficient gradient
  (a sum over elements) must be within 1e-5 (float32 compute) or 1e-13
  (float64) of sum_i |g_i dF_i/dc|, the natural scale of a sum's rounding.

Every comparison moves both sides to the CPU first, so the same checks serve
results computed on any device.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the operator computes in for inputs of ``dtype`` (halves compute in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol relative to the output scale) for results of dtype ``dtype``."""
    if dtype == torch.float64:
        return 1e-13, 1e-13
    float32 = 1e-5
    if dtype == torch.float32:
        return float32, float32
    return torch.finfo(dtype).eps / 2 + float32, float32


def scale_of(t: Tensor) -> float:
    """Output scale used for absolute tolerances: max(1, max |t|) over finite entries."""
    finite = t[torch.isfinite(t)]
    return max(1.0, finite.abs().max().item()) if finite.numel() else 1.0


def assert_close_scaled(
    actual: Tensor, expected: Tensor, dtype: torch.dtype, factor: float = 1.0, msg: str = ""
) -> None:
    """assert_close with :func:`tolerance` of ``dtype`` (times ``factor``), atol scaled."""
    rtol, atol = tolerance(dtype)
    expected = expected.detach().cpu()
    torch.testing.assert_close(
        actual.detach().cpu().to(expected.dtype),
        expected,
        rtol=rtol * factor,
        atol=atol * factor * scale_of(expected),
        equal_nan=True,
        msg=(lambda m: f"{msg}\n{m}") if msg else None,
    )


def assert_coefficient_grad_close(
    actual: Tensor, expected: Tensor, magnitude: Tensor, compute: torch.dtype, what: str
) -> None:
    """|actual - expected| <= tol * sum_i |g_i dF_i/dc|; tol 1e-5 (float32), 1e-13 (float64).

    The bound is relative to the sum of the magnitudes of the terms, the
    natural scale of a floating-point sum's error (cancellation included), plus
    half an ulp of the coefficients' dtype for the final rounding.
    """
    tol = 1e-13 if compute == torch.float64 else 1e-5
    actual, expected, magnitude = (t.detach().cpu() for t in (actual, expected, magnitude))
    error = (actual.double() - expected.double()).abs()
    # Plus the final rounding to the coefficients' dtype (float64 sums -> float32).
    rounding = torch.finfo(actual.dtype).eps / 2 * expected.double().abs()
    bound = tol * magnitude + rounding + 1e-300
    bad = ~(error <= bound)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.numel()} entries off; worst error/bound "
        f"{(error / bound).max().item():.3g}\nactual {actual}\nexpected {expected}"
    )
