"""``nn.Module`` wrappers around the ``pau`` operators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor, nn

from . import _C  # noqa: F401  (registers torch.ops.pau)
from .reference import VARIANTS

Init = Union[str, tuple[Sequence[float], Sequence[float]]]

#: The largest numerator or denominator degree the operators accept
#: (``kMaxDegree`` in ``cpp/pau_math.h``).
MAX_DEGREE = 32


def _check_degrees(degrees: Sequence[int]) -> tuple[int, int]:
    """``degrees`` as (m, n), or a ValueError before anything is fitted or allocated."""
    if (
        not isinstance(degrees, Sequence)
        or len(degrees) != 2
        or any(not isinstance(d, int) or isinstance(d, bool) for d in degrees)
    ):
        raise ValueError(f"pau: degrees must be a pair of ints (m, n), got {degrees!r}")
    m, n = degrees
    if m < 0 or n < 0:
        raise ValueError(f"pau: degrees must be non-negative, got (m, n) = ({m}, {n})")
    if m > MAX_DEGREE or n > MAX_DEGREE:
        raise ValueError(
            f"pau: degrees (m, n) = ({m}, {n}) exceed the operators' maximum of {MAX_DEGREE}"
        )
    return m, n


def _check_groups(groups: object, owner: str) -> int:
    """``groups`` as a positive int; bool is refused although it is an int subclass."""
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{owner}: groups must be a positive int, got {groups!r}")
    return groups


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
        from . import presets

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


def channel_dim(x: Tensor, dim: int, groups: int, owner: str) -> int:
    """The channel dim to pass to the operator for ``x``.

    With one group the channel dim does not change the result, so a 1-D or
    0-D ``x`` without dimension ``dim`` (a batch of scalars, a single value)
    uses dim 0; with more groups it is an error. Inputs of rank 2 and more
    keep ``dim``, which the operator checks.
    """
    rank = x.dim()
    if rank >= 2 or -max(rank, 1) <= dim < max(rank, 1):
        return dim
    if groups == 1:
        return 0
    raise ValueError(
        "pau." + owner + ": x has " + str(rank) + " dimension(s), so it has no channel "
        "dimension dim=" + str(dim) + " to split into " + str(groups) + " groups; "
        "1-D and 0-D inputs need groups=1"
    )


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
        self.groups = _check_groups(groups, f"pau.{type(self).__name__}")
        self.degrees = _check_degrees(degrees)
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
