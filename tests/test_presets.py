"""pau.presets: every shipped preset approximates its function as recorded,
Table 6 is shipped where it applies, unshipped degree pairs are fitted once
and cached, and bad names fail clearly. Only evaluation here, apart from one
small fit on first use: the full table is produced by scripts/make_presets.py."""

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


pytestmark = pytest.mark.usefixtures("one_thread")

# Max error on [-3, 3] each shipped preset must reach, per function, for the
# degree pairs (3, 2), (4, 3), (5, 4), (6, 5), (8, 7) (the worst variant; about
# twice what the shipped coefficients achieve). Functions with a kink (ReLU and
# the Leaky ReLUs) stay at 1e-2 even at (8, 7); smooth ones fall fast with the
# degree. ELU is looser at low degree because of "plain" (no kink in 1 + A(x)
# to follow ELU's jump in curvature). At (5, 4), abs_sum ships the Padé
# approximants of Table 6 for sigmoid, tanh and silu, coarser than fits.
MAX_ERROR = {
    "relu": (3e-1, 2e-1, 7e-2, 4e-2, 2e-2),
    "leaky_relu": (3e-1, 2e-1, 7e-2, 4e-2, 2e-2),
    "leaky_relu_0.20": (2e-1, 1e-1, 6e-2, 4e-2, 2e-2),
    "leaky_relu_0.25": (2e-1, 1e-1, 6e-2, 3e-2, 2e-2),
    "leaky_relu_0.30": (2e-1, 9e-2, 5e-2, 3e-2, 2e-2),
    "leaky_relu_-0.50": (4e-1, 2e-1, 2e-1, 6e-2, 3e-2),
    "elu": (6e-2, 2e-2, 7e-3, 3e-3, 7e-4),
    "gelu": (5e-2, 5e-3, 7e-3, 3e-4, 7e-7),
    "mish": (4e-2, 5e-3, 7e-4, 3e-4, 3e-6),
    "softplus": (5e-3, 3e-4, 1e-5, 5e-7, 1e-9),
    "tanh": (8e-3, 9e-3, 8e-4, 9e-6, 2e-9),
    "silu": (2e-2, 3e-4, 3e-4, 2e-8, 1e-12),
    "sigmoid": (2e-4, 2e-4, 2e-6, 2e-8, 1e-12),
    "identity": (1e-12, 1e-12, 1e-12, 1e-12, 1e-12),
}
SHIPPED = ((3, 2), (4, 3), (5, 4), (6, 5), (8, 7))
TABLE6_FITTED = ["relu", "leaky_relu", "leaky_relu_0.20", "leaky_relu_0.25",
                 "leaky_relu_0.30", "leaky_relu_-0.50"]


def test_bounds_cover_every_shipped_function():
    assert sorted(MAX_ERROR) == sorted(presets.names(aliases=False))
    assert presets.degrees() == list(SHIPPED)
    for name in presets.names():
        assert presets.degrees(name) == list(SHIPPED)


@pytest.mark.parametrize("name", presets.names(aliases=False))
def test_every_shipped_preset_within_bound_and_as_recorded(name):
    fn = presets.function(name)
    x = torch.linspace(*presets.X_RANGE, ERROR_POINTS, dtype=f64)
    y = fn(x)
    for bound, degrees in zip(MAX_ERROR[name], SHIPPED):
        for variant in VARIANTS:
            num, den = presets.coefficients(name, degrees, variant)
            err = evaluate(x, num, den, variant) - y
            max_error, rms_error = float(err.abs().max()), float(err.pow(2).mean().sqrt())
            where = f"{name} {degrees} {variant}"
            assert max_error <= bound, f"{where}: max error {max_error:.3e} > {bound:.0e}"
            info = presets.info(name, degrees, variant)
            assert info["shipped"], where
            assert info["max_error"] == pytest.approx(max_error, rel=1e-9, abs=1e-15), where
            assert info["rms_error"] == pytest.approx(rms_error, rel=1e-9, abs=1e-15), where
            if variant == "plain" and den.numel():
                q = 1 + sum(b * x ** (k + 1) for k, b in enumerate(den.tolist()))
                assert float(q.min()) > 0.02, f"{where}: 1 + A(x) comes close to a pole"


def test_coefficients_are_fresh_float64_vectors():
    num, den = presets.coefficients("gelu", (6, 5), "safe")
    assert num.dtype == f64 and den.dtype == f64
    assert num.shape == (7,) and den.shape == (5,)
    num.zero_()
    assert presets.coefficients("gelu", (6, 5), "safe")[0].abs().sum() > 0


def test_info_describes_the_entry():
    info = presets.info("swish", (5, 4), "safe")
    assert info["name"] == "silu" and info["degrees"] == (5, 4) and info["variant"] == "safe"
    assert info["x_range"] == (-3.0, 3.0) and info["source"] == "fit" and info["shipped"]
    assert len(info["numerator"]) == 6 and len(info["denominator"]) == 4
    assert 0 < info["rms_error"] <= info["max_error"]


def test_aliases():
    for alias, canonical in presets.ALIASES.items():
        assert alias in presets.names() and canonical in presets.names(aliases=False)
        for a, b in zip(presets.coefficients(alias, (4, 3), "plain"),
                        presets.coefficients(canonical, (4, 3), "plain")):
            assert torch.equal(a, b)


def test_data_file_is_the_generated_format():
    data = json.loads(presets.DATA_PATH.read_text())
    assert data["x_range"] == [-3.0, 3.0] and data["error_points"] == ERROR_POINTS
    assert data["degrees"] == [list(d) for d in SHIPPED]
    assert sorted(data["presets"]) == sorted(presets.names(aliases=False))


# -- the PAU paper's Table 6 ------------------------------------------------------


@pytest.mark.parametrize("name", TABLE6_FITTED)
def test_table6_relu_rows_are_shipped_verbatim_under_abs_sum(name):
    num, den = presets.coefficients(name, (5, 4), "abs_sum")
    paper_num, paper_den = presets.PAPER_TABLE6[name]
    assert num.tolist() == list(paper_num) and den.tolist() == list(paper_den)
    info = presets.info(name, (5, 4), "abs_sum")
    assert info["source"] == "paper_table6"
    assert info["max_error"] < 0.03  # they do approximate under abs_sum ...
    wrong = approximation_error(presets.function(name), num, den, "safe")
    safe = presets.info(name, (5, 4), "safe")
    # ... but not under safe, where |A(x)| differs from sum_k |b_k x^k|: the
    # safe preset is a fit of its own, and far better.
    assert safe["source"] == "fit"
    # (ReLU has no negative slope to get wrong, so its margin is smaller.)
    assert safe["rms_error"] < wrong[1] / (1.3 if name == "relu" else 2)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "silu"])
def test_table6_pade_columns_under_abs_sum(name):
    info = presets.info(name, (5, 4), "abs_sum")
    assert info["source"] == "pade"
    assert info["numerator"] == list(presets.PAPER_TABLE6[name][0])
    # Even denominators with positive coefficients: the same function in every variant.
    num, den = presets.coefficients(name, (5, 4), "abs_sum")
    x = torch.linspace(-3, 3, 1001, dtype=f64)
    for variant in VARIANTS:
        torch.testing.assert_close(evaluate(x, num, den, variant),
                                   evaluate(x, num, den, "abs_sum"))
    # A least-squares fit beats the Padé approximant (exact only at 0) on [-3, 3].
    assert presets.info(name, (5, 4), "safe")["max_error"] < info["max_error"]


def test_table6_sigmoid_typo_is_corrected():
    printed = presets.PAPER_TABLE6["sigmoid"][1]
    shipped = presets.info("sigmoid", (5, 4), "abs_sum")["denominator"]
    assert printed[3] == 1 / 10008 and shipped[3] == 1 / 1008
    printed_error = approximation_error(
        torch.sigmoid, *(torch.tensor(c, dtype=f64) for c in presets.PAPER_TABLE6["sigmoid"]),
        "abs_sum")[0]
    assert printed_error > 1e-2 > 1e-5 > presets.info("sigmoid", (5, 4), "abs_sum")["max_error"]


# -- fit on first use, cached ---------------------------------------------------------


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("PAU_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "pau"


def test_unshipped_degree_is_fitted_once_with_warning_and_cached(cache_home):
    assert presets.cache_dir() == cache_home
    with pytest.warns(UserWarning, match="fitting them now, which takes a few seconds"):
        num, den = presets.coefficients("tanh", (3, 3), "safe")
    assert num.shape == (4,) and den.shape == (3,)
    files = list(cache_home.glob("*tanh-3-3-safe.json"))
    assert len(files) == 1
    info = presets.info("tanh", (3, 3), "safe")
    assert not info["shipped"] and info["source"] == "fit"
    # Started from the shipped (3, 2) preset, padded: at least as good.
    assert info["rms_error"] <= presets.info("tanh", (3, 2), "safe")["rms_error"] * (1 + 1e-9)
    assert info["max_error"] == pytest.approx(
        approximation_error(torch.tanh, num, den, "safe")[0], rel=1e-9)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = presets.coefficients("tanh", (3, 3), "safe")  # in memory
        presets._FITTED.clear()
        from_disk = presets.coefficients("tanh", (3, 3), "safe")  # from the disk cache
    for a, b, c in zip((num, den), again, from_disk):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_damaged_cache_file_is_refitted(cache_home):
    cache_home.mkdir(parents=True)
    path = cache_home / f"preset-v{presets._FIT_VERSION}-sigmoid-2-2-plain.json"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="fitting them now"):
        num, den = presets.coefficients("sigmoid", (2, 2), "plain")
    assert num.shape == (3,) and json.loads(path.read_text())["numerator"] == num.tolist()


def test_pau_cache_dir_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("PAU_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert presets.cache_dir() == tmp_path / "elsewhere"


def test_identity_needs_no_fit(cache_home):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        num, den = presets.coefficients("identity", (7, 2), "plain")
    assert num.tolist() == [0.0, 1.0] + [0.0] * 6 and den.tolist() == [0.0, 0.0]


# -- bad input ----------------------------------------------------------------------


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown preset 'nope'; valid names: relu, leaky_relu"):
        presets.coefficients("nope")
    with pytest.raises(ValueError, match="swish"):
        presets.info("Swish")
    with pytest.raises(TypeError, match="must be a str"):
        presets.coefficients(3)


def test_unknown_variant_and_bad_degrees():
    with pytest.raises(ValueError, match="unknown variant 'weird'; valid variants: safe"):
        presets.coefficients("relu", (5, 4), "weird")
    with pytest.raises(ValueError, match="non-negative"):
        presets.coefficients("relu", (5, -4))
    with pytest.raises(ValueError, match="pair of ints"):
        presets.coefficients("relu", (5,))
    with pytest.raises(ValueError, match="pair of ints"):
        presets.coefficients("relu", "5,4")


# -- the module uses the presets -------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_module_initialised_from_preset(variant):
    act = pau.PAU(init="gelu", degrees=(4, 3), variant=variant, groups=2, dtype=f64)
    num, den = presets.coefficients("gelu", (4, 3), variant)
    torch.testing.assert_close(act.numerator.detach(), num.repeat(2, 1), rtol=0, atol=0)
    torch.testing.assert_close(act.denominator.detach(), den.repeat(2, 1), rtol=0, atol=0)
    x = torch.linspace(-3, 3, 601, dtype=f64).reshape(1, 1, -1).expand(1, 2, -1)
    err = (act(x) - torch.nn.functional.gelu(x)).abs().max().item()
    assert err <= presets.info("gelu", (4, 3), variant)["max_error"] + 1e-9
