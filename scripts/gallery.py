"""Write the README's figures of learned activations into docs/figures/.

    python scripts/gallery.py [--out docs/figures]

Needs matplotlib (``pip install 'pau[plot]'``); runs headless on the CPU in
well under a minute and is deterministic (fixed seeds, one thread), so the
committed PNGs can be regenerated and compared. Figures:

* ``presets.png``: the (5, 4) presets of four functions in every variant
  against the target, and their errors on the presets' range [-3, 3];
* ``fit.png``: ``pau.fit`` of a function with no preset (SELU) at three degree pairs;
* ``learned.png``: a small regression MLP converted from ReLU to RPAU with
  ``pau.convert``, trained, then drawn with ``pau.plot`` over the inputs
  ``pau.record_inputs`` saw (learned curve, initial ReLU dashed, noise band);
* ``pwlu.png``: the same MLP converted to PWLU, trained with the phase I
  statistics / phase II realignment schedule.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pau
import torch
import torch.nn.functional as F
from pau import presets
from pau.fit import evaluate
from pau.reference import VARIANTS
from torch import nn

DPI = 100
ROOT = Path(__file__).resolve().parent.parent


def _figure(size: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def presets_figure(path: Path) -> None:
    names = ("relu", "leaky_relu_0.20", "gelu", "tanh")
    fig = _figure((12, 5))
    axes = fig.subplots(2, len(names), sharex=True, height_ratios=(2, 1))
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    for col, name in enumerate(names):
        target = presets.function(name)(x)
        top, bottom = axes[0][col], axes[1][col]
        top.plot(x, target, color="black", linewidth=2.5, alpha=0.35, label="target")
        for i, variant in enumerate(VARIANTS):
            num, den = presets.coefficients(name, (5, 4), variant)
            y = evaluate(x, num, den, variant)
            err = presets.info(name, (5, 4), variant)["max_error"]
            top.plot(x, y, color=f"C{i}", linewidth=1.2, label=f"{variant} (max err {err:.1e})")
            bottom.plot(x, (y - target).abs().clamp_min(1e-12), color=f"C{i}", linewidth=1.0)
        for ax in (top, bottom):
            ax.axvspan(-4, -3, color="0.93", zorder=0)
            ax.axvspan(3, 4, color="0.93", zorder=0)
            ax.tick_params(labelsize=7)
        top.set_title(f"preset {name!r}, degrees (5, 4)", fontsize=9)
        top.legend(fontsize=6, frameon=False, loc="upper left")
        bottom.set_yscale("log")
        bottom.set_ylim(1e-9, 10)
        bottom.set_xlabel("x (shaded: outside the fitted range)", fontsize=7)
    axes[1][0].set_ylabel("|PAU(x) - f(x)|", fontsize=8)
    fig.savefig(path, dpi=DPI)


def fit_figure(path: Path) -> None:
    fig = _figure((8, 3.2))
    left, right = fig.subplots(1, 2)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    target = F.selu(x)
    left.plot(x, target, color="black", linewidth=2.5, alpha=0.35, label="SELU")
    for i, degrees in enumerate(((3, 2), (5, 4), (8, 7))):
        result = pau.fit(F.selu, degrees, "safe", (-3, 3))
        y = result(x)
        left.plot(
            x,
            y,
            color=f"C{i}",
            linewidth=1.2,
            label=f"fit {degrees}: max err {result.max_error:.1e}",
        )
        right.plot(x, (y - target).abs().clamp_min(1e-12), color=f"C{i}", linewidth=1.0)
    left.set_title("pau.fit(F.selu, degrees, 'safe')", fontsize=9)
    left.legend(fontsize=7, frameon=False)
    right.set_yscale("log")
    right.set_title("|fit - SELU|", fontsize=9)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    fig.savefig(path, dpi=DPI)


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
    )


def _task(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(-3, 3, n).reshape(-1, 1)
    return x, torch.sin(2 * x) + 0.3 * x.abs()


def _train(model: nn.Module, steps: int, lr: float = 3e-3) -> float:
    x, y = _task()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    return loss.item()


def learned_figure(path: Path) -> None:
    torch.manual_seed(0)
    model, summary = pau.convert(_mlp(), to="rpau", alpha=0.02)
    loss = _train(model, 600)
    model.eval()
    with pau.record_inputs(model) as inputs:
        model(_task()[0])
    fig = pau.plot(
        model,
        inputs=inputs,
        title=f"MLP converted ReLU -> RPAU, trained on a 1-D regression (MSE {loss:.1e})",
    )
    fig.set_size_inches(8, 3.2)
    fig.savefig(path, dpi=DPI)
    assert len(summary) == 2


def pwlu_figure(path: Path) -> None:
    torch.manual_seed(0)
    model, _ = pau.convert(_mlp(), to="pwlu", num_points=16)
    model.train()
    with pau.pwlu_collect_statistics(model):  # phase I: statistics, parameters frozen
        _train(model, 50)
    loss = _train(model, 600)  # phase II: realigned, everything trains
    with pau.record_inputs(model) as inputs:
        model(_task()[0])
    fig = pau.plot(
        model,
        inputs=inputs,
        title=f"MLP converted ReLU -> PWLU (N=16), realigned and trained (MSE {loss:.1e})",
    )
    fig.set_size_inches(8, 3.2)
    fig.savefig(path, dpi=DPI)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name, make in (
        ("presets", presets_figure),
        ("fit", fit_figure),
        ("learned", learned_figure),
        ("pwlu", pwlu_figure),
    ):
        path = args.out / f"{name}.png"
        make(path)
        size = path.stat().st_size
        print(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
            f"{math.ceil(size / 1024)} KB"
        )


if __name__ == "__main__":
    main()
