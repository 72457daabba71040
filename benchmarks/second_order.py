"""One second-order training step of PAU: the operator against the plain-PyTorch reference.

The step is a gradient penalty on the activation alone: with y = F(x),
g = dy/dx (create_graph), loss = sum(g^2), then the gradients of the loss with
respect to x and the coefficients. It is timed three ways for each of
``pau`` (torch.ops.pau.forward) and ``reference`` (pau.reference.pau_reference):

* ``eager``: torch.autograd.grad(..., create_graph=True), then backward; for the
  operator this is the fused first-order kernel followed by the fused double
  backward (pau::double_backward, cpp/cpu/pau_double_backward_kernel.cpp);
* ``func``: the same step written with torch.func.grad (under a transform the
  operator is the composite throughout);
* ``func_compiled``: torch.compile of the torch.func step (torch.compile cannot
  compile torch.autograd.grad with create_graph: aot_autograd refuses double
  backward for every op, torch.tanh's too).

A first-order step (forward + backward of sum(y)) is timed for comparison.
PAU (5, 4) ``safe``, float32, NCHW x with G = 1 and G = C. Results JSON:
``benchmarks/results/second-order-cpu-<device>-<threads>-threads.json``.

    python benchmarks/second_order.py [--sizes 16,20] [--min-run-time 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path
from typing import Callable

import pau
import torch
from pau.bench import device_name, measure_interleaved, nchw_shape
from pau.reference import pau_reference
from torch import Tensor
from torch.func import grad

RESULTS = Path(__file__).resolve().parent / "results"
Activation = Callable[[Tensor, Tensor, Tensor], Tensor]


def operator(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    return torch.ops.pau.forward(x, numerator, denominator, "safe", 1)


def reference(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
    return pau_reference(x, numerator, denominator, "safe", 1)


def eager_step(f: Activation, x: Tensor, numerator: Tensor, denominator: Tensor) -> Callable:
    def step() -> tuple[Tensor, ...]:
        (g,) = torch.autograd.grad(f(x, numerator, denominator).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), (x, numerator, denominator))
    return step


def penalty_gradients(f: Activation) -> Callable[[Tensor, Tensor, Tensor], tuple[Tensor, ...]]:
    """(x, numerator, denominator) -> the gradients of sum((dF/dx)^2), with torch.func."""
    def penalty(x: Tensor, numerator: Tensor, denominator: Tensor) -> Tensor:
        g = grad(lambda v: f(v, numerator, denominator).sum())(x)
        return g.pow(2).sum()
    return grad(penalty, argnums=(0, 1, 2))


def first_order_step(f: Activation, x: Tensor, numerator: Tensor, denominator: Tensor):
    def step() -> tuple[Tensor, ...]:
        return torch.autograd.grad(f(x, numerator, denominator).sum(), (x, numerator, denominator))
    return step


def inputs(numel: int, groups: str) -> tuple[Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    shape = nchw_shape(numel)
    g = 1 if groups == "1" else shape[1]
    layer = pau.PAU((5, 4), groups=g)
    x = torch.randn(shape).requires_grad_()
    return x, layer.numerator.detach().requires_grad_(), layer.denominator.detach().requires_grad_()


def callables(x: Tensor, numerator: Tensor, denominator: Tensor) -> dict:
    fns = {}
    for name, f in (("pau", operator), ("reference", reference)):
        fns[(name, "first_order")] = first_order_step(f, x, numerator, denominator)
        fns[(name, "eager")] = eager_step(f, x, numerator, denominator)
        func = penalty_gradients(f)
        fns[(name, "func")] = lambda func=func: func(x, numerator, denominator)
        # dynamic=False: one static graph per case (this process measures several shapes).
        compiled = torch.compile(penalty_gradients(f), fullgraph=True, dynamic=False)
        fns[(name, "func_compiled")] = lambda compiled=compiled: compiled(x, numerator, denominator)
    return fns


def check_agreement(fns: dict) -> float:
    """Largest difference of the operator's eager second-order gradients from the
    reference's, relative to their scale (the benchmark times equal work)."""
    got, want = fns[("pau", "eager")](), fns[("reference", "eager")]()
    return max(((a - b).abs().max() / b.abs().max().clamp_min(1)).item() for a, b in zip(got, want))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="16,20", help="comma list of log2 element counts")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing")
    parser.add_argument("--output", default=None, help="results JSON (default: results/...)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (1 gives steadier numbers on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    cases = []
    for log2 in (int(s) for s in args.sizes.split(",")):
        for groups in ("1", "C"):
            fns = callables(*inputs(2**log2, groups))
            agreement = check_agreement(fns)
            times = measure_interleaved(fns, device, args.min_run_time)
            for (impl, mode), seconds in times.items():
                cases.append({"impl": impl, "mode": mode, "numel": 2**log2, "groups": groups,
                              "ms": 1e3 * seconds})
            line = ", ".join(f"{impl} {mode} {1e3 * s:.3f} ms" for (impl, mode), s in times.items())
            print(f"2^{log2} G={groups} (max relative difference {agreement:.1e}): {line}")
    slug = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    threads = f"-{torch.get_num_threads()}-threads"
    path = Path(args.output) if args.output else RESULTS / f"second-order-cpu-{slug}{threads}.json"
    info = {"device": device_name(device), "cpu_capability": pau._C.cpu_capability(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "activation": "PAU (5, 4) safe, float32, NCHW"}
    path.write_text(json.dumps({"machine": info, "cases": cases}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
