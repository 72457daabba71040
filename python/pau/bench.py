"""Benchmark of the ``pau`` operators: ``python -m pau.bench [--quick] [--device cuda]``.

Measures, in one process and with ``torch.utils.benchmark``, each operator
against ``torch.relu`` (the memory-bound floor) and against the plain-PyTorch
reference in eager mode and under ``torch.compile``, for the forward pass and
forward+backward. On CUDA it also times ``x.clone()`` to express the achieved
bandwidth as a fraction of a device-to-device copy of the same bytes. Prints a
table and writes JSON (device name, ISA, versions) to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.utils.benchmark as tbench

import pau
from pau.reference import pau_reference

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Case:
    """One benchmarked configuration."""

    op: str  # "pau"
    impl: str  # "relu", "copy", "reference", "reference_compiled", "pau"
    direction: str  # "forward" or "forward_backward"
    dtype: str
    numel: int
    groups: str  # "1" or "C"
    shape: tuple[int, ...]
    time_ms: float
    ratio_to_relu: Optional[float] = None
    fraction_of_copy: Optional[float] = None


def nchw_shape(numel: int) -> tuple[int, int, int, int]:
    """An NCHW shape with ``numel`` elements (powers of two only)."""
    shapes = {2**20: (8, 32, 64, 64), 2**24: (16, 64, 128, 128), 2**28: (64, 64, 256, 256)}
    if numel not in shapes:
        raise ValueError(f"no NCHW shape registered for {numel} elements")
    return shapes[numel]


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


ROUNDS = 3


def measure(fn: Callable[[], object], device: torch.device, min_run_time: float) -> float:
    """Median seconds per call of ``fn``."""
    fn()  # warm-up (and compilation for compiled callables)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def measure_interleaved(
    fns: dict[tuple[str, str], Callable[[], object]], device: torch.device, min_run_time: float
) -> dict[tuple[str, str], float]:
    """Best median of ROUNDS rounds, each timing every callable once.

    Interleaving makes a burst of load from other processes hit all callables
    alike instead of one, so the ratios stay meaningful on a shared machine.
    """
    best: dict[tuple[str, str], float] = {}
    for _ in range(ROUNDS):
        for key, fn in fns.items():
            seconds = measure(fn, device, min_run_time / ROUNDS)
            best[key] = min(best.get(key, float("inf")), seconds)
    return best


def pau_callables(
    x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, compiled_reference
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    return {
        "relu": torch.relu,
        "reference": lambda t: pau_reference(t, numerator, denominator, "safe", 1),
        "reference_compiled": lambda t: compiled_reference(t, numerator, denominator),
        "pau": lambda t: torch.ops.pau.forward(t, numerator, denominator, "safe", 1),
    }


def run(
    device: torch.device,
    dtypes: list[str],
    sizes: list[int],
    min_run_time: float,
    compile_reference: bool,
    log: Callable[[str], None] = print,
) -> list[Case]:
    cases: list[Case] = []
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for numel in sizes:
            shape = nchw_shape(numel)
            for groups in ("1", "C"):
                g = 1 if groups == "1" else shape[1]
                generator = torch.Generator().manual_seed(0)
                x = torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
                numerator, denominator = pau.modules.initial_coefficients(
                    "leaky_relu", (5, 4), "safe"
                )
                numerator = numerator.float().repeat(g, 1).to(device).requires_grad_()
                denominator = denominator.float().repeat(g, 1).to(device).requires_grad_()
                # A fresh compilation per configuration: one shape and dtype each.
                torch._dynamo.reset()
                compiled = torch.compile(
                    lambda t, a, b: pau_reference(t, a, b, "safe", 1), fullgraph=True,
                    dynamic=False,
                )
                fns = pau_callables(x, numerator, denominator, compiled)
                if not compile_reference:
                    del fns["reference_compiled"]
                grad = torch.randn_like(x)
                calls: dict[tuple[str, str], Callable[[], object]] = {}
                if device.type == "cuda":
                    calls[("copy", "forward")] = x.clone
                for impl, fn in fns.items():
                    xf = x.detach()
                    calls[(impl, "forward")] = lambda fn=fn, xf=xf: fn(xf)
                    xg = x.detach().requires_grad_()

                    def step(fn=fn, xg=xg, grad=grad, coefficients=(numerator, denominator)):
                        fn(xg).backward(grad)
                        xg.grad = None
                        for c in coefficients:
                            c.grad = None

                    calls[(impl, "forward_backward")] = step
                times = measure_interleaved(calls, device, min_run_time)
                for (impl, direction), seconds in times.items():
                    relu = times[("relu", direction)]
                    case = Case("pau", impl, direction, dtype_name, numel, groups, shape,
                                seconds * 1e3, seconds / relu)
                    if ("copy", "forward") in times and impl != "copy":
                        # Bytes moved: read x and write y (+ read grad, write grad_x, read x
                        # again for backward) relative to the copy's read+write.
                        copies = 1.0 if direction == "forward" else 3.0
                        case.fraction_of_copy = copies * times[("copy", "forward")] / seconds
                    cases.append(case)
                    log(format_case(case))
    return cases


def format_case(c: Case) -> str:
    extra = f"  copy-bw {c.fraction_of_copy:6.1%}" if c.fraction_of_copy is not None else ""
    return (
        f"{c.op:5s} {c.impl:19s} {c.direction:16s} {c.dtype:9s} 2^{c.numel.bit_length() - 1:<3d}"
        f" G={c.groups:2s} {c.time_ms:10.3f} ms  x{c.ratio_to_relu:7.2f} relu{extra}"
    )


def summary(cases: list[Case]) -> list[str]:
    """Speed-ups of the pau op over the references, per configuration."""
    lines = []
    index = {(c.impl, c.direction, c.dtype, c.numel, c.groups): c for c in cases}
    for c in cases:
        if c.impl != "pau":
            continue
        key = (c.direction, c.dtype, c.numel, c.groups)
        parts = [f"pau/relu x{c.ratio_to_relu:.2f}"]
        for ref in ("reference", "reference_compiled"):
            other = index.get((ref,) + key)
            if other is not None:
                parts.append(f"{ref} is {other.time_ms / c.time_ms:.1f}x slower")
        lines.append(
            f"{c.direction:16s} {c.dtype:9s} 2^{c.numel.bit_length() - 1} G={c.groups}: "
            + ", ".join(parts)
        )
    return lines


def results_path(directory: Path, device: torch.device, quick: bool) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    return directory / f"{device.type}-{slug}{'-quick' if quick else ''}.json"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pau.bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2^20 elements, float32 only")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtypes", default=None, help="comma list of float32,bfloat16,float16")
    parser.add_argument("--sizes", default=None, help="comma list of log2 sizes, e.g. 20,24")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled reference")
    parser.add_argument("--min-run-time", type=float, default=None, help="seconds per timing")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="directory for the JSON"
    )
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    default_sizes = [20] if args.quick else ([24, 28] if device.type == "cuda" else [20, 24])
    sizes = [2 ** int(s) for s in args.sizes.split(",")] if args.sizes else [
        2**s for s in default_sizes
    ]
    dtypes = args.dtypes.split(",") if args.dtypes else (
        ["float32"] if args.quick else ["float32", "bfloat16"]
    )
    for d in dtypes:
        if d not in DTYPES:
            parser.error(f"unknown dtype {d!r}; choose from {', '.join(DTYPES)}")
    min_run_time = args.min_run_time or (0.2 if args.quick else 1.0)

    header = {
        "device": device_name(device),
        "device_type": device.type,
        "cpu_capability": pau._C.cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pau": pau.__version__,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
    }
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    cases = run(device, dtypes, sizes, min_run_time, not args.no_compile)
    print("\nsummary")
    for line in summary(cases):
        print("  " + line)
    args.out.mkdir(parents=True, exist_ok=True)
    path = results_path(args.out, device, args.quick)
    path.write_text(json.dumps({**header, "cases": [asdict(c) for c in cases]}, indent=1) + "\n")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
