"""pau.presets fits: every function is shipped in every fit of pau.presets.FITS, the
exact-at-0 fits have F(0) = f(0) exactly, the wide fit starts far closer on
[-10, 10], the default fit is unchanged, and fit names are parsed and rejected clearly.
Only evaluation and one small first-use fit: the table comes from scripts/make_presets.py.
"""

from __future__ import annotations

import json
import warnings

import pau
import pytest
import torch
from pau import presets
from pau.fit import ERROR_POINTS, approximation_error, evaluate
from pau.reference import VARIANTS

f64 = torch.float64
SHIPPED = ((3, 2), (4, 3), (5, 4), (6, 5), (8, 7))


pytestmark = pytest.mark.usefixtures("one_thread")


def test_fits_listed_and_described():
    assert presets.fits() == ["default", "exact0", "wide"]
    assert presets.FITS["default"].x_range == presets.X_RANGE
    assert presets.FITS["wide"].x_range == (-10.0, 10.0)
    assert presets.FITS["exact0"].exact_zero and presets.FITS["wide"].exact_zero
    assert not presets.FITS["default"].exact_zero


@pytest.mark.parametrize("kind", ["exact0", "wide"])
@pytest.mark.parametrize("name", presets.names(aliases=False))
def test_every_function_shipped_in_every_fit_exact_at_zero_and_as_recorded(kind, name):
    fn = presets.function(name)
    spec = presets.spec(name, kind)
    lo, hi = presets.FITS[kind].x_range
    x = torch.linspace(lo, hi, ERROR_POINTS, dtype=f64)
    y = fn(x)
    f0 = float(fn(torch.zeros(1, dtype=f64)))
    assert presets.degrees(spec) == list(SHIPPED)
    for degrees in SHIPPED:
        for variant in VARIANTS:
            where = f"{spec} {degrees} {variant}"
            info = presets.info(spec, degrees, variant)
            assert info["shipped"] and info["fit"] == kind and info["name"] == spec, where
            assert info["x_range"] == (lo, hi), where
            num, den = presets.coefficients(spec, degrees, variant)
            # F(0) = a_0 / Q(0) = a_0: pinned to f(0) exactly, in every variant.
            assert float(num[0]) == f0, where
            assert float(evaluate(torch.zeros(1, dtype=f64), num, den, variant)) == f0, where
            err = evaluate(x, num, den, variant) - y
            assert info["max_error"] == pytest.approx(float(err.abs().max()), rel=1e-9,
                                                      abs=1e-15), where
            assert info["rms_error"] == pytest.approx(float(err.pow(2).mean().sqrt()),
                                                      rel=1e-9, abs=1e-15), where


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "gelu", "silu", "elu", "mish",
                                  "tanh", "softplus"])
def test_wide_fit_starts_much_closer_on_minus_ten_to_ten(name, variant):
    fn = presets.function(name)
    default = approximation_error(fn, *presets.coefficients(name, (5, 4), variant), variant,
                                  (-10, 10))[0]
    wide = approximation_error(fn, *presets.coefficients(f"{name}:wide", (5, 4), variant),
                               variant, (-10, 10))[0]
    assert wide < 0.1 * default, (wide, default)


def test_relu_presets_at_zero_and_ten():
    # The numbers: the default (5, 4) relu gives F(0) = 0.034 and F(10) = 7.8.
    x = torch.tensor([0.0, 10.0], dtype=f64)
    default = evaluate(x, *presets.coefficients("relu"))
    wide = evaluate(x, *presets.coefficients("relu:wide"))
    assert float(default[0]) == pytest.approx(0.034, abs=5e-4)
    assert float(default[1]) == pytest.approx(7.8, abs=0.05)
    assert float(wide[0]) == 0.0 and abs(float(wide[1]) - 10) < 0.15


def test_default_fit_is_unchanged():
    # The experiments start PAU from leaky_relu (5, 4) safe: its coefficients
    # must not move (the table's "presets" part is the default fit).
    data = json.loads(presets.DATA_PATH.read_text(encoding="utf-8"))
    entry = data["presets"]["leaky_relu"]["5,4"]["safe"]
    num, den = presets.coefficients("leaky_relu")
    assert num.tolist() == entry["numerator"] and den.tolist() == entry["denominator"]
    assert presets.coefficients("leaky_relu:default")[0].tolist() == entry["numerator"]
    assert presets.info("relu")["fit"] == "default" and presets.info("relu")["name"] == "relu"


def test_names_aliases_and_specs():
    assert presets.split("swish:wide") == ("silu", "wide")
    assert presets.split("leaky_relu_0.01") == ("leaky_relu", "default")
    assert presets.spec("swish", "wide") == "silu:wide"
    assert presets.spec("relu", "default") == "relu"
    assert presets.function("gelu:wide") is presets.function("gelu")
    a = presets.coefficients("swish:exact0", (5, 4), "safe")
    b = presets.coefficients("silu:exact0", (5, 4), "safe")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("relu:bogus", r"pau\.presets: unknown fit 'bogus' in preset 'relu:bogus'"),
        ("relu:", r"pau\.presets: unknown fit '' in preset"),
        ("bogus:wide", r"pau\.presets: unknown preset 'bogus:wide'"),
    ],
)
def test_bad_fit_names_rejected_clearly(name, match):
    with pytest.raises(ValueError, match=match):
        presets.coefficients(name)
    with pytest.raises(ValueError, match=match):
        pau.PAU(init=name)


def test_modules_start_from_a_fit():
    act = pau.PAU(init="gelu:wide")
    assert act.init == "gelu:wide"
    num, den = presets.coefficients("gelu:wide")
    torch.testing.assert_close(act.numerator.detach()[0].double(), num, rtol=0, atol=1e-7)
    rpau = pau.RPAU(init="relu:exact0", degrees=(4, 3), variant="abs_sum")
    assert float(rpau.numerator.detach()[0, 0]) == 0.0


def test_unshipped_degrees_of_a_fit_are_fitted_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PAU_CACHE_DIR", str(tmp_path))
    with pytest.warns(UserWarning, match="'tanh:wide' at degrees \\(2, 1\\)"):
        num, den = presets.coefficients("tanh:wide", (2, 1), "safe")
    assert float(num[0]) == 0.0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["preset-v1-tanh-2-1-safe-wide.json"]
    info = presets.info("tanh:wide", (2, 1), "safe")
    assert not info["shipped"] and info["x_range"] == (-10.0, 10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = presets.coefficients("tanh:wide", (2, 1), "safe")
    assert torch.equal(again[0], num)
