"""Regenerate python/pau/presets_data.json.

    python scripts/make_presets.py [--jobs N] [--fits default,exact0,wide]

For every preset function, shipped degree pair, variant and fit (see
pau.presets.FITS: "default" on [-3, 3], "exact0" on [-3, 3] with F(0) = f(0),
"wide" on [-10, 10] with F(0) = f(0)) this fits the coefficients (or takes
them from the PAU paper's Table 6 / the exact identity, see pau.presets) and
records their max and RMS error on the fit's range. The output is
deterministic: each fit is single-threaded with fixed seeds, and the JSON is
written with sorted keys. ``--fits`` remakes only the fits named and keeps
the others from the existing file.

Each fit also starts from the lower-degree solutions of the same function,
fit and variant (zero-padded, i.e. the same function), from the other
variants' solutions of the same degree and, for a fit other than the default,
from the default solution of the same degree and variant, so a higher degree
is never worse than a lower one and a variant is never stuck far from what
another found.

Runs from the source tree without the compiled extension: it only needs the
pure-Python modules pau.fit, pau.presets and pau.reference.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "pau"

# Load pau's submodules from this source tree without running
# pau/__init__.py, which needs the compiled extension; the data written here
# must come from this tree's fitting code in any case, not from an installed copy.
_spec = importlib.machinery.ModuleSpec("pau", None, is_package=True)
_package = importlib.util.module_from_spec(_spec)
_package.__path__ = [str(PACKAGE)]
sys.modules["pau"] = _package

from pau import presets  # noqa: E402
from pau.reference import VARIANTS  # noqa: E402

# The order matters only for which solutions are available as starting points.
ORDER = ("safe", "plain", "abs_sum")
FORMAT = 2  # 2: the fits other than the default under "fits"


def make_function(
    name: str, kind: str = "default", defaults: dict[str, dict[str, dict]] | None = None
) -> dict[str, dict[str, dict]]:
    """All shipped entries of one function in one fit: {"m,n": {variant: entry}}.

    ``defaults`` (the function's default-fit entries) are extra starting points.
    """
    import torch

    torch.set_num_threads(1)
    out: dict[str, dict[str, dict]] = {}
    for degrees in sorted(presets.DEGREES):
        key = f"{degrees[0]},{degrees[1]}"
        out[key] = {}
        for variant in ORDER:
            inits = []
            for other_key, by_variant in out.items():
                for other, entry in by_variant.items():
                    # Lower degrees of this variant, and this degree's other variants.
                    if other == variant or other_key == key:
                        inits.append(presets.pad_coefficients(
                            entry["numerator"], entry["denominator"], degrees))
            default = (defaults or {}).get(key, {}).get(variant)
            if default is not None:
                inits.append(presets.pad_coefficients(
                    default["numerator"], default["denominator"], degrees))
            start = time.process_time()
            entry = presets.make_entry(name, degrees, variant, inits, fit_kind=kind)
            out[key][variant] = entry
            print(f"{name:18s} {kind:8s} {key:5s} {variant:8s} max {entry['max_error']:.3e} "
                  f"rms {entry['rms_error']:.3e} {entry['source']:12s} "
                  f"{time.process_time() - start:5.1f} s", flush=True)
    return out


def _make_one(job: tuple[str, str, dict | None]) -> dict[str, dict[str, dict]]:
    return make_function(*job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: all cores)")
    parser.add_argument("--output", type=Path, default=presets.DATA_PATH)
    parser.add_argument("--fits", default=",".join(presets.FITS),
                        help="comma-separated fits to (re)make; the others are kept from "
                             "--output (default: all)")
    args = parser.parse_args()
    kinds = [k for k in args.fits.split(",") if k]
    unknown = sorted(set(kinds) - set(presets.FITS))
    if unknown:
        parser.error(f"unknown fit(s) {', '.join(unknown)}; valid: {', '.join(presets.FITS)}")

    start = time.time()
    old = json.loads(args.output.read_text(encoding="utf-8")) if args.output.exists() else {}
    tables = {**({"default": old["presets"]} if "presets" in old else {}), **old.get("fits", {})}
    if "default" not in kinds and "default" not in tables:
        parser.error(f"--fits without 'default' needs the default fit in {args.output}")
    names = presets.names(aliases=False)
    # The default fit first: the others start from its solutions.
    for kind in sorted(kinds, key=lambda k: k != "default"):
        defaults = tables.get("default", {}) if kind != "default" else {}
        jobs = [(name, kind, defaults.get(name)) for name in names]
        if args.jobs > 1:
            # spawn, not fork: forking a process that has used torch's thread
            # pools can deadlock.
            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                results = pool.map(_make_one, jobs, chunksize=1)
        else:
            results = [_make_one(job) for job in jobs]
        tables[kind] = dict(zip(names, results))

    for kind, table in tables.items():
        for name, by_degrees in table.items():
            for variant in VARIANTS:
                entries = [by_degrees[f"{m},{n}"][variant] for m, n in presets.DEGREES]
                rms = [e["rms_error"] for e in entries]
                fitted = [e["source"] == "fit" for e in entries]
                if any(b > a * 1.01 + 1e-15 and fa and fb
                       for a, b, fa, fb in zip(rms, rms[1:], fitted, fitted[1:])):
                    print(f"note: {name} {kind} {variant}: RMS error does not decrease with "
                          f"degree: {rms}")

    data = {
        "format": FORMAT,
        "generated_by": "python scripts/make_presets.py",
        "x_range": list(presets.X_RANGE),
        "fit_points": presets.FIT_POINTS,
        "error_points": presets.ERROR_POINTS,
        "degrees": [list(d) for d in presets.DEGREES],
        "fit_ranges": {k: list(f.x_range) for k, f in presets.FITS.items()},
        "presets": tables["default"],
        "fits": {k: v for k, v in tables.items() if k != "default"},
    }
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    count = sum(len(v) * len(VARIANTS) for t in tables.values() for v in t.values())
    print(f"wrote {count} presets ({', '.join(tables)}) to {args.output} "
          f"in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
