"""Look at learned activations: :func:`plot`.

``pau.plot(module_or_model)`` draws every PAU, RPAU and PWLU (one panel per
unit, one curve per coefficient group) with its initial function dashed, the
RPAU noise band shaded and, after ``pau.record_inputs(model)``, a histogram
of the inputs each unit saw behind the curves. It needs matplotlib (the
``plot`` extra, ``pip install 'pau[plot]'``), builds figures without pyplot,
so it works headless and never opens a window, and returns the
``matplotlib.figure.Figure`` (save it with ``fig.savefig`` or pass ``path=``).
The recording is :mod:`pau.record`'s, which needs no matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from .nn import Unit
from .record import InputHistogram, InputRecorder, latest

__all__ = ["plot", "initial_parameters"]


# ----------------------------------------------------------------------------
# Evaluation helpers (no matplotlib)
# ----------------------------------------------------------------------------


def initial_parameters(module: Unit) -> Optional[dict[str, Tensor]]:
    """The parameters ``module`` started from (float64, CPU), or None if unknown.

    :func:`pau.convert` stores them on the modules it creates; otherwise they
    are rebuilt from the module's ``init`` (a preset name for PAU / RPAU, one of
    PWLU's own inits), which works for modules built with a named init. See
    :meth:`pau.nn.Unit.initial_parameters`.
    """
    return module.initial_parameters()


def _default_range(module: Unit, hist: Optional[InputHistogram]) -> tuple[float, float]:
    natural = module.natural_range()
    if hist is not None and hist.total:
        lo, hi = hist.quantile(0.001), hist.quantile(0.999)
    elif natural is not None:
        lo, hi = natural
    else:
        return (-3.0, 3.0)  # the presets' fitting range
    width = max(hi - lo, 1e-3)
    return lo - 0.15 * width, hi + 0.15 * width


def _check_range(x_range: Any) -> Optional[tuple[float, float]]:
    if x_range is None:
        return None
    try:
        lo, hi = (float(v) for v in x_range)
    except (TypeError, ValueError):
        raise ValueError(f"x_range must be a pair (lo, hi), got {x_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"x_range must be finite with lo < hi, got {x_range!r}")
    return lo, hi


def _units(module_or_model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(module_or_model, Unit):
        return [("", module_or_model)]
    seen: set[int] = set()
    units = []
    for name, m in module_or_model.named_modules():
        if isinstance(m, Unit) and id(m) not in seen:
            seen.add(id(m))
            units.append((name, m))
    return units


# ----------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------


def _import_matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "pau.plot needs matplotlib, which is not installed: install the 'plot' extra, "
            "pip install 'pau[plot]' (or pip install matplotlib)"
        ) from exc
    return matplotlib, Figure


def _new_figure(figure_cls: Any, size: tuple[float, float]) -> Any:
    try:
        return figure_cls(figsize=size, layout="constrained")
    except TypeError:  # matplotlib < 3.5
        return figure_cls(figsize=size, constrained_layout=True)


def plot(
    module_or_model: nn.Module,
    x_range: Optional[Sequence[float]] = None,
    ax: Any = None,
    *,
    inputs: Union[InputRecorder, bool, None] = None,
    max_groups: int = 8,
    initial: bool = True,
    noise_band: bool = True,
    points: int = 401,
    ncols: int = 4,
    title: Optional[str] = None,
    path: Union[str, Any, None] = None,
    dpi: int = 100,
) -> Any:
    """Draw learned activations: every PAU, RPAU and PWLU in ``module_or_model``.

    Each unit gets a panel with one solid curve per coefficient group (at most
    ``max_groups`` of them, evenly spread, when there are more), the initial
    function dashed (see :func:`initial_parameters`), for RPAU the band that
    its coefficient noise spans in training (min/max over 256 random draws),
    for PWLU its breakpoints, and a histogram of the unit's recorded inputs
    (:func:`record_inputs`) in grey behind the curves.

    Args:
        module_or_model: a unit, or any model containing units.
        x_range: (lo, hi) for every panel; default per unit: the 0.1%-99.9%
            quantiles of its recorded inputs widened by 15% on each side, else
            PWLU's bounds widened the same way, else (-3, 3) (the presets' range).
        ax: a matplotlib Axes for a single unit, or a sequence of Axes (one per
            unit) for a model; default: a new Figure (not registered with
            pyplot, so nothing is shown or kept alive).
        inputs: an :class:`InputRecorder`; None uses the latest recording of
            each unit if there is one; False draws no histogram.
        max_groups: most group curves drawn per unit.
        initial, noise_band: draw the initial function / the RPAU band.
        points: number of x values per curve.
        ncols: panels per row for a model.
        title: figure title (single unit: the panel's title).
        path: if given, save the figure there (format from the suffix: .png, .svg, .pdf).
        dpi: resolution used when saving to ``path``.

    Returns:
        The ``matplotlib.figure.Figure`` drawn on.

    Raises:
        ImportError: matplotlib is missing (install the ``plot`` extra).
        TypeError: ``module_or_model`` is not a module.
        ValueError: no PAU/RPAU/PWLU in it, a bad ``x_range``, ``max_groups``
            or ``points``, or too few Axes.
    """
    if not isinstance(module_or_model, nn.Module):
        raise TypeError(
            f"pau.plot: expected a PAU/RPAU/PWLU or a model containing them, "
            f"got {type(module_or_model).__name__}"
        )
    fixed_range = _check_range(x_range)
    for name, value, low in (
        ("max_groups", max_groups, 1),
        ("points", points, 2),
        ("ncols", ncols, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"pau.plot: {name} must be an int >= {low}, got {value!r}")
    if inputs is not None and not isinstance(inputs, (bool, InputRecorder)):
        raise TypeError(
            f"pau.plot: inputs must be an InputRecorder (from pau.record_inputs), "
            f"None or False; got {type(inputs).__name__}"
        )
    units = _units(module_or_model)
    if not units:
        raise ValueError(
            f"pau.plot: no PAU, RPAU or PWLU module found in {type(module_or_model).__name__}"
        )
    _, figure_cls = _import_matplotlib()

    if ax is None:
        cols = min(ncols, len(units))
        rows = math.ceil(len(units) / cols)
        fig = _new_figure(figure_cls, (3.4 * cols, 2.7 * rows) if len(units) > 1 else (4.5, 3.4))
        grid = fig.subplots(rows, cols, squeeze=False)
        axes = [a for row in grid for a in row]
        for extra in axes[len(units) :]:
            extra.set_visible(False)
    else:
        axes = [ax] if not isinstance(ax, Sequence) else list(ax)
        if len(axes) < len(units):
            raise ValueError(f"pau.plot: {len(units)} units to draw but {len(axes)} Axes given")
        fig = axes[0].figure

    for (name, module), axis in zip(units, axes):
        if inputs is False:
            hist = None
        elif isinstance(inputs, InputRecorder):
            hist = inputs.get(module)
        else:
            hist = latest(module)
        panel_title = title if (title is not None and len(units) == 1) else None
        _draw_unit(
            axis,
            name,
            module,
            fixed_range,
            hist,
            max_groups,
            initial,
            noise_band,
            points,
            panel_title,
        )
    if title is not None and len(units) > 1:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


def _draw_unit(
    ax: Any,
    name: str,
    module: Unit,
    fixed_range: Optional[tuple[float, float]],
    hist: Optional[InputHistogram],
    max_groups: int,
    initial: bool,
    noise_band: bool,
    points: int,
    title: Optional[str],
) -> None:
    lo, hi = fixed_range or _default_range(module, hist)
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    params = module.current_parameters()
    values = module.reference(x, params)  # (P, G)
    groups = values.shape[1]
    shown = (
        list(range(groups))
        if groups <= max_groups
        else sorted(
            {round(i * (groups - 1) / (max_groups - 1)) for i in range(max_groups)}
            if max_groups > 1
            else [0]
        )
    )
    xs = x.numpy()

    if hist is not None and hist.total:
        back = ax.twinx()
        density = (hist.counts.cpu() / (hist.total * (hist.hi - hist.lo) / hist.bins)).numpy()
        back.stairs(
            density,
            hist.edges.numpy(),
            fill=True,
            color="0.6",
            alpha=0.35,
            label=f"inputs (n={hist.total:,})",
        )
        back.set_yticks([])
        back.set_ylim(0, max(float(density.max()), 1e-12) * 1.1)
        back.set_xlim(lo, hi)
        # Curves in front of the histogram: the twin axes is drawn later by default.
        ax.set_zorder(back.get_zorder() + 1)
        ax.patch.set_visible(False)
        hist_handles = back.get_legend_handles_labels()
    else:
        hist_handles = ([], [])

    for i, g in enumerate(shown):
        color = f"C{i % 10}"
        if groups == 1:
            label = "learned"
        elif len(shown) <= 4:
            label = f"group {g}"
        elif i == 0:
            label = (
                f"{groups} groups" if len(shown) == groups else f"{len(shown)} of {groups} groups"
            )
        else:
            label = None
        # Overlapping bands of many groups would hide each other: band the first few.
        band = module.noise_band(g, x) if noise_band and i < 4 else None
        if band is not None:
            band_lo, band_hi = band
            ax.fill_between(
                xs,
                band_lo.numpy(),
                band_hi.numpy(),
                color=color,
                alpha=0.25,
                linewidth=0,
                label="noise band" if i == 0 else None,
            )
        ax.plot(xs, values[:, g].numpy(), color=color, linewidth=1.6, label=label)
        knots = module.knots(params, g) if len(shown) <= 4 else None
        if knots is not None and knots[0].numel() <= 65:
            kx, ky = knots
            keep = (kx >= lo) & (kx <= hi)
            ax.plot(
                kx[keep].numpy(),
                ky[keep].numpy(),
                "o",
                color=color,
                markersize=2.5,
            )

    if initial:
        start = initial_parameters(module)
        if start is not None:
            y0 = module.reference(x, start)[:, 0]
            init = getattr(module, "init", "")
            ax.plot(
                xs,
                y0.numpy(),
                "--",
                color="black",
                linewidth=1.0,
                label=f"initial ({init})" if isinstance(init, str) and init else "initial",
            )

    ax.set_xlim(lo, hi)
    ax.axhline(0, color="0.85", linewidth=0.6, zorder=0)
    ax.axvline(0, color="0.85", linewidth=0.6, zorder=0)
    ax.set_title(
        title or (f"{name}: {module.describe()}" if name else module.describe()), fontsize=9
    )
    ax.tick_params(labelsize=7)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(
        handles + hist_handles[0],
        labels + hist_handles[1],
        fontsize=6,
        loc="upper left",
        frameon=False,
    )
