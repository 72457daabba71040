"""Look at learned activations: :func:`plot` and :func:`record_inputs`.

``pau.plot(module_or_model)`` draws every PAU, RPAU and PWLU (one panel per
unit, one curve per coefficient group) with its initial function dashed, the
RPAU noise band shaded and, after ``pau.record_inputs(model)``, a histogram
of the inputs each unit saw behind the curves. It needs matplotlib (the
``plot`` extra, ``pip install 'pau[plot]'``), builds figures without pyplot,
so it works headless and never opens a window, and returns the
``matplotlib.figure.Figure`` (save it with ``fig.savefig`` or pass ``path=``).

``record_inputs`` needs no matplotlib: it keeps, per unit, a running
histogram of its inputs on a fixed number of bins whose range doubles when
an input falls outside it (exact re-binning: pairs of bins merge), plus the
count, mean, std, min and max. Per batch that costs one min/max, one
histogram and one sum pass over the input, on its device.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import ItemsView, Iterator, KeysView, Sequence, ValuesView
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from .nn import PAU, PWLU, RPAU
from .nn.pwlu import INITS as PWLU_INITS
from .nn.pwlu import initial_parameters as pwlu_initial_parameters
from .reference import pau_reference, pwlu_reference

__all__ = [
    "plot",
    "record_inputs",
    "InputRecorder",
    "InputHistogram",
    "initial_parameters",
    "UNIT_TYPES",
]

#: The module types :func:`plot` draws and :func:`record_inputs` watches by default.
UNIT_TYPES: tuple[type[nn.Module], ...] = (PAU, PWLU)

# Monte Carlo draws of the RPAU coefficient noise for the band; fixed seed so
# that a figure is reproducible.
_BAND_DRAWS = 256
_BAND_SEED = 0


# ----------------------------------------------------------------------------
# record_inputs
# ----------------------------------------------------------------------------


class InputHistogram:
    """Running histogram and moments of every value a unit received.

    Attributes:
        bins: number of bins (even).
        lo, hi: the current histogram range (None before the first value).
        counts: float64 tensor (bins,) on the device of the inputs.
        total: number of finite values seen; ``nonfinite``: NaN/inf values skipped.
        min, max: extremes of the finite values.
    """

    def __init__(self, bins: int = 128) -> None:
        if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even int >= 2, got {bins!r}")
        self.bins = bins
        self.lo: Optional[float] = None
        self.hi: Optional[float] = None
        self.counts: Optional[Tensor] = None
        self.total = 0
        self.nonfinite = 0
        self.min = math.inf
        self.max = -math.inf
        self._sum = 0.0
        self._sumsq = 0.0

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Add the values of ``x`` (any shape, any floating dtype, any device)."""
        x = x.detach().reshape(-1)
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if x.numel() == 0:
            return
        lo_t, hi_t = torch.aminmax(x)
        lo, hi = float(lo_t), float(hi_t)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = x[torch.isfinite(x)]
            self.nonfinite += x.numel() - finite.numel()
            x = finite
            if x.numel() == 0:
                return
            lo, hi = float(x.min()), float(x.max())
        if self.counts is None:
            # Start a little wider than the first batch so that the next ones
            # rarely force a (resolution-halving) extension.
            width = max(hi - lo, 1e-6 * max(1.0, abs(lo), abs(hi)))
            self.lo, self.hi = lo - 0.05 * width, hi + 0.05 * width
            self.counts = torch.zeros(self.bins, dtype=torch.float64, device=x.device)
        while lo < self.lo or hi > self.hi:
            self._extend(right=hi > self.hi)
        self.counts += torch.histc(x, self.bins, self.lo, self.hi).to(self.counts)
        self.total += x.numel()
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        xd = x.double()
        self._sum += float(xd.sum())
        self._sumsq += float((xd * xd).sum())

    def _extend(self, right: bool) -> None:
        """Double the range to one side; bin pairs merge, so counts stay exact."""
        width = self.hi - self.lo
        merged = self.counts.view(self.bins // 2, 2).sum(1)
        empty = torch.zeros_like(merged)
        if right:
            self.counts = torch.cat([merged, empty])
            self.hi = self.lo + 2 * width
        else:
            self.counts = torch.cat([empty, merged])
            self.lo = self.hi - 2 * width

    @property
    def edges(self) -> Tensor:
        """Bin edges (bins + 1,), float64 on the CPU."""
        if self.lo is None:
            raise ValueError("empty histogram: no inputs recorded")
        return torch.linspace(self.lo, self.hi, self.bins + 1, dtype=torch.float64)

    @property
    def mean(self) -> float:
        return self._sum / self.total if self.total else math.nan

    @property
    def std(self) -> float:
        if not self.total:
            return math.nan
        return math.sqrt(max(self._sumsq / self.total - self.mean**2, 0.0))

    def quantile(self, q: float) -> float:
        """Approximate q-quantile (linear inside the bin that holds it)."""
        if not self.total:
            return math.nan
        counts = self.counts.cpu()
        cumulative = torch.cumsum(counts, 0)
        target = q * float(cumulative[-1])
        i = int(torch.searchsorted(cumulative, torch.tensor([target], dtype=counts.dtype)))
        i = min(i, self.bins - 1)
        before = float(cumulative[i - 1]) if i else 0.0
        inside = float(counts[i])
        frac = (target - before) / inside if inside else 0.0
        step = (self.hi - self.lo) / self.bins
        return min(max(self.lo + (i + frac) * step, self.min), self.max)

    def __repr__(self) -> str:
        if not self.total:
            return f"InputHistogram(bins={self.bins}, empty)"
        return (
            f"InputHistogram(bins={self.bins}, total={self.total}, range=[{self.lo:.4g}, "
            f"{self.hi:.4g}], mean={self.mean:.4g}, std={self.std:.4g})"
        )


# The latest recording for each module, so that ``plot`` finds it without
# being handed the recorder; weak keys: it never keeps a model alive.
_LATEST: weakref.WeakKeyDictionary[nn.Module, InputHistogram] = weakref.WeakKeyDictionary()


class InputRecorder:
    """Forward hooks that feed an :class:`InputHistogram` per unit; see :func:`record_inputs`.

    Use as a context manager (hooks removed on exit) or call :meth:`remove`.
    Index it with a module or its qualified name; otherwise it reads as the
    mapping ``histograms`` of qualified names to histograms (iteration,
    ``len``, ``in``, :meth:`keys`, :meth:`values`, :meth:`items`).
    """

    def __init__(
        self, model: nn.Module, bins: int = 128, types: Sequence[type[nn.Module]] = UNIT_TYPES
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"record_inputs: model must be a torch.nn.Module, got {type(model).__name__}"
            )
        types = tuple(types)
        units = [(name, m) for name, m in model.named_modules() if isinstance(m, types)]
        if not units:
            raise ValueError(
                "record_inputs: the model has no module of type "
                f"{', '.join(t.__name__ for t in types)} to record"
            )
        InputHistogram(bins)  # validates bins before any hook is installed
        self.histograms: dict[str, InputHistogram] = {}
        self._by_module: dict[int, InputHistogram] = {}
        self._handles = []
        for name, module in units:
            if id(module) in self._by_module:  # one module under two names: one histogram
                self.histograms[name] = self._by_module[id(module)]
                continue
            hist = InputHistogram(bins)
            self.histograms[name] = hist
            self._by_module[id(module)] = hist
            _LATEST[module] = hist
            self._handles.append(module.register_forward_pre_hook(self._hook(hist)))

    @staticmethod
    def _hook(hist: InputHistogram) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], Tensor):
                hist.update(args[0])

        return hook

    def get(self, module: nn.Module) -> Optional[InputHistogram]:
        """The histogram of ``module``, or None if it is not recorded here."""
        return self._by_module.get(id(module))

    def __getitem__(self, key: Union[str, nn.Module]) -> InputHistogram:
        if isinstance(key, nn.Module):
            hist = self.get(key)
            if hist is None:
                raise KeyError(f"module {type(key).__name__} is not recorded")
            return hist
        return self.histograms[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.histograms)

    def __len__(self) -> int:
        return len(self.histograms)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, nn.Module):
            return self.get(key) is not None
        return key in self.histograms

    def keys(self) -> KeysView[str]:
        """The qualified names of the recorded units, as ``histograms.keys()``."""
        return self.histograms.keys()

    def values(self) -> ValuesView[InputHistogram]:
        """The histograms, in the order of :meth:`keys`."""
        return self.histograms.values()

    def items(self) -> ItemsView[str, InputHistogram]:
        """(qualified name, histogram) pairs, as ``histograms.items()``."""
        return self.histograms.items()

    def remove(self) -> None:
        """Stop recording (the histograms stay)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> InputRecorder:
        return self

    def __exit__(self, *exc: object) -> bool:
        self.remove()
        return False


def record_inputs(
    model: nn.Module, bins: int = 128, types: Sequence[type[nn.Module]] = UNIT_TYPES
) -> InputRecorder:
    """Record a histogram of the inputs of every PAU / RPAU / PWLU in ``model``.

    Usage::

        with pau.record_inputs(model) as inputs:
            for x, _ in loader:
                model(x)
        fig = pau.plot(model, inputs=inputs)  # or pau.plot(model): uses the latest recording

    Args:
        model: the model (or a single unit).
        bins: number of histogram bins (even).
        types: module types to watch; e.g. ``(nn.ReLU,)`` to look at the
            inputs of the activations before converting them.

    Raises:
        TypeError: ``model`` is not a module. ValueError: nothing to record, bad ``bins``.
    """
    return InputRecorder(model, bins, types)


# ----------------------------------------------------------------------------
# Evaluation helpers (no matplotlib)
# ----------------------------------------------------------------------------


def initial_parameters(module: nn.Module) -> Optional[dict[str, Tensor]]:
    """The parameters ``module`` started from (float64, CPU), or None if unknown.

    :func:`pau.convert` stores them on the modules it creates; otherwise they
    are rebuilt from the module's ``init`` (a preset name for PAU / RPAU, one of
    PWLU's own inits), which works for modules built with a named init.
    """
    stored = getattr(module, "_pau_initial", None)
    if stored is not None:
        return stored
    init = getattr(module, "init", None)
    if isinstance(module, PAU) and isinstance(init, str) and init not in ("custom", "fit"):
        from . import presets

        try:
            num, den = presets.coefficients(init, module.degrees, module.variant)
        except ValueError:
            return None
        return {"numerator": num.reshape(1, -1), "denominator": den.reshape(1, -1)}
    if isinstance(module, PWLU) and init in PWLU_INITS:
        points, bounds, slopes = pwlu_initial_parameters(init, module.num_points, module.bound)
        return {
            "points": points.reshape(1, -1),
            "bounds": bounds.reshape(1, -1),
            "slopes": slopes.reshape(1, -1),
        }
    return None


def _evaluate(module: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """(P, G) values of each group's function at the (P,) points ``x``, float64."""
    if isinstance(module, PAU):
        num, den = params["numerator"], params["denominator"]
        xs = x[:, None].expand(-1, num.shape[0])
        return pau_reference(xs, num, den, module.variant, dim=1)
    points = params["points"]
    xs = x[:, None].expand(-1, points.shape[0])
    return pwlu_reference(xs, points, params["bounds"], params["slopes"], dim=1)


def _current(module: nn.Module) -> dict[str, Tensor]:
    names = (
        ("numerator", "denominator") if isinstance(module, PAU) else ("points", "bounds", "slopes")
    )
    return {n: getattr(module, n).detach().to("cpu", torch.float64) for n in names}


def _noise_band(module: RPAU, group: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """Pointwise min and max of F over random draws of RPAU's coefficient noise.

    Every coefficient c becomes c (1 + e), e ~ U(-alpha, alpha), independently
    (PAU paper Eq. 3): the band is what one training forward can output.
    """
    num = module.numerator.detach().to("cpu", torch.float64)[group]
    den = module.denominator.detach().to("cpu", torch.float64)[group]
    count = num.numel() + den.numel()
    alpha = module.alpha.detach().to("cpu", torch.float64).expand(module.groups, count)[group]
    gen = torch.Generator().manual_seed(_BAND_SEED)
    u = torch.rand(_BAND_DRAWS, count, dtype=torch.float64, generator=gen)
    factor = 1 + alpha * (2 * u - 1)
    factor[0] = 1  # include the unperturbed function
    coefficients = torch.cat([num, den]) * factor
    values = _evaluate(
        module,
        {
            "numerator": coefficients[:, : num.numel()],
            "denominator": coefficients[:, num.numel() :],
        },
        x,
    )
    return values.min(1).values, values.max(1).values


def _default_range(module: nn.Module, hist: Optional[InputHistogram]) -> tuple[float, float]:
    if hist is not None and hist.total:
        lo, hi = hist.quantile(0.001), hist.quantile(0.999)
    elif isinstance(module, PWLU):
        bounds = module.bounds.detach().to("cpu", torch.float64)
        lo, hi = float(bounds[:, 0].min()), float(bounds[:, 1].max())
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


def _describe(module: nn.Module) -> str:
    if isinstance(module, PAU):
        kind = "RPAU" if isinstance(module, RPAU) else "PAU"
        m, n = module.degrees
        return f"{kind} ({m},{n}) {module.variant}"
    return f"PWLU N={module.num_points}"


def _units(module_or_model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(module_or_model, UNIT_TYPES):
        return [("", module_or_model)]
    seen: set[int] = set()
    units = []
    for name, m in module_or_model.named_modules():
        if isinstance(m, UNIT_TYPES) and id(m) not in seen:
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
            hist = _LATEST.get(module)
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
    module: nn.Module,
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
    params = _current(module)
    values = _evaluate(module, params, x)  # (P, G)
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
        if noise_band and i < 4 and isinstance(module, RPAU) and float(module.alpha.max()) > 0:
            band_lo, band_hi = _noise_band(module, g, x)
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
        if isinstance(module, PWLU) and module.num_points <= 64 and len(shown) <= 4:
            knots = torch.linspace(0, 1, module.num_points + 1, dtype=torch.float64)
            b = params["bounds"][g]
            kx = b[0] + knots * (b[1] - b[0])
            keep = (kx >= lo) & (kx <= hi)
            ax.plot(
                kx[keep].numpy(),
                params["points"][g][keep].numpy(),
                "o",
                color=color,
                markersize=2.5,
            )

    if initial:
        start = initial_parameters(module)
        if start is not None:
            y0 = _evaluate(module, start, x)[:, 0]
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
        title or (f"{name}: {_describe(module)}" if name else _describe(module)), fontsize=9
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
