"""Regenerate python/pau/presets_data.json: ``python scripts/make_presets.py``.

Fits every preset function for every shipped degree pair and variant with
pau.fit on [-3, 3] (deterministic) and records the coefficients and errors.
"""

from __future__ import annotations

import json
import time

from pau import presets
from pau.fit import fit
from pau.reference import VARIANTS


def main() -> None:
    table = {}
    start = time.time()
    for name, fn in presets.FUNCTIONS.items():
        for degrees in presets.DEGREES:
            for variant in VARIANTS:
                result = fit(fn, degrees=degrees, variant=variant, x_range=presets.X_RANGE)
                table[presets._key(name, degrees, variant)] = presets.entry_of(result)
                print(f"{name:16s} {degrees} {variant:8s} max {result.max_error:.2e} "
                      f"rms {result.rms_error:.2e}", flush=True)
    presets.DATA.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(table)} presets to {presets.DATA} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
