"""pau::pwlu_forward / pau::pwlu_backward and pau.PWLU on the CPU.

Reference agreement per dtype, gradcheck, opcheck, breakpoints and bounds,
outer pieces, N = 1 and 256, groups and layouts, determinism, NaN/inf, the
statistic-based realignment, state dicts, compilers and bad input.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pau
import pytest
import torch
from helpers.inputs import OP_LAYOUTS as LAYOUTS
from helpers.inputs import layout_x
from helpers.inputs import pwlu_parameters as parameters
from helpers.machine import check_each_isa
from helpers.opchecks import check_compiled_matches_eager, opcheck_pwlu
from helpers.processes import (
    check_exported_program_in_fresh_process,
    check_script_module_in_fresh_process,
)
from helpers.pwlu_references import (
    check_pwlu_against_reference,
    parameter_dtype,
    pwlu_x,
    random_grad,
)
from pau.functional import pwlu_segments, segment_tables
from pau.reference import pwlu_reference


def make_x(shape, dtype=torch.float64, channels_last=False, seed: int = 1, device="cpu"):
    return layout_x(shape, dtype, channels_last, seed, scale=2.5, device=device)


def op_and_reference_grads(x, points, bounds, slopes, dim, grad=None):
    """(y, grads) of the operator on x's device and of the reference on the CPU, both
    w.r.t. all four inputs; the operator's results come back on the CPU."""
    inputs = [t.detach().clone().requires_grad_() for t in (x, points, bounds, slopes)]
    y = torch.ops.pau.pwlu_forward(*inputs, dim)
    # Drawn on the CPU in y's layout: the same numbers on every device.
    grad = torch.randn_like(y.cpu()).to(y.device) if grad is None else grad
    grads = torch.autograd.grad(y, inputs, grad)
    ref_inputs = [t.detach().cpu().clone().requires_grad_() for t in (x, points, bounds, slopes)]
    y_ref = pwlu_reference(*ref_inputs, dim)
    grads_ref = torch.autograd.grad(y_ref, ref_inputs, grad.cpu())
    return (y.detach().cpu(), [g.cpu() for g in grads]), (y_ref, grads_ref)


@pytest.mark.parametrize("intervals", [1, 5, 16, 256])
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_forward_backward_match_reference_float64(
    device, intervals, shape, dim, groups, channels_last
):
    x = make_x(shape, channels_last=channels_last, device=device)
    params = parameters(groups, intervals, device=device)
    (y, grads), (y_ref, grads_ref) = op_and_reference_grads(x, *params, dim)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# Output tolerances relative to the output scale.
TOLERANCES = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize(
    "intervals,groups,channels_last",
    [(16, 1, False), (16, 8, True), (40, 8, False), (40, 1, False)],
)
def test_low_precision_match_reference(device, dtype, intervals, groups, channels_last):
    x = make_x((3, 8, 33, 5), dtype=dtype, channels_last=channels_last)
    points, bounds, slopes = parameters(groups, intervals, dtype=torch.float32)
    grad = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    inputs = [t.to(device).requires_grad_() for t in (x, points, bounds, slopes)]
    y = torch.ops.pau.pwlu_forward(*inputs, 1)
    assert y.dtype == dtype
    got = [g.cpu() for g in torch.autograd.grad(y, inputs, grad.to(device))]
    y = y.detach().cpu()
    # The reference in float64 on the same (rounded) inputs.
    ref = [t.detach().double().requires_grad_() for t in (x, points, bounds, slopes)]
    y64 = pwlu_reference(*ref, 1)
    want = torch.autograd.grad(y64, ref, grad.double())
    tol = TOLERANCES[dtype]
    torch.testing.assert_close(y.double(), y64, rtol=tol, atol=tol * y64.abs().max().item())
    gx, rx = got[0].double(), want[0]
    torch.testing.assert_close(gx, rx, rtol=tol, atol=tol * rx.abs().max().item())
    # Parameter gradients are sums over elements, accumulated in double.
    for g, r in zip(got[1:], want[1:]):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


def away_from_breakpoints(shape, bounds, intervals, seed=2):
    """x for gradcheck: inside intervals at 10-90% of their width, or outside the bounds."""
    gen = torch.Generator().manual_seed(seed)
    left, right = bounds[0, 0].item(), bounds[0, 1].item()
    width = (right - left) / intervals
    k = torch.randint(-2, intervals + 2, shape, generator=gen).double()
    fraction = 0.1 + 0.8 * torch.rand(shape, generator=gen, dtype=torch.float64)
    return left + (k + fraction) * width


@pytest.mark.parametrize("groups,intervals,dim", [(1, 4, 1), (3, 5, 1), (3, 1, 1), (4, 6, -1)])
def test_gradcheck(device, groups, intervals, dim):
    points, bounds, slopes = parameters(1, intervals)
    points, bounds, slopes = (t.repeat(groups, 1) for t in (points, bounds, slopes))
    points = points + 0.1 * torch.arange(groups, dtype=torch.float64)[:, None]
    shape = (2, 3 * groups, 4) if dim == 1 else (2, 3, groups)
    x = away_from_breakpoints(shape, bounds, intervals)
    inputs = tuple(t.to(device).requires_grad_() for t in (x, points, bounds, slopes))
    assert torch.autograd.gradcheck(lambda *a: torch.ops.pau.pwlu_forward(*a, dim), inputs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_opcheck(device, dtype):
    x = make_x((2, 6, 5), dtype=dtype, device=device)
    points, bounds, slopes = parameters(3, 8, dtype=torch.float32, device=device)
    opcheck_pwlu(x, points, bounds, slopes)


def test_breakpoints_and_bounds_exactly():
    # d = 0.5 and 1/d = 2 are exact, so every breakpoint is hit exactly.
    intervals = 8
    bounds = torch.tensor([[-2.0, 2.0]], dtype=torch.float64)
    points = torch.randn(
        1, intervals + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    slopes = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    x = torch.linspace(-2, 2, intervals + 1, dtype=torch.float64)
    (y, grads), (y_ref, grads_ref) = op_and_reference_grads(
        x, points, bounds, slopes, 0, grad=torch.ones_like(x)
    )
    assert torch.equal(y, points[0])
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # Each breakpoint belongs to the piece on its right: B_R to the right outer piece.
    steps = torch.diff(points[0]) * 2  # slope of each interval, 1/d = 2
    torch.testing.assert_close(grads[0], torch.cat([steps, slopes[0, 1:]]))
    # Point i gets exactly the element at breakpoint i.
    torch.testing.assert_close(grads[1], torch.ones(1, intervals + 1, dtype=torch.float64))


def test_outside_both_bounds(device):
    points, bounds, slopes = parameters(1, 16, device=device)
    x = torch.tensor([-1e3, -10.0, -3.5, 3.5, 10.0, 1e3], dtype=torch.float64, device=device)
    y = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 0)
    left, right = bounds[0]
    expect = torch.where(
        x < 0, points[0, 0] + (x - left) * slopes[0, 0], points[0, -1] + (x - right) * slopes[0, 1]
    )
    torch.testing.assert_close(y, expect, rtol=1e-14, atol=1e-12)
    (_, grads), (_, grads_ref) = op_and_reference_grads(x, points, bounds, slopes, 0)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # Outside the bounds only Y_0, Y_N, the slopes and the nearer bound get gradients.
    assert torch.all(grads[1][0, 1:-1] == 0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_nan_and_inf_inputs(device, dtype):
    points, bounds, slopes = parameters(2, 16, dtype=torch.float32)
    slopes[0] = torch.tensor([0.0, 0.0])  # zero slopes: the limits are Y_0 and Y_N
    slopes[1] = torch.tensor([-0.5, 2.0])
    points, bounds, slopes = (t.to(device) for t in (points, bounds, slopes))
    inf, nan = float("inf"), float("nan")
    x = torch.tensor([[nan, inf, -inf], [nan, inf, -inf]], dtype=dtype, device=device)
    y = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 0).float()
    assert torch.isnan(y[:, 0]).all()
    torch.testing.assert_close(
        y[0, 1:], torch.stack([points[0, -1], points[0, 0]]).to(dtype).float()
    )
    assert torch.equal(y[1, 1:], torch.tensor([inf, inf], device=device))
    g = torch.ops.pau.pwlu_backward(torch.ones_like(x), x, points, bounds, slopes, 0)[0].float()
    assert torch.isfinite(g[:, 1:]).all()


def test_large_finite_inputs_stay_finite():
    module = pau.PWLU(init="identity", dim=0)
    for dtype, value in [
        (torch.float32, 3e38),
        (torch.bfloat16, 3e38),
        (torch.float16, 6e4),
        (torch.float64, 1e308),
    ]:
        x = torch.tensor([value, -value], dtype=dtype)
        with torch.no_grad():
            y = module(x)
        assert torch.isfinite(y).all(), (dtype, y)
        torch.testing.assert_close(y, x)


@pytest.mark.parametrize("numel", [0, 1, 7, 129, 4097])
def test_odd_sizes(device, numel):
    x = make_x((numel,), dtype=torch.float32, device=device)
    points, bounds, slopes = parameters(1, 16, dtype=torch.float32, device=device)
    (y, grads), (y_ref, grads_ref) = op_and_reference_grads(x, points, bounds, slopes, 0)
    torch.testing.assert_close(y, y_ref)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_non_contiguous_input_and_grad(device):
    x = make_x((4, 10, 6, 8), device=device)[:, ::2, 1:, ::3]  # strided view, not dense
    grad = torch.randn(3, 5, 5, 4, dtype=torch.float64).to(device)
    grad = grad.permute(3, 2, 1, 0).transpose(1, 2)
    assert grad.shape == x.shape and not grad.is_contiguous()
    params = parameters(5, 7, device=device)
    # Strided grad_output, and an expanded one (what y.sum().backward() passes).
    ones = torch.ones((), dtype=x.dtype, device=device).expand(x.shape)
    for g in (grad, ones):
        (y, grads), (y_ref, grads_ref) = op_and_reference_grads(x, *params, 1, grad=g)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        for got, want in zip(grads, grads_ref):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # A dense view with a storage offset (misaligned for vector loads).
    misaligned = make_x((1001,), device=device)[1:]
    assert misaligned.storage_offset() == 1
    params = parameters(1, 16, device=device)
    (y, grads), (y_ref, grads_ref) = op_and_reference_grads(misaligned, *params, 0)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("numel", [1, 7, 129, 4097])
def test_odd_sizes_every_dtype(device, numel, dtype):
    """Every dtype against the reference, with the bounds of helpers.pwlu_references (x
    away from the breakpoints)."""
    points, bounds, slopes = parameters(1, 16, parameter_dtype(dtype))
    x = pwlu_x((numel,), bounds, 16, 0, dtype).to(device)
    check_pwlu_against_reference(x, points, bounds, slopes, 0)
    # The same elements per channel (per-lane tiles, a channel per column).
    points, bounds, slopes = parameters(3, 16, parameter_dtype(dtype), seed=3)
    x3 = pwlu_x((numel, 3), bounds, 16, 1, dtype).to(device)
    check_pwlu_against_reference(x3, points, bounds, slopes, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_non_contiguous_input_and_grad_every_dtype(device, dtype):
    points, bounds, slopes = parameters(5, 7, parameter_dtype(dtype))
    # Channel 2c of base is in group c of the view's 5 channels.
    base = pwlu_x((4, 10, 6, 8), bounds.repeat_interleave(2, 0), 7, 1, dtype).to(device)
    x = base[:, ::2, 1:, ::3]  # strided view, not dense
    assert not x.is_contiguous()
    check_pwlu_against_reference(x, points, bounds, slopes, 1)
    # A dense view with a storage offset (misaligned for vector loads).
    p1, b1, s1 = parameters(1, 16, parameter_dtype(dtype))
    misaligned = pwlu_x((1001,), b1, 16, 0, dtype).to(device)[1:]
    assert misaligned.storage_offset() == 1
    check_pwlu_against_reference(misaligned, p1, b1, s1, 0)
    # grad_output with strides unlike x's, and an expanded one (y.sum().backward()).
    grad = random_grad(torch.empty(3, 5, 5, 4, dtype=dtype)).to(device).permute(3, 2, 1, 0)
    grad = grad.transpose(1, 2)
    assert grad.shape == x.shape and not grad.is_contiguous()
    check_pwlu_against_reference(x, points, bounds, slopes, 1, grad=grad)
    ones = torch.ones((), dtype=dtype, device=device).expand(x.shape)
    check_pwlu_against_reference(x, points, bounds, slopes, 1, grad=ones)


@pytest.mark.parametrize("parameter", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("groups", [1, 6])
def test_half_precision_parameters(device, groups, dtype, parameter):
    """model.half(): float16/bfloat16 parameters, used in float, gradients in their dtype."""
    points, bounds, slopes = parameters(groups, 16, parameter)
    x = pwlu_x((3, 6, 33), bounds, 16, 1, dtype).to(device)
    check_pwlu_against_reference(x, points, bounds, slopes, 1)


def test_zero_dim_input(device):
    x = torch.tensor(0.7, dtype=torch.float64, device=device)
    points, bounds, slopes = parameters(1, 16, device=device)
    y = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 0)
    assert y.dim() == 0
    torch.testing.assert_close(y, pwlu_reference(x, points, bounds, slopes, 0))


def parameter_grads(x, points, bounds, slopes, dim):
    params = [t.detach().clone().requires_grad_() for t in (points, bounds, slopes)]
    y = torch.ops.pau.pwlu_forward(x, *params, dim)
    return torch.autograd.grad(y, params, torch.ones_like(y))


@pytest.mark.parametrize(
    "shape,dim,groups,intervals,channels_last",
    [
        ((8, 16, 64, 64), 1, 1, 16, False),
        ((8, 16, 64, 64), 1, 16, 40, False),
        ((8, 16, 32, 32), 1, 16, 16, True),
        ((64, 100, 48), -1, 48, 256, False),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_parameter_grads_bitwise_deterministic(
    device, dtype, shape, dim, groups, intervals, channels_last
):
    # Off the CPU the thread counts change nothing: the runs are plain repetitions.
    x = make_x(shape, dtype=dtype, channels_last=channels_last, device=device)
    parameter_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    params = parameters(groups, intervals, dtype=parameter_dtype, device=device)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first = parameter_grads(x, *params, dim)
        for n in (2, max(threads, 2)):
            torch.set_num_threads(n)
            again = parameter_grads(x, *params, dim)
            assert all(torch.equal(a, b) for a, b in zip(first, again))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("intervals", [1, 15, 16, 17, 31, 32, 33])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_interval_counts_around_the_register_tables(dtype, intervals):
    """One group: N <= 16 (AVX2, float) or N <= 32 float / 16 double (AVX-512) look the
    points up in registers, more intervals in memory; every count on both sides agrees
    with the reference, forward and backward."""
    generator = torch.Generator().manual_seed(intervals)
    x = (torch.randn(2, 3, 700, generator=generator, dtype=torch.float64) * 2.5).to(dtype)
    points = torch.randn(1, intervals + 1, generator=generator, dtype=dtype)
    bounds = torch.tensor([[-2.0, 2.5]], dtype=dtype)
    slopes = torch.randn(1, 2, generator=generator, dtype=dtype)
    args = [t.clone().requires_grad_() for t in (x, points, bounds, slopes)]
    y = torch.ops.pau.pwlu_forward(*args, 1)
    grad = torch.randn(y.shape, generator=generator, dtype=dtype)
    got = torch.autograd.grad(y, args, grad)
    ref = [t.detach().double().requires_grad_() for t in (x, points, bounds, slopes)]
    y_ref = pwlu_reference(*ref, 1)
    want = torch.autograd.grad(y_ref, ref, grad.double())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(y.double(), y_ref, rtol=tol, atol=tol)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * max(1.0, b.abs().max()))


def test_each_isa_matches_reference():
    script = textwrap.dedent("""
        import torch, pau
        from pau.reference import pwlu_reference
        x = torch.randn(3, 8, 17, 9) * 2.5
        for n in (16, 32, 40):
            points = torch.randn(8, n + 1)
            bounds = torch.tensor([[-2.0, 2.5]]).repeat(8, 1)
            slopes = torch.randn(8, 2)
            for xx in (x, x.contiguous(memory_format=torch.channels_last)):
                args = [t.clone().requires_grad_() for t in (xx, points, bounds, slopes)]
                y = torch.ops.pau.pwlu_forward(*args, 1)
                got = torch.autograd.grad(y.sum(), args)
                ref = [t.clone().requires_grad_() for t in (xx, points, bounds, slopes)]
                y_ref = pwlu_reference(*ref, 1)
                want = torch.autograd.grad(y_ref.sum(), ref)
                torch.testing.assert_close(y, y_ref)
                for a, b in zip(got, want):
                    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)
        print(pau._C.cpu_capability())
    """)
    # The rest of this file already runs the ISA this process uses.
    check_each_isa(script, skip_current=True)


def test_functional_and_module_presets():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(pau.PWLU(dim=0)(x), torch.relu(x))
    torch.testing.assert_close(pau.PWLU(dim=0, init="identity")(x), x)
    torch.testing.assert_close(
        pau.PWLU(dim=0, init="leaky_relu")(x), torch.nn.functional.leaky_relu(x, 0.01)
    )
    act = pau.PWLU(num_points=8, groups=4)
    assert act.points.shape == (4, 9) and act.bounds.shape == (4, 2)
    assert act.slopes.shape == (4, 2)
    assert "num_points=8, groups=4, dim=1, init='relu', bound=3.0" in repr(act)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(pau.functional.pwlu(x, act.points, act.bounds, act.slopes), act(x))


def test_module_training_step_and_state_dict_round_trip():
    act = pau.PWLU(num_points=8, groups=4)
    x = torch.randn(8, 4, 5, 5) * 2
    optimizer = torch.optim.SGD(act.parameters(), lr=0.1)
    with pau.pwlu_collect_statistics(act):
        act(x)
    act(x).square().mean().backward()
    optimizer.step()
    other = pau.PWLU(num_points=8, groups=4)
    missing = other.load_state_dict(act.state_dict())
    assert not missing.missing_keys and not missing.unexpected_keys
    assert set(act.state_dict()) == {
        "points",
        "bounds",
        "slopes",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    for key, value in act.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    assert int(other.num_batches_tracked) == 1
    torch.testing.assert_close(other(x), act(x))


def test_realignment_on_shifted_gaussian():
    torch.manual_seed(0)
    model = torch.nn.Sequential(pau.PWLU(num_points=16))
    act = model[0]
    before = [p.detach().clone() for p in act.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    with pau.pwlu_collect_statistics(model):
        assert act.collecting and not any(p.requires_grad for p in act.parameters())
        for _ in range(20):
            x = (2 + 0.5 * torch.randn(64, 8, 6, 6)).requires_grad_()
            model(x).sum().backward()  # PWLU parameters are frozen: no gradient, no update
            optimizer.step()
        model.eval()
        model(torch.full((2, 8), 100.0))  # eval forwards do not count
        model.train()
        for p, q in zip(before, act.parameters()):
            assert torch.equal(p, q)
    assert not act.collecting and all(p.requires_grad for p in act.parameters())
    left, right = act.bounds[0].tolist()
    assert abs(left - 0.5) < 0.05 and abs(right - 3.5) < 0.05
    assert act.slopes[0].tolist() == [0.0, 1.0]
    x = torch.linspace(left, right, 1001)
    with torch.no_grad():
        torch.testing.assert_close(act(x.reshape(1, -1)).flatten(), torch.relu(x))
    model(2 + 0.5 * torch.randn(4, 8)).sum().backward()
    assert all(p.grad is not None for p in act.parameters())


def test_statistics_per_group_and_momentum():
    act = pau.PWLU(num_points=4, groups=2)
    pau.pwlu_collect_statistics(act)
    a = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # channel 0: mean 2, var 1; channel 1: 4, 4
    b = torch.tensor([[5.0, 0.0], [5.0, 0.0]])  # channel 0: mean 5, var 0; channel 1: 0, 0
    act(a)
    torch.testing.assert_close(act.running_mean, torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(act.running_var, torch.tensor([1.0, 4.0]))
    act(b)
    torch.testing.assert_close(act.running_mean, torch.tensor([0.9 * 2 + 0.5, 0.9 * 4]))
    torch.testing.assert_close(act.running_var, torch.tensor([0.9, 0.9 * 4]))
    assert pau.pwlu_realign(act) == 1
    std = act.running_var.sqrt()
    torch.testing.assert_close(
        act.bounds, torch.stack([act.running_mean - 3 * std, act.running_mean + 3 * std], 1)
    )
    # The relu kink lies inside the second group's interval: relu at the
    # breakpoints, linear in between, constant left and x - B_R + Y_N right.
    left, right = act.bounds[1].tolist()
    breakpoints = torch.linspace(left, right, 5)
    x = torch.cat([torch.tensor([left - 5.0]), breakpoints, torch.tensor([right + 5.0])])
    with torch.no_grad():
        y = act(torch.stack([x, x], 1))[:, 1]
    torch.testing.assert_close(y, torch.relu(x))


def test_realign_without_statistics_warns_and_keeps_parameters():
    act = pau.PWLU()
    before = act.bounds.detach().clone()
    pau.pwlu_collect_statistics(act)
    with pytest.warns(UserWarning, match="no statistics"):
        assert pau.pwlu_realign(act) == 0
    assert torch.equal(act.bounds, before) and act.bounds.requires_grad
    # model.apply style: every module, PWLU or not.
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), pau.PWLU(dim=-1))
    model.apply(pau.pwlu_collect_statistics)
    assert model[1].collecting


# Inference tables: pau.functional.segment_tables / pwlu_segments against the operator.


def segments_tolerance(points, bounds, slopes, dtype) -> float:
    """A few ulp of the terms both evaluations round: max |Y| + N max |S_k| + width max |K|.

    The operator's position u = (x - B_L) N / width carries a rounding error
    of up to N ulp, scaled by S_k; the tables' (x - B_L) b_k the same; so
    neither is within a few ulp of F itself where F is near 0 inside a steep
    interval.
    """
    p, b, k = (t.double() for t in (points, bounds, slopes))
    n = p.shape[1] - 1
    scale = (
        p.abs().amax(1) + n * p.diff(dim=1).abs().amax(1) + (b[:, 1] - b[:, 0]) * k.abs().amax(1)
    )
    return 4 * torch.finfo(dtype).eps * float(scale.max())


def assert_segments_match(y, y_op, tolerance):
    assert torch.equal(y.isnan(), y_op.isnan())
    finite = torch.isfinite(y_op)
    assert torch.equal(y[~finite & ~y_op.isnan()], y_op[~finite & ~y_op.isnan()])  # same infinities
    error = (y[finite].double() - y_op[finite].double()).abs()
    assert error.numel() == 0 or float(error.max()) <= tolerance, float(error.max()) / tolerance


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("intervals", [1, 5, 16, 256])
@pytest.mark.parametrize("groups", [1, 3])
def test_segments_match_operator_at_breakpoints_bounds_and_specials(dtype, intervals, groups):
    points, bounds, slopes = parameters(groups, intervals, dtype=dtype)
    slopes[0] = 0  # flat outer pieces: +-inf give Y_0 and Y_N
    rows = []
    for g in range(groups):
        left, right = bounds[g]
        steps = torch.arange(intervals + 1, dtype=dtype)
        breakpoints = left + steps * ((right - left) / intervals)
        near = [
            torch.nextafter(v, torch.tensor(s, dtype=dtype))
            for v in (left, right)
            for s in (-float("inf"), float("inf"))
        ]
        big = torch.finfo(dtype).max / 4
        specials = torch.tensor(
            [float("inf"), -float("inf"), float("nan"), big, -big, 0.0], dtype=dtype
        )
        spread = torch.linspace(float(left) - 2, float(right) + 2, 301, dtype=dtype)
        rows.append(torch.cat([breakpoints, torch.stack(near), bounds[g], specials, spread]))
    x = torch.stack(rows)
    y_op = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 0)
    y = pwlu_segments(x, segment_tables(points, bounds, slopes, dtype), 0)
    assert_segments_match(y, y_op, segments_tolerance(points, bounds, slopes, dtype))
    # The specials themselves: NaN stays NaN; +-inf on group 0's flat outer
    # pieces give Y_N and Y_0, on the sloped ones the signed infinity.
    inf_at = intervals + 1 + 4 + 2
    assert torch.isnan(y[:, inf_at + 2]).all()
    assert y[0, inf_at] == points[0, -1] and y[0, inf_at + 1] == points[0, 0]
    for g in range(1, groups):
        assert y[g, inf_at] == float("inf") * slopes[g, 1].sign()
        assert y[g, inf_at + 1] == -float("inf") * slopes[g, 0].sign()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("intervals", [1, 16, 256])
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_segments_match_operator_in_every_layout(
    dtype, intervals, shape, dim, groups, channels_last
):
    points, bounds, slopes = parameters(groups, intervals, dtype=dtype, seed=intervals)
    x = make_x(shape, dtype=dtype, channels_last=channels_last)
    y_op = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, dim)
    y = pwlu_segments(x, segment_tables(points, bounds, slopes, dtype), dim)
    assert y.shape == x.shape and y.dtype == dtype
    assert_segments_match(y, y_op, segments_tolerance(points, bounds, slopes, dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_segments_half_inputs_compute_in_float32(dtype):
    points, bounds, slopes = parameters(4, 16, dtype=torch.float32)
    x = make_x((3, 4, 33), dtype=dtype)
    y_op = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 1)
    y = pwlu_segments(x, segment_tables(points, bounds, slopes), 1)
    assert y.dtype == dtype
    # Both round a float32 result once: at most one ulp of the half type apart.
    torch.testing.assert_close(
        y.float(), y_op.float(), rtol=torch.finfo(dtype).eps, atol=torch.finfo(dtype).eps
    )


def test_module_segment_tables_equal_eval_forward():
    act = pau.PWLU(num_points=16, groups=4, dim=-1, init="leaky_relu").eval()
    with torch.no_grad():
        act.points.add_(0.1 * torch.randn_like(act.points))
    x = make_x((5, 7, 4), dtype=torch.float32)
    tables = act.segment_tables()
    assert tables.intercepts.shape == tables.slopes.shape == (4, 19)
    assert not tables.slopes.requires_grad
    with torch.no_grad():
        y_op = act(x)
    assert_segments_match(
        pwlu_segments(x, tables, act.dim),
        y_op,
        segments_tolerance(act.points, act.bounds, act.slopes, torch.float32),
    )


def test_segments_compile_export_torchscript():
    points, bounds, slopes = parameters(3, 16, dtype=torch.float32)
    tables = segment_tables(points, bounds, slopes)
    x = make_x((2, 3, 5, 4), dtype=torch.float32)
    expected = pwlu_segments(x, tables, 1)

    class Inference(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return pwlu_segments(x, tables, 1)

    compiled = torch.compile(lambda t: pwlu_segments(t, tables, 1), fullgraph=True)
    torch.testing.assert_close(compiled(x), expected)
    program = torch.export.export(Inference(), (x,))
    torch.testing.assert_close(program.module()(x), expected)
    scripted = torch.jit.script(pwlu_segments)
    torch.testing.assert_close(scripted(x, tables, 1), expected)


def test_torch_compile_fullgraph():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pau.PWLU(groups=4), torch.nn.Flatten())
    x = torch.randn(2, 3, 8, 8)
    check_compiled_matches_eager(model, x)
    # Eval mode runs the same operator (no statistics, no separate inference path).
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x))


def test_export_save_load_in_fresh_process(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), pau.PWLU(groups=6, dim=-1, num_points=7))
    check_exported_program_in_fresh_process(model, torch.randn(3, 5), tmp_path)


def test_torchscript_save_load_in_fresh_process(tmp_path):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 1), pau.PWLU(groups=4, num_points=5), pau.PWLU(init="leaky_relu")
    )
    x = torch.randn(2, 2, 5, 5)
    check_script_module_in_fresh_process(torch.jit.script(model), model, x, tmp_path)


def test_errors_name_the_problem(device):
    x = torch.randn(2, 6, 3).to(device)
    points, bounds, slopes = parameters(3, 4, dtype=torch.float32, device=device)
    op = torch.ops.pau.pwlu_forward
    cases = [
        (lambda: op(x.long(), points, bounds, slopes, 1), TypeError, "x must be float32"),
        (lambda: op(x, points.int(), bounds, slopes, 1), TypeError, "points must be float32"),
        (lambda: op(x, points, bounds.double(), slopes, 1), TypeError, "dtype of points"),
        (lambda: op(x, points, bounds.to("meta"), slopes, 1), RuntimeError, "same device"),
        (
            lambda: op(x, points[0], bounds, slopes, 1),
            ValueError,
            r"points must have shape \(G, N\+1\)",
        ),
        (
            lambda: op(x, points[:, :1], bounds, slopes, 1),
            ValueError,
            r"number of intervals N must be in \[1, ",
        ),
        (
            lambda: op(x, torch.zeros(3, 4098, device=device), bounds, slopes, 1),
            ValueError,
            r"number of intervals N must be in \[1, 4096\]",
        ),
        (
            lambda: op(x, points, bounds[:2], slopes, 1),
            ValueError,
            r"bounds must have shape \(G, 2\)",
        ),
        (
            lambda: op(x, points, bounds, slopes[:, :1], 1),
            ValueError,
            r"slopes must have shape \(G, 2\)",
        ),
        (
            lambda: op(x, points[:2], bounds[:2], slopes[:2], 2),
            ValueError,
            "not divisible by the number of groups",
        ),
        (lambda: op(x, points, bounds, slopes, 3), IndexError, "dim 3 is out of range"),
        (
            lambda: torch.ops.pau.pwlu_backward(x[:1], x, points, bounds, slopes, 1),
            ValueError,
            "grad_output shape",
        ),
        (
            lambda: torch.ops.pau.pwlu_backward(x.double(), x, points, bounds, slopes, 1),
            TypeError,
            "grad_output dtype",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_unusable_bounds_and_module_arguments_raise():
    # The CUDA kernels build their tables on the device without waiting for
    # the stream: there unusable bounds give NaN for their group instead
    # (test_pwlu_cuda.py).
    x = torch.randn(2, 6, 3)
    points, bounds, slopes = parameters(3, 4, dtype=torch.float32)
    op = torch.ops.pau.pwlu_forward
    swapped = bounds.flip(1)
    nan_bounds = bounds.clone()
    nan_bounds[1, 0] = float("nan")
    cases = [
        (
            lambda: op(x, points, swapped, slopes, 1),
            ValueError,
            r"B_L < B_R in every group; group 0 has \(B_L, B_R\)",
        ),
        (lambda: op(x, points, nan_bounds, slopes, 1), ValueError, "group 1"),
        (
            lambda: op(x, points, torch.tensor([[0.0, 1e-44]] * 3), slopes, 1),
            ValueError,
            "too close",
        ),
        (lambda: pau.PWLU(num_points=0), ValueError, "num_points"),
        (lambda: pau.PWLU(groups=0), ValueError, "groups"),
        (lambda: pau.PWLU(init="tanh"), ValueError, "unknown init"),
        (lambda: pau.PWLU(bound=-1.0), ValueError, "bound"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    # A user edit that crosses the bounds is caught at the next call.
    act = pau.PWLU(groups=2)
    with torch.no_grad():
        act.bounds[1] = torch.tensor([1.0, 1.0])
    with pytest.raises(ValueError, match=r"group 1 has \(B_L, B_R\) = \(1, 1\)"):
        act(torch.randn(2, 2))


def test_double_backward_builds_a_graph():
    """Double backward works (tests/test_higher_order_pwlu.py checks the values)."""
    x = torch.randn(4, 3, requires_grad=True)
    points, bounds, slopes = parameters(1, 4, dtype=torch.float32)
    y = torch.ops.pau.pwlu_forward(x, points.requires_grad_(), bounds, slopes, 1)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert gx.grad_fn is not None


# Bounds and interval counts whose interior breakpoints include exactly
# representable ones where N / (B_R - B_L) rounded to nearest came out one ulp
# low, so that u = (x_k - B_L) * inv_width rounded below k (found by a search
# over N <= 70 and a few bounds): in float32 (24, 0.5, 10), (48, ...), (62,
# -2, 5); in float64 (68, -2, 5), (68, -3, 0.5), (1000, 0.5, 10). The others
# are common settings (the default N = 16 on [-3, 3]) and non-dyadic widths.
BREAKPOINT_CASES = [
    (16, -3.0, 3.0),
    (24, 0.5, 10.0),
    (48, 0.5, 10.0),
    (54, 0.5, 10.0),
    (62, -2.0, 5.0),
    (62, -3.0, 0.5),
    (68, -2.0, 5.0),
    (68, -3.0, 0.5),
    (1000, 0.5, 10.0),
    (10, -1.0, 2.0),
    (7, -0.75, 1.5),
    (96, -3.0, 3.0),
    (12, -1.5, 4.5),
]


def exact_interior_breakpoints(intervals, left, right, dtype):
    """(k, x_k) for the interior breakpoints B_L + k (B_R - B_L) / N that ``dtype``
    holds exactly and whose x_k - B_L is exact in ``dtype`` (the convention's premise)."""
    from fractions import Fraction

    lo, hi = Fraction(left), Fraction(right)
    found = []
    for k in range(1, intervals):
        exact = lo + k * (hi - lo) / intervals
        x = torch.tensor(float(exact), dtype=dtype)
        if Fraction(x.item()) != exact:
            continue
        if Fraction((x - torch.tensor(left, dtype=dtype)).item()) != exact - lo:
            continue
        found.append((k, x.item()))
    return found


def check_breakpoints_take_the_right_piece(dtype, device="cpu"):
    """At every exact interior breakpoint F = Y_k and dF/dx is interval k's slope."""
    checked = 0
    for intervals, left, right in BREAKPOINT_CASES:
        found = exact_interior_breakpoints(intervals, left, right, dtype)
        if not found:
            continue
        k = torch.tensor([i for i, _ in found])
        x = torch.tensor([v for _, v in found], dtype=dtype, device=device, requires_grad=True)
        # Alternating points: neighbouring intervals have slopes of opposite sign.
        points = torch.tensor(
            [[(-1.0) ** i * (1 + 0.5 * (i % 3)) for i in range(intervals + 1)]],
            dtype=dtype,
            device=device,
        )
        bounds = torch.tensor([[left, right]], dtype=dtype, device=device)
        slopes = torch.tensor([[0.5, 2.0]], dtype=dtype, device=device)
        y = torch.ops.pau.pwlu_forward(x, points, bounds, slopes, 0)
        (grad_x,) = torch.autograd.grad(y.sum(), x)
        y64 = points[0].double().cpu()
        right_slope = (y64[k + 1] - y64[k]) * intervals / (right - left)
        rtol = 1e-5 if dtype == torch.float32 else 1e-12
        where = f"N = {intervals}, bounds ({left}, {right}), k = {k.tolist()}"
        torch.testing.assert_close(y.double().cpu(), y64[k], rtol=rtol, atol=rtol, msg=where)
        torch.testing.assert_close(grad_x.double().cpu(), right_slope, rtol=rtol, atol=0, msg=where)
        checked += len(found)
    assert checked > 150


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_interior_breakpoints_take_the_right_piece(device, dtype):
    check_breakpoints_take_the_right_piece(dtype, device)


def test_interior_breakpoints_take_the_right_piece_on_every_isa():
    script = textwrap.dedent(f"""
        import sys, torch, pau
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_pwlu import check_breakpoints_take_the_right_piece
        for dtype in (torch.float32, torch.float64):
            check_breakpoints_take_the_right_piece(dtype)
        print(pau._C.cpu_capability())
    """)
    check_each_isa(script, skip_current=True)


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bounds", [(-1e39, 1e39), (-1.0, 1e39), (1.0, 1.0 + 1e-12)])
def test_float64_bounds_beyond_float32_are_rejected_for_float32_x(x_dtype, bounds):
    # float32 (and float16/bfloat16) x computes in float32: such bounds round
    # to inf or to B_L = B_R, which gave all-inf/NaN outputs.
    points = torch.linspace(0, 1, 5, dtype=torch.float64)[None]
    bounds64 = torch.tensor([bounds], dtype=torch.float64)
    slopes = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    x = torch.linspace(-2, 2, 9).to(x_dtype)
    grad = torch.ones_like(x)
    message = r"bounds of group 0 .* not finite with B_L < B_R once rounded to float32"
    with pytest.raises(ValueError, match=message):
        torch.ops.pau.pwlu_forward(x, points, bounds64, slopes, 0)
    with pytest.raises(ValueError, match=message):
        torch.ops.pau.pwlu_backward(grad, x, points, bounds64, slopes, 0)
    # float64 x computes in float64, where the bounds are fine.
    y = torch.ops.pau.pwlu_forward(x.double(), points, bounds64, slopes, 0)
    assert torch.isfinite(y).all()


def test_backward_memory_is_bounded_for_large_groups_times_intervals():
    # G x N = 32768 x 1000: the point gradients are 131 MB (float32) and the
    # kernels' group tables (points and steps) twice that; the per-tile
    # partials of all tiles at once (0.26 GB) and the double sums (0.26 GB)
    # came on top (884 MiB in all, 476 MiB with bounded waves).
    script = textwrap.dedent("""
        import resource, torch, pau
        torch.set_num_threads(1)
        groups, intervals = 32768, 1000
        x = torch.randn(2, groups)
        points = torch.zeros(groups, intervals + 1)
        bounds = torch.tensor([[-3.0, 3.0]]).repeat(groups, 1)
        slopes = torch.tensor([[0.0, 1.0]]).repeat(groups, 1)
        grad = torch.ones_like(x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = torch.ops.pau.pwlu_backward(grad, x, points, bounds, slopes, 1)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert result[1].shape == points.shape
        print((after - before) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    grown = int(out.stdout.split()[-1])
    outputs = 32768 * 1001 * 4
    # Outputs, tables and bounded scratch (32 MiB of partials, as much of sums).
    limit = 3 * outputs + (128 << 20)
    assert grown < limit, f"backward grew the peak RSS by {grown / 2**20:.0f} MiB"


class _ScaleSecondChannel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.factor = 1.0

    def forward(self, x):
        return torch.cat([x[:, :1], x[:, 1:] * self.factor], dim=1)


@pytest.mark.parametrize("bad", ["nan", "inf", "variance overflow", "bounds overflow"])
def test_realign_with_non_finite_statistics_raises_and_keeps_parameters(bad):
    # Phase I sees bad float32 inputs in group 1; realigning used to write
    # NaN/inf bounds and points without a word.
    model = torch.nn.Sequential(pau.PWLU(groups=2), _ScaleSecondChannel(), pau.PWLU(groups=2))
    x = torch.randn(4, 2, 8)
    layer = "'0'"
    if bad == "nan":
        x[0, 1, 0] = float("nan")
    elif bad == "inf":
        x[0, 1, 0] = float("inf")
    elif bad == "bounds overflow":
        x[:, 1] = 3.4e38  # mean + 3 std (std >= 1e-3 mean) is beyond float32's max
    else:
        model[1].factor = 1e25  # only the second PWLU: its variance, about 1e50, is inf
        layer = "'2'"
    pau.pwlu_collect_statistics(model)
    model(x)
    before = [t.detach().clone() for t in model.parameters()]
    with pytest.raises(ValueError, match=rf"PWLU {layer} cannot be realigned: group 1 .*unchanged"):
        pau.pwlu_realign(model)
    # No PWLU changed (every layer is checked before any is realigned), and
    # they are still in phase I, to collect again.
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    assert model[0].collecting and not model[2].points.requires_grad
    collection = pau.pwlu_collect_statistics(model[2])
    with pytest.raises(ValueError, match="cannot be realigned"), collection:
        model(x)
    assert torch.equal(model[2].bounds, before[4])
