"""The Padé Activation Unit module, :class:`PAU`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from .. import _C, presets  # noqa: F401  (_C registers torch.ops.pau)
from .._checks import MAX_DEGREE, channel_dim, check_degrees, check_groups
from ..fit import approximation_error
from ..fit import fit as fit_coefficients
from ..reference import VARIANTS, pau_reference
from ._unit import ConversionStart, Function, Unit

__all__ = ["MAX_DEGREE", "PAU", "Init", "initial_coefficients"]

Init = Union[str, tuple[Sequence[float], Sequence[float]]]


def _is_pair(init: object) -> bool:
    return isinstance(init, (tuple, list)) and len(init) == 2


def initial_coefficients(
    init: Init, degrees: tuple[int, int], variant: str
) -> tuple[Tensor, Tensor]:
    """Numerator (m+1,) and denominator (n,) float64 coefficients for ``init``.

    ``init`` is a preset name (see :func:`pau.presets.names`) or an explicit
    ``(numerator, denominator)`` pair whose lengths match ``degrees``.
    """
    m, n = degrees
    if isinstance(init, str):
        return presets.coefficients(init, degrees, variant)
    if not _is_pair(init):
        raise TypeError(
            "pau: init must be a preset name (pau.presets.names()) or a (numerator, "
            f"denominator) pair of coefficient sequences, got {init!r}"
        )
    numerator, denominator = (torch.as_tensor(c, dtype=torch.float64).flatten() for c in init)
    if numerator.numel() != m + 1 or denominator.numel() != n:
        raise ValueError(
            f"explicit init has {numerator.numel()} numerator and {denominator.numel()} "
            f"denominator coefficients; degrees {degrees} need {m + 1} and {n}"
        )
    return numerator, denominator


class PAU(Unit):
    """Padé Activation Unit: F(x) = P(x) / Q(x) with learnable coefficients.

    P(x) = a_0 + a_1 x + ... + a_m x^m and A(x) = b_1 x + ... + b_n x^n; the
    variant sets Q: ``"safe"`` 1 + |A(x)| (PAU paper Eq. 2), ``"abs_sum"``
    1 + sum_k |b_k x^k|, ``"plain"`` 1 + A(x) (may have poles).

    Args:
        degrees: (m, n), the numerator and denominator degrees.
        variant: ``"safe"``, ``"abs_sum"`` or ``"plain"``.
        init: preset name (``pau.presets.names()``) or explicit (numerator, denominator).
        groups: G; channels along ``dim`` are split into G groups of shared
            coefficients (1: one PAU per layer, C: one per channel).
        dim: the channel dimension (1 for NCHW, -1 for (batch, tokens, C)).

    :meth:`from_function` builds one fitted to any function.
    """

    parameter_names = ("numerator", "denominator")
    config_names = ("degrees", "variant", "dim")
    shape_config_names = ("degrees", "variant")

    def __init__(
        self,
        degrees: Sequence[int] = (5, 4),
        variant: str = "safe",
        init: Init = "leaky_relu",
        groups: int = 1,
        dim: int = 1,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}, expected one of {VARIANTS}")
        self.groups = check_groups(groups, f"pau.{type(self).__name__}")
        self.degrees = check_degrees(degrees)
        self.variant = variant
        self.dim = dim
        self.init = init if isinstance(init, str) else "custom"
        numerator, denominator = initial_coefficients(init, self.degrees, variant)
        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.numerator = nn.Parameter(numerator.to(**factory).repeat(groups, 1))
        self.denominator = nn.Parameter(denominator.to(**factory).reshape(1, -1).repeat(groups, 1))

    def forward(self, x: Tensor) -> Tensor:
        """F(x) element-wise (``pau::forward``), in x's dtype and shape."""
        dim = channel_dim(x, self.dim, self.groups, "PAU")
        return torch.ops.pau.forward(x, self.numerator, self.denominator, self.variant, dim)

    def extra_repr(self) -> str:
        return (
            f"degrees={self.degrees}, variant={self.variant!r}, init={self.init!r}, "
            f"groups={self.groups}, dim={self.dim}"
        )

    # The unit protocol (pau.nn._unit.Unit).

    def reference(self, x: Tensor, parameters: Optional[Mapping[str, Tensor]] = None) -> Tensor:
        params = self.current_parameters() if parameters is None else parameters
        numerator, denominator = params["numerator"], params["denominator"]
        xs = x[:, None].expand(-1, numerator.shape[0])
        return pau_reference(xs, numerator, denominator, self.variant, dim=1)

    def max_error(self, fn: Function, x_range: Sequence[float], num_points: int) -> float:
        # pau.fit's measure, which also refuses a target that is not finite on the range.
        return approximation_error(
            fn,
            self.numerator[0].detach().double().cpu(),
            self.denominator[0].detach().double().cpu(),
            self.variant,
            x_range,
            num_points,
        )[0]

    def describe(self) -> str:
        m, n = self.degrees
        return f"PAU ({m},{n}) {self.variant}"

    def _initial_from_init(self) -> Optional[dict[str, Tensor]]:
        init = getattr(self, "init", None)
        if not isinstance(init, str) or init in ("custom", "fit"):
            return None
        try:
            numerator, denominator = presets.coefficients(init, self.degrees, self.variant)
        except ValueError:
            return None
        return {"numerator": numerator.reshape(1, -1), "denominator": denominator.reshape(1, -1)}

    def preset_error(self, preset: str) -> Optional[float]:
        return presets.info(preset, self.degrees, self.variant)["max_error"]

    @classmethod
    def function_parameters(
        cls, fn: Function, degrees: Sequence[int] = (5, 4), variant: str = "safe"
    ) -> dict[str, Tensor]:
        """Coefficients fitted to ``fn`` on [-3, 3] (:func:`pau.fit`)."""
        result = fit_coefficients(fn, tuple(degrees), variant, presets.X_RANGE)
        return {"numerator": result.numerator, "denominator": result.denominator}

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
    ) -> PAU:
        coefficients = (parameters["numerator"], parameters["denominator"])
        module = cls(
            init=coefficients, groups=groups, dim=dim, device=device, dtype=dtype, **config
        )
        module.init = init
        return module

    @classmethod
    def _native_init(cls, start: ConversionStart) -> Optional[str]:
        if start.init == "fit":
            return None
        if start.init != "match":
            return start.init
        return presets.spec(start.preset, start.preset_fit)

    @classmethod
    def _native_label(cls, init: str) -> str:
        return presets._canonical(init)

    @classmethod
    def _function_label(cls, name: str) -> str:
        return "fit"
