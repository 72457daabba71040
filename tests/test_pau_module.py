"""pau.PAU: parameters, init, extra_repr, state_dict round trips, training, groups."""

from __future__ import annotations

import copy
from pathlib import Path

import pau
import pytest
import torch
import torch.nn.functional as F
from helpers.inputs import VARIANTS, random_x
from helpers.references import check_against_reference
from helpers.tolerances import tolerance
from pau.reference import pau_reference
from torch import nn


def test_defaults() -> None:
    layer = pau.PAU()
    assert layer.degrees == (5, 4)
    assert (layer.variant, layer.groups, layer.dim) == ("safe", 1, 1)
    assert layer.numerator.shape == (1, 6) and layer.denominator.shape == (1, 4)
    assert layer.numerator.dtype == torch.float32 and layer.denominator.dtype == torch.float32
    assert isinstance(layer.numerator, nn.Parameter) and layer.numerator.requires_grad
    assert isinstance(layer.denominator, nn.Parameter) and layer.denominator.requires_grad
    assert [name for name, _ in layer.named_parameters()] == ["numerator", "denominator"]
    num, den = pau.presets.coefficients("leaky_relu", (5, 4), "safe")
    torch.testing.assert_close(layer.numerator[0], num.float(), rtol=0, atol=0)
    torch.testing.assert_close(layer.denominator[0], den.float(), rtol=0, atol=0)


@pytest.mark.parametrize(
    "degrees,groups", [((5, 4), 1), ((5, 4), 8), ((3, 2), 3), ((8, 7), 2)], ids=str
)
def test_parameter_shapes(degrees: tuple[int, int], groups: int) -> None:
    layer = pau.PAU(degrees=degrees, groups=groups)
    m, n = degrees
    assert layer.numerator.shape == (groups, m + 1)
    assert layer.denominator.shape == (groups, n)
    # Every group starts from the same preset.
    assert torch.equal(layer.numerator, layer.numerator[:1].expand_as(layer.numerator))
    assert torch.equal(layer.denominator, layer.denominator[:1].expand_as(layer.denominator))


def test_dtype_argument() -> None:
    layer = pau.PAU(dtype=torch.float64)
    assert layer.numerator.dtype == torch.float64 and layer.denominator.dtype == torch.float64
    x = random_x((2, 3, 4), torch.float64)
    assert layer(x).dtype == torch.float64


def test_extra_repr() -> None:
    layer = pau.PAU(degrees=(3, 2), variant="abs_sum", init="tanh", groups=4, dim=-1)
    text = repr(layer)
    assert text.startswith("PAU(")
    for part in ("degrees=(3, 2)", "variant='abs_sum'", "init='tanh'", "groups=4", "dim=-1"):
        assert part in text, text
    custom = pau.PAU(degrees=(1, 0), init=([0.0, 1.0], []))
    assert "init='custom'" in repr(custom)


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_is_the_operator(variant: str) -> None:
    layer = pau.PAU(variant=variant, groups=4, dim=1)
    with torch.no_grad():
        layer.numerator.add_(torch.randn_like(layer.numerator) * 0.05)
        layer.denominator.mul_(1 + torch.rand_like(layer.denominator) * 0.1)
    x = random_x((3, 8, 5, 5), torch.float32, seed=3)
    y = layer(x)
    expected = torch.ops.pau.forward(x, layer.numerator, layer.denominator, variant, 1)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    check_against_reference(x, layer.numerator.detach(), layer.denominator.detach(), variant, 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_default_init_is_leaky_relu_for_each_variant(variant: str) -> None:
    """The preset is fitted per variant: every variant starts close to leaky_relu."""
    layer = pau.PAU(variant=variant)
    x = torch.linspace(-3, 3, 1201).reshape(1, -1)
    with torch.no_grad():
        error = (layer(x) - F.leaky_relu(x, 0.01)).abs().max().item()
    assert error < 0.05, f"{variant}: max error {error} on [-3, 3]"


def test_explicit_init() -> None:
    numerator = [0.1, 0.9, 0.2, 0.05]
    denominator = [0.3, 0.02]
    layer = pau.PAU(degrees=(3, 2), init=(numerator, denominator), groups=2)
    want_n = torch.tensor([numerator, numerator])
    want_d = torch.tensor([denominator, denominator])
    torch.testing.assert_close(layer.numerator.detach(), want_n, rtol=0, atol=0)
    torch.testing.assert_close(layer.denominator.detach(), want_d, rtol=0, atol=0)
    # Tensors work as well as lists, and the function is what the coefficients say.
    tensor_layer = pau.PAU(
        degrees=(3, 2), init=(torch.tensor(numerator), torch.tensor(denominator)), variant="plain"
    )
    x = random_x((2, 5), torch.float32, seed=4)
    want = pau_reference(x, want_n[:1], want_d[:1], "plain", 1)
    torch.testing.assert_close(tensor_layer(x), want, rtol=1e-6, atol=1e-6)


def test_explicit_identity_init() -> None:
    layer = pau.PAU(degrees=(1, 1), init=([0.0, 1.0], [0.0]), dim=-1)
    x = random_x((4, 7), torch.float32, seed=5, high=100.0)
    torch.testing.assert_close(layer(x), x, rtol=0, atol=0)


def test_state_dict_round_trip(tmp_path: Path) -> None:
    source = pau.PAU(degrees=(5, 4), variant="abs_sum", groups=6)
    with torch.no_grad():
        source.numerator.add_(torch.randn_like(source.numerator) * 0.1)
        source.denominator.add_(torch.randn_like(source.denominator) * 0.1)
    state = source.state_dict()
    assert set(state) == {"numerator", "denominator"}
    path = tmp_path / "pau.pt"
    torch.save(state, path)
    target = pau.PAU(degrees=(5, 4), variant="abs_sum", init="tanh", groups=6)
    assert not torch.equal(target.numerator, source.numerator)
    result = target.load_state_dict(torch.load(path, weights_only=True))
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(target.numerator, source.numerator)
    assert torch.equal(target.denominator, source.denominator)
    x = random_x((2, 6, 4, 4), torch.float32, seed=6)
    torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


def test_state_dict_shape_mismatch_is_an_error() -> None:
    source = pau.PAU(groups=2)
    target = pau.PAU(groups=3)
    with pytest.raises(RuntimeError, match="size mismatch for numerator"):
        target.load_state_dict(source.state_dict())


def test_deepcopy_and_state_dict_in_a_model() -> None:
    model = nn.Sequential(nn.Linear(5, 8), pau.PAU(groups=8, dim=-1), nn.Linear(8, 2))
    clone = copy.deepcopy(model)
    x = random_x((3, 5), torch.float32, seed=7)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    assert {"1.numerator", "1.denominator"} <= set(model.state_dict())


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_step_changes_coefficients(variant: str) -> None:
    torch.manual_seed(0)
    layer = pau.PAU(variant=variant, groups=2)
    before = [p.detach().clone() for p in layer.parameters()]
    optimizer = torch.optim.SGD(layer.parameters(), lr=1e-2)
    x = random_x((16, 2, 32), torch.float32, seed=8)
    target = torch.tanh(x)  # a different function than the leaky_relu init
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), target)
        loss.backward()
        for p in layer.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
            assert p.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.item())
    for old, new in zip(before, layer.parameters()):
        assert not torch.equal(old, new.detach())
    assert losses[-1] < losses[0]


def test_groups_train_independently() -> None:
    """With G = C, a loss on one channel only changes that channel's coefficients."""
    layer = pau.PAU(groups=4, dim=1)
    x = random_x((3, 4, 6), torch.float32, seed=9)
    layer(x)[:, 2].sum().backward()
    for name in ("numerator", "denominator"):
        grad = getattr(layer, name).grad
        assert grad[2].abs().sum() > 0, name
        assert torch.equal(grad[[0, 1, 3]], torch.zeros_like(grad[[0, 1, 3]])), name


def test_in_a_conv_net_channels_last() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), pau.PAU(groups=8), nn.Conv2d(8, 4, 3), pau.PAU(groups=2)
    )
    x = torch.randn(2, 3, 9, 9)
    y = model(x)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    y_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, y, rtol=1e-5, atol=1e-5)
    y.square().mean().backward()
    y_cl.square().mean().backward()
    for p, q in zip(model.parameters(), model_cl.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5)


def test_module_to_float64() -> None:
    layer = pau.PAU(groups=2).double()
    assert layer.numerator.dtype == torch.float64
    x = random_x((2, 2, 3), torch.float64, seed=10)
    check_against_reference(x, layer.numerator.detach(), layer.denominator.detach(), "safe", 1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["pau", "rpau", "pwlu"])
def test_model_cast_to_half_precision_trains(kind: str, dtype: torch.dtype) -> None:
    """model.half() / .bfloat16() casts the activation's parameters too; it still runs,
    matches the float32 module on the same (rounded) parameters, and trains."""
    torch.manual_seed(0)
    layer = {"pau": pau.PAU, "rpau": pau.RPAU, "pwlu": pau.PWLU}[kind](groups=3).eval()
    reference = copy.deepcopy(layer)
    layer = layer.to(dtype)
    assert all(p.dtype == dtype for p in layer.parameters())
    for p in reference.parameters():  # the float32 module with the rounded parameters
        p.data = p.data.to(dtype).float()
    x = torch.randn(2, 3, 4, 5).to(dtype)
    y = layer(x)
    assert y.dtype == dtype
    want = reference(x.float())
    torch.testing.assert_close(y.float(), want, rtol=tolerance(dtype)[0] * 4, atol=1e-3)

    layer.train()
    y = layer(x.requires_grad_())
    y.float().square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.dtype == dtype, name
        assert torch.isfinite(p.grad).all(), name
    assert x.grad is not None and x.grad.dtype == dtype


def _unit(kind: str, groups: int = 1, dim: int = 1) -> nn.Module:
    if kind == "pwlu":
        return pau.PWLU(groups=groups, dim=dim, init="leaky_relu")
    cls = pau.RPAU if kind.startswith("rpau") else pau.PAU
    unit = cls(groups=groups, dim=dim, init="gelu")
    return unit.train(kind == "rpau_train")


@pytest.mark.parametrize("dim", [1, -1, 2])
@pytest.mark.parametrize("shape", [(7,), ()], ids=["1d", "0d"])
@pytest.mark.parametrize("kind", ["pau", "rpau_train", "rpau_eval", "pwlu"])
def test_one_group_takes_1d_and_0d_inputs(kind: str, shape: tuple, dim: int) -> None:
    # One group: the channel dim does not matter, so inputs without one are
    # accepted (they used to raise "dim 1 is out of range").
    unit = _unit(kind, dim=dim)
    x = torch.randn(shape, requires_grad=True)
    torch.manual_seed(1)  # RPAU: the same noise for both calls
    y = unit(x)
    row = copy.deepcopy(unit)
    row.dim = 1
    torch.manual_seed(1)
    expected = row(x.detach().reshape(1, -1)).reshape(shape)  # as one channel row
    assert y.shape == shape
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == shape


@pytest.mark.parametrize("shape", [(8,), ()], ids=["1d", "0d"])
@pytest.mark.parametrize("kind", ["pau", "rpau_train", "pwlu"])
def test_several_groups_need_a_channel_dim(kind: str, shape: tuple) -> None:
    unit = _unit(kind, groups=2)
    name = type(unit).__name__
    message = rf"pau.{name}: x has {len(shape)} dimension\(s\), .* 1-D and 0-D inputs need groups=1"
    with pytest.raises(ValueError, match=message):
        unit(torch.randn(shape))


def test_one_group_keeps_checking_dim_of_higher_rank_inputs() -> None:
    with pytest.raises(IndexError, match="dim 3 is out of range"):
        pau.PAU(dim=3)(torch.randn(2, 3))


def test_scripted_unit_takes_1d_input() -> None:
    unit = pau.PAU(init="gelu")
    x = torch.randn(5)
    torch.testing.assert_close(torch.jit.script(unit)(x), unit(x), rtol=0, atol=0)
