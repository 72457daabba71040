"""The devices an operator test runs on: the CPU always, CUDA when a GPU is present.

A per-device test takes the ``device`` fixture (tests/conftest.py) and builds
its inputs on the CPU, then moves them with ``.to(device)``: the CUDA case is
the CPU case on another device, nothing more.
"""

from __future__ import annotations

import pytest
import torch

NO_CUDA = "no CUDA device"
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

# Every CUDA test carries the `cuda` marker (registered in tests/conftest.py):
# the CUDA cases of the per-device tests and the CUDA-only files alike, so
# that `pytest -m cuda tests` selects all of them on a GPU machine.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[requires_cuda, pytest.mark.cuda]),
]
