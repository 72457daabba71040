"""Randomized PAU: pau::rpau_forward / rpau_backward / rpau_noise and pau.RPAU."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pau
import pytest
import torch
from helpers.inputs import layout_x as make_x
from pau.functional import rpau_noise
from pau.reference import VARIANTS, pau_reference, rpau_reference

LAYOUTS = [
    # (shape, dim, groups, channels_last)
    ((4, 6, 5, 7), 1, 1, False),
    ((4, 6, 5, 7), 1, 6, False),
    ((4, 6, 5, 7), 1, 3, True),
    ((2, 9, 48), -1, 48, False),
    ((129,), 0, 1, False),
]
SEED = torch.tensor([1234, 5], dtype=torch.int64)


def coefficients(
    groups: int, variant: str = "safe", dtype=torch.float64, seed: int = 0, device="cpu"
):
    generator = torch.Generator().manual_seed(seed)
    num, den = pau.presets.coefficients("leaky_relu", (5, 4), variant)
    noise = torch.randn(groups, 10, generator=generator, dtype=torch.float64) * 0.1
    numerator = num.double() + noise[:, :6]
    denominator = den.double() + noise[:, 6:]
    if variant == "plain":
        denominator = denominator * 0.05
    return numerator.to(device, dtype), denominator.to(device, dtype)


def cpu(*tensors):
    """Detached CPU copies that require grad: the reference's inputs."""
    return tuple(t.detach().cpu().clone().requires_grad_() for t in tensors)


def alpha_of(value, dtype=torch.float64):
    return torch.as_tensor(value, dtype=dtype)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_matches_reference_with_explicit_noise(
    device, variant, shape, dim, groups, channels_last
):
    x = make_x(shape, channels_last=channels_last, device=device).requires_grad_()
    numerator, denominator = coefficients(groups, variant, device=device)
    numerator.requires_grad_()
    denominator.requires_grad_()
    # Per-coefficient alpha, one group-row broadcast.
    alpha = torch.linspace(0.05, 0.3, 10, dtype=torch.float64)
    y = torch.ops.pau.rpau_forward(
        x, numerator, denominator, alpha.to(device), SEED, variant, dim
    )
    grad = torch.randn_like(y.cpu())  # on the CPU, in y's layout: the same on every device
    grads = torch.autograd.grad(y, (x, numerator, denominator), grad.to(device))

    e = rpau_noise(shape, SEED, alpha, (5, 4), groups, dim)
    xr, nr, dr = cpu(x, numerator, denominator)
    yr = rpau_reference(xr, nr, dr, e, variant, dim)
    grads_ref = torch.autograd.grad(yr, (xr, nr, dr), grad)
    torch.testing.assert_close(y.cpu(), yr, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)
    # The noise really acts: RPAU differs from PAU here.
    assert not torch.allclose(y.cpu(), pau_reference(xr, nr, dr, variant, dim))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "shape,dim,channels_last", [((3, 6, 4, 5), 1, True), ((5, 3, 6), -1, False)]
)
def test_mixed_effective_degrees_match_reference(device, variant, shape, dim, channels_last):
    """Per-lane tiles whose channels differ in effective degrees take the element-wise path."""
    x = make_x(shape, channels_last=channels_last, device=device).requires_grad_()
    numerator, denominator = coefficients(6, variant, device=device)
    denominator[1] = 0.0
    numerator[2, 3:] = 0.0
    denominator[4, 2:] = 0.0
    numerator.requires_grad_()
    denominator.requires_grad_()
    alpha = alpha_of(0.2)
    y = torch.ops.pau.rpau_forward(
        x, numerator, denominator, alpha.to(device), SEED, variant, dim
    )
    grad = torch.randn_like(y.cpu())  # on the CPU, in y's layout: the same on every device
    grads = torch.autograd.grad(y, (x, numerator, denominator), grad.to(device))

    e = rpau_noise(shape, SEED, alpha, (5, 4), 6, dim)
    xr, nr, dr = cpu(x, numerator, denominator)
    yr = rpau_reference(xr, nr, dr, e, variant, dim)
    grads_ref = torch.autograd.grad(yr, (xr, nr, dr), grad)
    torch.testing.assert_close(y.cpu(), yr, rtol=1e-12, atol=1e-12)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 1.6e-2)])
def test_low_precision_matches_reference(device, dtype, tol):
    x = make_x((3, 8, 33, 5), dtype=dtype, device=device)
    numerator, denominator = coefficients(8, dtype=torch.float32, device=device)
    alpha = torch.tensor(0.1)
    y = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha.to(device), SEED, "safe", 1)
    e = rpau_noise(x.shape, SEED, alpha, (5, 4), 8, 1)
    x, numerator, denominator = (t.cpu().double() for t in (x, numerator, denominator))
    want = rpau_reference(x, numerator, denominator, e, "safe", 1)
    torch.testing.assert_close(y.cpu().double(), want, rtol=tol, atol=tol * want.abs().max().item())


def test_per_group_alpha(device):
    x = make_x((2, 4, 9), device=device)
    numerator, denominator = coefficients(2, device=device)
    alpha = torch.tensor([[0.0], [0.2]], dtype=torch.float64)  # group 0 noiseless
    y = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha.to(device), SEED, "safe", 1)
    plain = torch.ops.pau.forward(x, numerator, denominator, "safe", 1)
    assert torch.equal(y[:, :2], plain[:, :2])
    assert not torch.allclose(y[:, 2:], plain[:, 2:])
    e = rpau_noise(x.shape, SEED, alpha, (5, 4), 2, 1)
    want = rpau_reference(*(t.cpu() for t in (x, numerator, denominator)), e, "safe", 1)
    torch.testing.assert_close(y.cpu(), want)


def test_noise_statistics():
    alpha = 0.05
    count = 1 << 18
    e = rpau_noise((count,), SEED, alpha, (5, 4), 1, 0)  # (count, 10)
    # Uniform on [-alpha, alpha]: mean 0, variance alpha^2 / 3, flat histogram.
    assert e.abs().max() < alpha
    std_of_mean = alpha / 3**0.5 / count**0.5
    assert e.mean(0).abs().max() < 5 * std_of_mean
    torch.testing.assert_close(
        e.var(0), torch.full((10,), alpha**2 / 3, dtype=torch.float64), rtol=0.02, atol=0
    )
    hist = torch.histc(e[:, 3], bins=32, min=-alpha, max=alpha)
    expected = count / 32
    assert ((hist - expected).abs() / expected**0.5).max() < 5
    # Independent across coefficients and neighbouring elements: tiny correlations.
    z = (e - e.mean(0)) / e.std(0)
    corr = z.T @ z / count
    off_diagonal = corr - torch.eye(10, dtype=torch.float64)
    bound = 5 / count**0.5
    assert off_diagonal.abs().max() < bound
    for lag in (1, 2, 7, 64, 4096):
        lagged = (z[:-lag] * z[lag:]).mean(0)
        assert lagged.abs().max() < bound
    # Low bits too (u is one 16-bit half of a 32-bit word).
    u = torch.ops.pau.rpau_noise(SEED, count, 10)
    low = (u * 2**16).floor() % 2  # lowest kept bit: a fair coin
    assert (low.mean() - 0.5).abs() < 5 * 0.5 / (count * 10) ** 0.5


def test_noise_depends_on_seed_and_offset():
    u = torch.ops.pau.rpau_noise(SEED, 1000, 10)
    assert torch.equal(u, torch.ops.pau.rpau_noise(SEED.clone(), 1000, 10))
    for other in ([1235, 5], [1234, 6], [1234 + 2**40, 5], [1234, 5 + 2**40]):
        v = torch.ops.pau.rpau_noise(torch.tensor(other), 1000, 10)
        assert (u == v).double().mean() < 0.01
    # A longer request extends a shorter one: index i always gets the same noise.
    assert torch.equal(torch.ops.pau.rpau_noise(SEED, 3000, 10)[:1000], u)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape,dim,groups,channels_last", LAYOUTS)
def test_alpha_zero_is_pau_bit_for_bit(dtype, shape, dim, groups, channels_last):
    x = make_x(shape, dtype=dtype, channels_last=channels_last).requires_grad_()
    numerator, denominator = coefficients(groups, dtype=torch.float32)
    numerator.requires_grad_()
    grad = torch.randn(shape, dtype=torch.float64).to(dtype)
    y = torch.ops.pau.rpau_forward(x, numerator, denominator, torch.zeros(10), SEED, "safe", dim)
    gx, gn = torch.autograd.grad(y, (x, numerator), grad)
    yp = torch.ops.pau.forward(x, numerator, denominator, "safe", dim)
    px, pn = torch.autograd.grad(yp, (x, numerator), grad)
    assert torch.equal(y, yp) and torch.equal(gx, px) and torch.equal(gn, pn)


def test_module_eval_is_pau_and_training_is_noisy():
    torch.manual_seed(0)
    act = pau.RPAU(groups=4, alpha=0.1)
    plain = pau.PAU(groups=4)
    plain.load_state_dict({k: v for k, v in act.state_dict().items() if k != "alpha"})
    x = torch.randn(2, 4, 5, 5)
    act.eval()
    assert torch.equal(act(x), plain(x))
    act.train()
    y1, y2 = act(x), act(x)
    assert not torch.equal(y1, y2)  # consecutive calls draw new noise
    torch.manual_seed(7)
    a = act(x)
    torch.manual_seed(7)
    assert torch.equal(a, act(x))  # torch.manual_seed reproduces
    assert torch.equal(pau.RPAU(alpha=0.0)(x), pau.PAU()(x))


def test_same_seed_same_result_different_seed_differs(device):
    x = make_x((3, 4, 50), dtype=torch.float32, device=device)
    numerator, denominator = coefficients(1, dtype=torch.float32, device=device)
    alpha = torch.tensor(0.05, device=device)
    y1 = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, SEED, "safe", 1)
    y2 = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, SEED.clone(), "safe", 1)
    y3 = torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, SEED + 1, "safe", 1)
    assert torch.equal(y1, y2)
    assert (y1 == y3).float().mean() < 0.05


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck_regenerates_the_noise(device, variant):
    x = (make_x((2, 3, 5)).abs() + 0.3) * torch.tensor([1.0, -1.0]).repeat(8)[:15].reshape(3, 5)
    x = x.to(device)
    numerator, denominator = coefficients(3, variant, device=device)
    alpha = torch.tensor(0.2, dtype=torch.float64, device=device)
    inputs = (x.requires_grad_(), numerator.requires_grad_(), denominator.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda a, b, c: torch.ops.pau.rpau_forward(a, b, c, alpha, SEED, variant, 1), inputs
    )


def saved_bytes(fn, *inputs):
    total = []

    def pack(t):
        total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(total), len(total)


def test_saves_only_what_pau_saves():
    x = torch.randn(8, 16, 32, 32, requires_grad=True)
    numerator, denominator = coefficients(1, dtype=torch.float32)
    numerator.requires_grad_()
    alpha = torch.tensor(0.01)
    pau_bytes, pau_count = saved_bytes(
        lambda *t: torch.ops.pau.forward(*t, "safe", 1), x, numerator, denominator
    )
    rpau_bytes, rpau_count = saved_bytes(
        lambda *t: torch.ops.pau.rpau_forward(*t, alpha, SEED, "safe", 1), x, numerator, denominator
    )
    # PAU saves x and the coefficients; RPAU adds alpha and the (2,) seed: no noise.
    assert pau_count == 3 and rpau_count == 5
    assert rpau_bytes - pau_bytes == alpha.numel() * alpha.element_size() + 16


def test_errors_name_the_problem(device):
    x = torch.randn(2, 6, 3).to(device)
    num, den = coefficients(3, dtype=torch.float32, device=device)
    op = torch.ops.pau.rpau_forward
    a = torch.tensor(0.1, device=device)
    cases = [
        (
            lambda: op(x, num, den, torch.zeros(9, device=device), SEED, "safe", 1),
            ValueError,
            r"alpha must be a scalar or broadcastable to \(G, m\+1\+n\) = \(3, 10\)",
        ),
        (
            lambda: op(x, num, den, torch.zeros(2, 10, device=device), SEED, "safe", 1),
            ValueError,
            "broadcastable",
        ),
        (
            lambda: op(x, num, den, torch.tensor(1, device=device), SEED, "safe", 1),
            TypeError,
            "alpha must be a floating-point tensor",
        ),
        (
            lambda: op(x, num, den, a, SEED.int(), "safe", 1),
            TypeError,
            "seed_offset must be an int64",
        ),
        (
            lambda: op(x, num, den, a, SEED[:1], "safe", 1),
            ValueError,
            r"seed_offset must have shape \(2,\)",
        ),
        (
            lambda: op(x, num, den, a.clone().requires_grad_(), SEED, "safe", 1),
            RuntimeError,
            "alpha is a hyperparameter",
        ),
        (
            lambda: op(
                x,
                torch.ones(4, 6, device=device),
                torch.ones(4, 4, device=device),
                a,
                SEED,
                "safe",
                1,
            ),
            ValueError,
            "not divisible",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


def test_unusable_alpha_and_module_arguments_raise():
    # The CUDA operator never reads alpha on the host: there an alpha outside
    # [0, 1) gives NaN for its group instead (test_pau_cuda.py).
    x = torch.randn(2, 6, 3)
    num, den = coefficients(3, dtype=torch.float32)
    op = torch.ops.pau.rpau_forward
    cases = [
        (
            lambda: op(x, num, den, torch.tensor(-0.1), SEED, "safe", 1),
            ValueError,
            r"alpha must be in \[0, 1\)",
        ),
        (
            lambda: op(x, num, den, torch.tensor(1.0), SEED, "safe", 1),
            ValueError,
            r"alpha must be in \[0, 1\)",
        ),
        (lambda: pau.RPAU(alpha=-0.5), ValueError, r"alpha must be in \[0, 1\)"),
        (lambda: pau.RPAU(alpha=torch.zeros(3)), ValueError, "broadcastable to"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


@pytest.mark.parametrize("variant", VARIANTS)
def test_opcheck(device, variant):
    x = make_x((2, 6, 5), dtype=torch.float32, device=device)
    num, den = coefficients(3, variant, dtype=torch.float32, device=device)
    alpha = torch.full((10,), 0.1, device=device)
    torch.library.opcheck(
        torch.ops.pau.rpau_forward,
        (x, num.requires_grad_(), den.requires_grad_(), alpha, SEED, variant, 1),
    )
    grad = torch.randn_like(x)
    torch.library.opcheck(
        torch.ops.pau.rpau_backward,
        (grad, x, num.detach(), den.detach(), alpha, SEED, variant, 1),
    )
    torch.library.opcheck(torch.ops.pau.rpau_noise, (SEED, 17, 10))


def test_coefficient_grads_bitwise_deterministic(device):
    # Off the CPU the thread counts change nothing: the runs are plain repetitions.
    x = make_x((8, 16, 64, 64), dtype=torch.float32, device=device)
    alpha = torch.tensor(0.05, device=device)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            num, den = coefficients(1, dtype=torch.float32, device=device)
            num, den = num.requires_grad_(), den.requires_grad_()
            torch.ops.pau.rpau_forward(x, num, den, alpha, SEED, "safe", 1).sum().backward()
            results.append((num.grad, den.grad))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_torch_compile_fullgraph_without_recompiles():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), pau.RPAU(groups=4, alpha=0.1))
    x = torch.randn(2, 3, 8, 8)
    frames = []

    def backend(gm, example_inputs):
        frames.append(gm)
        return gm.forward  # runs the traced graph eagerly: same RNG draws as eager

    compiled = torch.compile(model, fullgraph=True, backend=backend)
    torch.manual_seed(3)
    y1 = compiled(x)
    y2 = compiled(x)
    torch.manual_seed(3)
    torch.testing.assert_close(y1, model(x), rtol=0, atol=0)
    assert not torch.equal(y1, y2)
    compiled(x).sum().backward()
    assert len(frames) == 1  # a new seed every call, one graph
    ops = {str(n.target) for n in frames[0].graph.nodes if n.op == "call_function"}
    assert "pau.rpau_forward" in ops


def test_export_of_eval_module_is_pau():
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), pau.RPAU(groups=6, dim=-1)).eval()
    x = torch.randn(3, 5)
    program = torch.export.export(model, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "pau.forward.default" in targets
    assert not any("rpau" in t for t in targets)
    torch.testing.assert_close(program.module()(x), model(x))


def test_torchscript_save_load_in_fresh_process(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 1), pau.RPAU(groups=4, alpha=0.1))
    x = torch.randn(2, 2, 5, 5)
    scripted = torch.jit.script(model)
    path = tmp_path / "model.pt"
    scripted.save(str(path))
    torch.manual_seed(11)
    y_train = model(x)
    torch.save({"x": x, "y_train": y_train, "y_eval": model.eval()(x)}, tmp_path / "io.pt")
    script = textwrap.dedent(f"""
        import torch, pau
        io = torch.load({str(tmp_path / "io.pt")!r})
        model = torch.jit.load({str(path)!r})
        torch.manual_seed(11)
        y = model(io["x"])
        torch.testing.assert_close(y, io["y_train"], rtol=0, atol=0)
        y.sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        model.eval()
        torch.testing.assert_close(model(io["x"]), io["y_eval"], rtol=0, atol=0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True)


def test_module_state_dict_and_repr():
    act = pau.RPAU(groups=2, alpha=torch.full((10,), 0.02))
    assert "alpha" in act.state_dict() and act.alpha.shape == (10,)
    assert "alpha=(10,)" in repr(act)
    other = pau.RPAU(groups=2, alpha=torch.zeros(10))
    other.load_state_dict(act.state_dict())
    assert torch.equal(other.alpha, act.alpha)
    assert "alpha=0.01" in repr(pau.RPAU())


@pytest.mark.parametrize("bad", [1.5, -0.01, float("nan"), float("inf")])
def test_loading_an_unusable_alpha_raises(bad):
    # The CUDA operator never reads alpha on the host, so the module checks a
    # loaded alpha itself; the module keeps its old alpha.
    act = pau.RPAU(groups=2, alpha=torch.full((10,), 0.02))
    state = act.state_dict()
    state["alpha"] = state["alpha"].clone()
    state["alpha"][3] = bad
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        act.load_state_dict(state)
    assert torch.equal(act.alpha, torch.full((10,), 0.02))
    # Inside a parent module the prefixed key is checked too.
    parent = torch.nn.Sequential(torch.nn.Identity(), pau.RPAU(groups=2, alpha=torch.zeros(10)))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\)"):
        parent.load_state_dict({f"1.{k}": v for k, v in state.items()})


def test_meta_seed_offset_beside_real_x_raises():
    """A meta seed_offset would dispatch to the meta kernels and return an uninitialised
    CPU tensor: it is an error, forward and backward, unless x is meta too."""
    num, den = coefficients(1, dtype=torch.float32)
    alpha = torch.tensor(0.1)
    x = torch.randn(2, 3, 4)
    meta_seed = torch.empty(2, dtype=torch.int64, device="meta")
    with pytest.raises(RuntimeError, match="seed_offset must be a CPU tensor"):
        torch.ops.pau.rpau_forward(x, num, den, alpha, meta_seed, "safe", 1)
    with pytest.raises(RuntimeError, match="seed_offset must be a CPU tensor"):
        torch.ops.pau.rpau_backward(torch.ones_like(x), x, num, den, alpha, meta_seed, "safe", 1)
    meta = [t.to("meta") for t in (x, num, den, alpha)]
    y = torch.ops.pau.rpau_forward(meta[0], meta[1], meta[2], meta[3], meta_seed, "safe", 1)
    assert y.is_meta and y.shape == x.shape


def test_module_under_meta_default_device():
    """`with torch.device("meta")` (deferred initialisation) builds an RPAU whose
    parameters and alpha are meta, runs it on meta inputs, prints it, and draws its seed on
    the CPU."""
    with torch.device("meta"):
        module = pau.RPAU(groups=3, alpha=0.2)
        assert pau.functional.draw_seed_offset().device.type == "cpu"
        y = module(torch.randn(2, 3, 4))
    assert module.alpha.is_meta and module.numerator.is_meta
    assert y.is_meta and y.shape == (2, 3, 4)
    assert "alpha" in repr(module)
