"""The machine the tests run on: its CPU flags and torch's intra-op thread count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch


@contextmanager
def single_threaded() -> Iterator[None]:
    """Runs the plain-PyTorch reference on one thread.

    The references are chains of small elementwise ops; on a loaded machine
    every OpenMP region of a 2-thread pool can stall for milliseconds, which
    made some reference checks 100x slower. The operators under test keep the
    default thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@cache
def cpu_flags() -> frozenset[str]:
    """Flags of the first CPU in /proc/cpuinfo (empty if unavailable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_isas() -> list[str]:
    """The ATEN_CPU_CAPABILITY values this CPU can run: default, avx2, avx512."""
    flags = cpu_flags()
    return ["default"] + (["avx2"] if "avx2" in flags else []) + (
        ["avx512"] if "avx512bw" in flags else [])


def check_each_isa(script: str, skip_current: bool = False) -> None:
    """Runs ``script`` in a fresh interpreter per ISA of :func:`cpu_isas` (``skip_current``:
    except the one this process uses); each run must succeed and print, as its last line,
    ``pau._C.cpu_capability()`` equal to that ISA."""
    import pau

    from helpers.processes import run_python

    for isa in cpu_isas():
        if skip_current and isa.upper() == pau._C.cpu_capability():
            continue
        out = run_python(script, env={"ATEN_CPU_CAPABILITY": isa})
        assert out.strip().splitlines()[-1] == isa.upper()
