"""Record what the learnable activations of a model receive: :func:`record_inputs`.

It keeps, per unit, a running histogram of its inputs on a fixed number of
bins whose range doubles when an input falls outside it (exact re-binning:
pairs of bins merge), plus the count, mean, std, min and max. Per batch that
costs one min/max, one histogram and one sum pass over the input, on its
device. Needs no matplotlib; :func:`pau.plot` draws the histograms behind the
learned functions.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import ItemsView, Iterator, KeysView, Sequence, ValuesView
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from .nn import PAU, PWLU

__all__ = ["InputHistogram", "InputRecorder", "UNIT_TYPES", "latest", "record_inputs"]

#: The module types :func:`record_inputs` watches by default: every unit (an
#: RPAU is a PAU); the error for a model without any names them.
UNIT_TYPES: tuple[type[nn.Module], ...] = (PAU, PWLU)


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
        """Mean of the finite values seen (NaN before any)."""
        return self._sum / self.total if self.total else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation of the finite values seen (NaN before any)."""
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


# The latest recording for each module, so that ``pau.plot`` finds it without
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


def latest(module: nn.Module) -> Optional[InputHistogram]:
    """The histogram of ``module``'s most recent :func:`record_inputs`, or None."""
    return _LATEST.get(module)
