"""The channel count and dim an activation sees, for ``groups="channel"`` and
the channel dim: from the module before it, or from the shapes recorded on
an example input."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

__all__ = ["CHANNEL_SOURCES", "channel_count", "channel_source", "check_groups_divide"]

# Modules whose output channel count tells the channel count of the
# activation that follows them, and the dim those channels live in.
CHANNEL_SOURCES: tuple[tuple[tuple[type[nn.Module], ...], Callable[[Any], int], int], ...] = (
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


def channel_source(module: nn.Module) -> Optional[tuple[int, int]]:
    """(channels, dim) that an activation right after ``module`` sees, if known."""
    for types, count, dim in CHANNEL_SOURCES:
        if isinstance(module, types):
            return int(count(module)), dim
    return None


def channel_count(
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


def check_groups_divide(
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
