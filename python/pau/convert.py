"""Swap the fixed activations of an existing network for learnable ones.

:func:`convert` replaces activation modules (``nn.ReLU``, ``nn.GELU``, ...)
and, in ``torch.fx``-traceable models, functional activations (``F.relu``,
``torch.relu``, ``x.relu()``, ...) by :class:`pau.PAU`, :class:`pau.RPAU` or
:class:`pau.PWLU` modules that start out as (an approximation of) the function
they replace, and reports what it did in a :class:`ConversionSummary`.

How each activation is matched (``init="match"``):

* PAU / RPAU start from the preset (:mod:`pau.presets`) of the same function:
  ReLU and ReLU6 -> ``relu`` (equal on the presets' range [-3, 3]), GELU ->
  ``gelu``, SiLU -> ``silu``, Mish, ELU, CELU (alpha 1), Softplus (beta 1),
  Tanh, Sigmoid; LeakyReLU / PReLU -> the ``leaky_relu*`` preset with their
  slope, or the nearest slope with a note when there is none. Hardswish ->
  ``silu`` with a note. ``init="fit"`` fits the coefficients to the replaced
  module itself instead (about a second per distinct activation).
* PWLU samples the replaced function at its N+1 breakpoints on
  [-bound, bound] and takes the outer slopes from the function just outside
  the bounds, so piecewise-linear activations (ReLU, ReLU6 inside the bounds,
  any LeakyReLU) are matched exactly.

Every replacement records ``max_error``, the measured max |new(x) - old(x)|
over x in :data:`pau.presets.X_RANGE` = [-3, 3] at conversion time. With
``example_input`` it also records the range of the inputs each activation
received and the start error on that range, and the summary compares the
converted model's output with the original's (``output_cosine``); see
:mod:`pau._start_error`. ``init="match:wide"`` (or ``"match:exact0"``) starts
from the presets of another fit (:data:`pau.presets.FITS`), e.g. fitted on
[-10, 10] with F(0) = f(0), for inputs that go beyond [-3, 3].
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _start_error, presets
from ._checks import check_degrees
from .nn import PAU, PWLU, RPAU, Unit
from .nn._unit import ConversionStart

__all__ = ["convert", "ConversionSummary", "Replacement", "DEFAULT_ACTIVATIONS", "TARGETS"]

#: Activation types that :func:`convert` replaces unless told otherwise: the
#: hidden-layer nonlinearities. Tanh, Sigmoid, Softplus, PReLU and Hardswish are
#: supported too but often act as gates or outputs, so they are opt-in.
DEFAULT_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.ELU,
    nn.CELU,
)

#: Accepted values of ``to``.
TARGETS: dict[str, type[Unit]] = {"pau": PAU, "rpau": RPAU, "pwlu": PWLU}

# Points of [-3, 3] on which Replacement.max_error is measured.
_ERROR_POINTS = 6001

# Modules whose output channel count tells the channel count of the
# activation that follows them, and the dim those channels live in.
_CHANNEL_SOURCES: tuple[tuple[tuple[type[nn.Module], ...], Callable[[Any], int], int], ...] = (
    (
        (
            nn.Conv1d,
            nn.Conv2d,
            nn.Conv3d,
            nn.ConvTranspose1d,
            nn.ConvTranspose2d,
            nn.ConvTranspose3d,
        ),
        lambda m: m.out_channels,
        1,
    ),
    (
        (
            nn.BatchNorm1d,
            nn.BatchNorm2d,
            nn.BatchNorm3d,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.InstanceNorm3d,
        ),
        lambda m: m.num_features,
        1,
    ),
    ((nn.GroupNorm,), lambda m: m.num_channels, 1),
    ((nn.Linear,), lambda m: m.out_features, -1),
    ((nn.LayerNorm,), lambda m: m.normalized_shape[-1], -1),
)


@dataclass
class Replacement:
    """One activation that :func:`convert` replaced.

    Attributes:
        name: qualified name of the new module in the returned model.
        original: what was there, e.g. ``"ReLU(inplace=True)"`` or
            ``"F.relu (functional, node relu_1)"``.
        kind: ``"module"`` or ``"functional"``.
        module: the new module (a :class:`pau.PAU`, :class:`pau.RPAU` or :class:`pau.PWLU`).
        init: the preset it starts from, ``"fit"`` or ``"sampled <what>"`` for PWLU.
        groups: its number of coefficient groups.
        channels: the channel count used for ``groups="channel"`` (None for layers).
        max_error: max |new(x) - original(x)| for x in [-3, 3] at conversion.
        note: anything approximate about the match (empty when exact).
        input_range: (min, max) of the inputs the activation received on
            ``example_input`` (None without it, or when it received none).
        range_max_error: max |new(x) - original(x)| for x in ``input_range``.
        range_rel_error: ``range_max_error`` / max |original(x)| on ``input_range``.
        input_mean_error: mean |new(x) - original(x)| over the inputs received
            (from a 256-bin histogram of them): the typical start error, where
            ``range_max_error`` is the worst one at the range's ends.
    """

    name: str
    original: str
    kind: str
    module: nn.Module
    init: str
    groups: int
    channels: Optional[int]
    max_error: float
    note: str = ""
    input_range: Optional[tuple[float, float]] = None
    range_max_error: Optional[float] = None
    range_rel_error: Optional[float] = None
    input_mean_error: Optional[float] = None


@dataclass
class ConversionSummary:
    """What :func:`convert` did: the replacements and general notes.

    Iterating yields the :class:`Replacement` entries; ``len()`` counts them;
    ``str()`` is a readable table.

    With ``example_input``, ``output_cosine`` is the cosine between the
    converted and the original model's outputs on it (all floating-point output
    tensors flattened into one vector, eval mode) and ``output_rel_error`` is
    ||converted - original|| / ||original||; both None otherwise.
    """

    to: str
    replacements: list[Replacement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_cosine: Optional[float] = None
    output_rel_error: Optional[float] = None

    def __len__(self) -> int:
        return len(self.replacements)

    def __iter__(self) -> Iterator[Replacement]:
        return iter(self.replacements)

    def counts(self) -> dict[str, int]:
        """Number of replacements per original activation type (e.g. ``{"ReLU": 17}``)."""
        out: dict[str, int] = {}
        for r in self.replacements:
            key = r.original.split("(")[0].split(" ")[0]
            out[key] = out.get(key, 0) + 1
        return out

    @property
    def max_error(self) -> float:
        """The largest ``max_error`` over all replacements (0 when none)."""
        return max((r.max_error for r in self.replacements), default=0.0)

    def __str__(self) -> str:
        head = f"pau.convert: {len(self)} activation(s) replaced by {self.to.upper()}"
        if not self.replacements:
            return "\n".join([head, *(f"note: {n}" for n in self.notes)])
        rows = [("name", "original", "init", "groups", "max err [-3,3]")]
        for r in self.replacements:
            rows.append((r.name, r.original, r.init, str(r.groups), f"{r.max_error:.2e}"))
        if any(r.input_range is not None for r in self.replacements):
            rows = _with_range_columns(rows, self.replacements)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [head]
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        if self.output_cosine is not None:
            lines.append(
                f"output on example_input vs the original: cosine {self.output_cosine:.6f}, "
                f"relative error {self.output_rel_error:.2e}"
            )
        notes = [f"{r.name}: {r.note}" for r in self.replacements if r.note] + self.notes
        lines += [f"note: {n}" for n in notes]
        return "\n".join(lines)


def _with_range_columns(
    rows: list[tuple[str, ...]], replacements: list[Replacement]
) -> list[tuple[str, ...]]:
    """The table rows with the input range and the start error on it appended."""
    out = [(*rows[0], "input range", "max err (range)", "rel err (range)", "mean err (inputs)")]
    for row, r in zip(rows[1:], replacements):
        if r.input_range is None:
            out.append((*row, "-", "-", "-", "-"))
        else:
            lo, hi = r.input_range
            out.append(
                (*row, f"[{lo:.3g}, {hi:.3g}]", f"{r.range_max_error:.2e}",
                 f"{r.range_rel_error:.2e}", f"{r.input_mean_error:.2e}")
            )
    return out


# ----------------------------------------------------------------------------
# Matching activations to presets
# ----------------------------------------------------------------------------


@dataclass
class _Match:
    preset: Optional[str]  # None: no preset for this type
    target: Callable[[Tensor], Tensor]  # the replaced function, float64 in and out
    note: str = ""


def _leaky_presets() -> dict[float, str]:
    """Slope -> canonical preset name, read off the names (the aliases spell out 0.01)."""
    out = {}
    for name in presets.names():
        if name.startswith("leaky_relu_"):
            out[float(name[len("leaky_relu_") :])] = presets.ALIASES.get(name, name)
    return out


def _leaky_match(slope: float, what: str) -> _Match:
    def target(x: Tensor) -> Tensor:
        return F.leaky_relu(x, slope)

    table = _leaky_presets()
    nearest = min(table, key=lambda s: (abs(s - slope), s))
    note = ""
    if not math.isclose(nearest, slope, rel_tol=1e-9, abs_tol=1e-12):
        note = (
            f"{what} slope {slope:g} has no preset; started from the nearest, "
            f"{table[nearest]!r} (slope {nearest:g}); init='fit' matches it exactly"
        )
    return _Match(table[nearest], target, note)


def _match(module: nn.Module) -> _Match:
    """The preset that matches ``module`` and the function it computes."""
    if isinstance(module, nn.ReLU6):
        return _Match("relu", F.relu6, "ReLU6 equals ReLU on [-3, 3]; the preset does not cap at 6")
    if isinstance(module, nn.ReLU):
        return _Match("relu", torch.relu)
    if isinstance(module, nn.LeakyReLU):
        return _leaky_match(float(module.negative_slope), "LeakyReLU")
    if isinstance(module, nn.PReLU):
        weight = module.weight.detach().double()
        slope = float(weight.mean())
        match = _leaky_match(slope, "PReLU")
        if weight.numel() > 1 and float(weight.max() - weight.min()) > 0:
            match.note = (
                f"PReLU has per-channel slopes; matched their mean {slope:g}. " + match.note
            ).strip()
        return match
    if isinstance(module, nn.GELU):
        approximate = getattr(module, "approximate", "none")

        def gelu(x: Tensor) -> Tensor:
            return F.gelu(x, approximate=approximate)

        note = (
            "GELU(approximate='tanh'): the preset fits the exact (erf) GELU"
            if approximate != "none"
            else ""
        )
        return _Match("gelu", gelu, note)
    if isinstance(module, nn.SiLU):
        return _Match("silu", F.silu)
    if isinstance(module, nn.Mish):
        return _Match("mish", F.mish)
    if isinstance(module, (nn.ELU, nn.CELU)):
        alpha = float(module.alpha)
        kind = type(module).__name__

        def elu(x: Tensor) -> Tensor:
            return F.elu(x, alpha)

        note = "" if alpha == 1.0 else f"{kind} alpha {alpha:g}: the preset has alpha 1"
        return _Match("elu", elu, note)
    if isinstance(module, nn.Softplus):
        beta, threshold = float(module.beta), float(module.threshold)

        def softplus(x: Tensor) -> Tensor:
            return F.softplus(x, beta, threshold)

        note = "" if beta == 1.0 else f"Softplus beta {beta:g}: the preset has beta 1"
        return _Match("softplus", softplus, note)
    if isinstance(module, nn.Tanh):
        return _Match("tanh", torch.tanh)
    if isinstance(module, nn.Sigmoid):
        return _Match("sigmoid", torch.sigmoid)
    if isinstance(module, nn.Hardswish):
        return _Match("silu", F.hardswish, "Hardswish has no preset; started from 'silu'")
    if isinstance(module, nn.Identity):
        return _Match("identity", presets.function("identity"))
    return _Match(None, _module_target(module))


def _module_target(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """``module`` as a float64 function of a 1-D tensor (for unknown activation types)."""

    def target(x: Tensor) -> Tensor:
        with torch.no_grad():
            clone = copy.deepcopy(module).to(torch.float64).eval()
            return clone(x)

    return target


# ----------------------------------------------------------------------------
# Building the new modules
# ----------------------------------------------------------------------------


def _new_module(
    to: str,
    original: nn.Module,
    match: _Match,
    init: str,
    groups: int,
    dim: int,
    kwargs: dict[str, Any],
    factory: dict[str, Any],
    fits: dict[Any, dict[str, Tensor]],
    preset_fit: str = "default",
) -> tuple[Unit, str]:
    """The replacement for ``original`` and a label of its initialisation.

    ``preset_fit`` is the fit (:data:`pau.presets.FITS`) of the preset that
    ``init="match"`` picks.
    """
    cls = TARGETS[to]
    config = {k: kwargs[k] for k in cls.config_names if k in kwargs and k != "dim"}
    start = ConversionStart(
        init=init,
        target=match.target,
        name=type(original).__name__,
        key=repr(original),
        preset=match.preset,
        exact=not match.note,
        preset_fit=preset_fit,
    )
    return cls.for_conversion(start, groups, dim, config, factory, fits)


def _short(module: nn.Module) -> str:
    return repr(module).replace("\n", " ")


# ----------------------------------------------------------------------------
# Channel counts
# ----------------------------------------------------------------------------


def _channel_source(module: nn.Module) -> Optional[tuple[int, int]]:
    """(channels, dim) that an activation right after ``module`` sees, if known."""
    for types, count, dim in _CHANNEL_SOURCES:
        if isinstance(module, types):
            return int(count(module)), dim
    return None


def _channel_count(
    name: str,
    dim: int,
    shapes: Optional[list[torch.Size]],
    source: Optional[tuple[int, int]],
) -> Optional[int]:
    """The channel count of activation ``name`` along ``dim``, or None when unknown.

    Shapes recorded from ``example_input`` win over the preceding channel source.
    """
    if shapes:
        sizes = {s[dim] if -len(s) <= dim < len(s) else None for s in shapes}
        if None in sizes or len(sizes) != 1:
            raise ValueError(
                f"pau.convert: activation {name!r} saw inputs of shapes "
                f"{[tuple(s) for s in shapes]}; no single channel count along dim {dim}"
            )
        return int(next(iter(sizes)))
    return source[0] if source is not None else None


def _check_groups_divide(
    name: str,
    groups: int,
    dim: int,
    shapes: Optional[list[torch.Size]],
    source: Optional[tuple[int, int]],
) -> None:
    """Raise now, not at the first forward, when ``groups`` cannot split the channels.

    The channel counts are those recorded from ``example_input`` (a shared
    activation may see several) or else the preceding channel source's; with
    neither, the operator checks at the first forward.
    """
    if shapes:
        counts = sorted({int(s[dim]) for s in shapes if -len(s) <= dim < len(s)})
    else:
        counts = [source[0]] if source is not None else []
    for count in counts:
        if count % groups != 0:
            raise ValueError(
                f"pau.convert: groups={groups} does not divide the {count} channels (dim {dim}) "
                f"of activation {name!r}; pass a divisor of {count}, 'layer' or 'channel'"
            )


# ----------------------------------------------------------------------------
# Functional activations (torch.fx)
# ----------------------------------------------------------------------------


def _functional_table() -> dict[Any, Callable[[tuple, dict], nn.Module]]:
    """call_function / call_method targets -> builder of the equivalent nn module."""

    def arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(name, default)

    def relu(a: tuple, k: dict) -> nn.Module:
        return nn.ReLU()

    def relu6(a: tuple, k: dict) -> nn.Module:
        return nn.ReLU6()

    def leaky(a: tuple, k: dict) -> nn.Module:
        return nn.LeakyReLU(arg(a, k, 1, "negative_slope", 0.01))

    def gelu(a: tuple, k: dict) -> nn.Module:
        return nn.GELU(approximate=k.get("approximate", "none"))

    def silu(a: tuple, k: dict) -> nn.Module:
        return nn.SiLU()

    def mish(a: tuple, k: dict) -> nn.Module:
        return nn.Mish()

    def elu(a: tuple, k: dict) -> nn.Module:
        return nn.ELU(arg(a, k, 1, "alpha", 1.0))

    def celu(a: tuple, k: dict) -> nn.Module:
        return nn.CELU(arg(a, k, 1, "alpha", 1.0))

    def softplus(a: tuple, k: dict) -> nn.Module:
        return nn.Softplus(arg(a, k, 1, "beta", 1.0), arg(a, k, 2, "threshold", 20.0))

    def tanh(a: tuple, k: dict) -> nn.Module:
        return nn.Tanh()

    def sigmoid(a: tuple, k: dict) -> nn.Module:
        return nn.Sigmoid()

    def hardswish(a: tuple, k: dict) -> nn.Module:
        return nn.Hardswish()

    return {
        F.relu: relu,
        torch.relu: relu,
        torch.relu_: relu,
        F.relu_: relu,
        "relu": relu,
        "relu_": relu,
        F.relu6: relu6,
        F.leaky_relu: leaky,
        F.gelu: gelu,
        "gelu": gelu,
        F.silu: silu,
        F.mish: mish,
        F.elu: elu,
        F.celu: celu,
        F.softplus: softplus,
        torch.tanh: tanh,
        F.tanh: tanh,
        "tanh": tanh,
        torch.sigmoid: sigmoid,
        F.sigmoid: sigmoid,
        "sigmoid": sigmoid,
        F.hardswish: hardswish,
    }


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return f"Tensor.{target}"
    name = getattr(target, "__name__", str(target))
    for prefix, namespace in (("F.", F), ("torch.", torch)):
        if getattr(namespace, name, None) is target:
            return prefix + name
    return name


class _Tracer(torch.fx.Tracer):
    """Keeps activation modules and pau modules as leaves (call_module nodes)."""

    # ``leaves`` has a default because unpickling a GraphModule (torch.load,
    # pickle.loads) re-traces its code with a subclass of the recorded tracer
    # class constructed without arguments; that subclass makes every module a
    # leaf anyway, so the empty default changes nothing there.
    def __init__(self, leaves: tuple[type[nn.Module], ...] = ()) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, self._leaves) or super().is_leaf_module(m, qualname)


def _replace_functionals(
    model: nn.Module, activations: tuple[type[nn.Module], ...], notes: list[str]
) -> tuple[nn.Module, dict[str, str], dict[str, Optional[tuple[int, int]]]]:
    """Turn functional activation calls into call_module nodes of equivalent nn modules.

    Returns the (possibly new) model, {new module name: description of the
    call it replaced} and, for those modules, the (channels, dim) of the
    closest preceding channel-source module in execution order.
    """
    try:
        tracer = _Tracer(tuple(activations) + (Unit,))
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        notes.append(
            f"model is not torch.fx-traceable ({type(exc).__name__}); "
            "functional activations, if any, were left alone"
        )
        return model, {}, {}
    table = _functional_table()
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    found = []
    last_source: Optional[tuple[int, int]] = None
    sources: dict[Any, Optional[tuple[int, int]]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
            src = _channel_source(modules[node.target])
            if src is not None:
                last_source = src
        elif node.op in ("call_function", "call_method"):
            try:
                builder = table.get(node.target)
            except TypeError:  # unhashable target
                builder = None
            if builder is None:
                continue
            constant = all(not isinstance(a, torch.fx.Node) for a in node.args[1:]) and all(
                not isinstance(v, torch.fx.Node) for v in node.kwargs.values()
            )
            new = builder(tuple(node.args), dict(node.kwargs)) if constant else None
            if new is None or not isinstance(new, activations):
                continue
            found.append((node, new))
            sources[node] = last_source
    for target, count in calls.items():
        if count > 1 and isinstance(modules[target], activations):
            notes.append(
                f"module {target!r} is called {count} times; its call sites share one replacement"
            )
    if not found:
        return model, {}, {}
    gm = torch.fx.GraphModule(model, graph, class_name=type(model).__name__)
    described, channel_sources = {}, {}
    taken = set(dict(gm.named_modules()))
    for node, new in found:
        name = base = f"{node.name}_act"
        i = 1
        while name in taken:
            name, i = f"{base}{i}", i + 1
        taken.add(name)
        gm.add_submodule(name, new)
        with gm.graph.inserting_after(node):
            call = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
        described[name] = f"{_target_name(node.target)} (functional, node {node.name})"
        channel_sources[name] = sources[node]
    gm.graph.lint()
    gm.recompile()
    return gm, described, channel_sources


# ----------------------------------------------------------------------------
# convert
# ----------------------------------------------------------------------------


def _check_arguments(
    model: Any, activations: Any, to: Any, init: Any, groups: Any, kwargs: dict[str, Any]
) -> tuple[tuple[type[nn.Module], ...], Union[str, int]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"pau.convert: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(activations, type):
        activations = (activations,)
    if not isinstance(activations, Sequence) or isinstance(activations, str):
        raise TypeError(
            "pau.convert: activations must be a sequence of nn.Module subclasses, "
            f"got {activations!r}"
        )
    for a in activations:
        if not (isinstance(a, type) and issubclass(a, nn.Module)):
            raise TypeError(
                f"pau.convert: activations must be nn.Module subclasses such as nn.ReLU; got {a!r}"
            )
        if issubclass(a, Unit):
            raise ValueError(f"pau.convert: {a.__name__} is already a learnable activation")
    if not isinstance(to, str):
        raise TypeError(f"pau.convert: to must be a str, one of {tuple(TARGETS)}; got {to!r}")
    if to.lower() not in TARGETS:
        raise ValueError(f"pau.convert: unknown target to={to!r}; expected one of {tuple(TARGETS)}")
    to = to.lower()
    if not isinstance(init, str):
        raise TypeError(f"pau.convert: init must be 'match', 'fit' or a preset name, got {init!r}")
    if init not in ("match", "fit") and not init.startswith("match:"):
        if init in TARGETS[to].own_inits:
            pass
        else:
            try:
                presets._canonical(init)
            except ValueError:
                raise ValueError(
                    f"pau.convert: unknown init {init!r}; expected 'match', 'fit' "
                    f"or a preset name: {', '.join(presets.names())}"
                ) from None
    if isinstance(groups, bool) or not (
        groups in ("layer", "channel") or (isinstance(groups, int) and groups >= 1)
    ):
        raise ValueError(
            f"pau.convert: groups must be 'layer', 'channel' or a positive int, got {groups!r}"
        )
    if isinstance(model, tuple(activations)):
        raise ValueError(
            "pau.convert: model is itself an activation; build the "
            "replacement directly (e.g. pau.PAU(init='relu'))"
        )
    accepted = TARGETS[to].config_names
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"pau.convert: unexpected keyword argument(s) {', '.join(unknown)} for "
            f"to={to!r}; accepted: {', '.join(accepted)}"
        )
    if "degrees" in kwargs:
        # Before any preset is fitted or cached (seconds per activation type).
        try:
            check_degrees(kwargs["degrees"])
        except ValueError as error:
            raise ValueError(f"pau.convert: {str(error).removeprefix('pau: ')}") from None
    return tuple(activations), groups


def convert(
    model: nn.Module,
    activations: Sequence[type[nn.Module]] = DEFAULT_ACTIVATIONS,
    to: str = "pau",
    init: str = "match",
    groups: Union[str, int] = "layer",
    *,
    example_input: Any = None,
    functional: bool = True,
    inplace: bool = False,
    **kwargs: Any,
) -> tuple[nn.Module, ConversionSummary]:
    """Replace the activations of ``model`` by learnable PAU, RPAU or PWLU modules.

    Args:
        model: any ``nn.Module`` (e.g. a torchvision ResNet or MobileNetV2).
        activations: the activation module types to replace; default
            :data:`DEFAULT_ACTIVATIONS` (ReLU, ReLU6, LeakyReLU, GELU, SiLU, Mish,
            ELU, CELU). Also supported: Tanh, Sigmoid, Softplus, PReLU,
            Hardswish; other types need ``init`` set to a preset or ``"fit"``.
        to: ``"pau"``, ``"rpau"`` or ``"pwlu"``.
        init: ``"match"`` (start as the replaced function: see the module
            docstring), ``"match:<fit>"`` (the same from the presets of fit
            ``<fit>`` in :data:`pau.presets.FITS`: ``"match:wide"`` fitted on
            [-10, 10] with F(0) = f(0), ``"match:exact0"`` on [-3, 3] with
            F(0) = f(0)), ``"fit"`` (PAU/RPAU: fit coefficients to the replaced
            module; PWLU: same as match), or a preset name from
            :func:`pau.presets.names`, optionally with a fit suffix such as
            ``"relu:wide"`` (for PWLU also its own ``"relu"``,
            ``"leaky_relu"``, ``"identity"``) used for every replacement.
        groups: ``"layer"`` (one unit per activation, G = 1), ``"channel"``
            (G = C, one unit per channel) or an int G.
        example_input: optional input (or tuple of inputs) for one forward
            pass that records the channel count and the input range each
            activation sees; without it see "Channel counts" below. The
            summary then reports each unit's start error on its input range
            and the converted model's output against the original's on it
            (:class:`ConversionSummary`). Both passes run in eval mode (no
            dropout, BatchNorm on its running statistics, left unchanged);
            every module's mode is restored.
        functional: also replace functional activations (``F.relu``,
            ``torch.relu``, ``x.relu()``, ``F.gelu``, ...) when the model can
            be traced by ``torch.fx``; the result is then a
            ``torch.fx.GraphModule``. Untraceable models keep their type and
            only their modules are replaced (the summary says so).
        inplace: modify ``model`` itself instead of a deep copy.
        **kwargs: passed to the new modules: ``degrees``, ``variant``, ``dim``
            (PAU), plus ``alpha`` (RPAU); ``num_points``, ``bound``, ``dim`` (PWLU).

    Channel counts (``groups="channel"``) and ``dim``: with ``example_input``,
    C is the size of the dim the activation sees. Otherwise C is the output
    channel count of the closest preceding Conv / ConvTranspose (out_channels),
    BatchNorm / InstanceNorm (num_features), GroupNorm (num_channels), Linear
    (out_features) or LayerNorm (last normalized size), "preceding" meaning in
    execution order for functional activations and in the order the modules
    are registered (``model.named_modules()``) for modules, which is the
    execution order of torchvision-style models. Without ``dim`` in kwargs the
    channel dim is -1 after Linear / LayerNorm (token layout) and 1 otherwise.
    An activation with no such module before it raises ValueError (pass
    ``example_input``).

    Returns:
        ``(model, summary)``: the converted model (``model`` itself when
        ``inplace``) and a :class:`ConversionSummary`.

    Raises:
        TypeError: ``model`` is not a module, ``activations`` holds something
            that is not a module type, or an unexpected keyword argument.
        ValueError: unknown ``to``, ``init`` or ``groups``; a type without a
            preset under ``init="match"``; a channel count that can't be inferred.
    """
    activations, groups = _check_arguments(model, activations, to, init, groups, kwargs)
    init, preset_fit = _split_match(init)
    to = to.lower()
    cls = TARGETS[to]
    if not inplace:
        model = copy.deepcopy(model)
    summary = ConversionSummary(to)

    described: dict[str, str] = {}
    fx_sources: dict[str, Optional[tuple[int, int]]] = {}
    if functional:
        model, described, fx_sources = _replace_functionals(model, activations, summary.notes)

    named = list(model.named_modules())
    targets = [(name, m) for name, m in named if name and isinstance(m, activations)]
    for name, m in targets:
        if init == "match" and _match(m).preset is None and not cls.samples_functions:
            raise ValueError(
                f"pau.convert: no preset matches {type(m).__name__} ({name!r}); "
                "pass init='fit' or init=<preset name>"
            )

    # (channels, dim) from the closest preceding channel source, per module name.
    static: dict[str, Optional[tuple[int, int]]] = {}
    last: Optional[tuple[int, int]] = None
    for name, m in named:
        src = _channel_source(m)
        if src is not None:
            last = src
        static[name] = fx_sources.get(name, last) if name in described else last
    observed: dict[int, list[torch.Size]] = {}
    observation = None
    if example_input is not None:
        observation = _start_error.observe(model, [m for _, m in targets], example_input)
        observed = observation.shapes

    param = next(model.parameters(), None)
    fits: dict[Any, dict[str, Tensor]] = {}
    replaced: dict[int, nn.Module] = {}  # shared instances get one shared replacement
    for name, original in targets:
        if id(original) in replaced:
            _set_submodule(model, name, replaced[id(original)])
            continue
        source = static.get(name)
        dim = kwargs.get("dim", source[1] if source is not None else 1)
        count: Optional[int] = None
        if groups == "channel":
            count = _channel_count(name, dim, observed.get(id(original)), source)
            if count is None:
                raise ValueError(
                    f"pau.convert: cannot infer the channel count of activation {name!r} for "
                    "groups='channel': no Conv/BatchNorm/GroupNorm/LayerNorm/Linear precedes it"
                    + (
                        " and the example input did not reach it"
                        if example_input is not None
                        else "; pass example_input=<a batch> to record it"
                    )
                )
            g = count
        elif groups == "layer":
            g = 1
        else:
            g = int(groups)
            _check_groups_divide(name, g, dim, observed.get(id(original)), source)
        factory = {
            "device": param.device if param is not None else None,
            "dtype": param.dtype if param is not None and param.is_floating_point() else None,
        }
        match = _match(original)
        new, label = _new_module(
            to, original, match, init, g, dim, kwargs, factory, fits, preset_fit
        )
        new.train(original.training)
        new.remember_initial()
        error = new.max_error(match.target, presets.X_RANGE, _ERROR_POINTS)
        note = match.note if init == "match" else ""
        if cls.samples_functions and init in ("match", "fit"):
            note = ""  # sampled from the function itself: the preset's approximation is moot
        kind = "functional" if name in described else "module"
        summary.replacements.append(
            Replacement(
                name=name,
                original=described.get(name, _short(original)),
                kind=kind,
                module=new,
                init=label,
                groups=g,
                channels=count,
                max_error=error,
                note=note,
            )
        )
        replaced[id(original)] = new
        _set_submodule(model, name, new)
    if not summary.replacements:
        summary.notes.append("no activation of the requested types found")
    for r in summary.replacements:
        # Warn only where the start is measurably worse than the preset's own
        # fit (e.g. a LeakyReLU slope without a preset); notes such as
        # "ReLU6 equals ReLU on [-3, 3]" stay in the summary.
        if r.note and r.init != "fit":
            recorded = r.module.preset_error(r.init)
            if recorded is not None and r.max_error > 2 * recorded + 1e-6:
                warnings.warn(f"pau.convert: {r.name}: {r.note}", UserWarning, stacklevel=2)
    if isinstance(model, torch.fx.GraphModule):
        model.recompile()
    if observation is not None:
        originals = {name: m for name, m in targets}
        _start_errors(summary, originals, observation, model, example_input)
    return model, summary


def _split_match(init: str) -> tuple[str, str]:
    """("match", fit) for ``init="match:<fit>"``; (init, "default") for any other init."""
    if not init.startswith("match:"):
        return init, "default"
    kind = init[len("match:") :]
    if kind not in presets.FITS:
        raise ValueError(
            f"pau.convert: unknown preset fit in init={init!r}; expected 'match:<fit>' with "
            f"<fit> one of {', '.join(presets.FITS)}"
        )
    return "match", kind


def _start_errors(
    summary: ConversionSummary,
    originals: dict[str, nn.Module],
    observation: _start_error.Observation,
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
        target = _match(original).target
        r.range_max_error, r.range_rel_error = _start_error.unit_error(r.module, target, x_range)
        r.input_mean_error = _start_error.mean_error(
            r.module, target, observation.histograms[id(original)]
        )
    agreement = _start_error.output_agreement(
        observation.output, _start_error.run(model, example_input)
    )
    if agreement is None:
        summary.notes.append(
            "the model's output holds no floating-point tensors to compare with the original"
        )
    else:
        summary.output_cosine, summary.output_rel_error = agreement


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
