"""Shipped presets approximate their functions; unknown names fail clearly."""

import pau
import pytest
import torch
from pau import presets
from pau.fit import evaluate

# Max error on [-3, 3] each (5, 4) preset must reach, per function: the kinks of
# ReLU-like functions bound what a rational function can do, smooth ones fit far closer.
MAX_ERROR_54 = {
    "relu": 0.04, "leaky_relu": 0.04, "leaky_relu_0.20": 0.03, "leaky_relu_0.25": 0.03,
    "leaky_relu_0.30": 0.03, "leaky_relu_-0.5": 0.06, "sigmoid": 1e-6, "tanh": 1e-4,
    "swish": 1e-4, "silu": 1e-4, "gelu": 3e-3, "mish": 5e-3, "elu": 5e-3, "softplus": 1e-4,
}


@pytest.mark.parametrize("variant", pau.reference.VARIANTS)
@pytest.mark.parametrize("name", presets.names())
def test_preset_54_approximates_function(name: str, variant: str) -> None:
    numerator, denominator = presets.coefficients(name, (5, 4), variant)
    x = torch.linspace(-3, 3, 6001, dtype=torch.float64)
    error = (evaluate(x, numerator, denominator, variant) - presets.FUNCTIONS[name](x)).abs()
    assert error.max().item() <= MAX_ERROR_54[name]
    # The recorded error is what the coefficients really achieve.
    recorded = presets.info(name, (5, 4), variant)["max_error"]
    assert error.max().item() == pytest.approx(recorded, rel=0.05, abs=1e-9)


# Worst max error over all functions and variants per degree pair: set by the
# kinked functions (a rational function of degree (3, 2) cannot follow ReLU's
# corner closer than about 0.12 on [-3, 3]).
MAX_ERROR_BY_DEGREES = {(3, 2): 0.2, (4, 3): 0.1, (5, 4): 0.06, (6, 5): 0.05, (8, 7): 0.04}


@pytest.mark.parametrize("degrees", presets.DEGREES)
def test_every_shipped_degree_pair_within_bound(degrees) -> None:
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    for variant in pau.reference.VARIANTS:
        for name in presets.names():
            numerator, denominator = presets.coefficients(name, degrees, variant)
            error = (evaluate(x, numerator, denominator, variant) - presets.FUNCTIONS[name](x))
            assert error.abs().max().item() <= MAX_ERROR_BY_DEGREES[degrees], (name, variant)


def test_module_uses_preset() -> None:
    act = pau.PAU(init="gelu", degrees=(4, 3), variant="plain", groups=3)
    numerator, denominator = presets.coefficients("gelu", (4, 3), "plain")
    want_num = numerator.repeat(3, 1).float()
    want_den = denominator.repeat(3, 1).float()
    torch.testing.assert_close(act.numerator.detach(), want_num)
    torch.testing.assert_close(act.denominator.detach(), want_den)


def test_unshipped_degree_is_fitted_with_warning() -> None:
    with pytest.warns(UserWarning, match="fitting it now"):
        numerator, denominator = presets.coefficients("tanh", (2, 2), "safe")
    assert numerator.shape == (3,) and denominator.shape == (2,)


def test_unknown_names_fail_clearly() -> None:
    with pytest.raises(ValueError, match="unknown preset 'nope'.*relu"):
        presets.coefficients("nope")
    with pytest.raises(ValueError, match="unknown variant"):
        presets.coefficients("relu", (5, 4), "weird")
    with pytest.raises(ValueError, match="unknown variant"):
        pau.PAU(variant="weird")
