"""What the tools around the learnable activations ask of each of them.

:class:`Unit` is the base class of :class:`~pau.nn.PAU` (and so
:class:`~pau.nn.RPAU`) and :class:`~pau.nn.PWLU`. :func:`pau.convert`,
:func:`pau.plot`, :func:`pau.record_inputs`, :func:`pau.parameter_groups` and
the start-error report call these methods and class attributes instead of
telling the unit types apart, so that a new unit type is one new file.

It adds no parameters, buffers or forward code: state dicts, TorchScript and
``torch.export`` see the units exactly as before. (No class-level annotations
and no properties here: TorchScript would try to compile them.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

Function = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class ConversionStart:
    """How :func:`pau.convert` asks a unit class to start as the activation it replaces.

    Attributes:
        init: convert's ``init``: ``"match"``, ``"fit"`` or a preset (or unit init) name.
        target: the replaced function, float64 in and out.
        name: the replaced activation's type name, for labels (``"ReLU"``).
        key: identifies ``target`` among the activations of one conversion
            (its repr), so that equal activations share one fit.
        preset: the preset that matches ``target`` (None: there is none).
        exact: whether that preset is ``target`` itself (no approximation note).
        preset_fit: the fit of the presets (:data:`pau.presets.FITS`) for ``"match"``.
    """

    init: str
    target: Function
    name: str
    key: str
    preset: Optional[str]
    exact: bool
    preset_fit: str = "default"


class Unit(nn.Module):
    """Base class of the learnable activations: their description for the tools.

    Class attributes (set by every unit type):

    * ``parameter_names``: the learnable tensors, in the operator's argument order.
    * ``config_names``: the constructor keywords :func:`pau.convert` passes on
      from its ``**kwargs`` (``init`` and ``groups`` are its own arguments).
    * ``shape_config_names``: those of them that :meth:`function_parameters` needs.
    * ``own_inits``: init names the unit has besides :mod:`pau.presets`.
    * ``samples_functions``: whether the unit starts as any function exactly by
      sampling it, so that matching an activation needs no preset.

    Subclasses set the attributes ``groups``, ``dim`` and ``init`` in ``__init__``.
    """

    parameter_names: tuple[str, ...] = ()
    config_names: tuple[str, ...] = ()
    shape_config_names: tuple[str, ...] = ()
    own_inits: tuple[str, ...] = ()
    samples_functions = False

    # ------------------------------------------------------------------
    # Evaluation in plain PyTorch (float64, CPU)
    # ------------------------------------------------------------------

    def current_parameters(self, group: Optional[int] = None) -> dict[str, Tensor]:
        """The learnable tensors as detached float64 CPU copies, keyed by ``parameter_names``.

        With ``group``, only that group's row (each tensor (1, K)).
        """
        out = {}
        for name in self.parameter_names:
            t = getattr(self, name).detach()
            if group is not None:
                t = t[group : group + 1]
            out[name] = t.to("cpu", torch.float64)
        return out

    def reference(self, x: Tensor, parameters: Optional[Mapping[str, Tensor]] = None) -> Tensor:
        """(P, G) values of each group's function at the (P,) points ``x``, in plain PyTorch.

        ``parameters`` (float64 tensors keyed by ``parameter_names``, G rows
        each) default to :meth:`current_parameters`. RPAU gives its noise-free
        function.
        """
        raise NotImplementedError

    def max_error(self, fn: Function, x_range: Sequence[float], num_points: int) -> float:
        """max |F(x) - fn(x)| of the first group on ``num_points`` uniform points of ``x_range``."""
        x = torch.linspace(*x_range, num_points, dtype=torch.float64)
        with torch.no_grad():
            y = self.reference(x, self.current_parameters(0))[:, 0]
            return float((y - fn(x)).abs().max())

    def describe(self) -> str:
        """A short summary of the unit for titles and tables, e.g. ``"PAU (5,4) safe"``."""
        raise NotImplementedError

    def natural_range(self) -> Optional[tuple[float, float]]:
        """The x interval the unit's shape is defined on (PWLU: its bounds), or None."""
        return None

    def noise_band(self, group: int, x: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """Pointwise (min, max) of the training-mode outputs of ``group`` at ``x``, or None
        for a unit without training noise (or with none set)."""
        return None

    def knots(
        self, parameters: Mapping[str, Tensor], group: int
    ) -> Optional[tuple[Tensor, Tensor]]:
        """(x, y) of the breakpoints of ``group`` for ``parameters``, or None without any."""
        return None

    # ------------------------------------------------------------------
    # Where the unit started
    # ------------------------------------------------------------------

    def remember_initial(self) -> None:
        """Keep a CPU float64 copy of the current parameters as the starting ones.

        A plain attribute, not a buffer: it stays out of the state dict and
        out of exported graphs. :meth:`initial_parameters` returns it.
        """
        self._pau_initial = {
            n: getattr(self, n).detach().to("cpu", torch.float64).clone()
            for n in self.parameter_names
        }

    def initial_parameters(self) -> Optional[dict[str, Tensor]]:
        """The parameters the unit started from (float64, CPU), or None if unknown.

        Those kept by :meth:`remember_initial` (which :func:`pau.convert`
        calls; every group's row), else rebuilt from the unit's named ``init``
        (one row, as all groups start alike).
        """
        stored = getattr(self, "_pau_initial", None)
        if stored is not None:
            return stored
        return self._initial_from_init()

    def _initial_from_init(self) -> Optional[dict[str, Tensor]]:
        return None

    def preset_error(self, preset: str) -> Optional[float]:
        """The recorded max error of ``preset`` at this unit's shape, or None without presets."""
        return None

    # ------------------------------------------------------------------
    # Construction from a function
    # ------------------------------------------------------------------

    @classmethod
    def function_parameters(cls, fn: Function, **shape_config: Any) -> dict[str, Tensor]:
        """One group's float64 parameters that make the unit approximate ``fn``.

        ``shape_config`` holds the constructor keywords of ``shape_config_names``.
        """
        raise NotImplementedError

    @classmethod
    def from_parameters(
        cls,
        parameters: Mapping[str, Tensor],
        groups: int = 1,
        dim: int = 1,
        init: str = "custom",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        **config: Any,
    ) -> Unit:
        """A unit whose every group starts from one group's ``parameters``, labelled ``init``."""
        raise NotImplementedError

    @classmethod
    def _shape_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The keywords of ``config`` that :meth:`function_parameters` takes."""
        return {k: config[k] for k in cls.shape_config_names if k in config}

    @classmethod
    def from_function(
        cls,
        fn: Function,
        groups: int = 1,
        dim: int = 1,
        init: str = "function",
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        **config: Any,
    ) -> Unit:
        """A unit that starts as ``fn`` (a float64 function of a 1-D tensor).

        PAU / RPAU fit their coefficients to ``fn`` on [-3, 3]; PWLU samples it
        at its breakpoints. ``config`` holds further constructor keywords
        (e.g. ``degrees``, ``variant``, ``alpha``; ``num_points``, ``bound``).
        """
        shape = cls._shape_config(config)
        parameters = cls.function_parameters(fn, **shape)
        module = cls.from_parameters(parameters, groups, dim, init, device, dtype, **config)
        module.remember_initial()  # init names no preset: plot would not know the start
        return module

    @classmethod
    def _native_init(cls, start: ConversionStart) -> Optional[str]:
        """The init name :meth:`for_conversion` builds with, or None to start from the function."""
        return None

    @classmethod
    def _native_label(cls, init: str) -> str:
        return init

    @classmethod
    def _function_label(cls, name: str) -> str:
        return name

    @classmethod
    def for_conversion(
        cls,
        start: ConversionStart,
        groups: int,
        dim: int,
        config: Mapping[str, Any],
        factory: Mapping[str, Any],
        cache: dict[Any, dict[str, Tensor]],
    ) -> tuple[Unit, str]:
        """The unit :func:`pau.convert` puts in place of an activation, and a label of its start.

        ``config`` holds the constructor keywords given to convert,
        ``factory`` the device and dtype, and ``cache`` the function
        parameters computed so far in this conversion (fits take seconds).
        """
        native = cls._native_init(start)
        if native is not None:
            module = cls(init=native, groups=groups, dim=dim, **config, **factory)
            return module, cls._native_label(native)
        from_target = start.init in ("match", "fit")
        if from_target:
            fn, source = start.target, start.key
        else:
            from .. import presets

            fn, source = presets.function(start.init), start.init
        shape = cls._shape_config(config)
        key = (source, repr(sorted(shape.items())))
        if key not in cache:
            cache[key] = cls.function_parameters(fn, **shape)
        label = cls._function_label(start.name if from_target else start.init)
        module = cls.from_parameters(cache[key], groups, dim, label, **factory, **config)
        return module, label
