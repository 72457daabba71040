"""PWLU checks that only CUDA has.

The checks that hold on every device (reference agreement, gradcheck, opcheck,
odd sizes, layouts, determinism, NaN/inf, breakpoints, bad input) are written
once in test_pwlu.py and run there per device. Here each comparison runs the
CUDA operator, the CPU operator and the plain-PyTorch reference (float64 on
the CPU, on the same rounded inputs) on inputs placed away from the
breakpoints, where dF/dx jumps and a last-ulp difference in the position u
would pick another interval. Also: device-mismatch errors, streams and the
device guard, unusable bounds (NaN for their group, where the CPU raises) and
the CUDA backward's interval limit for float64. Every test skips cleanly
without a GPU.

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

import re
from collections.abc import Sequence
from typing import NamedTuple, Optional

import pau
import pytest
import torch
from helpers.devices import requires_cuda
from helpers.inputs import BASIC_LAYOUTS, pwlu_parameters
from helpers.tolerances import compute_dtype
from pau.reference import pwlu_reference
from torch import Tensor

# Selected with the CUDA cases of the per-device tests by `pytest -m cuda`.
pytestmark = pytest.mark.cuda

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
HALF_DTYPES = (torch.float16, torch.bfloat16)
# helpers.inputs' layouts (short runs: per-lane tiles), then per channel with long
# runs (broadcast tiles), also channels-last, many groups and runs longer than
# one broadcast tile.
LAYOUTS = [
    *BASIC_LAYOUTS,
    ((2, 8, 32, 32), 1, 8, False),
    ((2, 8, 32, 32), 1, 8, True),
    ((5, 7, 300), -1, 300, False),
    ((2, 4, 130, 130), 1, 2, False),
]
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


def compare(
    x: Tensor,
    points: Tensor,
    bounds: Tensor,
    slopes: Tensor,
    dim: int,
    *,
    check_cpu: bool = True,
    grad: Optional[Tensor] = None,
) -> Result:
    """CUDA vs reference (and vs the CPU operator): forward and all four gradients.

    x and grad may be given on the GPU (to keep a layout that a copy to the GPU
    would not: a strided view, an expanded grad) or on the CPU.
    """
    xc = x if x.is_cuda else x.cuda()
    x = x.cpu()
    grad = random_grad(xc) if grad is None else grad
    gc = grad if grad.is_cuda else grad.cuda()
    grad = grad.cpu()
    cuda = run_op(xc, points.cuda(), bounds.cuda(), slopes.cuda(), dim, gc)
    assert cuda.y.dtype == x.dtype and cuda.y.device.type == "cuda"
    channels_last = xc.dim() == 4 and xc.is_contiguous(memory_format=torch.channels_last)
    # Dense layouts (channels-last included) are kept, anything else comes back contiguous.
    if xc.is_contiguous() or channels_last:
        assert cuda.y.stride() == xc.stride() and cuda.grad_x.stride() == xc.stride()
    else:
        assert cuda.y.is_contiguous() and cuda.grad_x.is_contiguous()
    for got, param in zip(cuda[2:], (points, bounds, slopes)):
        assert got.dtype == param.dtype and got.shape == param.shape and got.is_contiguous()

    ref = reference(x, points, bounds, slopes, dim, grad)
    want = ref.result
    assert_within(
        cuda.y,
        want.y,
        forward_bound(x, points, bounds, slopes, want.y),
        "CUDA vs reference: forward",
    )
    assert_within(
        cuda.grad_x, want.grad_x, grad_x_bound(x, want.grad_x), "CUDA vs reference: grad_x"
    )
    names = ("grad_points", "grad_bounds", "grad_slopes")
    limits = parameter_bounds(x, points, ref, want[2:], position=True)
    for name, got, w, bound in zip(names, cuda[2:], want[2:], limits):
        assert_within(got, w, bound, f"CUDA vs reference: {name}")
    if check_cpu:
        # The same positions u from the same tables: only rounding (fma)
        # differences and the summation orders, and both sides' final roundings.
        cpu = run_op(x, points, bounds, slopes, dim, grad)
        bound = forward_bound(x, points, bounds, slopes, cpu.y, position=False)
        assert_within(cuda.y, cpu.y, 2 * bound, "CUDA vs CPU: forward")
        assert_within(
            cuda.grad_x, cpu.grad_x, 2 * grad_x_bound(x, cpu.grad_x), "CUDA vs CPU: grad_x"
        )
        limits = parameter_bounds(x, points, ref, cpu[2:], position=False)
        for name, got, w, bound in zip(names, cuda[2:], cpu[2:], limits):
            assert_within(got, w, 2 * bound, f"CUDA vs CPU: {name}")
    return cuda


def parameter_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------


@requires_cuda
def test_build_has_pwlu_cuda_kernels():
    assert pau._C.has_cuda_kernels(), (
        "this pau build has no CUDA kernels although CUDA is available: reinstall with "
        "`pip install --no-build-isolation .` next to a CUDA toolkit (see cuda/README.md)"
    )
    for op in ("pau::pwlu_forward", "pau::pwlu_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), op


@requires_cuda
@pytest.mark.parametrize("intervals", [1, 16, 256])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_matches_cpu_and_reference(shape, dim, groups, channels_last, dtype, intervals):
    points, bounds, slopes = pwlu_parameters(
        groups, intervals, parameter_dtype(dtype), seed=intervals
    )
    x = pwlu_x(shape, bounds, intervals, dim, dtype, channels_last)
    compare(x, points, bounds, slopes, dim)


@requires_cuda
@pytest.mark.parametrize(
    "shape,dim,groups,channels_last",
    [
        ((4, 6, 5, 7), 1, 1, False),
        ((4, 6, 5, 7), 1, 6, True),
        ((2, 9, 48), -1, 4, False),
        ((2, 4, 130, 130), 1, 2, False),
    ],
)
def test_4096_intervals_float32(shape, dim, groups, channels_last):
    points, bounds, slopes = pwlu_parameters(groups, 4096, torch.float32, seed=5)
    x = pwlu_x(shape, bounds, 4096, dim, torch.float32, channels_last)
    compare(x, points, bounds, slopes, dim)


@requires_cuda
@pytest.mark.parametrize("parameter", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("groups", [1, 6])
def test_half_precision_parameters(groups, dtype, parameter):
    """model.half(): float16/bfloat16 parameters, used in float, gradients in their dtype."""
    points, bounds, slopes = pwlu_parameters(groups, 16, parameter)
    x = pwlu_x((3, 6, 33), bounds, 16, 1, dtype)
    compare(x, points, bounds, slopes, 1)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("numel", [1, 7, 129, 4097, 2**20 + 3])
def test_odd_sizes(numel, dtype):
    points, bounds, slopes = pwlu_parameters(1, 16, parameter_dtype(dtype))
    compare(pwlu_x((numel,), bounds, 16, 0, dtype), points, bounds, slopes, 0)
    # The same elements per channel (per-lane tiles, a channel per column).
    points, bounds, slopes = pwlu_parameters(3, 16, parameter_dtype(dtype), seed=3)
    x3 = pwlu_x((numel, 3), bounds, 16, 1, dtype)
    compare(x3, points, bounds, slopes, 1, check_cpu=numel < 2**20)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_non_contiguous_input_and_grad(dtype):
    # float64 runs on every device in test_pwlu.py; these dtypes need the bounds here.
    points, bounds, slopes = pwlu_parameters(5, 7, parameter_dtype(dtype))
    # Channel 2c of base is in group c of the view's 5 channels.
    base = pwlu_x((4, 10, 6, 8), bounds.repeat_interleave(2, 0), 7, 1, dtype).cuda()
    x = base[:, ::2, 1:, ::3]  # strided view on the GPU, not dense
    assert not x.is_contiguous() and x.is_cuda
    compare(x, points, bounds, slopes, 1)
    # A dense view with a storage offset (misaligned for vector loads).
    p1, b1, s1 = pwlu_parameters(1, 16, parameter_dtype(dtype))
    misaligned = pwlu_x((1001,), b1, 16, 0, dtype).cuda()[1:]
    assert misaligned.storage_offset() == 1
    compare(misaligned, p1, b1, s1, 0)
    # grad_output with strides unlike x's, and an expanded one (y.sum().backward()).
    grad = random_grad(torch.empty(3, 5, 5, 4, dtype=dtype)).cuda().permute(3, 2, 1, 0)
    grad = grad.transpose(1, 2)
    assert grad.shape == x.shape and not grad.is_contiguous()
    compare(x, points, bounds, slopes, 1, grad=grad)
    ones = torch.ones((), dtype=dtype, device="cuda").expand(x.shape)
    compare(x, points, bounds, slopes, 1, grad=ones)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nan_and_inf_inputs_match_cpu(dtype):
    """NaN and +-inf give the CPU's results (test_pwlu.py checks the values on every device)."""
    points, bounds, slopes = pwlu_parameters(2, 16, dtype=torch.float32)
    slopes[0] = torch.tensor([0.0, 0.0])
    slopes[1] = torch.tensor([-0.5, 2.0])
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([[nan, inf, -inf], [nan, inf, -inf]], dtype=dtype)
    params = [t.cuda() for t in (points, bounds, slopes)]
    y = torch.ops.pau.pwlu_forward(x.cuda(), *params, 0).cpu()
    # Zero outer slopes: the limits are Y_N and Y_0 exactly.
    assert torch.equal(y[0, 1:], torch.stack([points[0, -1], points[0, 0]]).to(dtype))
    torch.testing.assert_close(
        y, torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 0), rtol=0, atol=0, equal_nan=True
    )
    ones = torch.ones_like(x)
    got = [t.cpu() for t in torch.ops.pau.pwlu_backward(ones.cuda(), x.cuda(), *params, 0)]
    want = torch.ops.pau.pwlu_backward(ones, x, points, bounds, slopes, 0)
    # dL/dx is one product per element: the CPU's bit for bit.
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0, equal_nan=True)
    # NaN and inf reach the sums they touch as on the CPU (NaN and inf in the same places).
    for g, w in zip(got[1:], want[1:]):
        torch.testing.assert_close(g, w, rtol=1e-6, atol=0, equal_nan=True)


@requires_cuda
def test_device_mismatch_errors_name_the_problem():
    x = torch.randn(2, 6, 3)
    points, bounds, slopes = pwlu_parameters(3, 4, torch.float32)
    forward, backward = torch.ops.pau.pwlu_forward, torch.ops.pau.pwlu_backward
    with pytest.raises(RuntimeError, match="same device.*x on cuda.*points on cpu"):
        forward(x.cuda(), points, bounds, slopes, 1)
    with pytest.raises(RuntimeError, match="same device.*x on cpu.*points on cuda"):
        forward(x, points.cuda(), bounds.cuda(), slopes.cuda(), 1)
    with pytest.raises(RuntimeError, match="same device.*bounds on cpu"):
        forward(x.cuda(), points.cuda(), bounds, slopes.cuda(), 1)
    with pytest.raises(RuntimeError, match="same device.*slopes on cpu"):
        backward(x.cuda(), x.cuda(), points.cuda(), bounds.cuda(), slopes, 1)
    with pytest.raises(RuntimeError, match="grad_output is on cpu but x is on cuda"):
        backward(x, x.cuda(), points.cuda(), bounds.cuda(), slopes.cuda(), 1)
    if torch.cuda.device_count() > 1:
        with pytest.raises(RuntimeError, match="same device"):
            forward(
                x.to("cuda:0"), points.to("cuda:1"), bounds.to("cuda:1"), slopes.to("cuda:1"), 1
            )


@requires_cuda
@pytest.mark.parametrize(
    "bad", [(1.0, 1.0), (1.0, 0.5), (float("nan"), 1.0), (-float("inf"), 1.0), (0.0, 1e-44)]
)
def test_unusable_bounds_give_nan_for_their_group_only(bad):
    # The CPU backend raises (test_pwlu.py); the CUDA backend builds its tables
    # on the device without waiting for the stream, so the group's outputs
    # and gradients become NaN instead, and the other groups are unaffected.
    # float32: (0, 1e-44) is too close for 4 intervals there (N / width overflows).
    x = torch.randn(2, 6, 3, device="cuda", requires_grad=True)
    points, bounds, slopes = (
        t.cuda().requires_grad_() for t in pwlu_parameters(3, 4, torch.float32)
    )
    crossed = bounds.detach().clone()
    crossed[2] = torch.tensor(bad)
    crossed.requires_grad_()
    y = torch.ops.pau.pwlu_forward(x, points, crossed, slopes, 1)
    group = torch.arange(6, device="cuda") // 2  # channel c belongs to group c // 2
    assert torch.isnan(y[:, group == 2]).all()
    want = torch.ops.pau.pwlu_forward(x.cpu(), points.cpu(), bounds.cpu(), slopes.cpu(), 1)
    torch.testing.assert_close(y[:, group != 2].cpu(), want[:, group.cpu() != 2])
    y.sum().backward()
    assert torch.isnan(x.grad[:, group == 2]).all()
    assert torch.isfinite(x.grad[:, group != 2]).all()
    assert torch.isnan(points.grad[2]).all() and torch.isfinite(points.grad[:2]).all()


def cuda_interval_limit(dtype: torch.dtype) -> Optional[int]:
    """The N limit the CUDA backend states for x of ``dtype`` (None: no limit below 4096)."""
    points, bounds, slopes = (t.cuda() for t in pwlu_parameters(1, 4096, torch.float64))
    x = torch.randn(3, 1, 2, device="cuda").to(dtype)
    try:
        torch.ops.pau.pwlu_forward(x, points.to(dtype), bounds.to(dtype), slopes.to(dtype), 1)
    except ValueError as error:
        match = re.search(r"at most N = (\d+) intervals for (\w+) x", str(error))
        assert match, str(error)
        return int(match.group(1))
    return None


@requires_cuda
def test_float64_interval_limit_is_a_clear_error_and_exact():
    limit = cuda_interval_limit(torch.float64)
    assert limit is not None and 16 <= limit < 4096
    points, bounds, slopes = (t.cuda() for t in pwlu_parameters(2, 4096))
    x = torch.randn(2, 2, 5, device="cuda", dtype=torch.float64)
    message = (
        rf"pwlu: the CUDA kernels support at most N = {limit} intervals for float64 x"
        r".*got N = 4096"
    )
    with pytest.raises(ValueError, match=message):
        torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 1)
    with pytest.raises(ValueError, match=message):
        torch.ops.pau.pwlu_backward(torch.ones_like(x), x, points, bounds, slopes, 1)
    # The CPU has no such limit, and float32 x on CUDA neither.
    torch.ops.pau.pwlu_forward(x.cpu(), points.cpu(), bounds.cpu(), slopes.cpu(), 1)
    assert cuda_interval_limit(torch.float32) is None
    # The stated limit itself works: forward and backward against the reference.
    points, bounds, slopes = pwlu_parameters(2, limit)
    compare(pwlu_x((2, 2, 300), bounds, limit, 1, torch.float64), points, bounds, slopes, 1)
    p, b, s = (t.cuda() for t in pwlu_parameters(2, limit + 1))
    with pytest.raises(ValueError, match=rf"at most N = {limit} intervals.*got N = {limit + 1}"):
        torch.ops.pau.pwlu_forward(x, p, b, s, 1)


@requires_cuda
def test_other_device_and_stream():
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    points, bounds, slopes = pwlu_parameters(6, 16, torch.float32)
    x = pwlu_x((4, 6, 33), bounds, 16, 1, torch.float32)
    want = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 1)
    stream = torch.cuda.Stream(device)
    with torch.cuda.device(0), torch.cuda.stream(stream):
        y = torch.ops.pau.pwlu_forward(
            x.to(device), points.to(device), bounds.to(device), slopes.to(device), 1
        )
    stream.synchronize()
    assert y.device == device
    torch.testing.assert_close(y.cpu(), want, rtol=1e-5, atol=1e-5)


@requires_cuda
def test_module_trains_on_cuda_like_on_cpu():
    torch.manual_seed(0)
    cpu = pau.PWLU(num_points=8, groups=4)
    with torch.no_grad():
        cpu.points.add_(0.1 * torch.randn_like(cpu.points))
    cuda = pau.PWLU(num_points=8, groups=4).cuda()
    cuda.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 4, 9, 9) * 2
    for module, data in ((cpu, x), (cuda, x.cuda())):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        module(data).square().mean().backward()
        optimizer.step()
    for name, value in cpu.state_dict().items():
        torch.testing.assert_close(
            cuda.state_dict()[name].cpu(), value, rtol=1e-5, atol=1e-6, msg=name
        )
