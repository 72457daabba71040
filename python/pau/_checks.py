"""Argument checks shared by the modules (:mod:`pau.nn`) and :mod:`pau.functional`.

A leaf module: :mod:`pau.functional` validates RPAU noise arguments with the
modules' own rules without importing :mod:`pau.nn`, which imports it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

#: The largest numerator or denominator degree the operators accept
#: (``kMaxDegree`` in ``cpp/math/pau_math.h``).
MAX_DEGREE = 32


def check_degrees(degrees: Sequence[int]) -> tuple[int, int]:
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


def check_groups(groups: object, owner: str) -> int:
    """``groups`` as a positive int; bool is refused although it is an int subclass."""
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{owner}: groups must be a positive int, got {groups!r}")
    return groups


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
