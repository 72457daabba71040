"""Distributed helpers of the PWLU realignment: statistics over all ranks, sharded parameters."""

from __future__ import annotations

import torch
from torch import Tensor


def all_ranks_mean_var(
    mean: Tensor, var: Tensor, count: int, group: object
) -> tuple[Tensor, Tensor]:
    """Per-group mean and (biased) variance over the batches of all ranks of ``group``.

    Gathers every rank's (count, mean, variance) and combines them in float64
    in rank order (Chan et al.'s pairwise formula, which stays accurate where
    a sum of squares would cancel), so all ranks get the same values: those
    of one process seeing the concatenated batch, up to rounding.
    """
    import torch.distributed as dist

    local = torch.stack([torch.full_like(mean, float(count)), mean, var]).double()
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, local, group=group)
    counts = torch.stack([g[0] for g in gathered])
    means = torch.stack([g[1] for g in gathered])
    total = counts.sum(0).clamp_min(1)
    combined_mean = (counts * means).sum(0) / total
    squares = sum(g[0] * (g[2] + (g[1] - combined_mean) ** 2) for g in gathered)
    return combined_mean.to(mean.dtype), (squares / total).to(var.dtype)


def assign(param: Tensor, value: Tensor) -> None:
    """param.copy_(value) for a plain parameter or an FSDP2-sharded (DTensor) one."""
    value = value.to(device=param.device)
    if type(param).__name__ == "DTensor" or hasattr(param, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        # Every rank computed the same value: take its own shard, no communication.
        value = distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
    param.copy_(value)
