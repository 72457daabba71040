"""A build with CUDA kernels: every operator has one.

The dispatcher knows which kernels a build registered without any device, so
this runs wherever pau was built with CUDA kernels, GPU or not. Where such a
build is expected (``PAU_EXPECT_CUDA_KERNELS=1``, set by ``.ci/cuda_build.sh``
and ``.ci/gpu_check.sh``), a build without them fails instead of skipping.
"""

from __future__ import annotations

import os

import pau
import pytest
from pau.deploy import operator_backends

# Selected with the CUDA cases of the per-device tests by `pytest -m cuda`.
pytestmark = pytest.mark.cuda

# Operators that are CPU-only by design, with the reason.
CPU_ONLY = {
    # Its one tensor argument is the (seed, offset) pair, which is a CPU tensor
    # for every RPAU operator; it materialises the noise for tests and plots.
    "pau::rpau_noise": "takes only the CPU (seed, offset) tensor",
    # Its autograd kernel runs the composite for CUDA tensors (no fused CUDA kernel yet).
    "pau::double_backward": "CUDA tensors take the composite in its autograd kernel",
}
# Each family's forward and backward: the list the dispatcher gives must hold them.
FAMILIES = ("forward", "backward", "rpau_forward", "rpau_backward", "pwlu_forward", "pwlu_backward")
EXPECTED = os.environ.get("PAU_EXPECT_CUDA_KERNELS") == "1"


@pytest.fixture(scope="module")
def backends() -> dict[str, tuple[str, ...]]:
    if not pau._C.has_cuda_kernels():
        if EXPECTED:
            pytest.fail("PAU_EXPECT_CUDA_KERNELS=1 but pau was built without CUDA kernels")
        pytest.skip("pau was built without CUDA kernels")
    return operator_backends()


def test_the_dispatcher_lists_every_operator_family(backends):
    missing = [f"pau::{name}" for name in FAMILIES if f"pau::{name}" not in backends]
    assert not missing, f"not registered: {missing}; registered: {sorted(backends)}"
    for name in CPU_ONLY:
        assert name in backends, f"{name} is listed as CPU-only but is not registered"


def test_every_operator_has_cuda_cpu_and_meta_kernels(backends):
    lacking = {
        name: [b for b in ("CPU", "CUDA", "Meta") if b not in have]
        for name, have in backends.items()
        if name not in CPU_ONLY
    }
    lacking = {name: keys for name, keys in lacking.items() if keys}
    assert not lacking, f"operators without a kernel for these backends: {lacking}"


def test_cpu_only_operators_are_still_cpu_only(backends):
    # If one gains a CUDA kernel, it leaves CPU_ONLY so the check above covers it.
    gained = [name for name in CPU_ONLY if "CUDA" in backends[name]]
    assert not gained, f"{gained} now have CUDA kernels: remove them from CPU_ONLY"
