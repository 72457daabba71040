"""PAU and RPAU checks that only CUDA has.

The checks that hold on every device (reference per dtype, gradcheck, opcheck,
odd sizes, layouts, determinism, large |x|, bad input) are written once in
test_pau_op.py, test_pau_forward.py, test_pau_backward.py, test_pau_layouts.py
and test_rpau.py and run there per device. Here: CUDA against the CPU operator
and the plain-PyTorch reference (float64 on the CPU, on the same rounded inputs)
over the layouts that reach CUDA's tile kinds, device mixes, streams and the
device guard, and the behaviour the CPU does not share (unusable alpha gives
NaN). Every test skips cleanly without a GPU.

The nvcc compile of the kernels and their CPU emulation (.ci/cuda_compile_and_emulate.sh)
take minutes on a 2-core machine, and .ci/run already runs them whenever nvcc
exists; test_ci_compile_script runs them from pytest only when asked
(PAU_TEST_CUDA_COMPILE=1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pau
import pytest
import torch
from helpers.devices import requires_cuda
from helpers.inputs import BASIC_LAYOUTS, preset_like_coefficients
from pau.reference import VARIANTS, pau_reference

ROOT = Path(__file__).resolve().parents[1]

# Selected with the CUDA cases of the per-device tests by `pytest -m cuda`.
pytestmark = pytest.mark.cuda


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
DEGREES = [(5, 4), (3, 3), (8, 7), (16, 16)]
# helpers.inputs' layouts (short runs: per-lane tiles), then per channel with long
# runs (broadcast tiles), many groups (several per-lane column tiles) and runs
# longer than one broadcast tile.
LAYOUTS = [
    *BASIC_LAYOUTS,
    ((2, 8, 32, 32), 1, 8, False),
    ((5, 7, 300), -1, 300, False),
    ((2, 4, 130, 130), 1, 2, False),
]
# Tolerance relative to the output scale (as in test_pau_op.py); coefficient
# gradients are sums accumulated in float (double for float64).
TOLERANCES = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3,
              torch.bfloat16: 1.6e-2}
SUM_TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-4,
                  torch.bfloat16: 1e-4}
COEFFICIENT_ROUNDING = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def coefficients(groups: int, degrees=(5, 4), variant: str = "safe", dtype=torch.float32,
                 seed: int = 0):
    """helpers.inputs.preset_like_coefficients, float32 unless asked."""
    return preset_like_coefficients(groups, degrees, variant, dtype, seed)


def make_x(shape, dtype=torch.float32, channels_last=False, scale=2.0, seed: int = 1):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    # Clamped at 4 sigma: the largest |x| (hence |x|^m) does not grow with the size.
    x = (x.clamp(-4.0, 4.0) * scale).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def run_op(x, numerator, denominator, variant, dim, grad):
    """Forward and all three gradients through autograd."""
    x, numerator, denominator = (t.detach().clone().requires_grad_()
                                 for t in (x, numerator, denominator))
    y = torch.ops.pau.forward(x, numerator, denominator, variant, dim)
    grads = torch.autograd.grad(y, (x, numerator, denominator), grad)
    return (y.detach(), *grads)


def reference(x, numerator, denominator, variant, dim, grad):
    """float64 reference on the CPU, on the same (rounded) inputs."""
    x, numerator, denominator = (t.detach().cpu().double().requires_grad_()
                                 for t in (x, numerator, denominator))
    y = pau_reference(x, numerator, denominator, variant, dim)
    grads = torch.autograd.grad(y, (x, numerator, denominator), grad.cpu().double())
    return (y.detach(), *grads)


def assert_close_scaled(got, want, tol, what):
    got = got.detach().cpu().double()
    want = want.detach().cpu().double()
    scale = max(want.abs().max().item(), 1e-30) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale, msg=lambda m: f"{what}: {m}")


def is_dense(t):
    channels_last = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return t.is_contiguous() or channels_last


def pole_free(denominator, x):
    """Scales each group's b so that sum_k |b_k| max|x|^k <= 0.5: plain's 1 + A(x) stays >= 0.5.

    Near a pole F and its gradients are ill-conditioned (or overflow the dtype), which
    tests the inputs, not the kernels.
    """
    bound = x.detach().abs().max().double().cpu().clamp_min(1.0)
    powers = bound ** torch.arange(1, denominator.shape[1] + 1, dtype=torch.float64)
    total = (denominator.double().abs() * powers).sum(dim=1, keepdim=True)
    return (denominator.double() * (0.5 / total).clamp(max=1.0)).to(denominator.dtype)


def compare(x, numerator, denominator, variant, dim, *, check_cpu=True, seed=2):
    """CUDA vs CPU operator vs float64 reference: forward, grad_x and coefficient grads."""
    dtype = x.dtype
    if variant == "plain":
        denominator = pole_free(denominator, x)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64).to(dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and x.dim() == 4:
        grad = grad.contiguous(memory_format=torch.channels_last)
    cuda = run_op(x.cuda(), numerator.cuda(), denominator.cuda(), variant, dim, grad.cuda())
    assert cuda[0].dtype == dtype and cuda[0].device.type == "cuda"
    # Dense layouts (channels-last included) are kept, anything else comes back contiguous.
    assert cuda[0].stride() == x.stride() if is_dense(x) else cuda[0].is_contiguous()
    want = reference(x, numerator, denominator, variant, dim, grad)
    tol, sum_tol = TOLERANCES[dtype], SUM_TOLERANCES[dtype]
    # Coefficient gradients come back in the coefficients' dtype: one more rounding.
    sum_tol = max(sum_tol, COEFFICIENT_ROUNDING.get(numerator.dtype, 0.0))
    names = ("forward", "grad_x", "grad_numerator", "grad_denominator")
    for i, name in enumerate(names):
        tolerance = tol if i < 2 else sum_tol
        assert_close_scaled(cuda[i], want[i], tolerance, f"CUDA vs reference {name}")
    if check_cpu:
        cpu = run_op(x, numerator, denominator, variant, dim, grad)
        for i, name in enumerate(names):
            tolerance = tol if i < 2 else sum_tol
            assert_close_scaled(cuda[i], cpu[i], tolerance, f"CUDA vs CPU {name}")
    return cuda


@requires_cuda
def test_build_has_cuda_kernels():
    assert pau._C.has_cuda_kernels(), (
        "this pau build has no CUDA kernels although CUDA is available: reinstall with "
        "`pip install --no-build-isolation .` next to a CUDA toolkit (see cuda/README.md)")
    for op in ("pau::forward", "pau::backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), op


def test_cpu_only_torch_builds_without_cuda_kernels():
    if torch.version.cuda is None:
        assert not pau._C.has_cuda_kernels()


@requires_cuda
@pytest.mark.parametrize("degrees", DEGREES, ids=lambda d: f"{d[0]}_{d[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_matches_cpu_and_reference(shape, dim, groups, channels_last, variant, dtype, degrees):
    # Higher degrees need smaller |x| for x^m and the coefficient noise to stay well
    # conditioned in half precision (|F'| grows like |x|^(m - n - 1) times the noise).
    scale = {5: 2.0, 3: 2.0, 8: 0.75}.get(degrees[0], 0.4)
    x = make_x(shape, dtype, channels_last, scale=scale)
    coefficient_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    numerator, denominator = coefficients(groups, degrees, variant, coefficient_dtype)
    compare(x, numerator, denominator, variant, dim)


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_odd_size_beyond_a_million(dtype):
    """2^20 + 3 elements: more than one grid of blocks (the sizes 0 to 4097 are per-device
    tests in test_pau_layouts.py)."""
    numel = 2**20 + 3
    x = make_x((numel,), dtype)
    numerator, denominator = coefficients(1)
    compare(x, numerator, denominator, "safe", 0)
    # The same elements per channel (per-lane tiles, a channel per column).
    x3 = make_x((numel, 3), dtype)
    numerator, denominator = coefficients(3)
    compare(x3, numerator, denominator, "abs_sum", 1, check_cpu=False)


LARGE = [(torch.float32, 1e30), (torch.float16, 6e4), (torch.bfloat16, 3e38),
         (torch.float64, 1e300)]


@requires_cuda
@pytest.mark.parametrize("dtype,value", LARGE, ids=lambda v: str(v))
@pytest.mark.parametrize("variant", ["safe", "abs_sum"])
def test_large_inputs_match_cpu(dtype, value, variant):
    """The overflow-safe evaluation gives the CPU's values (test_pau_op.py checks the limits
    and finiteness on every device)."""
    numerator, denominator = pau.presets.coefficients("leaky_relu", (5, 4), variant)
    numerator, denominator = numerator[None].float(), denominator[None].float()
    x = torch.tensor([value, -value, value / 7], dtype=torch.float64).to(dtype)
    y = torch.ops.pau.forward(x.cuda(), numerator.cuda(), denominator.cuda(), variant, 0).cpu()
    torch.testing.assert_close(y, torch.ops.pau.forward(x, numerator, denominator, variant, 0),
                               rtol=TOLERANCES[dtype], atol=0, equal_nan=True)


@requires_cuda
def test_device_mismatch_errors_name_the_problem():
    x = torch.randn(2, 6, 3)
    num, den = coefficients(3)
    forward, backward = torch.ops.pau.forward, torch.ops.pau.backward
    with pytest.raises(RuntimeError, match="same device.*x on cuda.*numerator on cpu"):
        forward(x.cuda(), num, den, "safe", 1)
    with pytest.raises(RuntimeError, match="same device.*x on cpu.*numerator on cuda"):
        forward(x, num.cuda(), den.cuda(), "safe", 1)
    with pytest.raises(RuntimeError, match="same device.*denominator on cpu"):
        forward(x.cuda(), num.cuda(), den, "safe", 1)
    with pytest.raises(RuntimeError, match="grad_output is on cpu but x is on cuda"):
        backward(x, x.cuda(), num.cuda(), den.cuda(), "safe", 1)
    if torch.cuda.device_count() > 1:
        with pytest.raises(RuntimeError, match="same device"):
            forward(x.to("cuda:0"), num.to("cuda:1"), den.to("cuda:1"), "safe", 1)


@requires_cuda
def test_other_device_and_stream():
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    x = make_x((4, 6, 33)).to(device)
    numerator, denominator = (t.to(device) for t in coefficients(6))
    want = torch.ops.pau.forward(x.cpu(), numerator.cpu(), denominator.cpu(), "safe", 1)
    stream = torch.cuda.Stream(device)
    with torch.cuda.device(0), torch.cuda.stream(stream):
        y = torch.ops.pau.forward(x, numerator, denominator, "safe", 1)
    stream.synchronize()
    assert y.device == device
    torch.testing.assert_close(y.cpu(), want, rtol=2e-5, atol=2e-5)


@requires_cuda
def test_module_trains_on_cuda():
    act = pau.PAU(groups=4).cuda()
    x = torch.randn(2, 4, 9, 9, device="cuda")
    before = act.numerator.detach().clone()
    optimizer = torch.optim.SGD(act.parameters(), lr=0.1)
    act(x).square().mean().backward()
    optimizer.step()
    assert not torch.equal(before, act.numerator.detach())


@requires_cuda
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_compile_fullgraph(backend, dtype):
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), pau.PAU(groups=4),
                                torch.nn.Conv2d(4, 2, 1), pau.PAU(variant="abs_sum")).cuda()
    # The coefficients stay float32 (the operator takes float32/float64 ones).
    model[0].to(dtype)
    model[2].to(dtype)
    x = torch.randn(3, 4, 10, 10, device="cuda", dtype=dtype)

    def grads(module):
        module.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        out = module(xg)
        out.square().sum().backward()
        return [out, xg.grad] + [p.grad for p in model.parameters()]

    eager = grads(model)
    compiled = grads(torch.compile(model, fullgraph=True, backend=backend))
    for got, want in zip(compiled, eager):
        assert got.device.type == "cuda"
        # Inductor may fuse the convolutions' epilogues differently: not bitwise.
        assert_close_scaled(got, want, 1e-5 if dtype == torch.float32 else 2e-2, "compiled")


@requires_cuda
def test_export_runs_on_cuda():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), pau.PAU(groups=8, dim=-1)).cuda()
    x = torch.randn(4, 5, 8, device="cuda")
    exported = torch.export.export(model, (x,))
    assert "pau.forward" in str(exported.graph)
    torch.testing.assert_close(exported.module()(x), model(x), rtol=0, atol=0)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True])
def test_module_gradients_bitwise_deterministic(channels_last):
    """Forward + backward through autograd five times: identical bits every time."""
    act = pau.PAU(groups=16).cuda()
    x = make_x((8, 16, 40, 40), channels_last=channels_last).cuda()
    results = []
    for _ in range(5):
        act.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        act(xg).sum().backward()
        results.append((xg.grad, act.numerator.grad.clone(), act.denominator.grad.clone()))
    for again in results[1:]:
        for a, b in zip(results[0], again):
            assert torch.equal(a, b)


# ---------------------------------------------------------------------------
# RPAU: the same kernels with counter-hash noise (cpp/math/counter_rng.h) per element.

SEED_OFFSET = torch.tensor([1234, (1 << 32) + 5], dtype=torch.int64)


def rpau_run(x, numerator, denominator, alpha, variant, dim, grad, seed_offset=SEED_OFFSET):
    x, numerator, denominator = (t.detach().clone().requires_grad_()
                                 for t in (x, numerator, denominator))
    y = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, seed_offset, variant, dim)
    return (y.detach(), *torch.autograd.grad(y, (x, numerator, denominator), grad))


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape,dim,groups,channels_last", [
    ((4, 6, 5, 7), 1, 1, False),
    ((4, 6, 5, 7), 1, 6, False),
    ((4, 6, 5, 7), 1, 6, True),
    ((2, 9, 48), -1, 4, False),
    ((2, 4, 130, 130), 1, 2, False),
])
def test_rpau_matches_cpu(shape, dim, groups, channels_last, variant, dtype):
    x = make_x(shape, dtype, channels_last)
    coefficient_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    numerator, denominator = coefficients(groups, variant=variant, dtype=coefficient_dtype)
    if variant == "plain":
        denominator = pole_free(denominator, x) * 0.5  # the noise moves b by up to 30%
    alpha = torch.full((groups, 10), 0.3, dtype=coefficient_dtype)
    alpha[:, 0] = 0.1
    grad = torch.randn(shape, dtype=torch.float64).to(dtype)
    cpu = rpau_run(x, numerator, denominator, alpha, variant, dim, grad)
    cuda = rpau_run(x.cuda(), numerator.cuda(), denominator.cuda(), alpha.cuda(), variant, dim,
                    grad.cuda())
    names = ("forward", "grad_x", "grad_numerator", "grad_denominator")
    sum_tol = max(SUM_TOLERANCES[dtype], COEFFICIENT_ROUNDING.get(numerator.dtype, 0.0))
    for i, name in enumerate(names):
        tolerance = TOLERANCES[dtype] if i < 2 else sum_tol
        assert_close_scaled(cuda[i], cpu[i], tolerance, f"RPAU CUDA vs CPU {name}")
    assert cuda[0].stride() == x.stride()


@requires_cuda
def test_rpau_noise_is_the_counter_hash_bit_for_bit():
    """F(x) = a_1 x with |x| <= 1 is a_1 (1 + e) x exactly: the noise CUDA applies is the
    CPU's bit for bit, and equals u of pau::rpau_noise (counter_rng.h)."""
    count = 4097
    x = torch.linspace(-1, 1, count, dtype=torch.float64)
    numerator = torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    denominator = torch.zeros(1, 4, dtype=torch.float64)
    alpha = torch.tensor(0.25, dtype=torch.float64)
    y_cpu = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, SEED_OFFSET, "safe", 0)
    y_cuda = torch.ops.pau.rpau_forward(x.cuda(), numerator.cuda(), denominator.cuda(),
                                        alpha.cuda(), SEED_OFFSET, "safe", 0).cpu()
    assert torch.equal(y_cuda, y_cpu)
    u = torch.ops.pau.rpau_noise(SEED_OFFSET, count, 10)[:, 1]
    torch.testing.assert_close(y_cuda, x * (1 + 0.25 * (2 * u - 1)), rtol=1e-15, atol=0)


@requires_cuda
def test_rpau_deterministic_layouts_and_zero_alpha():
    x = make_x((8, 16, 20, 20)).cuda()
    numerator, denominator = (t.cuda() for t in coefficients(16))
    alpha = torch.tensor(0.2, device="cuda")
    grad = torch.randn(x.shape, device="cuda")
    backward = torch.ops.pau.rpau_backward
    first = backward(grad, x, numerator, denominator, alpha, SEED_OFFSET, "safe", 1)
    for _ in range(4):
        again = backward(grad, x, numerator, denominator, alpha, SEED_OFFSET, "safe", 1)
        for a, b in zip(first, again):
            assert torch.equal(a, b)
    # The noise follows the logical element index: channels-last gives the same values.
    xl = x.contiguous(memory_format=torch.channels_last)
    y = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, SEED_OFFSET, "safe", 1)
    yl = torch.ops.pau.rpau_forward(xl, numerator, denominator, alpha, SEED_OFFSET, "safe", 1)
    assert yl.is_contiguous(memory_format=torch.channels_last) and torch.equal(yl, y)
    # Another offset, other noise.
    other = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha,
                                       SEED_OFFSET + torch.tensor([0, 1]), "safe", 1)
    assert not torch.equal(other, y)
    # alpha == 0: the RPAU kernels with factors of exactly 1 are PAU's kernels bit for
    # bit; these runs of 400 elements use the same (broadcast) tiles, so the
    # coefficient gradients are summed in the same order too.
    zero = torch.zeros((), device="cuda")
    rpau_zero = rpau_run(x, numerator, denominator, zero, "safe", 1, grad)
    xg, ng, dg = (t.detach().clone().requires_grad_() for t in (x, numerator, denominator))
    y_pau = torch.ops.pau.forward(xg, ng, dg, "safe", 1)
    pau_results = (y_pau.detach(), *torch.autograd.grad(y_pau, (xg, ng, dg), grad))
    for got, want in zip(rpau_zero, pau_results):
        assert torch.equal(got, want)


@requires_cuda
def test_rpau_errors_on_cuda():
    x = torch.randn(2, 6, 3, device="cuda")
    numerator, denominator = (t.cuda() for t in coefficients(3))
    with pytest.raises(RuntimeError, match="alpha must be on x's device"):
        torch.ops.pau.rpau_forward(x, numerator, denominator, torch.tensor(0.1), SEED_OFFSET,
                                   "safe", 1)
    with pytest.raises(RuntimeError, match="seed_offset must be a CPU tensor"):
        torch.ops.pau.rpau_forward(x, numerator, denominator, torch.tensor(0.1, device="cuda"),
                                   SEED_OFFSET.cuda(), "safe", 1)
    with pytest.raises(ValueError, match="alpha must be a scalar or broadcastable"):
        torch.ops.pau.rpau_forward(x, numerator, denominator, torch.zeros(7, device="cuda"),
                                   SEED_OFFSET, "safe", 1)


@requires_cuda
@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_rpau_unusable_alpha_gives_nan_for_its_group_only(bad):
    """CUDA never reads alpha on the host (no stream synchronisation): a group with an alpha
    outside [0, 1) gets NaN outputs and gradients, the other groups the results of a usable
    alpha bit for bit. The CPU raises; the module checks alpha when built and loaded."""
    x = make_x((4, 6, 5, 7)).cuda()  # 3 groups of 2 channels
    numerator, denominator = (t.cuda() for t in coefficients(3))
    grad = torch.randn(x.shape, device="cuda")
    usable = torch.full((3, 10), 0.2, device="cuda")
    unusable = usable.clone()
    unusable[1, 4] = bad
    want = rpau_run(x, numerator, denominator, usable, "safe", 1, grad)
    got = rpau_run(x, numerator, denominator, unusable, "safe", 1, grad)
    in_group = (torch.arange(6, device="cuda") // 2 == 1).view(1, 6, 1, 1).expand(x.shape)
    for g, w in zip(got[:2], want[:2]):  # forward, grad_x
        assert torch.isnan(g[in_group]).all()
        assert torch.equal(g[~in_group], w[~in_group])
    for g, w in zip(got[2:], want[2:]):  # coefficient gradients, (3, m + 1) and (3, n)
        assert torch.isnan(g[1]).all()
        assert torch.equal(g[[0, 2]], w[[0, 2]])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        torch.ops.pau.rpau_forward(x.cpu(), numerator.cpu(), denominator.cpu(), unusable.cpu(),
                                   SEED_OFFSET, "safe", 1)


@requires_cuda
@pytest.mark.parametrize("alpha", [
    torch.tensor(0.2),                                      # scalar: strides (0, 0)
    torch.linspace(0.0, 0.3, 10, dtype=torch.float64),      # per coefficient: (0, 1)
    torch.tensor([[0.1], [0.3], [0.0]]),                    # per group: (1, 0)
    torch.rand(10, 3, dtype=torch.float64).mul(0.3).t(),    # (G, K) transposed: (1, 3)
    torch.tensor(0.2, dtype=torch.bfloat16),                # converted to double first
], ids=["scalar", "per-coefficient", "per-group", "transposed", "bfloat16"])
def test_rpau_alpha_layouts_match_cpu(alpha):
    """The kernels read alpha through its broadcast strides, float or double, as given."""
    x = make_x((4, 6, 5, 7))
    numerator, denominator = coefficients(3)
    grad = torch.randn(x.shape, dtype=torch.float64).float()
    cpu = rpau_run(x, numerator, denominator, alpha, "safe", 1, grad)
    cuda = rpau_run(x.cuda(), numerator.cuda(), denominator.cuda(), alpha.cuda(), "safe", 1,
                    grad.cuda())
    names = ("forward", "grad_x", "grad_numerator", "grad_denominator")
    for i, name in enumerate(names):
        tolerance = TOLERANCES[torch.float32] if i < 2 else SUM_TOLERANCES[torch.float32]
        assert_close_scaled(cuda[i], cpu[i], tolerance, f"RPAU alpha {name}")


@requires_cuda
def test_rpau_module_trains_on_cuda():
    act = pau.RPAU(groups=4).cuda().train()
    x = torch.randn(2, 4, 9, 9, device="cuda")
    before = act.numerator.detach().clone()
    optimizer = torch.optim.SGD(act.parameters(), lr=0.1)
    act(x).square().mean().backward()
    optimizer.step()
    assert not torch.equal(before, act.numerator.detach())


def test_ci_compile_script():
    """nvcc compile + CPU emulation of the kernels (minutes; .ci/run runs it anyway)."""
    if os.environ.get("PAU_TEST_CUDA_COMPILE") != "1":
        pytest.skip(
            "set PAU_TEST_CUDA_COMPILE=1 to run .ci/cuda_compile_and_emulate.sh (.ci/run runs it)"
        )
    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not found")
    subprocess.run(["bash", str(ROOT / ".ci" / "cuda_compile_and_emulate.sh")], check=True)
