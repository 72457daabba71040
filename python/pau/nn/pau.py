"""The Padé Activation Unit module, :class:`PAU`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor, nn

from .. import _C  # noqa: F401  (registers torch.ops.pau)
from .._checks import MAX_DEGREE, channel_dim, check_degrees, check_groups
from ..reference import VARIANTS

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
        from .. import presets

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


class PAU(nn.Module):
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
    """

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
        dim = channel_dim(x, self.dim, self.groups, "PAU")
        return torch.ops.pau.forward(x, self.numerator, self.denominator, self.variant, dim)

    def extra_repr(self) -> str:
        return (
            f"degrees={self.degrees}, variant={self.variant!r}, init={self.init!r}, "
            f"groups={self.groups}, dim={self.dim}"
        )
