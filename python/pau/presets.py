"""Initial coefficients that make a PAU start out as a known activation function.

The shipped table, ``presets_data.json`` next to this file, is written by
``python scripts/make_presets.py`` and read lazily, once, on first use. For
every function in :func:`names`, every degree pair in :data:`DEGREES` and every
variant it holds the coefficients and their max and RMS error against the
function on :data:`X_RANGE` = [-3, 3] (measured on :data:`pau.fit.ERROR_POINTS`
uniform points).

Where the coefficients come from (``info(...)["source"]``):

* ``"fit"``: least-squares fit with :func:`pau.fit.fit` on [-3, 3];
* ``"paper_table6"``: (5, 4) under ``abs_sum`` for ReLU and the Leaky ReLUs,
  the PAU paper's Table 6 verbatim (the authors fitted them in that form);
* ``"pade"``: (5, 4) under ``abs_sum`` for sigmoid, tanh and silu/swish, the
  Padé approximants of the paper's Table 6 (swish with b = 1; for sigmoid the
  table prints b_4 = 1/10008, a typo for the true Padé value 1/1008 shipped
  here: see :data:`PAPER_TABLE6`);
* ``"exact"``: the identity, represented exactly.

Each function also comes in other *fits* (:data:`FITS`), named by a suffix:
``"relu"`` is the default fit above, ``"relu:exact0"`` is fitted on [-3, 3]
with F(0) = f(0) exactly, and ``"relu:wide"`` on [-10, 10] with F(0) = f(0)
and the squared errors weighted by 1 / (1 + |x|), for units whose inputs go beyond
[-3, 3] (the default (5, 4) relu preset gives F(10) = 7.8). F(0) = a_0 in
every variant (Q(0) = 1), so the pin holds in all of them. Every function,
shipped degree pair and variant is shipped in every fit; the defaults (and
so ``init="relu"`` etc.) are unchanged.

A degree pair that is not shipped is fitted on first use (a few seconds, with
a warning) and cached in memory and on disk, under ``$PAU_CACHE_DIR`` or
``$XDG_CACHE_HOME/pau`` (default ``~/.cache/pau``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .fit import ERROR_POINTS, _check_degrees, approximation_error, fit
from .reference import VARIANTS

__all__ = [
    "names", "fits", "degrees", "coefficients", "info", "function", "cache_dir",
    "make_entry", "pad_coefficients", "spec", "split",
    "DEGREES", "X_RANGE", "PAPER_TABLE6", "FUNCTIONS", "ALIASES", "FITS", "PresetFit",
]

#: Interval on which the presets are fitted and their errors measured.
X_RANGE = (-3.0, 3.0)
#: Degree pairs (m, n) shipped for every function and variant.
DEGREES = ((3, 2), (4, 3), (5, 4), (6, 5), (8, 7))
#: Uniform points used by the least-squares fits (the error is measured on more).
FIT_POINTS = 2001
DATA_PATH = Path(__file__).with_name("presets_data.json")
# Bump when the fitting procedure changes, so that disk-cached fits are redone.
_FIT_VERSION = 1


@dataclass(frozen=True)
class PresetFit:
    """How the presets of one fit (:data:`FITS`) are made.

    Attributes:
        x_range: the interval fitted, on which ``max_error`` / ``rms_error`` are measured.
        exact_zero: pin F(0) = a_0 to f(0) (:func:`pau.fit.fit`'s ``value_at_zero``).
        relative: weight the squared errors by 1 / (1 + |x|), so that a wide
            range does not trade the region near 0, where most inputs are,
            for the far ends.
        description: one line for tables and docs.
    """

    x_range: tuple[float, float]
    exact_zero: bool
    relative: bool
    description: str

    def weight(self, x: Tensor) -> Tensor:
        """The fit's weight of the squared error at ``x``."""
        return 1.0 / (1.0 + x.abs()) if self.relative else torch.ones_like(x)


#: The fits every preset is shipped in; a preset name ``"<function>:<fit>"``
#: selects one (plain ``"<function>"`` is ``"default"``).
FITS: dict[str, PresetFit] = {
    "default": PresetFit(X_RANGE, False, False, "least squares on [-3, 3]"),
    "exact0": PresetFit(X_RANGE, True, False, "least squares on [-3, 3], F(0) = f(0)"),
    "wide": PresetFit((-10.0, 10.0), True, True,
                      "on [-10, 10], F(0) = f(0), squared errors weighted by 1 / (1 + |x|)"),
}


def _leaky_relu(slope: float) -> Callable[[Tensor], Tensor]:
    def leaky_relu(x: Tensor) -> Tensor:
        return F.leaky_relu(x, slope)

    leaky_relu.__doc__ = f"Leaky ReLU with negative slope {slope}."
    return leaky_relu


def _identity(x: Tensor) -> Tensor:
    return x.clone()


#: Target function of each preset (canonical names; see :data:`ALIASES`).
FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": _leaky_relu(0.01),
    "leaky_relu_0.20": _leaky_relu(0.20),
    "leaky_relu_0.25": _leaky_relu(0.25),
    "leaky_relu_0.30": _leaky_relu(0.30),
    "leaky_relu_-0.50": _leaky_relu(-0.5),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "silu": F.silu,
    "gelu": F.gelu,  # the exact (erf) form
    "mish": F.mish,
    "elu": F.elu,  # alpha = 1
    "softplus": F.softplus,  # beta = 1
    "identity": _identity,
}

#: Other accepted spellings.
ALIASES: dict[str, str] = {
    "swish": "silu",
    "leaky_relu_0.01": "leaky_relu",
    "leaky_relu_-0.5": "leaky_relu_-0.50",
}

#: The PAU paper's Table 6 (degrees (5, 4)) as printed: name -> (a_0..a_5, b_1..b_4).
#: Sigmoid, tanh and swish (b = 1) are Padé approximants; sigmoid's b_4 is
#: printed as 1/10008 (a typo: the [5/4] Padé approximant has 1/1008, and
#: 1/10008 raises the max error on [-3, 3] from 1e-6 to 3e-2).
PAPER_TABLE6: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "sigmoid": ((1 / 2, 1 / 4, 1 / 18, 1 / 144, 1 / 2016, 1 / 60480),
                (0.0, 1 / 9, 0.0, 1 / 10008)),
    "tanh": ((0.0, 1.0, 0.0, 1 / 9, 0.0, 1 / 945), (0.0, 4 / 9, 0.0, 1 / 63)),
    "silu": ((0.0, 1 / 2, 1 / 4, 3 / 56, 1 / 168, 1 / 3360), (0.0, 3 / 28, 0.0, 1 / 1680)),
    "relu": ((0.02996348, 0.61690165, 2.37539147, 3.06608078, 1.52474449, 0.25281987),
             (1.19160814, 4.40811795, 0.91111034, 0.34885983)),
    "leaky_relu": ((0.02979246, 0.61837738, 2.32335207, 3.05202660, 1.48548002, 0.25103717),
                   (1.14201226, 4.39322834, 0.87154450, 0.34720652)),
    "leaky_relu_0.20": ((0.02557776, 0.66182815, 1.58182975, 2.94478759, 0.95287794, 0.23319681),
                        (0.50962605, 4.18376890, 0.37832090, 0.32407314)),
    "leaky_relu_0.25": ((0.02423485, 0.67709718, 1.43858363, 2.95497990, 0.85679722, 0.23229612),
                        (0.41014746, 4.14691964, 0.30292546, 0.32002850)),
    "leaky_relu_0.30": ((0.02282366, 0.69358438, 1.30847432, 2.97681599, 0.77165297, 0.23252265),
                        (0.32849543, 4.11557902, 0.24155603, 0.31659365)),
    "leaky_relu_-0.50": ((0.02650441, 0.80772912, 13.56611639, 7.00217900, 11.61477781,
                          0.68720375),
                         (13.70648993, 6.07781733, 12.32535229, 0.54006880)),
}

# Table 6 as shipped under abs_sum at (5, 4): the sigmoid typo corrected.
_SHIPPED_TABLE6 = dict(PAPER_TABLE6)
_SHIPPED_TABLE6["sigmoid"] = (PAPER_TABLE6["sigmoid"][0], (0.0, 1 / 9, 0.0, 1 / 1008))


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def names(aliases: bool = True) -> list[str]:
    """Preset names accepted by :func:`coefficients` and ``pau.PAU(init=...)``.

    With ``aliases=False`` only the canonical names (one per function).
    """
    return list(FUNCTIONS) + (list(ALIASES) if aliases else [])


def fits() -> list[str]:
    """The fits (:data:`FITS`) a preset name can select with a ``":<fit>"`` suffix."""
    return list(FITS)


def split(name: str) -> tuple[str, str]:
    """(canonical function name, fit) of preset ``name``, e.g. ``"swish:wide"`` -> ("silu", "wide").

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: unknown function or fit (the message lists the valid ones).
    """
    if not isinstance(name, str):
        raise TypeError(f"pau.presets: preset name must be a str, got {type(name).__name__}")
    base, sep, kind = name.partition(":")
    canonical = ALIASES.get(base, base)
    if canonical not in FUNCTIONS:
        raise ValueError(
            f"pau.presets: unknown preset {name!r}; valid names: {', '.join(names())}, "
            f"each optionally with a fit suffix ':{'/:'.join(FITS)}'"
        )
    if sep and kind not in FITS:
        raise ValueError(
            f"pau.presets: unknown fit {kind!r} in preset {name!r}; valid fits: {', '.join(FITS)}"
        )
    return canonical, kind if sep else "default"


def spec(name: str, fit: str = "default") -> str:
    """The canonical preset name of function ``name`` in ``fit``: ``"relu"``, ``"relu:wide"``."""
    canonical, _ = split(name)
    _, kind = split(f"{canonical}:{fit}")
    return canonical if kind == "default" else f"{canonical}:{kind}"


def function(name: str) -> Callable[[Tensor], Tensor]:
    """The target function of preset ``name`` (a callable on tensors; the fit suffix is ignored)."""
    return FUNCTIONS[split(name)[0]]


def degrees(name: Optional[str] = None) -> list[tuple[int, int]]:
    """Degree pairs (m, n) shipped in the data file (for ``name``, if given).

    Other pairs still work: they are fitted on first use.
    """
    if name is None:
        pairs = {key for entries in _table()["presets"].values() for key in entries}
    else:
        canonical, kind = split(name)
        pairs = set(_fit_table(kind).get(canonical, {}))
    return sorted(_parse_degrees(key) for key in pairs)


def coefficients(
    name: str, degrees: tuple[int, int] = (5, 4), variant: str = "safe"
) -> tuple[Tensor, Tensor]:
    """(numerator (m+1,), denominator (n,)) float64 coefficients of preset ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones), unknown
            variant, or invalid degrees.
    """
    entry = _entry(name, degrees, variant)
    return (torch.tensor(entry["numerator"], dtype=torch.float64),
            torch.tensor(entry["denominator"], dtype=torch.float64))


def info(name: str, degrees: tuple[int, int] = (5, 4), variant: str = "safe") -> dict[str, Any]:
    """Everything known about one preset.

    Returns a dict with ``name`` (canonical), ``degrees``, ``variant``,
    ``numerator``, ``denominator`` (lists of floats), ``fit`` (see :data:`FITS`),
    ``max_error`` and ``rms_error`` (on ``x_range``, the fit's interval:
    :data:`X_RANGE` unless the fit says otherwise), ``source`` (see the module
    docstring) and ``shipped`` (False when fitted on first use).
    """
    canonical, kind = split(name)
    entry = _entry(name, degrees, variant)
    m, n = _check_degrees(degrees)
    shipped = _shipped_entry(canonical, (m, n), variant, kind) is not None
    return {
        "name": spec(canonical, kind), "degrees": (m, n), "variant": variant, "fit": kind,
        "x_range": FITS[kind].x_range, "shipped": shipped,
        **{k: (list(v) if isinstance(v, list) else v) for k, v in entry.items()},
    }


def cache_dir() -> Path:
    """Where fits of unshipped degree pairs are cached on disk.

    ``$PAU_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/pau``, else ``~/.cache/pau``.
    """
    if os.environ.get("PAU_CACHE_DIR"):
        return Path(os.environ["PAU_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pau"


# ----------------------------------------------------------------------------
# Generation (used by scripts/make_presets.py and by fits on first use)
# ----------------------------------------------------------------------------


def make_entry(
    name: str,
    degrees: tuple[int, int],
    variant: str,
    init: Optional[list[tuple[Tensor, Tensor]]] = None,
    fit_kind: str = "default",
) -> dict[str, Any]:
    """Compute one preset entry: coefficients, errors on the fit's range and source.

    ``init`` adds starting points for the fit (e.g. lower-degree solutions);
    ``fit_kind`` is one of :data:`FITS` (a ``":<fit>"`` suffix of ``name`` overrides it).
    """
    name, kind = split(name)
    kind = kind if kind != "default" else split(f"{name}:{fit_kind}")[1]
    how = FITS[kind]
    m, n = _check_degrees(degrees)
    fn = FUNCTIONS[name]
    if name == "identity" and m >= 1:
        num = [0.0, 1.0] + [0.0] * (m - 1)
        return _finish(fn, num, [0.0] * n, variant, "exact", how.x_range)
    if kind == "default" and (m, n) == (5, 4) and variant == "abs_sum" and name in _SHIPPED_TABLE6:
        num, den = _SHIPPED_TABLE6[name]
        source = "paper_table6" if name not in ("sigmoid", "tanh", "silu") else "pade"
        return _finish(fn, list(num), list(den), variant, source, how.x_range)
    at_zero = float(fn(torch.zeros(1, dtype=torch.float64))) if how.exact_zero else None
    weight = how.weight if how.relative else None
    result = fit(fn, (m, n), variant, how.x_range, weight, num_points=FIT_POINTS,
                 init=init or None, value_at_zero=at_zero)
    return {"numerator": result.numerator.tolist(), "denominator": result.denominator.tolist(),
            "max_error": result.max_error, "rms_error": result.rms_error, "source": "fit"}


def pad_coefficients(
    numerator: Tensor, denominator: Tensor, degrees: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Zero-pad lower-degree coefficients to ``degrees`` (the same function)."""
    m, n = degrees
    num = torch.zeros(m + 1, dtype=torch.float64)
    den = torch.zeros(n, dtype=torch.float64)
    num[: len(numerator)] = torch.as_tensor(numerator, dtype=torch.float64)
    den[: len(denominator)] = torch.as_tensor(denominator, dtype=torch.float64)
    return num, den


def _finish(fn: Callable[[Tensor], Tensor], num: list[float], den: list[float], variant: str,
            source: str, x_range: tuple[float, float] = X_RANGE) -> dict[str, Any]:
    max_error, rms_error = approximation_error(
        fn, torch.tensor(num, dtype=torch.float64), torch.tensor(den, dtype=torch.float64),
        variant, x_range, ERROR_POINTS)
    return {"numerator": num, "denominator": den, "max_error": max_error,
            "rms_error": rms_error, "source": source}


# ----------------------------------------------------------------------------
# Lookup
# ----------------------------------------------------------------------------


def _canonical(name: str) -> str:
    """Canonical spelling of preset ``name``, fit included: ``"swish:wide"`` -> ``"silu:wide"``."""
    canonical, kind = split(name)
    return spec(canonical, kind)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(VARIANTS)}")


def _degrees_key(degrees: tuple[int, int]) -> str:
    return f"{degrees[0]},{degrees[1]}"


def _parse_degrees(key: str) -> tuple[int, int]:
    m, n = key.split(",")
    return int(m), int(n)


@functools.cache
def _table() -> dict[str, Any]:
    with open(DATA_PATH, encoding="utf-8") as f:
        return json.load(f)


def _fit_table(kind: str) -> dict[str, Any]:
    """{function: {"m,n": {variant: entry}}} of one fit ("presets" holds the default)."""
    table = _table()
    return table["presets"] if kind == "default" else table.get("fits", {}).get(kind, {})


def _shipped_entry(
    name: str, degrees: tuple[int, int], variant: str, kind: str = "default"
) -> Optional[dict]:
    return _fit_table(kind).get(name, {}).get(_degrees_key(degrees), {}).get(variant)


def _entry(name: str, degrees: tuple[int, int], variant: str) -> dict[str, Any]:
    canonical, kind = split(name)
    _check_variant(variant)
    m, n = _check_degrees(degrees)
    entry = _shipped_entry(canonical, (m, n), variant, kind)
    return entry if entry is not None else _fitted_entry(canonical, (m, n), variant, kind)


# In-memory cache of first-use fits, keyed by (cache dir, name, degrees,
# variant): the directory is part of the key so that changing the cache
# location (as the tests do) never serves a result from elsewhere.
_FITTED: dict[tuple[str, str, tuple[int, int], str, str], dict[str, Any]] = {}


def _fitted_entry(
    name: str, degrees: tuple[int, int], variant: str, kind: str = "default"
) -> dict[str, Any]:
    directory = cache_dir()
    key = (str(directory), name, degrees, variant, kind)
    if key in _FITTED:
        return _FITTED[key]
    suffix = "" if kind == "default" else f"-{kind}"  # default: the file names of before
    path = (directory
            / f"preset-v{_FIT_VERSION}-{name}-{degrees[0]}-{degrees[1]}-{variant}{suffix}.json")
    entry = _read_cached(path, degrees)
    if entry is None:
        if name == "identity" and degrees[0] >= 1:
            entry = make_entry(name, degrees, variant, fit_kind=kind)
        else:
            warnings.warn(
                f"pau.presets: no shipped coefficients for {spec(name, kind)!r} at degrees "
                f"{degrees} (variant {variant!r}); fitting them now, which takes a few seconds. "
                f"The result is cached in {directory}.",
                UserWarning,
                stacklevel=4,
            )
            inits = _lower_degree_inits(name, degrees, variant, kind)
            entry = make_entry(name, degrees, variant, inits, fit_kind=kind)
        _write_cached(path, entry)
    _FITTED[key] = entry
    return entry


def _lower_degree_inits(
    name: str, degrees: tuple[int, int], variant: str, kind: str = "default"
) -> list[tuple[Tensor, Tensor]]:
    """Shipped solutions of lower degree, zero-padded: the fit starts no worse than them."""
    m, n = degrees
    inits = []
    for key, by_variant in _fit_table(kind).get(name, {}).items():
        mm, nn = _parse_degrees(key)
        if mm <= m and nn <= n and variant in by_variant:
            entry = by_variant[variant]
            inits.append(pad_coefficients(entry["numerator"], entry["denominator"], degrees))
    return inits


def _read_cached(path: Path, degrees: tuple[int, int]) -> Optional[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
        num, den = entry["numerator"], entry["denominator"]
        ok = (len(num) == degrees[0] + 1 and len(den) == degrees[1]
              and all(math.isfinite(float(v)) for v in num + den))
        return entry if ok else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: fit again


def _write_cached(path: Path, entry: dict[str, Any]) -> None:
    # Write to a temporary file and rename it into place, so that concurrent
    # processes never read a half-written file. The cache only saves time:
    # an unwritable location is not an error.
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
