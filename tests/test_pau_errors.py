"""Bad input raises an error whose type and message name the problem (eager and fake/meta)."""

from __future__ import annotations

from typing import Callable

import pau
import pytest
import torch
from torch import Tensor


def _x(device: str = "cpu") -> Tensor:
    return torch.randn(2, 4, 3).to(device)


def _num(
    groups: int = 2, terms: int = 6, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Tensor:
    return torch.randn(groups, terms, dtype=dtype).to(device)


def _den(
    groups: int = 2, terms: int = 4, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Tensor:
    return torch.randn(groups, terms, dtype=dtype).to(device)


def forward(x: Tensor, num: Tensor, den: Tensor, variant: str = "safe", dim: int = 1) -> Tensor:
    return torch.ops.pau.forward(x, num, den, variant, dim)


# name: (call, exception type, message regex)
FORWARD_ERRORS: dict[str, tuple[Callable[[str], object], type, str]] = {
    "x_int": (
        lambda d: forward(_x(d).int(), _num(device=d), _den(device=d)),
        TypeError,
        r"x must be float32, float64, float16 or bfloat16, got Int",
    ),
    "x_bool": (
        lambda d: forward(_x(d) > 0, _num(device=d), _den(device=d)),
        TypeError,
        r"x must be float32, float64, float16 or bfloat16, got Bool",
    ),
    "x_complex": (
        lambda d: forward(_x(d).to(torch.complex64), _num(device=d), _den(device=d)),
        TypeError,
        r"x must be .* got ComplexFloat",
    ),
    "coefficient_dtype_mismatch": (
        lambda d: forward(_x(d), _num(device=d), _den(dtype=torch.float64, device=d)),
        TypeError,
        r"denominator dtype \(Double\) must match numerator dtype \(Float\)",
    ),
    "integer_coefficients": (
        lambda d: forward(_x(d), _num(device=d).int(), _den(device=d).int()),
        TypeError,
        r"numerator must be float32, float64, float16 or bfloat16, got Int",
    ),
    "coefficients_on_other_device": (
        lambda d: forward(_x(d), _num(device=d).to("meta"), _den(device=d).to("meta")),
        RuntimeError,
        r"must be on the same device, got x on {device}\S*, numerator on meta, denominator on meta",
    ),
    "denominator_on_other_device": (
        lambda d: forward(_x(d), _num(device=d), _den(device=d).to("meta")),
        RuntimeError,
        r"same device, got x on {device}\S*, numerator on {device}\S*, denominator on meta",
    ),
    "x_on_other_device": (
        lambda d: forward(_x(d).to("meta"), _num(device=d), _den(device=d)),
        RuntimeError,
        r"same device, got x on meta, numerator on {device}",
    ),
    "numerator_1d": (
        lambda d: forward(_x(d), _num(device=d)[0], _den(device=d)),
        ValueError,
        r"numerator must have shape \(G, m\+1\), got shape \[6\]",
    ),
    "numerator_3d": (
        lambda d: forward(_x(d), _num(device=d)[None], _den(device=d)),
        ValueError,
        r"numerator must have shape \(G, m\+1\), got shape \[1, 2, 6\]",
    ),
    "denominator_1d": (
        lambda d: forward(_x(d), _num(device=d), _den(device=d)[0]),
        ValueError,
        r"denominator must have shape \(G, n\), got shape \[4\]",
    ),
    "group_count_mismatch": (
        lambda d: forward(_x(d), _num(2, device=d), _den(1, device=d)),
        ValueError,
        r"numerator and denominator must have the same number of groups, got 2 and 1",
    ),
    "groups_do_not_divide_channels": (
        lambda d: forward(_x(d), _num(3, device=d), _den(3, device=d)),
        ValueError,
        r"size of dimension 1 of x \(4\) is not divisible by the number of groups \(3\)",
    ),
    "groups_do_not_divide_last_dim": (
        lambda d: forward(_x(d), _num(2, device=d), _den(2, device=d), dim=-1),
        ValueError,
        r"size of dimension 2 of x \(3\) is not divisible by the number of groups \(2\)",
    ),
    "more_groups_than_channels": (
        lambda d: forward(_x(d), _num(8, device=d), _den(8, device=d)),
        ValueError,
        r"\(4\) is not divisible by the number of groups \(8\)",
    ),
    "zero_groups": (
        lambda d: forward(_x(d), _num(0, device=d), _den(0, device=d)),
        ValueError,
        r"need at least one group",
    ),
    "dim_too_large": (
        lambda d: forward(_x(d), _num(device=d), _den(device=d), dim=3),
        IndexError,
        r"dim 3 is out of range for x with 3 dimensions",
    ),
    "dim_too_negative": (
        lambda d: forward(_x(d), _num(device=d), _den(device=d), dim=-4),
        IndexError,
        r"dim -4 is out of range for x with 3 dimensions",
    ),
    "dim_of_0d_x": (
        lambda d: forward(torch.tensor(1.0, device=d), _num(1, device=d), _den(1, device=d), dim=1),
        IndexError,
        r"dim 1 is out of range for x with 0 dimensions",
    ),
    "unknown_variant": (
        lambda d: forward(_x(d), _num(device=d), _den(device=d), variant="bogus"),
        ValueError,
        r"unknown variant 'bogus', expected 'safe', 'abs_sum' or 'plain'",
    ),
    "variant_is_case_sensitive": (
        lambda d: forward(_x(d), _num(device=d), _den(device=d), variant="Safe"),
        ValueError,
        r"unknown variant 'Safe'",
    ),
    "numerator_degree_33": (
        lambda d: forward(_x(d), _num(terms=34, device=d), _den(device=d)),
        ValueError,
        r"numerator degree m must be in \[0, 32\], got numerator shape \[2, 34\]",
    ),
    "denominator_degree_33": (
        lambda d: forward(_x(d), _num(device=d), _den(terms=33, device=d)),
        ValueError,
        r"denominator degree n must be in \[0, 32\], got denominator shape \[2, 33\]",
    ),
    "empty_numerator": (
        lambda d: forward(_x(d), _num(terms=0, device=d), _den(device=d)),
        ValueError,
        r"numerator degree m must be in \[0, 32\], got numerator shape \[2, 0\]",
    ),
}


@pytest.mark.parametrize("case", list(FORWARD_ERRORS))
def test_forward_rejects(device: str, case: str) -> None:
    call, error, message = FORWARD_ERRORS[case]
    with pytest.raises(error, match=message.format(device=device)):
        call(device)


def test_degree_32_is_accepted(device: str) -> None:
    """The limit itself works (the error cases above are one past it)."""
    y = forward(
        _x(device).double(),
        _num(terms=33, dtype=torch.float64, device=device) * 0.1,
        _den(terms=32, dtype=torch.float64, device=device) * 0.1,
    )
    assert torch.isfinite(y).all()


def _meta(t: Tensor) -> Tensor:
    return t.to("meta")


# The fake (meta) kernel applies the same checks, so torch.compile/export fail the same way.
META_ERRORS: dict[str, tuple[Callable[[], object], type, str]] = {
    "x_int": (
        lambda: forward(_meta(_x().int()), _meta(_num()), _meta(_den())),
        TypeError,
        r"x must be float32, float64, float16 or bfloat16",
    ),
    "groups_do_not_divide_channels": (
        lambda: forward(_meta(_x()), _meta(_num(3)), _meta(_den(3))),
        ValueError,
        r"not divisible by the number of groups \(3\)",
    ),
    "unknown_variant": (
        lambda: forward(_meta(_x()), _meta(_num()), _meta(_den()), variant="bogus"),
        ValueError,
        r"unknown variant 'bogus'",
    ),
    "dim_too_large": (
        lambda: forward(_meta(_x()), _meta(_num()), _meta(_den()), dim=5),
        IndexError,
        r"dim 5 is out of range",
    ),
    "backward_grad_shape": (
        lambda: torch.ops.pau.backward(
            _meta(torch.randn(2, 4)), _meta(_x()), _meta(_num()), _meta(_den()), "safe", 1
        ),
        ValueError,
        r"grad_output shape \[2, 4\] must match x shape \[2, 4, 3\]",
    ),
}


@pytest.mark.parametrize("case", list(META_ERRORS))
def test_meta_kernel_rejects(case: str) -> None:
    call, error, message = META_ERRORS[case]
    with pytest.raises(error, match=message):
        call()


def backward(grad: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return torch.ops.pau.backward(grad, x, _num(device=x.device), _den(device=x.device), "safe", 1)


BACKWARD_ERRORS: dict[str, tuple[Callable[[str], object], type, str]] = {
    "grad_shape": (
        lambda d: backward(torch.randn(2, 4, device=d), _x(d)),
        ValueError,
        r"grad_output shape \[2, 4\] must match x shape \[2, 4, 3\]",
    ),
    "grad_transposed_shape": (
        lambda d: backward(torch.randn(3, 4, 2, device=d), _x(d)),
        ValueError,
        r"grad_output shape \[3, 4, 2\] must match x shape \[2, 4, 3\]",
    ),
    "grad_dtype": (
        lambda d: backward(_x(d).double(), _x(d)),
        TypeError,
        r"grad_output dtype \(Double\) must match x dtype \(Float\)",
    ),
    "grad_half_for_float_x": (
        lambda d: backward(_x(d).half(), _x(d)),
        TypeError,
        r"grad_output dtype \(Half\) must match x dtype \(Float\)",
    ),
    "grad_device": (
        lambda d: backward(_x(d).to("meta"), _x(d)),
        RuntimeError,
        r"grad_output is on meta but x is on {device}",
    ),
    "x_checks_apply_too": (
        lambda d: torch.ops.pau.backward(
            _x(d), _x(d), _num(3, device=d), _den(3, device=d), "safe", 1
        ),
        ValueError,
        r"not divisible by the number of groups \(3\)",
    ),
    "variant_checks_apply_too": (
        lambda d: torch.ops.pau.backward(_x(d), _x(d), _num(device=d), _den(device=d), "nope", 1),
        ValueError,
        r"unknown variant 'nope'",
    ),
}


@pytest.mark.parametrize("case", list(BACKWARD_ERRORS))
def test_backward_rejects(device: str, case: str) -> None:
    call, error, message = BACKWARD_ERRORS[case]
    with pytest.raises(error, match=message.format(device=device)):
        call(device)


@pytest.mark.parametrize("wrt", ["x", "numerator", "denominator"])
def test_double_backward_is_supported(wrt: str) -> None:
    """create_graph=True builds a differentiable graph (tests/test_higher_order.py
    checks its values); an ordinary backward still works on the same graph."""
    x = _x().double().requires_grad_()
    num = _num(dtype=torch.float64).requires_grad_()
    den = _den(dtype=torch.float64).requires_grad_()
    y = forward(x, num, den)
    target = {"x": x, "numerator": num, "denominator": den}[wrt]
    (first,) = torch.autograd.grad(y.sum(), target, create_graph=True, retain_graph=True)
    assert first.requires_grad
    y.sum().backward()
    assert x.grad is not None and num.grad is not None and den.grad is not None


# ---------------------------------------------------------------------------
# The module checks its own arguments at construction.

MODULE_ERRORS: dict[str, tuple[Callable[[], object], type, str]] = {
    "unknown_variant": (lambda: pau.PAU(variant="bogus"), ValueError, r"unknown variant 'bogus'"),
    "zero_groups": (lambda: pau.PAU(groups=0), ValueError, r"groups must be a positive int"),
    "float_groups": (lambda: pau.PAU(groups=2.0), ValueError, r"groups must be a positive int"),
    "one_degree": (lambda: pau.PAU(degrees=(5,)), ValueError, r"degrees must be a pair of ints"),
    "float_degrees": (
        lambda: pau.PAU(degrees=(5.0, 4)),
        ValueError,
        r"degrees must be a pair of ints",
    ),
    "negative_degree": (
        lambda: pau.PAU(degrees=(5, -1)),
        ValueError,
        r"degrees must be non-negative",
    ),
    "unknown_preset": (lambda: pau.PAU(init="bogus"), ValueError, r"unknown preset 'bogus'"),
    "explicit_init_wrong_length": (
        lambda: pau.PAU(degrees=(3, 2), init=([0.0, 1.0], [0.0, 0.0])),
        ValueError,
        r"explicit init has 2 numerator and 2 denominator coefficients; degrees \(3, 2\) "
        r"need 4 and 2",
    ),
}


@pytest.mark.parametrize("case", list(MODULE_ERRORS))
def test_module_rejects(case: str) -> None:
    call, error, message = MODULE_ERRORS[case]
    with pytest.raises(error, match=message):
        call()


def test_module_groups_not_dividing_channels_fails_at_forward() -> None:
    layer = pau.PAU(groups=3)
    with pytest.raises(ValueError, match=r"\(4\) is not divisible by the number of groups \(3\)"):
        layer(_x())


# ---------------------------------------------------------------------------
# More module arguments that used to fail late or obscurely.

MORE_MODULE_ERRORS: dict[str, tuple[Callable[[], object], type, str]] = {
    "bool_groups": (lambda: pau.PAU(groups=True), ValueError, r"pau.PAU: groups .* got True"),
    "rpau_bool_groups": (
        lambda: pau.RPAU(groups=True),
        ValueError,
        r"pau.RPAU: groups .* got True",
    ),
    "init_none": (
        lambda: pau.PAU(init=None),
        TypeError,
        r"init must be a preset name .* or a \(numerator, denominator\) pair .* got None",
    ),
    "init_number": (lambda: pau.PAU(init=5), TypeError, r"init must be a preset name .* got 5"),
    "numerator_degree_above_max": (
        lambda: pau.PAU(degrees=(33, 4)),
        ValueError,
        r"degrees \(m, n\) = \(33, 4\) exceed the operators' maximum of 32",
    ),
    "denominator_degree_above_max": (
        lambda: pau.RPAU(degrees=(5, 33)),
        ValueError,
        r"degrees \(m, n\) = \(5, 33\) exceed the operators' maximum of 32",
    ),
    "explicit_init_degree_above_max": (
        lambda: pau.PAU(degrees=(33, 0), init=([0.0] * 34, [])),
        ValueError,
        r"exceed the operators' maximum of 32",
    ),
}


@pytest.mark.parametrize("case", list(MORE_MODULE_ERRORS))
def test_module_rejects_more(case: str) -> None:
    call, error, message = MORE_MODULE_ERRORS[case]
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("cls", [pau.PAU, pau.RPAU])
def test_degrees_above_the_maximum_fail_before_any_preset_is_fitted(cls, monkeypatch) -> None:
    # A preset for unusual degrees is fitted (seconds) and cached on first use;
    # the degree check must come first.
    def no_fit(*args, **kwargs):
        raise AssertionError("a preset was looked up or fitted")

    monkeypatch.setattr(pau.presets, "coefficients", no_fit)
    with pytest.raises(ValueError, match="maximum of 32"):
        cls(degrees=(40, 4), init="relu")


def test_max_degree_is_the_operators() -> None:
    top = pau.nn.pau.MAX_DEGREE
    layer = pau.PAU(degrees=(top, top), init=([0.0, 1.0] + [0.0] * (top - 1), [0.0] * top))
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(layer(x), x, rtol=0, atol=0)  # P(x) = x, Q = 1
    with pytest.raises(ValueError, match=rf"numerator degree m must be in \[0, {top}\]"):
        forward(x, torch.zeros(1, top + 2), torch.zeros(1, 0), "safe", 0)
    with pytest.raises(ValueError, match=rf"denominator degree n must be in \[0, {top}\]"):
        forward(x, torch.zeros(1, 1), torch.zeros(1, top + 1), "safe", 0)


# ---------------------------------------------------------------------------
# None where a tensor belongs. The autograd kernels used to pass it to
# autograd, which failed with "tensor does not have a device".


def _pwlu_parameters() -> tuple[Tensor, Tensor, Tensor]:
    return torch.zeros(1, 5), torch.tensor([[-1.0, 1.0]]), torch.tensor([[0.0, 1.0]])


_PAU_NONE = r"pau: x, numerator and denominator must be defined tensors, not None"
_RPAU_NONE = r"pau: x, numerator, denominator, alpha and seed_offset must be defined tensors"
_PWLU_NONE = r"pwlu: x, points, bounds and slopes must be defined tensors, not None"
_ALPHA = torch.tensor(0.1)
_SEED = torch.tensor([1, 2])

NONE_ERRORS: dict[str, tuple[Callable[[], object], str]] = {
    "forward_x": (lambda: forward(None, _num(), _den()), _PAU_NONE),
    "forward_numerator": (lambda: forward(_x(), None, _den()), _PAU_NONE),
    "forward_denominator": (lambda: forward(_x(), _num(), None), _PAU_NONE),
    "functional_pau": (lambda: pau.functional.pau(None, _num(), _den()), _PAU_NONE),
    "rpau_forward_x": (
        lambda: torch.ops.pau.rpau_forward(None, _num(), _den(), _ALPHA, _SEED, "safe", 1),
        _RPAU_NONE,
    ),
    "rpau_forward_seed": (
        lambda: torch.ops.pau.rpau_forward(_x(), _num(), _den(), _ALPHA, None, "safe", 1),
        _RPAU_NONE,
    ),
    "functional_rpau": (lambda: pau.functional.rpau(None, _num(), _den(), _ALPHA), _RPAU_NONE),
    "pwlu_forward": (
        lambda: torch.ops.pau.pwlu_forward(None, *_pwlu_parameters(), 1),
        _PWLU_NONE,
    ),
    "functional_pwlu": (lambda: pau.functional.pwlu(None, *_pwlu_parameters()), _PWLU_NONE),
}


@pytest.mark.parametrize("grad_mode", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("case", list(NONE_ERRORS))
def test_none_instead_of_a_tensor(case: str, grad_mode: bool) -> None:
    call, message = NONE_ERRORS[case]
    with torch.set_grad_enabled(grad_mode), pytest.raises(RuntimeError, match=message):
        call()


# ---------------------------------------------------------------------------
# RPAU's noise helper and PWLU's phase functions.

NOISE_ERRORS: dict[str, tuple[Callable[[], object], str]] = {
    "groups_not_dividing": (
        lambda: pau.functional.rpau_noise((2, 64), _SEED, 0.1, groups=5),
        r"pau.functional.rpau_noise: the 64 channels .* not divisible by the number of "
        r"groups \(5\)",
    ),
    "alpha_for_other_groups": (
        lambda: pau.functional.rpau_noise((2, 64), _SEED, torch.full((3, 10), 0.1), groups=4),
        r"pau.functional.rpau_noise: alpha must be .* broadcastable to "
        r"\(groups, m\+1\+n\) = \(4, 10\)",
    ),
    "alpha_above_one": (
        lambda: pau.functional.rpau_noise((2, 64), _SEED, 5.0),
        r"pau.functional.rpau_noise: alpha must be in \[0, 1\), got 5.0",
    ),
    "bool_groups": (
        lambda: pau.functional.rpau_noise((2, 64), _SEED, 0.1, groups=True),
        r"pau.functional.rpau_noise: groups must be a positive int",
    ),
    "dim_out_of_range": (
        lambda: pau.functional.rpau_noise((2, 64), _SEED, 0.1, dim=2),
        r"pau.functional.rpau_noise: dim 2 is out of range",
    ),
    "degrees_above_max": (
        lambda: pau.functional.rpau_noise((2, 64), _SEED, 0.1, degrees=(33, 0)),
        r"pau.functional.rpau_noise: degrees .* maximum of 32",
    ),
    "scalar_with_groups": (
        lambda: pau.functional.rpau_noise((), _SEED, 0.1, groups=2),
        r"pau.functional.rpau_noise: dim 1 is out of range for a shape of 0 dimensions",
    ),
}


@pytest.mark.parametrize("case", list(NOISE_ERRORS))
def test_rpau_noise_rejects(case: str) -> None:
    call, message = NOISE_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_pwlu_statistics_with_groups_not_dividing_channels() -> None:
    layer = pau.PWLU(groups=5)
    pau.pwlu_collect_statistics(layer)
    with pytest.raises(ValueError, match=r"\(64\) is not divisible by the number of groups \(5\)"):
        layer(torch.randn(2, 64))


@pytest.mark.parametrize("phase", [pau.pwlu_collect_statistics, pau.pwlu_realign])
def test_pwlu_phases_need_a_module(phase) -> None:
    with pytest.raises(TypeError, match=rf"pau.{phase.__name__}: model must be a torch.nn.Module"):
        phase(42)


@pytest.mark.parametrize("phase", [pau.pwlu_collect_statistics, pau.pwlu_realign])
def test_pwlu_phases_refuse_scripted_pwlus(phase) -> None:
    # TorchScript compiles no statistics code: a scripted model used to be left
    # as it was, without a word.
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), pau.PWLU())
    scripted = torch.jit.script(model)
    with pytest.raises(TypeError, match=r"module '1' is a TorchScript PWLU"):
        phase(scripted)
    model[1] = torch.jit.script(pau.PWLU())  # one scripted PWLU in an eager model
    with pytest.raises(TypeError, match=r"module '1' is a TorchScript PWLU"):
        phase(model)
    with pytest.raises(TypeError, match=r"the model is a TorchScript PWLU"):
        phase(torch.jit.script(pau.PWLU()))
