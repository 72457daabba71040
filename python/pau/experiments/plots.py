"""PNG figures like the PAU paper's Figures 2-3: learning curves and learned activations.

matplotlib is optional; :func:`require_matplotlib` raises
:class:`PlotsUnavailableError` with the install command when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import activations
from .activations import LABELS, RPAU_ALPHA
from .report import Summary

GRID = torch.linspace(-4.0, 4.0, 401, dtype=torch.float64)
NOISE_SAMPLES = 400


class PlotsUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> Any:
    """pyplot with the non-interactive Agg backend, or PlotsUnavailableError."""
    try:
        import matplotlib
    except ImportError as err:
        raise PlotsUnavailableError(
            "plots need matplotlib: pip install matplotlib (or pip install 'pau[experiments]')"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_band(runs: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list, list, list]:
    length = min(len(r["epochs"]) for r in runs)
    rows = [[e[key] for e in r["epochs"][:length]] for r in runs]
    values = torch.tensor(rows, dtype=torch.float64)
    mean = values.mean(0)
    std = values.std(0, correction=0)
    return list(range(1, length + 1)), mean.tolist(), (mean - std).tolist(), (mean + std).tolist()


def plot_curves(groups: dict[str, list[dict[str, Any]]], title: str, path: Path) -> Path:
    """Mean test accuracy and train loss per epoch (band: ± std over seeds) per activation."""
    plt = require_matplotlib()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for act, runs in groups.items():
        for ax, key in ((ax_acc, "test_accuracy"), (ax_loss, "train_loss")):
            x, mean, lo, hi = _mean_band(runs, key)
            marker = "o" if len(x) <= 20 else None
            label = f"{LABELS.get(act, act)} ({len(runs)})"
            (line,) = ax.plot(x, mean, label=label, lw=1.6, marker=marker, ms=3)
            if len(runs) > 1:
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy (mean ± std)")
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="train loss (mean ± std)")
    ax_loss.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_acc.legend(title="activation (seeds)", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _module_from_state(name: str, state: dict[str, list], variant: str) -> torch.nn.Module:
    module = activations.make(name, variant)
    module.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    return module.double().eval()


@torch.no_grad()
def _evaluate(module: torch.nn.Module) -> torch.Tensor:
    # (N, 1): one channel along dim 1, which every per-layer activation accepts.
    return module(GRID.reshape(-1, 1)).reshape(-1)


@torch.no_grad()
def _noise_band(module: torch.nn.Module, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Envelope of the function when each coefficient is scaled by (1 + U(-alpha, alpha))."""
    gen = torch.Generator().manual_seed(0)
    originals = [p.detach().clone() for p in module.parameters()]
    lo = torch.full_like(GRID, float("inf"))
    hi = torch.full_like(GRID, float("-inf"))
    for _ in range(NOISE_SAMPLES):
        for p, p0 in zip(module.parameters(), originals):
            noise = (torch.rand(p0.shape, generator=gen, dtype=p0.dtype) * 2 - 1) * alpha
            p.copy_(p0 * (1 + noise))
        y = _evaluate(module)
        lo, hi = torch.minimum(lo, y), torch.maximum(hi, y)
    for p, p0 in zip(module.parameters(), originals):
        p.copy_(p0)
    return lo, hi


def _draw_layer(ax: Any, act: str, state: dict, init: dict, variant: str) -> None:
    learned = _module_from_state(act, state, variant)
    initial = _evaluate(_module_from_state(act, init, variant)).numpy()
    x = GRID.numpy()
    ax.plot(x, initial, "k--", lw=1, label="initial")
    (line,) = ax.plot(x, _evaluate(learned).numpy(), lw=1.8, label="learned")
    if act == "rpau":
        alpha = float(getattr(learned, "alpha", RPAU_ALPHA))
        lo, hi = _noise_band(learned, alpha)
        ax.fill_between(
            x,
            lo.numpy(),
            hi.numpy(),
            color=line.get_color(),
            alpha=0.25,
            lw=0,
            label=f"noise ±{alpha:.0%}",
        )


def plot_learned_activations(summaries: dict[str, Summary], title: str, path: Path) -> Path:
    """Each learnable activation's layers in its best run (solid) and at initialisation (dashed).

    Returns ``path``; raises ValueError when no activation has parameters.
    """
    learnable = {a: s for a, s in summaries.items() if s.activation_parameters > 0}
    if not learnable:
        raise ValueError("no learnable activation among the runs")
    plt = require_matplotlib()
    n_layers = max(len(s.best_run["activation_states"]) for s in learnable.values())
    fig, axes = plt.subplots(
        len(learnable), n_layers, figsize=(2.6 * n_layers, 2.5 * len(learnable)), squeeze=False
    )
    for row, (act, s) in enumerate(learnable.items()):
        run = s.best_run
        variant = run["config"]["pau_variant"]
        for col, (state, init) in enumerate(
            zip(run["activation_states"], run["initial_activation_states"])
        ):
            ax = axes[row][col]
            try:
                _draw_layer(ax, act, state, init, variant)
            except (RuntimeError, ValueError, TypeError) as err:
                # An activation whose module cannot take an (N, 1) input (or
                # whose state no longer loads) still gets the other panels.
                ax.text(
                    0.5,
                    0.5,
                    f"cannot evaluate:\n{err}"[:120],
                    ha="center",
                    va="center",
                    fontsize="x-small",
                    wrap=True,
                    transform=ax.transAxes,
                )
            ax.set_title(f"{LABELS.get(act, act)}, activation {col + 1}", fontsize="small")
            ax.grid(alpha=0.3)
            ax.axhline(0, color="0.6", lw=0.5)
            ax.axvline(0, color="0.6", lw=0.5)
        for col in range(len(run["activation_states"]), n_layers):
            axes[row][col].axis("off")
        axes[row][0].legend(fontsize="x-small")
        axes[row][0].set_ylabel(f"seed {run['config']['seed']}")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
