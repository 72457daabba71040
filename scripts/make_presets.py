"""Regenerate python/pau/presets_data.json.

    python scripts/make_presets.py [--jobs N]

For every preset function, shipped degree pair and variant this fits the
coefficients on [-3, 3] (or takes them from the PAU paper's Table 6 / the
exact identity, see pau.presets) and records their max and RMS error. The
output is deterministic: each fit is single-threaded with fixed seeds, and
the JSON is written with sorted keys.

Each fit also starts from the lower-degree solutions of the same function
and variant (zero-padded, i.e. the same function) and from the other
variants' solutions of the same degree, so a higher degree is never worse
than a lower one and a variant is never stuck far from what another found.

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
FORMAT = 1


def make_function(name: str) -> dict[str, dict[str, dict]]:
    """All shipped entries of one function: {"m,n": {variant: entry}}."""
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
            start = time.process_time()
            entry = presets.make_entry(name, degrees, variant, inits)
            out[key][variant] = entry
            print(f"{name:18s} {key:5s} {variant:8s} max {entry['max_error']:.3e} "
                  f"rms {entry['rms_error']:.3e} {entry['source']:12s} "
                  f"{time.process_time() - start:5.1f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: all cores)")
    parser.add_argument("--output", type=Path, default=presets.DATA_PATH)
    args = parser.parse_args()

    start = time.time()
    names = presets.names(aliases=False)
    if args.jobs > 1:
        # spawn, not fork: forking a process that has used torch's thread
        # pools can deadlock.
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(make_function, names, chunksize=1)
    else:
        results = [make_function(name) for name in names]
    table = dict(zip(names, results))

    for name, by_degrees in table.items():
        for variant in VARIANTS:
            entries = [by_degrees[f"{m},{n}"][variant] for m, n in presets.DEGREES]
            rms = [e["rms_error"] for e in entries]
            fitted = [e["source"] == "fit" for e in entries]
            if any(b > a * 1.01 + 1e-15 and fa and fb
                   for a, b, fa, fb in zip(rms, rms[1:], fitted, fitted[1:])):
                print(f"note: {name} {variant}: RMS error does not decrease with degree: {rms}")

    data = {
        "format": FORMAT,
        "generated_by": "python scripts/make_presets.py",
        "x_range": list(presets.X_RANGE),
        "fit_points": presets.FIT_POINTS,
        "error_points": presets.ERROR_POINTS,
        "degrees": [list(d) for d in presets.DEGREES],
        "presets": table,
    }
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {sum(len(v) * len(VARIANTS) for v in table.values())} presets "
          f"to {args.output} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
