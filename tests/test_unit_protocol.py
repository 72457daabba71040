"""The unit protocol (pau.nn.Unit) that convert, plot and optim rely on, checked per unit type.

These methods are the only thing the tools know about a unit, so a unit whose
description disagrees with its operator would give wrong plots and starts
without any other test noticing.
"""

from __future__ import annotations

import pau
import pytest
import torch
from pau.nn import Unit

UNITS = [
    pytest.param(pau.PAU, {"degrees": (5, 4)}, id="PAU"),
    pytest.param(pau.RPAU, {"degrees": (5, 4), "alpha": 0.1}, id="RPAU"),
    pytest.param(pau.PWLU, {"num_points": 12, "bound": 2.5}, id="PWLU"),
]


def _perturbed(module: Unit, seed: int) -> Unit:
    """Every group different, so that a protocol method reading the wrong row fails."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in module.parameter_names:
            p = getattr(module, name)
            if name == "bounds":  # keep B_L < B_R
                p.add_(0.2 * torch.rand(p.shape, generator=gen, dtype=p.dtype) - 0.1)
            else:
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return module


@pytest.mark.parametrize("cls, config", UNITS)
def test_parameter_names_are_the_learnable_tensors(cls: type[Unit], config: dict) -> None:
    module = cls(groups=3, **config)
    assert set(module.parameter_names) == {n for n, _ in module.named_parameters()}
    assert set(cls.config_names) >= set(cls.shape_config_names)
    assert all(name in cls.__init__.__code__.co_varnames for name in cls.config_names)


@pytest.mark.parametrize("cls, config", UNITS)
def test_reference_equals_the_operator_per_group(cls: type[Unit], config: dict) -> None:
    groups = 3
    module = _perturbed(cls(groups=groups, dtype=torch.float64, **config), seed=1).eval()
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    expected = module(x.view(1, 1, -1).expand(1, groups, -1)).reshape(groups, -1).t()
    actual = module.reference(x)
    assert actual.shape == (x.numel(), groups)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)

    one = module.current_parameters(group=1)
    assert all(t.shape[0] == 1 and t.dtype == torch.float64 for t in one.values())
    torch.testing.assert_close(module.reference(x, one)[:, 0], expected[:, 1])


@pytest.mark.parametrize("cls, config", UNITS)
def test_from_function_starts_as_the_function(cls: type[Unit], config: dict) -> None:
    module = cls.from_function(torch.tanh, groups=2, **config)
    assert isinstance(module, cls)
    err = module.max_error(torch.tanh, (-2.5, 2.5), 501)
    # A (5, 4) rational fitted on [-3, 3] is within 1.2e-6 of tanh there; 12
    # PWLU intervals of 5/12 interpolate it within h^2/8 max|tanh''| < 0.02.
    assert err < (0.02 if cls is pau.PWLU else 1e-5), err
    for name, row in module.current_parameters(group=1).items():
        torch.testing.assert_close(row, module.current_parameters(group=0)[name], msg=name)

    start = module.initial_parameters()
    assert start is not None
    for name in module.parameter_names:
        torch.testing.assert_close(start[name], module.current_parameters()[name])
    with torch.no_grad():
        getattr(module, module.parameter_names[0]).add_(1.0)
    moved = module.initial_parameters()[module.parameter_names[0]]
    now = module.current_parameters()[module.parameter_names[0]]
    assert not torch.equal(moved, now), "the remembered start must not follow training"


@pytest.mark.parametrize("cls, config", UNITS)
def test_from_parameters_copies_one_group_to_all(cls: type[Unit], config: dict) -> None:
    source = _perturbed(cls(groups=1, dtype=torch.float64, **config), seed=2)
    parameters = source.current_parameters()
    module = cls.from_parameters(parameters, groups=4, init="custom", dtype=torch.float32, **config)
    assert module.init == "custom"
    for name in cls.parameter_names:
        tensor = getattr(module, name)
        assert tensor.dtype == torch.float32 and tensor.shape[0] == 4
        torch.testing.assert_close(tensor.double(), parameters[name].expand_as(tensor).double())


@pytest.mark.parametrize("cls, config", UNITS)
def test_describe_names_the_unit(cls: type[Unit], config: dict) -> None:
    assert cls.__name__ in cls(**config).describe()


def test_pwlu_knots_lie_on_its_function() -> None:
    module = _perturbed(pau.PWLU(groups=2, num_points=8, dtype=torch.float64), seed=3)
    parameters = module.current_parameters()
    for group in range(2):
        x, y = module.knots(parameters, group)
        assert x.numel() == 9
        torch.testing.assert_close(module.reference(x, parameters)[:, group], y)
    left, right = module.natural_range()
    assert left < right


def test_rpau_noise_band_covers_training_outputs() -> None:
    """The band is sampled (256 draws of the noise), so it covers training outputs
    up to draws more extreme than its samples: 0.3% of them, by at most 4% of its
    width, for this unit; a band of the wrong coefficients or alpha misses most."""
    module = _perturbed(pau.RPAU(alpha=0.2, dtype=torch.float64), seed=4)
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    low, high = module.noise_band(0, x)
    width = float((high - low).max())
    assert width > 0
    with torch.no_grad():
        clean = module.eval()(x)
        assert bool(((low <= clean) & (clean <= high)).all())
        module.train()
        outputs = torch.stack([module(x) for _ in range(50)])
    excess = torch.maximum(low - outputs, outputs - high).clamp(min=0)
    assert float((excess > 0).double().mean()) < 0.02
    assert float(excess.max()) < 0.1 * width
    with torch.no_grad():
        module.alpha.zero_()
    assert module.noise_band(0, x) is None
    assert pau.PAU().noise_band(0, x) is None
