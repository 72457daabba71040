"""Higher-order autograd and torch.func for PAU and RPAU.

Double backward goes through pau::backward's autograd kernel, which builds a
differentiable composite of at:: ops (cpp/ops/composite.cpp) when a graph is
needed; under torch.func transforms and forward-mode AD pau::forward itself is
that composite. The first-order path stays the fused kernels.
"""

from __future__ import annotations

from decimal import MAX_EMAX, MIN_EMIN, Decimal, localcontext
from typing import Callable

import pau
import pytest
import torch
from helpers.exact import HIGH_PRECISION, exact_pau
from helpers.inputs import paper_coefficients, random_coefficients, random_x, smooth_inputs
from pau.reference import VARIANTS, pau_reference, rpau_reference
from torch import Tensor
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap

SEED = torch.tensor([1234, 5], dtype=torch.int64)
ALPHA = torch.tensor(0.3, dtype=torch.float64)

CASES = [
    # (shape, dim, groups, degrees, channels_last)
    ((2, 3, 4), 1, 1, (5, 4), False),
    ((2, 3, 4), 1, 3, (5, 4), False),
    ((2, 4, 5), 1, 2, (3, 2), False),
    ((3, 2, 7), -1, 7, (4, 3), False),
    ((2, 4, 3, 2), 1, 4, (3, 2), True),
    ((2, 3, 3), 1, 3, (2, 0), False),
    ((2, 3, 3), 1, 1, (0, 1), False),
    ((6,), 0, 1, (3, 2), False),
]
CASE_IDS = [f"{c[0]}-dim{c[1]}-G{c[2]}-deg{c[3][0]}_{c[3][1]}{'-cl' * c[4]}" for c in CASES]


def pau_fn(variant: str, dim: int) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    return lambda x, num, den: torch.ops.pau.forward(x, num, den, variant, dim)


def rpau_fn(variant: str, dim: int) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    return lambda x, num, den: torch.ops.pau.rpau_forward(x, num, den, ALPHA, SEED, variant, dim)


def inputs_for(case: tuple, variant: str) -> tuple[Tensor, Tensor, Tensor]:
    shape, dim, groups, degrees, channels_last = case
    x, num, den = smooth_inputs(shape, groups, degrees, variant, dim, seed=len(shape) + groups)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return tuple(t.requires_grad_() for t in (x, num, den))


# ---------------------------------------------------------------------------
# Double backward: gradgradcheck in float64.


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradgradcheck_pau(variant: str, case: tuple) -> None:
    inputs = inputs_for(case, variant)
    assert torch.autograd.gradgradcheck(
        pau_fn(variant, case[1]), inputs, eps=1e-6, atol=1e-6, rtol=1e-4
    )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradgradcheck_rpau(variant: str, case: tuple) -> None:
    """RPAU regenerates its noise from seed_offset, so the check is deterministic."""
    inputs = inputs_for(case, variant)
    assert torch.autograd.gradgradcheck(
        rpau_fn(variant, case[1]), inputs, eps=1e-6, atol=1e-6, rtol=1e-4
    )


def rpau_reference_fn(variant: str, dim: int, shape: tuple[int, ...], groups: int, degrees):
    noise = pau.functional.rpau_noise(shape, SEED, ALPHA, degrees, groups, dim)
    return lambda x, num, den: rpau_reference(x, num, den, noise, variant, dim)


def second_order_terms(f: Callable, x: Tensor, num: Tensor, den: Tensor) -> list[Tensor]:
    """y, the first-order gradients and a few second-order ones, all from autograd."""
    y = f(x, num, den)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    gx, gn, gd = torch.autograd.grad((y * weights).sum(), (x, num, den), create_graph=True)
    # d/d(everything) of a scalar of the gradients: every second-order block.
    scalar = (gx**2).sum() + (gn * torch.arange(gn.numel()).reshape(gn.shape)).sum() + gd.sum()
    second = torch.autograd.grad(scalar, (x, num, den), allow_unused=True, materialize_grads=True)
    return [y, gx, gn, gd, *second]


@pytest.mark.parametrize("rpau", [False, True], ids=["pau", "rpau"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES[:5], ids=CASE_IDS[:5])
def test_second_order_matches_reference(case: tuple, variant: str, rpau: bool) -> None:
    shape, dim, groups, degrees, _ = case
    x, num, den = inputs_for(case, variant)
    op = rpau_fn(variant, dim) if rpau else pau_fn(variant, dim)
    ref = rpau_reference_fn(variant, dim, shape, groups, degrees) if rpau else (
        lambda x, n, d: pau_reference(x, n, d, variant, dim))
    for got, want in zip(second_order_terms(op, x, num, den), second_order_terms(ref, x, num, den)):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_second_order_matches_float64_reference(variant: str) -> None:
    x, num, den = smooth_inputs((4, 3, 16), 3, (5, 4), variant, 1, seed=9)
    x32, num32, den32 = (t.float().requires_grad_() for t in (x, num, den))
    x64, num64, den64 = (t.float().double().requires_grad_() for t in (x, num, den))
    got = second_order_terms(pau_fn(variant, 1), x32, num32, den32)
    want = second_order_terms(lambda a, b, c: pau_reference(a, b, c, variant, 1), x64, num64,
                              den64)
    for g, w in zip(got, want):
        scale = max(1.0, w.abs().max().item())
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-4 * scale)


def test_third_derivative_matches_reference() -> None:
    x, num, den = smooth_inputs((2, 3, 5), 3, (5, 4), "safe", 1, seed=4)
    x.requires_grad_()

    def third(f: Callable) -> Tensor:
        (d1,) = torch.autograd.grad(f(x, num, den).sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
        (d3,) = torch.autograd.grad(d2.sum(), x)
        return d3

    torch.testing.assert_close(third(pau_fn("safe", 1)),
                               third(lambda a, b, c: pau_reference(a, b, c, "safe", 1)),
                               rtol=1e-10, atol=1e-10)


def test_first_order_without_graph_is_the_kernel() -> None:
    """create_graph=False keeps pau::backward's fused kernel, bit for bit; the composite
    taken with create_graph=True gives the same gradients to rounding."""
    x = random_x((3, 4, 33), torch.float32, seed=3).requires_grad_()
    num, den = (t.requires_grad_() for t in random_coefficients(4, (5, 4), "safe", torch.float32))
    y = torch.ops.pau.forward(x, num, den, "safe", 1)
    g = torch.randn_like(y)
    plain = torch.autograd.grad(y, (x, num, den), g, retain_graph=True)
    kernel = torch.ops.pau.backward(g, x.detach(), num.detach(), den.detach(), "safe", 1)
    for a, b in zip(plain, kernel):
        assert torch.equal(a, b)
    with_graph = torch.autograd.grad(y, (x, num, den), g, create_graph=True)
    assert all(t.requires_grad for t in with_graph)
    for a, b in zip(with_graph, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, b.abs().max().item()))


def exact_second_derivatives(
    x: float, numerator: list[float], denominator: list[float], variant: str
) -> tuple[float, list[float], float]:
    """(d2F/dx2, d/da_j dF/dx, dF/dx) at x: central differences of the 200-digit exact
    dF/dx (helpers.exact.exact_pau) with steps of 1e-60, far below float64's resolution."""
    with localcontext() as ctx:
        ctx.prec = HIGH_PRECISION
        ctx.Emax, ctx.Emin = MAX_EMAX, MIN_EMIN
        xd = Decimal(x)
        h = max(abs(xd), Decimal(1)) * Decimal("1e-60")

        def slope(at: Decimal, a: list[Decimal]) -> Decimal:
            return exact_pau(at, a, denominator, variant)[1]

        a = [Decimal(c) for c in numerator]
        d2x = (slope(xd + h, a) - slope(xd - h, a)) / (2 * h)
        d2a = []
        for j in range(len(a)):
            up, down = list(a), list(a)
            up[j] += Decimal("1e-60")
            down[j] -= Decimal("1e-60")
            d2a.append((slope(xd, up) - slope(xd, down)) / Decimal("2e-60"))
        return float(d2x), [float(v) for v in d2a], float(slope(xd, a))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("variant", ["safe", "abs_sum"])
def test_second_derivatives_for_large_inputs(variant: str, dtype: torch.dtype) -> None:
    """The composite uses the kernels' scaled powers (x^9 for x = 1e30 overflows float32):
    second derivatives stay finite and close to the exact ones.

    Up to 1/100 of the dtype's largest value; closer to it autograd's own
    intermediates of the second derivative overflow (measured: NaN at max / 10).
    d2F/dx2 = O(1/x^3) is a difference of O(1/x) terms: its absolute error is
    rounding (eps) times those terms, and where x^-2 underflows
    (|x| > tiny^-1/2) the terms themselves.
    """
    num, den = paper_coefficients(1, dtype)
    values = [0.5, 1e3, -1e3, 1e10, -1e10, 1e30, -1e30, torch.finfo(dtype).max / 100]
    x = torch.tensor(values, dtype=dtype).reshape(1, 1, -1).requires_grad_()
    num.requires_grad_()
    (d1,) = torch.autograd.grad(torch.ops.pau.forward(x, num, den, variant, 1).sum(), x,
                                create_graph=True)
    (d2x,) = torch.autograd.grad(d1.sum(), x, retain_graph=True)
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    for i, v in enumerate(x.detach().flatten().tolist()):
        (d2a,) = torch.autograd.grad(d1[0, 0, i], num, retain_graph=True)
        assert torch.isfinite(d2x[0, 0, i]) and torch.isfinite(d2a).all()
        want_x, want_a, slope = exact_second_derivatives(
            v, num.detach().flatten().tolist(), den.flatten().tolist(), variant)
        resolution = eps if abs(v) < tiny**-0.5 else 1.0
        limit = 8 * max(1.0, abs(slope)) * resolution / max(1.0, abs(v))
        assert abs(d2x[0, 0, i].item() - want_x) <= limit, (v, d2x[0, 0, i].item(), want_x)
        scale = max(abs(w) for w in want_a) / max(1.0, abs(v))
        for got, want in zip(d2a.flatten().tolist(), want_a):
            assert abs(got - want) <= 16 * eps * max(abs(want), scale), (v, got, want)


@pytest.mark.parametrize("groups", [1, 2], ids=["one_degree", "two_degrees"])
def test_zero_leading_denominator_scales_by_the_effective_degree(groups: int) -> None:
    """(2, 4) with b = (b_1, b_2, 0, 0): the composite scales by x^2, not x^4 (x^-2 D and
    x^-2 P underflow float32 at x = 1e25: 0 / 0). One group: the scaling degree is read on
    the host (products of 1/x); two groups of different degrees: a per-group tensor (pow)."""
    num = torch.tensor([[0.1, 0.5, 0.3]] * groups, dtype=torch.float32, requires_grad=True)
    den = torch.tensor([[0.4, 0.3, 0.0, 0.0], [0.2, 0.1, 0.3, 0.25]][:groups],
                       dtype=torch.float32)
    x = torch.tensor([[[1e25, -3e24, 2.0]] * groups], dtype=torch.float32,
                     requires_grad=True).reshape(1, groups, 3)
    (d1,) = torch.autograd.grad(torch.ops.pau.forward(x, num, den, "safe", 1).sum(), x,
                                create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), num)
    xr, nr = x.detach().double().requires_grad_(), num.detach().double().requires_grad_()
    (r1,) = torch.autograd.grad(pau_reference(xr, nr, den.double(), "safe", 1).sum(), xr,
                                create_graph=True)
    (r2,) = torch.autograd.grad(r1.sum(), nr)
    # The first order with a graph is the fused kernel's, bit for bit (its error model
    # is the first-order tests'); the second order follows the reference.
    (plain_d1,) = torch.autograd.grad(torch.ops.pau.forward(x, num, den, "safe", 1).sum(), x)
    assert torch.equal(d1, plain_d1)
    # atol: values below float32's normal range (dF/dx ~ 1e-74 for the second group).
    tiny = torch.finfo(torch.float32).tiny
    torch.testing.assert_close(d2.double(), r2, rtol=1e-5, atol=tiny)


def test_double_backward_through_a_module_and_torchscript() -> None:
    """A gradient penalty through nn.Module and the same module scripted."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), pau.PAU((3, 2), groups=8, dim=-1),
                                torch.nn.Linear(8, 1)).double()
    scripted = torch.jit.script(model)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    penalties = []
    for m in (model, scripted):
        (gx,) = torch.autograd.grad(m(x).sum(), x, create_graph=True)
        penalty = (gx.norm(dim=1) - 1).pow(2).mean()
        penalties.append(torch.autograd.grad(penalty, list(model.parameters()),
                                           materialize_grads=True))
    reference = torch.nn.Sequential(model[0], pau_module_as_reference(model[1]), model[2])
    (gx,) = torch.autograd.grad(reference(x).sum(), x, create_graph=True)
    want = torch.autograd.grad((gx.norm(dim=1) - 1).pow(2).mean(), list(model.parameters()),
                               materialize_grads=True)
    for got in penalties:
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-12)


class _ReferencePAU(torch.nn.Module):
    """A PAU's own parameters under the same names, evaluated by the reference."""

    def __init__(self, module: pau.PAU) -> None:
        super().__init__()
        self.numerator = module.numerator
        self.denominator = module.denominator
        self.variant = module.variant
        self.dim = module.dim

    def forward(self, x: Tensor) -> Tensor:
        return pau_reference(x, self.numerator, self.denominator, self.variant, self.dim)


def pau_module_as_reference(module: pau.PAU) -> torch.nn.Module:
    """The same parameters, evaluated by the plain-PyTorch reference."""
    return _ReferencePAU(module)


# ---------------------------------------------------------------------------
# torch.func on the functional forms and on modules, against the float64 reference.


def _functional_inputs(variant: str = "safe") -> tuple[Tensor, Tensor, Tensor]:
    return smooth_inputs((4, 3, 5), 3, (5, 4), variant, 1, seed=12)


@pytest.mark.parametrize("variant", VARIANTS)
def test_func_grad_jacrev_jacfwd_jvp_hessian(variant: str) -> None:
    x, num, den = _functional_inputs(variant)
    op = pau_fn(variant, 1)

    def ref(x: Tensor, n: Tensor, d: Tensor) -> Tensor:
        return pau_reference(x, n, d, variant, 1)

    def close(a: Tensor, b: Tensor) -> None:
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)

    for argnums in (0, 1, 2, (0, 1, 2)):
        got = grad(lambda *a: op(*a).pow(2).sum(), argnums=argnums)(x, num, den)
        want = grad(lambda *a: ref(*a).pow(2).sum(), argnums=argnums)(x, num, den)
        torch.utils._pytree.tree_map(close, got, want)
    close(jacrev(op, argnums=1)(x, num, den), jacrev(ref, argnums=1)(x, num, den))
    close(jacfwd(op, argnums=(0, 2))(x, num, den)[1], jacfwd(ref, argnums=(0, 2))(x, num, den)[1])
    tangents = (torch.randn_like(x), torch.randn_like(num), torch.randn_like(den))
    for got, want in zip(jvp(op, (x, num, den), tangents), jvp(ref, (x, num, den), tangents)):
        close(got, want)
    close(hessian(lambda n: op(x, n, den).sum())(num), hessian(lambda n: ref(x, n, den).sum())(num))
    close(hessian(lambda x: op(x, num, den).sum())(x[:1, :, :2]),
          hessian(lambda x: ref(x, num, den).sum())(x[:1, :, :2]))


def test_forward_mode_ad_with_dual_tensors() -> None:
    import torch.autograd.forward_ad as fwAD

    x, num, den = _functional_inputs()
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(torch.ops.pau.forward(fwAD.make_dual(x, tangent), num, den)).tangent
        want = fwAD.unpack_dual(pau_reference(fwAD.make_dual(x, tangent), num, den)).tangent
    torch.testing.assert_close(out, want, rtol=1e-11, atol=1e-11)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 6), pau.PAU((5, 4), groups=6, dim=-1),
                               torch.nn.Linear(6, 2), pau.PAU((3, 2)), torch.nn.Linear(2, 1)
                               ).double()


def _reference_model(model: torch.nn.Module) -> torch.nn.Module:
    layers = [pau_module_as_reference(m) if isinstance(m, pau.PAU) else m for m in model]
    return torch.nn.Sequential(*layers)


def test_per_sample_gradients_of_a_module() -> None:
    """Opacus-style per-sample gradients: vmap(grad) over functional_call."""
    model = _model()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(7, 3, dtype=torch.float64)
    target = torch.randn(7, 1, dtype=torch.float64)

    def loss(module: torch.nn.Module):
        def f(p: dict, xi: Tensor, ti: Tensor) -> Tensor:
            out = functional_call(module, p, (xi.unsqueeze(0),))
            return (out - ti.unsqueeze(0)).pow(2).sum()
        return f

    got = vmap(grad(loss(model)), in_dims=(None, 0, 0))(params, x, target)
    want = vmap(grad(loss(_reference_model(model))), in_dims=(None, 0, 0))(params, x, target)
    for name in params:
        torch.testing.assert_close(got[name], want[name], rtol=1e-11, atol=1e-12)
    # ... and they are the gradients of each sample on its own, from the kernels.
    for i in (0, 6):
        model.zero_grad()
        (model(x[i:i + 1]) - target[i:i + 1]).pow(2).sum().backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(got[name][i], p.grad, rtol=1e-11, atol=1e-12)


def test_hessian_and_jacobians_of_a_module() -> None:
    model = _model()
    reference = _reference_model(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(4, 3, dtype=torch.float64)
    for transform in (jacrev, jacfwd):
        got = transform(lambda p: functional_call(model, p, (x,)))(params)
        want = transform(lambda p: functional_call(reference, p, (x,)))(params)
        for name in params:
            torch.testing.assert_close(got[name], want[name], rtol=1e-11, atol=1e-12)
    name = "1.numerator"

    def loss_of(module: torch.nn.Module):
        return lambda c: functional_call(module, {**params, name: c}, (x,)).pow(2).sum()

    torch.testing.assert_close(hessian(loss_of(model))(params[name]),
                               hessian(loss_of(reference))(params[name]), rtol=1e-10, atol=1e-11)


def test_vmap_over_coefficients_is_a_loop_over_models() -> None:
    """Batched coefficients (model ensembles) and batched x both under vmap."""
    x, num, den = _functional_inputs()
    nums = torch.stack([num, num * 0.5, num + 0.1])
    xs = torch.stack([x, x * 2, -x])
    got = vmap(pau_fn("safe", 1))(xs, nums, den.expand(3, *den.shape))
    want = torch.stack([pau_reference(xs[i], nums[i], den) for i in range(3)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    grads = torch.randn_like(xs)
    got = vmap(lambda g, n: torch.ops.pau.backward(g, x, n, den, "safe", 1))(grads, nums)
    for i in range(3):
        want = torch.ops.pau.backward(grads[i], x, nums[i], den, "safe", 1)
        for a, b in zip(got, want):
            torch.testing.assert_close(a[i], b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# RPAU under vmap: pau::rpau_forward is a pure function of seed_offset; the
# randomness is torch.randint's in draw_seed_offset, which follows vmap's flag.


def _rpau_module_and_copies() -> tuple[pau.RPAU, Tensor, Tensor]:
    module = pau.RPAU((5, 4), alpha=0.2).double()
    x0 = torch.randn(1, 3, 4, dtype=torch.float64)
    return module, x0, x0.expand(3, 1, 3, 4).contiguous()


def test_rpau_vmap_randomness_same_gives_every_sample_the_same_noise() -> None:
    module, x0, copies = _rpau_module_and_copies()
    torch.manual_seed(5)
    out = vmap(module, randomness="same")(copies)
    torch.manual_seed(5)
    alone = module(x0)
    for i in range(3):
        torch.testing.assert_close(out[i], alone, rtol=1e-13, atol=1e-13)


def test_rpau_vmap_randomness_different_gives_each_sample_its_own_seed() -> None:
    module, x0, copies = _rpau_module_and_copies()
    torch.manual_seed(7)
    out = vmap(module, randomness="different")(copies)
    torch.manual_seed(7)
    seeds = torch.randint(0, 2**62, (3, 2), dtype=torch.int64)
    for i in range(3):
        alone = pau.functional.rpau(
            x0, module.numerator, module.denominator, module.alpha, seeds[i]
        )
        torch.testing.assert_close(out[i], alone, rtol=1e-13, atol=1e-13)
    assert not torch.allclose(out[0], out[1])


def test_rpau_vmap_randomness_error_raises() -> None:
    module, _, copies = _rpau_module_and_copies()
    with pytest.raises(RuntimeError, match="randomness error mode"):
        vmap(module, randomness="error")(copies)


def test_rpau_per_sample_gradients_match_one_sample_at_a_time() -> None:
    x, num, den = _functional_inputs()

    def loss(n: Tensor, xi: Tensor) -> Tensor:
        return torch.ops.pau.rpau_forward(xi.unsqueeze(0), n, den, ALPHA, SEED, "safe", 1).sum()

    got = vmap(grad(loss), in_dims=(None, 0))(num, x)
    for i in range(x.shape[0]):
        torch.testing.assert_close(got[i], grad(loss)(num, x[i]), rtol=1e-12, atol=1e-12)
    # The unbatched seed gives every sample the noise of a one-sample call.
    n = num.detach().requires_grad_()
    torch.ops.pau.rpau_forward(x[2:3], n, den, ALPHA, SEED, "safe", 1).sum().backward()
    torch.testing.assert_close(got[2], n.grad, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# torch.compile of a second-order step.


def _pinn_loss(model: torch.nn.Module, params: dict, xs: Tensor) -> Tensor:
    def u(p: dict, x: Tensor) -> Tensor:
        return functional_call(model, p, (x.reshape(1, 1),)).reshape(())

    u_xx = vmap(grad(grad(u, argnums=1), argnums=1), in_dims=(None, 0))(params, xs)
    return (u_xx + 1).pow(2).mean()


def test_torch_compile_of_a_second_order_step_with_torch_func() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), pau.PAU((3, 2)), torch.nn.Linear(8, 1))
    params = dict(model.named_parameters())
    xs = torch.rand(16)
    eager = _pinn_loss(model, params, xs)
    eager_grads = torch.autograd.grad(eager, list(params.values()), materialize_grads=True)
    compiled = torch.compile(_pinn_loss, fullgraph=True)(model, params, xs)
    compiled_grads = torch.autograd.grad(compiled, list(params.values()), materialize_grads=True)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["pau", "tanh"])
def test_torch_compile_of_create_graph_is_torchs_own_limit(activation: str) -> None:
    """torch.compile (aot_autograd) refuses double backward through any compiled graph,
    torch.tanh's as well: pau adds no restriction of its own. torch.func (above) or
    backend="eager" are the ways to compile a second-order step."""
    act = pau.PAU((3, 2)) if activation == "pau" else torch.nn.Tanh()
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), act, torch.nn.Linear(8, 1))

    def step(x: Tensor) -> Tensor:
        (du,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return du.pow(2).mean()

    x = torch.rand(16, 1, requires_grad=True)
    eager = step(x)
    torch.testing.assert_close(torch.compile(step, backend="eager")(x), eager)
    with pytest.raises(RuntimeError, match="does not currently support double backward"):
        torch.compile(step)(x).backward()


def test_torch_compile_with_groups_of_different_degrees() -> None:
    """Under torch.compile the composite cannot read the degrees on the host: it selects
    each group's scaled powers among every candidate degree (cpp/ops/composite.cpp)."""
    num = torch.tensor([[0.1, 0.5, 0.3], [0.2, -0.4, 0.6]], dtype=torch.float32)
    den = torch.tensor([[0.4, 0.3, 0.0, 0.0], [0.2, 0.1, 0.3, 0.25]], dtype=torch.float32)
    x = torch.tensor([[[2.5, -0.7, 0.3, 1e25], [1.5, -2.0, 0.9, -3e24]]], dtype=torch.float32)

    def second_derivative(f: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
        return grad(lambda v: grad(lambda u: f(u).sum())(v).sum())

    def op(u: Tensor) -> Tensor:
        return torch.ops.pau.forward(u, num, den, "safe", 1)

    got = torch.compile(second_derivative(op), fullgraph=True)(x)
    want = second_derivative(lambda u: pau_reference(u, num.double(), den.double(), "safe", 1))(
        x.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_rpau_alpha_is_checked_under_vmap() -> None:
    x, num, den = _functional_inputs()
    with pytest.raises(ValueError, match=r"pau: alpha must be in \[0, 1\)"):
        vmap(lambda xi: torch.ops.pau.rpau_forward(xi, num, den, torch.tensor(1.5), SEED,
                                                   "safe", 0))(x)


def test_torch_compile_of_rpau_second_derivatives() -> None:
    """RPAU's composite under torch.compile: the noise of pau::rpau_noise, traced."""
    x, num, den = (t.float() for t in _functional_inputs())

    def second_derivative(u: Tensor) -> Tensor:
        def f(v: Tensor) -> Tensor:
            return torch.ops.pau.rpau_forward(v, num, den, ALPHA, SEED, "safe", 1).sum()
        return grad(lambda v: grad(f)(v).sum())(u)

    torch.testing.assert_close(torch.compile(second_derivative, fullgraph=True)(x),
                               second_derivative(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("degrees", [(0, 0), (2, 0), (3, 2)], ids=lambda d: f"deg{d[0]}_{d[1]}")
def test_nan_propagates_through_the_composite(degrees: tuple[int, int]) -> None:
    """As the kernels: NaN x gives NaN, also for a constant group (E_0 = 1 must not hide it)."""
    num, den = random_coefficients(1, degrees, "safe", torch.float64, seed=1)
    x = torch.tensor([[0.5, float("nan"), 2.0]], dtype=torch.float64)
    out = vmap(lambda xi: torch.ops.pau.forward(xi, num, den, "safe", 0))(x)
    assert torch.isnan(out[0, 1]) and torch.isfinite(out[0, [0, 2]]).all()
    xr = x.clone().requires_grad_()
    (gx,) = torch.autograd.grad(torch.ops.pau.forward(xr, num, den, "safe", 1).sum(), xr,
                                create_graph=True)
    (gn,) = torch.autograd.grad(torch.ops.pau.backward(torch.ones_like(x), xr, num.requires_grad_(),
                                                       den, "safe", 1)[0].sum(), num)
    assert torch.isnan(gn).all()
    assert torch.isfinite(gx[0, [0, 2]]).all()
