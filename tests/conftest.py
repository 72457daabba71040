"""Fixtures and hooks of the test suite; the helpers live in tests/helpers/."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import torch
from helpers.devices import DEVICES

# .ci/gpu_check.sh gives its test step an end (a Unix time): tests that would
# start after it are skipped, so that pytest still writes its report in time.
TEST_DEADLINE = float(os.environ.get("PAU_TEST_DEADLINE", "inf"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: a test that runs on a CUDA device (helpers.devices)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if time.time() > TEST_DEADLINE:
        pytest.skip("time budget spent (PAU_TEST_DEADLINE)")


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """The device of a per-device operator test (helpers.devices.DEVICES)."""
    return request.param


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """Restores torch's intra-op thread count after the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of small-tensor tests (fitting, plotting,
    conversion): extra threads cost more than they save there, many times over on a
    busy machine. Use as ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
