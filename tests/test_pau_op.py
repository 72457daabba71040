"""pau::forward / pau::backward on the CPU against the plain-PyTorch reference.

Covers the quality bar of the operators: reference agreement per dtype, gradcheck,
opcheck, odd sizes, layouts, groups, determinism, large |x|, compilers and
bad input.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pau
import pytest
import torch
from helpers.inputs import OP_LAYOUTS as LAYOUTS
from helpers.inputs import layout_x as make_x
from helpers.inputs import preset_like_coefficients as coefficients
from helpers.machine import check_each_isa
from helpers.opchecks import check_compiled_matches_eager
from helpers.processes import (
    check_exported_program_in_fresh_process,
    check_script_module_in_fresh_process,
)
from pau.reference import VARIANTS, pau_reference


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_forward_backward_match_reference_float64(
    device, variant, shape, dim, groups, channels_last
):
    x = make_x(shape, channels_last=channels_last, device=device).requires_grad_()
    numerator, denominator = coefficients(groups, variant=variant, device=device)
    numerator.requires_grad_()
    denominator.requires_grad_()
    y = torch.ops.pau.forward(x, numerator, denominator, variant, dim)
    grad = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, numerator, denominator), grad)

    xr, nr, dr = (t.detach().clone().requires_grad_() for t in (x, numerator, denominator))
    yr = pau_reference(xr, nr, dr, variant, dim)
    grads_ref = torch.autograd.grad(yr, (xr, nr, dr), grad)
    torch.testing.assert_close(y, yr, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# Tolerances relative to the output scale: float32 keeps ~1e-6, half types round
# the output to 8 (bfloat16) or 11 (float16) bits.
TOLERANCES = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.mark.parametrize("dtype", list(TOLERANCES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_low_precision_match_reference(device, dtype, variant):
    x = make_x((3, 8, 33, 5), dtype=dtype, device=device)
    numerator, denominator = coefficients(8, variant=variant, dtype=torch.float32, device=device)
    x.requires_grad_()
    numerator.requires_grad_()
    denominator.requires_grad_()
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 1)
    assert y.dtype == dtype
    grad = torch.randn(y.shape, dtype=torch.float64).to(device, dtype)
    gx, gn, gd = torch.autograd.grad(y, (x, numerator, denominator), grad)
    # Reference in float64 on the same (rounded) inputs.
    x64, n64, d64 = (t.detach().double().requires_grad_() for t in (x, numerator, denominator))
    y64 = pau_reference(x64, n64, d64, variant, 1)
    rx, rn, rd = torch.autograd.grad(y64, (x64, n64, d64), grad.double())
    tol = TOLERANCES[dtype]
    scale = y64.abs().max().item()
    torch.testing.assert_close(y.double(), y64, rtol=tol, atol=tol * scale)
    torch.testing.assert_close(gx.double(), rx, rtol=tol, atol=tol * rx.abs().max().item())
    # Coefficient gradients are sums over elements, accumulated in float32/float64.
    torch.testing.assert_close(gn.double(), rn, rtol=1e-4, atol=1e-4 * rn.abs().max().item())
    torch.testing.assert_close(gd.double(), rd, rtol=1e-4, atol=1e-4 * rd.abs().max().item())


@pytest.mark.parametrize("degrees", [(0, 0), (1, 0), (3, 2), (4, 3), (8, 7), (16, 16), (32, 32)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_degrees(device, degrees, variant):
    x = make_x((2, 4, 31), device=device) * 0.4  # |x| < ~3 keeps x^32 well inside float64
    numerator, denominator = coefficients(2, degrees, variant, device=device)
    y = torch.ops.pau.forward(x, numerator, denominator, variant, 1)
    torch.testing.assert_close(y, pau_reference(x, numerator, denominator, variant, 1),
                               rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("groups", [1, 3])
def test_gradcheck(device, variant, groups):
    # abs_sum has kinks where b_k x^k = 0 and safe where A(x) = 0: keep x away from 0.
    x = (make_x((2, 3, 5)).abs() + 0.3) * torch.tensor([1.0, -1.0]).repeat(15)[:15].reshape(3, 5)
    x = x.to(device)
    numerator, denominator = coefficients(groups, variant=variant, device=device)
    inputs = (x.requires_grad_(), numerator.requires_grad_(), denominator.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b, c: torch.ops.pau.forward(a, b, c, variant, 1), inputs
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_opcheck(device, variant):
    x = make_x((2, 6, 5), dtype=torch.float32, device=device)
    numerator, denominator = coefficients(3, variant=variant, dtype=torch.float32, device=device)
    torch.library.opcheck(
        torch.ops.pau.forward,
        (x, numerator.requires_grad_(), denominator.requires_grad_(), variant, 1),
    )
    grad = torch.randn_like(x)
    torch.library.opcheck(torch.ops.pau.backward,
                          (grad, x, numerator.detach(), denominator.detach(), variant, 1))


@pytest.mark.parametrize("numel", [0, 1, 7, 129, 4097])
def test_odd_sizes(device, numel):
    x = make_x((numel,), dtype=torch.float32, device=device).requires_grad_()
    numerator, denominator = coefficients(1, dtype=torch.float32, device=device)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 0)
    torch.testing.assert_close(y, pau_reference(x, numerator, denominator, "safe", 0))
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_non_contiguous_input_and_grad(device):
    base = make_x((4, 10, 6, 8), device=device)
    x = base[:, ::2, 1:, ::3]  # strided view, not dense
    numerator, denominator = coefficients(5, device=device)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 1)
    torch.testing.assert_close(y, pau_reference(x, numerator, denominator, "safe", 1))
    # grad_output with strides unlike x's: the kernel must read it in x's order.
    grad = torch.randn(3, 5, 5, 4, dtype=torch.float64).to(device)
    grad = grad.permute(3, 2, 1, 0).transpose(1, 2)
    assert grad.shape == x.shape and not grad.is_contiguous()
    gx, gn, gd = torch.ops.pau.backward(grad, x, numerator, denominator, "safe", 1)
    xr, nr, dr = (t.detach().clone().requires_grad_() for t in (x, numerator, denominator))
    want = torch.autograd.grad(pau_reference(xr, nr, dr, "safe", 1), (xr, nr, dr), grad)
    for got, ref in zip((gx, gn, gd), want):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_zero_dim_input(device):
    numerator, denominator = coefficients(1, device=device)
    x = torch.tensor(0.7, dtype=torch.float64, device=device)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 0)
    assert y.dim() == 0
    torch.testing.assert_close(y, pau_reference(x, numerator, denominator, "safe", 0))


def coefficient_grads(x, numerator, denominator, dim):
    numerator = numerator.detach().requires_grad_()
    denominator = denominator.detach().requires_grad_()
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", dim)
    y.backward(torch.ones_like(y))
    return numerator.grad.clone(), denominator.grad.clone()


def test_cpu_operators_use_torchs_parallel_backend():
    # at::parallel_for is a header template: a library compiled without the
    # backend's flags silently runs every operator on one thread.
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch does not use OpenMP")
    assert pau._C.parallel_backend() == "OpenMP"


SMALL_CALLS_OPEN_NO_THREAD_TEAM = """
import os, torch, pau
torch.set_num_threads(2)
def threads():
    return len(os.listdir("/proc/self/task"))
groups = 8
for make in (pau.PAU, pau.RPAU):
    module = make(groups=groups)
    x = torch.randn(4, groups, 8, requires_grad=True)
    before = threads()
    for _ in range(3):
        module(x).sum().backward()
    assert threads() == before, ("a tiny call opened a thread team", make, before, threads())
# The control: work this large does run in parallel, which creates OpenMP's workers.
module = pau.PAU(groups=groups)
module(torch.randn(16, groups, 64, 64)).sum().backward()
assert threads() > before, ("no thread team even for 2^19 elements", before, threads())
"""


def test_small_calls_open_no_thread_team():
    """Tiny forward/backward calls with G > 1 run on the calling thread (before,
    reduce_partials opened an OpenMP region per backward, 8.6 ms instead of 0.1 ms under
    contention). OpenMP starts its worker threads at the first parallel region, so in a fresh
    process the thread count shows whether one was opened."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("this torch does not use OpenMP")
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("needs /proc/self/task (Linux)")
    subprocess.run([sys.executable, "-c", SMALL_CALLS_OPEN_NO_THREAD_TEAM], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=120)


@pytest.mark.parametrize("shape,dim,groups", [((8, 16, 96, 96), 1, 1), ((8, 16, 96, 96), 1, 16),
                                              ((64, 100, 48), -1, 48)])
def test_coefficient_grads_bitwise_deterministic(device, shape, dim, groups):
    # The thread counts matter on the CPU only; elsewhere they are repeated runs.
    x = make_x(shape, dtype=torch.float32, device=device)
    numerator, denominator = coefficients(groups, dtype=torch.float32, device=device)
    first = coefficient_grads(x, numerator, denominator, dim)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, threads):
            torch.set_num_threads(n)
            again = coefficient_grads(x, numerator, denominator, dim)
            assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    finally:
        torch.set_num_threads(threads)


LARGE = [(torch.float32, 1e30), (torch.float16, 6e4), (torch.bfloat16, 3e38),
         (torch.float64, 1e300)]


@pytest.mark.parametrize("dtype,value", LARGE)
@pytest.mark.parametrize("variant", ["safe", "abs_sum"])
def test_large_inputs_stay_finite(device, dtype, value, variant):
    numerator, denominator = pau.presets.coefficients("leaky_relu", (5, 4), variant)
    numerator, denominator = numerator.to(device), denominator.to(device)
    x = torch.tensor([value, -value, value / 7], dtype=torch.float64).to(device, dtype)
    y = torch.ops.pau.forward(x, numerator[None], denominator[None], variant, 0)
    # F(x) -> a_5 / |b_4| * x (+ lower order terms, relatively 1/x smaller).
    limit = numerator[5] / denominator[3].abs() * x.double()
    if dtype == torch.float16:
        limit = limit.clamp(-65504, 65504)  # the true value overflows half: inf is correct
        assert torch.isfinite(y[2])
    else:
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.double(), limit, rtol=1e-2, atol=0)
    xg = x.clone().requires_grad_()
    torch.ops.pau.forward(xg, numerator[None].to(torch.float64), denominator[None].to(
        torch.float64), variant, 0).sum().backward()
    if dtype != torch.float16:
        assert torch.isfinite(xg.grad).all()


def test_polynomial_with_zero_denominator_at_large_x(device):
    numerator = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]], device=device)
    denominator = torch.zeros(1, 4, device=device)
    x = torch.tensor([1e12, -1e12, 3.0], device=device)
    y = torch.ops.pau.forward(x, numerator, denominator, "safe", 0)
    assert torch.equal(y, x)


def test_nan_and_inf_inputs(device):
    numerator, denominator = pau.presets.coefficients("tanh", (4, 4), "safe")
    numerator, denominator = numerator.to(device), denominator.to(device)
    x = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    x = x.to(device)
    y = torch.ops.pau.forward(x, numerator[None], denominator[None], "safe", 0)
    assert torch.isnan(y[0])
    limit = numerator[4] / denominator[3].abs()  # m == n: F -> a_n sgn^n / |b_n|
    torch.testing.assert_close(y[1:], torch.stack([limit, limit]))


def test_each_isa_matches_reference(tmp_path):
    script = textwrap.dedent("""
        import torch, pau, sys
        from pau.reference import pau_reference
        x = torch.randn(3, 8, 17, 9) * 2
        n, d = pau.presets.coefficients("gelu", (5, 4), "safe")
        n, d = n.float()[None].repeat(8, 1), d.float()[None].repeat(8, 1)
        for xx in (x, x.contiguous(memory_format=torch.channels_last)):
            torch.testing.assert_close(torch.ops.pau.forward(xx, n, d, "safe", 1),
                                       pau_reference(xx, n, d, "safe", 1))
        print(pau._C.cpu_capability())
    """)
    check_each_isa(script)


def test_module_state_dict_and_training_step():
    act = pau.PAU(groups=4)
    assert "degrees=(5, 4), variant='safe', init='leaky_relu', groups=4, dim=1" in repr(act)
    assert act.numerator.shape == (4, 6) and act.denominator.shape == (4, 4)
    x = torch.randn(2, 4, 5, 5)
    before = act.numerator.detach().clone()
    torch.optim.SGD(act.parameters(), lr=0.1).zero_grad()
    act(x).square().mean().backward()
    torch.optim.SGD(act.parameters(), lr=0.1).step()
    assert not torch.equal(before, act.numerator.detach())
    other = pau.PAU(groups=4)
    other.load_state_dict(act.state_dict())
    torch.testing.assert_close(other(x), act(x))
    explicit = pau.PAU(degrees=(1, 1), init=([0.0, 1.0], [0.0]))
    torch.testing.assert_close(explicit(x), x)


def test_torch_compile_fullgraph():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pau.PAU(groups=4), torch.nn.Flatten())
    x = torch.randn(2, 3, 8, 8)
    check_compiled_matches_eager(model, x)


def test_export_save_load_in_fresh_process(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), pau.PAU(groups=6, dim=-1, variant="abs_sum"))
    check_exported_program_in_fresh_process(model, torch.randn(3, 5), tmp_path)


@pytest.mark.parametrize("mode", ["script", "trace"])
def test_torchscript_save_load_in_fresh_process(tmp_path, mode):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 1), pau.PAU(groups=4, variant="plain"),
                                pau.PAU(groups=1, variant="safe"))
    x = torch.randn(2, 2, 5, 5)
    scripted = torch.jit.script(model) if mode == "script" else torch.jit.trace(model, x)
    check_script_module_in_fresh_process(scripted, model, x, tmp_path)


def test_errors_name_the_problem(device):
    x = torch.randn(2, 6, 3).to(device)
    num, den = coefficients(3, dtype=torch.float32, device=device)
    op = torch.ops.pau.forward
    cases = [
        (lambda: op(x.long(), num, den, "safe", 1), TypeError, "x must be float32"),
        (lambda: op(x, num.int(), den.int(), "safe", 1), TypeError, "numerator must be"),
        (lambda: op(x, num, den.double(), "safe", 1), TypeError, "must match numerator dtype"),
        (lambda: op(x, num.to("meta"), den.to("meta"), "safe", 1), RuntimeError,
         "same device"),
        (lambda: op(x, num[0], den, "safe", 1), ValueError,
         r"numerator must have shape \(G, m\+1\)"),
        (lambda: op(x, num, den[:2], "safe", 1), ValueError, "same number of groups"),
        (lambda: op(x, num[:2], den[:2], "safe", 2), ValueError, "not divisible by the number"),
        (lambda: op(x, num, den, "safe", 3), IndexError, "dim 3 is out of range"),
        (lambda: op(x, num, den, "nope", 1), ValueError, "unknown variant 'nope'"),
        (
            lambda: op(x, torch.zeros(3, 34, device=device), den, "safe", 1),
            ValueError,
            "degree m must be",
        ),
        (lambda: torch.ops.pau.backward(x[:1], x, num, den, "safe", 1), ValueError,
         "grad_output shape"),
        (lambda: torch.ops.pau.backward(x.double(), x, num, den, "safe", 1), TypeError,
         "grad_output dtype"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_double_backward_builds_a_graph():
    """Double backward works (tests/test_higher_order.py checks the values)."""
    x = torch.randn(4, 3, requires_grad=True)
    num, den = coefficients(1, dtype=torch.float32)
    y = torch.ops.pau.forward(x, num.requires_grad_(), den, "safe", 1)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert gx.grad_fn is not None
