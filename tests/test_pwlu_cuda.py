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

Tolerances: helpers/pwlu_references.py.
"""

from __future__ import annotations

import re
from typing import Optional

import pau
import pytest
import torch
from helpers.devices import requires_cuda
from helpers.inputs import BASIC_LAYOUTS, pwlu_parameters
from helpers.pwlu_references import (
    Result,
    assert_within,
    check_pwlu_against_reference,
    forward_bound,
    grad_x_bound,
    parameter_bounds,
    parameter_dtype,
    pwlu_x,
    random_grad,
    run_op,
)
from torch import Tensor

# Selected with the CUDA cases of the per-device tests by `pytest -m cuda`.
pytestmark = pytest.mark.cuda

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
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
    grad = random_grad(xc) if grad is None else grad
    cuda, ref = check_pwlu_against_reference(xc, points, bounds, slopes, dim, grad)
    if check_cpu:
        # The same positions u from the same tables: only rounding (fma)
        # differences and the summation orders, and both sides' final roundings.
        x, grad = x.cpu(), grad.cpu()
        cpu = run_op(x, points, bounds, slopes, dim, grad)
        bound = forward_bound(x, points, bounds, slopes, cpu.y, position=False)
        assert_within(cuda.y, cpu.y, 2 * bound, "CUDA vs CPU: forward")
        assert_within(
            cuda.grad_x, cpu.grad_x, 2 * grad_x_bound(x, cpu.grad_x), "CUDA vs CPU: grad_x"
        )
        names = ("grad_points", "grad_bounds", "grad_slopes")
        limits = parameter_bounds(x, points, ref, cpu[2:], position=False)
        for name, got, w, bound in zip(names, cuda[2:], cpu[2:], limits):
            assert_within(got, w, 2 * bound, f"CUDA vs CPU: {name}")
    return cuda


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
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_odd_size_beyond_a_million(dtype):
    """2^20 + 3 elements: more than one grid of blocks (the sizes 0 to 4097 are per-device
    tests in test_pwlu.py)."""
    numel = 2**20 + 3
    points, bounds, slopes = pwlu_parameters(1, 16, parameter_dtype(dtype))
    compare(pwlu_x((numel,), bounds, 16, 0, dtype), points, bounds, slopes, 0)
    # The same elements per channel (per-lane tiles, a channel per column).
    points, bounds, slopes = pwlu_parameters(3, 16, parameter_dtype(dtype), seed=3)
    x3 = pwlu_x((numel, 3), bounds, 16, 1, dtype)
    compare(x3, points, bounds, slopes, 1, check_cpu=False)


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
