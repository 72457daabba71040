"""How close a converted model starts to the original, measured on an example input.

The start-quality report of :func:`pau.convert` (``example_input=``): one forward pass of the
original model records the input range of every activation it replaces and
the model's output; after the conversion, each new unit is compared with the
function it replaced on that range, and the converted model's output with the
original's.

Both passes run in eval mode (BatchNorm on its running statistics, no
dropout, RPAU without noise), so that they are deterministic and comparable
and leave no trace in the model (no BatchNorm statistics updates); each
module's mode is restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ..nn import Unit
from ..record import InputHistogram
from .matching import match
from .report import ConversionSummary

# Uniform points of a recorded range on which a unit's start error is measured
# (plus the range's end points and 0, where ReLU-like presets err most).
_RANGE_POINTS = 6001
# Bins of the input histogram that weights the mean start error.
_BINS = 256


@dataclass
class Observation:
    """What one eval-mode forward pass of ``example_input`` showed.

    Attributes:
        shapes: input shapes per watched module (by ``id``), one per call.
        ranges: (min, max) of the finite inputs per watched module (by ``id``);
            absent when it received none.
        histograms: a histogram of those inputs per watched module (by ``id``).
        output: the model's output (detached).
    """

    shapes: dict[int, list[torch.Size]] = field(default_factory=dict)
    ranges: dict[int, tuple[float, float]] = field(default_factory=dict)
    histograms: dict[int, InputHistogram] = field(default_factory=dict)
    output: Any = None


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode for the duration; every module's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def run(model: nn.Module, example_input: Any) -> Any:
    """``model``'s output on ``example_input`` (a tensor or a tuple of inputs), in eval mode."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    with torch.no_grad(), eval_mode(model):
        return model(*inputs)


def observe(model: nn.Module, modules: list[nn.Module], example_input: Any) -> Observation:
    """Input shapes and ranges of ``modules`` and the output of ``model`` on ``example_input``."""
    seen = Observation(shapes={id(m): [] for m in modules},
                       histograms={id(m): InputHistogram(_BINS) for m in modules})

    def hook(module: nn.Module, args: tuple) -> None:
        if not (args and isinstance(args[0], Tensor)):
            return
        x = args[0]
        seen.shapes[id(module)].append(x.shape)
        if x.is_floating_point() and x.numel():
            finite = x.detach()[torch.isfinite(x.detach())]
            if finite.numel():
                lo, hi = (float(v) for v in torch.aminmax(finite.double()))
                old = seen.ranges.get(id(module), (lo, hi))
                seen.ranges[id(module)] = (min(old[0], lo), max(old[1], hi))
                seen.histograms[id(module)].update(finite)

    handles = [m.register_forward_pre_hook(hook) for m in modules]
    try:
        seen.output = run(model, example_input)
    finally:
        for h in handles:
            h.remove()
    return seen


def range_grid(x_range: tuple[float, float]) -> Tensor:
    """float64 points covering ``x_range``: uniform, its ends, and 0 when inside."""
    lo, hi = x_range
    x = torch.linspace(lo, hi, _RANGE_POINTS, dtype=torch.float64)
    if lo < 0.0 < hi:
        x = torch.cat([x, x.new_zeros(1)])
    return x


def unit_values(module: Unit, x: Tensor) -> Tensor:
    """F(x) of the first coefficient group of a unit (RPAU without noise), float64."""
    with torch.no_grad():
        return module.reference(x, module.current_parameters(0))[:, 0]


def unit_error(
    module: Unit, target: Callable[[Tensor], Tensor], x_range: tuple[float, float]
) -> tuple[float, float]:
    """(max |F - f|, that divided by max |f|) of a new unit against the function it replaced.

    Measured on :func:`range_grid` of ``x_range`` in float64 (all groups start
    alike, so the first one stands for them). The relative error is 0 when
    both vanish and inf when only f does.
    """
    x = range_grid(x_range)
    with torch.no_grad():
        y = target(x).to(torch.float64)
    err = float((unit_values(module, x) - y).abs().max())
    scale = float(y.abs().max())
    if scale > 0:
        return err, err / scale
    return err, (0.0 if err == 0 else math.inf)


def mean_error(
    module: Unit, target: Callable[[Tensor], Tensor], histogram: InputHistogram
) -> Optional[float]:
    """Mean |F(x) - f(x)| over the recorded inputs, from their histogram (bin centres).

    Unlike the max over the range, this weights each x by how often the inputs
    took it, so it tells how far the unit's outputs start from the original's
    on average. None when the histogram is empty.
    """
    if not histogram.total:
        return None
    edges = histogram.edges
    centres = 0.5 * (edges[:-1] + edges[1:])
    counts = histogram.counts.detach().to("cpu", torch.float64)
    with torch.no_grad():
        err = (unit_values(module, centres) - target(centres).to(torch.float64)).abs()
    return float((counts * err).sum() / counts.sum())


def _tensors(output: Any) -> list[Tensor]:
    """The floating-point tensors of a (possibly nested) model output, in a fixed order."""
    if isinstance(output, Tensor):
        return [output] if output.is_floating_point() or output.is_complex() else []
    if isinstance(output, dict):
        return [t for key in output for t in _tensors(output[key])]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []


def output_agreement(original: Any, converted: Any) -> Optional[tuple[float, float]]:
    """(cosine, ||converted - original|| / ||original||) of two model outputs, in float64.

    All floating-point tensors of each output are flattened into one vector.
    None when the outputs hold no such tensors or their sizes differ.
    """
    a, b = _tensors(original), _tensors(converted)
    if not a or [t.numel() for t in a] != [t.numel() for t in b]:
        return None
    u = torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in a])
    v = torch.cat([t.detach().reshape(-1).to("cpu", torch.float64) for t in b])
    norm_u, norm_v = float(u.norm()), float(v.norm())
    diff = float((v - u).norm())
    if norm_u == 0.0 or norm_v == 0.0:
        cosine = 1.0 if norm_u == norm_v else 0.0
    else:
        cosine = float(u @ v) / (norm_u * norm_v)
    relative = diff / norm_u if norm_u > 0 else (0.0 if diff == 0 else math.inf)
    return cosine, relative


def report_start_errors(
    summary: ConversionSummary,
    originals: dict[str, nn.Module],
    observation: Observation,
    model: nn.Module,
    example_input: Any,
) -> None:
    """Fill in the start error of each replacement on its recorded input range, and the
    converted model's output against the original's on ``example_input``."""
    for r in summary.replacements:
        original = originals[r.name]
        x_range = observation.ranges.get(id(original))
        if x_range is None:
            continue
        r.input_range = x_range
        target = match(original).target
        r.range_max_error, r.range_rel_error = unit_error(r.module, target, x_range)
        r.input_mean_error = mean_error(r.module, target, observation.histograms[id(original)])
    agreement = output_agreement(observation.output, run(model, example_input))
    if agreement is None:
        summary.notes.append(
            "the model's output holds no floating-point tensors to compare with the original"
        )
    else:
        summary.output_cosine, summary.output_rel_error = agreement
