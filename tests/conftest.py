"""Shared helpers for the pau operator tests: inputs, references, tolerances, subprocesses.

Tolerances (all explicit, see :func:`tolerance`):

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
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import MAX_EMAX, MIN_EMIN, Decimal, localcontext
from functools import cache
from pathlib import Path
from typing import Optional

import pau
import pytest
import torch
from pau.reference import pau_reference
from torch import Tensor

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


# .ci/gpu_check.sh gives its test step an end (a Unix time): tests that would
# start after it are skipped, so that pytest still writes its report in time.
TEST_DEADLINE = float(os.environ.get("PAU_TEST_DEADLINE", "inf"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if time.time() > TEST_DEADLINE:
        pytest.skip("time budget spent (PAU_TEST_DEADLINE)")


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype the operator computes in for inputs of ``dtype`` (halves compute in float32)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@contextmanager
def single_threaded() -> Iterator[None]:
    """Runs the plain-PyTorch reference on one thread.

    The references are chains of small elementwise ops; on a loaded machine
    every OpenMP region of a 2-thread pool can stall for milliseconds, which
    made some reference checks 100x slower. The operators under test keep the
    default thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    torch.testing.assert_close(
        actual.to(expected.dtype),
        expected,
        rtol=rtol * factor,
        atol=atol * factor * scale_of(expected),
        equal_nan=True,
        msg=(lambda m: f"{msg}\n{m}") if msg else None,
    )


def random_coefficients(
    groups: int,
    degrees: tuple[int, int] = (5, 4),
    variant: str = "safe",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
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
    return numerator.to(dtype), denominator.to(dtype)


def random_x(
    shape: Sequence[int], dtype: torch.dtype = torch.float64, seed: int = 1, high: float = X_MAX
) -> Tensor:
    """Uniform on [-high, high], drawn in float64 then rounded to ``dtype``."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(tuple(shape), generator=g, dtype=torch.float64) * 2 - 1) * high
    return x.to(dtype)


def paper_coefficients(
    groups: int = 1, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """The PAU paper's (5, 4) LReLU(0.01) coefficients, repeated for ``groups`` groups."""
    numerator = torch.tensor(PAPER_LRELU_NUMERATOR, dtype=dtype).repeat(groups, 1)
    denominator = torch.tensor(PAPER_LRELU_DENOMINATOR, dtype=dtype).repeat(groups, 1)
    return numerator, denominator


def reference_forward(
    x: Tensor, numerator: Tensor, denominator: Tensor, variant: str, dim: int
) -> Tensor:
    """What the operator's output should be, unrounded.

    float32/float64 inputs: the reference in float64 on the same inputs with the
    coefficients rounded to the compute dtype. Half inputs: the reference in
    float32 on the same rounded inputs (the operator's compute dtype).
    """
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
    ctype = compute_dtype(x.dtype)
    xr = x.detach().double().requires_grad_()
    nr = numerator.detach().to(ctype).double().requires_grad_()
    dr = denominator.detach().to(ctype).double().requires_grad_()
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
        grad = random_x(x.shape, x.dtype, seed=grad_seed, high=1.0)
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
    ctype = compute_dtype(x.dtype)
    num, den = numerator.detach().to(ctype).double(), denominator.detach().to(ctype).double()
    xd = x.detach().double()
    xd = xd.reshape(1) if xd.dim() == 0 else xd
    g = grad.detach().double().reshape(xd.shape).abs()
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


def assert_coefficient_grad_close(
    actual: Tensor, expected: Tensor, magnitude: Tensor, compute: torch.dtype, what: str
) -> None:
    """|actual - expected| <= tol * sum_i |g_i dF_i/dc|; tol 1e-5 (float32), 1e-13 (float64).

    The bound is relative to the sum of the magnitudes of the terms, the
    natural scale of a floating-point sum's error (cancellation included), plus
    half an ulp of the coefficients' dtype for the final rounding.
    """
    tol = 1e-13 if compute == torch.float64 else 1e-5
    error = (actual.double() - expected.double()).abs()
    # Plus the final rounding to the coefficients' dtype (float64 sums -> float32).
    rounding = torch.finfo(actual.dtype).eps / 2 * expected.double().abs()
    bound = tol * magnitude + rounding + 1e-300
    bad = ~(error <= bound)
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.numel()} entries off; worst error/bound "
        f"{(error / bound).max().item():.3g}\nactual {actual}\nexpected {expected}"
    )


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


# ---------------------------------------------------------------------------
# High-precision evaluation (200 significant decimal digits, no overflow).

HIGH_PRECISION = 200


def exact_pau(
    x: float, numerator: Sequence[float], denominator: Sequence[float], variant: str
) -> tuple[Decimal, Decimal, list[Decimal], list[Decimal]]:
    """F(x), dF/dx, dF/da_j, dF/db_k in 200-digit decimal arithmetic.

    The float inputs convert exactly; every operation rounds to 200 digits and
    the exponent range is practically unbounded, so for these tests the results
    are exact (sign(0) = 0, as torch.abs's gradient).
    """
    with localcontext() as ctx:
        ctx.prec = HIGH_PRECISION
        ctx.Emax = MAX_EMAX
        ctx.Emin = MIN_EMIN
        xd = Decimal(x)
        a = [Decimal(c) for c in numerator]
        b = [Decimal(c) for c in denominator]
        zero = Decimal(0)
        p = sum((aj * xd**j for j, aj in enumerate(a)), zero)
        dp = sum((j * aj * xd ** (j - 1) for j, aj in enumerate(a) if j), zero)
        big_a = sum((bk * xd ** (k + 1) for k, bk in enumerate(b)), zero)
        dbig_a = sum(((k + 1) * bk * xd**k for k, bk in enumerate(b)), zero)

        def sign(v: Decimal) -> int:
            return (v > 0) - (v < 0)

        if variant == "safe":
            q = 1 + abs(big_a)
            dq = sign(big_a) * dbig_a
            dq_db = [sign(big_a) * xd ** (k + 1) for k in range(len(b))]
        elif variant == "abs_sum":
            q = 1 + sum((abs(bk * xd ** (k + 1)) for k, bk in enumerate(b)), zero)
            dq = sum((sign(xd) * (k + 1) * abs(bk) * abs(xd**k) for k, bk in enumerate(b)), zero)
            dq_db = [sign(bk) * abs(xd ** (k + 1)) for k, bk in enumerate(b)]
        else:
            q = 1 + big_a
            dq = dbig_a
            dq_db = [xd ** (k + 1) for k in range(len(b))]
        f = p / q
        df_dx = (dp - f * dq) / q
        df_da = [xd**j / q for j in range(len(a))]
        df_db = [-f / q * c for c in dq_db]
        return +f, +df_dx, df_da, df_db


def to_dtype_float(v: Decimal, dtype: torch.dtype) -> float:
    """The value rounded to ``dtype`` (as a Python float); +-inf where it overflows ``dtype``."""
    as_float = float(v)  # correctly rounded; +-inf beyond float64's range
    return torch.tensor(as_float, dtype=torch.float64).to(dtype).item()


# ---------------------------------------------------------------------------
# Subprocesses and the machine.


def run_python(
    code: str,
    env: Optional[dict[str, str]] = None,
    timeout: float = 180.0,
    cwd: Optional[Path] = None,
) -> str:
    """Runs ``code`` in a fresh interpreter; returns stdout, fails with stderr on error."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=str(cwd) if cwd is not None else None,
    )
    assert result.returncode == 0, (
        f"subprocess failed ({result.returncode})\nstdout:\n{result.stdout}\n"
        f"stderr:\n{result.stderr}"
    )
    return result.stdout


@cache
def cpu_flags() -> frozenset[str]:
    """Flags of the first CPU in /proc/cpuinfo (empty if unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@pytest.fixture
def restore_threads():
    """Restores torch's intra-op thread count after the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def preset_like_coefficients(
    groups: int,
    degrees: tuple[int, int] = (5, 4),
    variant: str = "safe",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
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
    return numerator.to(dtype), denominator.to(dtype)


def pwlu_parameters(
    groups: int, intervals: int = 16, dtype: torch.dtype = torch.float64, seed: int = 0
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
    return points.to(dtype), bounds.to(dtype), slopes.to(dtype)


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
) -> Tensor:
    """Standard-normal inputs times ``scale``, drawn in float64, cast, channels-last on request."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def check_script_module_in_fresh_process(
    scripted: torch.jit.ScriptModule, model: torch.nn.Module, x: Tensor, tmp_path: Path
) -> None:
    """Saves ``scripted``; a fresh interpreter loads it with ``import pau`` alone, reproduces
    ``model(x)`` and backpropagates into every parameter."""
    path = tmp_path / "model.pt"
    scripted.save(str(path))
    torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    run_python(f"""
        import torch, pau
        io = torch.load({str(tmp_path / "io.pt")!r})
        model = torch.jit.load({str(path)!r})
        torch.testing.assert_close(model(io["x"]), io["y"])
        model(io["x"]).sum().backward()
        assert all(p.grad is not None for p in model.parameters())
    """)


def opcheck_pwlu(x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor) -> None:
    """torch.library.opcheck of pau::pwlu_forward (all parameters requiring grad) and of
    pau::pwlu_backward, on x's device, with channel dim 1."""
    torch.library.opcheck(
        torch.ops.pau.pwlu_forward,
        (x, points.requires_grad_(), bounds.requires_grad_(), slopes.requires_grad_(), 1),
    )
    grad = torch.randn_like(x)
    torch.library.opcheck(
        torch.ops.pau.pwlu_backward, (grad, x, points.detach(), bounds.detach(), slopes.detach(), 1)
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small-tensor tests (fitting, plotting,
    conversion): extra threads cost more than they save there, many times over on a
    busy machine. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
