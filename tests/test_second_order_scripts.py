"""Smoke tests of examples/pinn_poisson.py and benchmarks/second_order.py."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pau
import torch
from pau.reference import pau_reference

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Reference(torch.nn.Module):
    def __init__(self, module: pau.PAU) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        return pau_reference(x, m.numerator, m.denominator, m.variant, m.dim)


def test_pinn_second_derivative_and_a_few_steps() -> None:
    pinn = load(ROOT / "examples" / "pinn_poisson.py")
    torch.manual_seed(0)
    model = pinn.network(lambda: pau.PAU((3, 2), variant="plain", init="relu")).double()
    reference = torch.nn.Sequential(
        *[_Reference(m) if isinstance(m, pau.PAU) else m for m in model])
    x = torch.rand(16, 1, dtype=torch.float64)
    torch.testing.assert_close(pinn.second_derivative(model, x),
                               pinn.second_derivative(reference, x), rtol=1e-10, atol=1e-10)
    # The source is -u'' of the exact solution.
    u_xx = -(math.pi**2) * torch.sin(math.pi * x)
    torch.testing.assert_close(pinn.source(x), -u_xx)
    result = pinn.train("PAU", lambda: pau.PAU((3, 2), variant="plain", init="relu"), steps=5,
                        points=16, seed=0)
    assert math.isfinite(result["final_loss"]) and math.isfinite(result["relative_l2_error"])


def test_second_order_benchmark_times_equal_work() -> None:
    bench = load(ROOT / "benchmarks" / "second_order.py")
    for groups in ("1", "C"):
        fns = bench.callables(*bench.inputs(2**10, groups))
        assert bench.check_agreement(fns) < 1e-5
        got, want = fns[("pau", "func")](), fns[("reference", "func")]()
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))
