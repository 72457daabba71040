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
:mod:`pau.conversion.start_error`. ``init="match:wide"`` (or ``"match:exact0"``) starts
from the presets of another fit (:data:`pau.presets.FITS`), e.g. fitted on
[-10, 10] with F(0) = f(0), for inputs that go beyond [-3, 3].
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import presets
from ._checks import check_degrees
from .conversion import start_error
from .conversion.channels import channel_count, channel_source, check_groups_divide
from .conversion.functionals import replace_functionals
from .conversion.matching import Match, match
from .conversion.report import ConversionSummary, Replacement
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

# ----------------------------------------------------------------------------
# Building the new modules
# ----------------------------------------------------------------------------


def _new_module(
    to: str,
    original: nn.Module,
    found: Match,
    init: str,
    groups: int,
    dim: int,
    kwargs: dict[str, Any],
    factory: dict[str, Any],
    fits: dict[Any, dict[str, Tensor]],
    preset_fit: str = "default",
) -> tuple[Unit, str]:
    """The replacement for ``original`` (matched to ``found``) and a label of its initialisation.

    ``preset_fit`` is the fit (:data:`pau.presets.FITS`) of the preset that
    ``init="match"`` picks.
    """
    cls = TARGETS[to]
    config = {k: kwargs[k] for k in cls.config_names if k in kwargs and k != "dim"}
    start = ConversionStart(
        init=init,
        target=found.target,
        name=type(original).__name__,
        key=repr(original),
        preset=found.preset,
        exact=not found.note,
        preset_fit=preset_fit,
    )
    return cls.for_conversion(start, groups, dim, config, factory, fits)


def _short(module: nn.Module) -> str:
    return repr(module).replace("\n", " ")


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
        model, described, fx_sources = replace_functionals(model, activations, summary.notes)

    named = list(model.named_modules())
    targets = [(name, m) for name, m in named if name and isinstance(m, activations)]
    for name, m in targets:
        if init == "match" and match(m).preset is None and not cls.samples_functions:
            raise ValueError(
                f"pau.convert: no preset matches {type(m).__name__} ({name!r}); "
                "pass init='fit' or init=<preset name>"
            )

    # (channels, dim) from the closest preceding channel source, per module name.
    static: dict[str, Optional[tuple[int, int]]] = {}
    last: Optional[tuple[int, int]] = None
    for name, m in named:
        src = channel_source(m)
        if src is not None:
            last = src
        static[name] = fx_sources.get(name, last) if name in described else last
    observed: dict[int, list[torch.Size]] = {}
    observation = None
    if example_input is not None:
        observation = start_error.observe(model, [m for _, m in targets], example_input)
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
            count = channel_count(name, dim, observed.get(id(original)), source)
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
            check_groups_divide(name, g, dim, observed.get(id(original)), source)
        factory = {
            "device": param.device if param is not None else None,
            "dtype": param.dtype if param is not None and param.is_floating_point() else None,
        }
        found = match(original)
        new, label = _new_module(
            to, original, found, init, g, dim, kwargs, factory, fits, preset_fit
        )
        new.train(original.training)
        new.remember_initial()
        error = new.max_error(found.target, presets.X_RANGE, _ERROR_POINTS)
        note = found.note if init == "match" else ""
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
        start_error.report_start_errors(summary, originals, observation, model, example_input)
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


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
