"""Functional RPAU (PAU paper Section 3.2, Eq. 3): :func:`rpau`, its seeds and its noise.

In training every coefficient c of every input element is perturbed,
c' = c * (1 + e) with e = alpha * (2u - 1), u uniform in (0, 1) from the
counter-based generator of ``cpp/math/counter_rng.h`` keyed by a per-call
``seed_offset``; backward regenerates the same noise instead of storing it. In
eval mode RPAU is PAU (the same operator, bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor

from .. import _C  # noqa: F401  (registers torch.ops.pau)
from .._checks import check_degrees, check_groups


def draw_seed_offset() -> Tensor:
    """A (2,) int64 CPU tensor (seed, offset) from the default CPU generator.

    Always the CPU generator, also for CUDA inputs: the operators read the two
    numbers on the host, so a CPU tensor needs no device synchronisation, and
    ``torch.manual_seed`` still makes runs reproducible. A tensor (not two
    ints) lets ``torch.compile`` trace one graph whose seed changes every call.
    """
    # [0, 2**62): plenty of seeds; a literal because TorchScript compiles this
    # function (RPAU.forward calls it) and rejects module globals.
    # device="cpu" also under `with torch.device("meta")`: a meta seed beside
    # real inputs is an error, and meta inputs take a CPU seed.
    return torch.randint(0, 4611686018427387904, (2,), dtype=torch.int64, device="cpu")


@torch.library.register_vmap("pau::rpau_noise")
def _rpau_noise_vmap(
    info: object,
    in_dims: tuple[Optional[int], None, None],
    seed_offset: Tensor,
    numel: int,
    coefficients: int,
) -> tuple[Tensor, Optional[int]]:
    """Batching rule of ``pau::rpau_noise``: one noise tensor per (seed, offset) of the batch.

    Under ``torch.func.vmap(..., randomness="different")`` :func:`draw_seed_offset`
    gives every sample its own seed_offset, so each sample's noise is the
    operator's noise for its own seed, as if the samples had been run one by one.
    An unbatched seed_offset (``randomness="same"``, or one passed in) gives every
    sample the same noise.
    """
    seed_dim = in_dims[0]
    if seed_dim is None:
        return torch.ops.pau.rpau_noise(seed_offset, numel, coefficients), None
    per_seed = [torch.ops.pau.rpau_noise(s, numel, coefficients)
                for s in seed_offset.movedim(seed_dim, 0)]
    return torch.stack(per_seed), 0


def check_alpha(alpha: Union[float, Tensor], groups: int, coefficients: int) -> Tensor:
    # On the CPU whatever the default device (its values are checked here).
    t = torch.as_tensor(alpha, dtype=torch.float64, device="cpu").detach().clone()
    if t.dim() > 2 or not (
        (t.dim() < 1 or t.shape[-1] in (1, coefficients))
        and (t.dim() < 2 or t.shape[0] in (1, groups))
    ):
        raise ValueError(
            f"alpha must be a float or a tensor broadcastable to (groups, m+1+n) = "
            f"({groups}, {coefficients}), got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all() or (t < 0).any() or (t >= 1).any():
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
    return t


def rpau(
    x: Tensor,
    numerator: Tensor,
    denominator: Tensor,
    alpha: Tensor,
    seed_offset: Optional[Tensor] = None,
    variant: str = "safe",
    dim: int = 1,
) -> Tensor:
    """Functional RPAU; ``seed_offset`` defaults to a fresh draw (see :func:`draw_seed_offset`).

    A pure function of ``seed_offset``: under ``torch.func.vmap`` a fresh draw
    follows vmap's ``randomness`` flag (``"different"``: one seed per sample,
    ``"same"``: one for all, ``"error"``: torch's error), and an unbatched
    ``seed_offset`` passed in gives every sample the same noise.
    """
    if seed_offset is None:
        seed_offset = draw_seed_offset()
    return torch.ops.pau.rpau_forward(x, numerator, denominator, alpha, seed_offset, variant, dim)


def _check_noise_arguments(
    shape: Sequence[int],
    alpha: Union[float, Tensor],
    degrees: Sequence[int],
    groups: int,
    dim: int,
) -> tuple[tuple[int, ...], int, int]:
    """(shape, channel dim, m+1+n) for :func:`rpau_noise`, or a ValueError naming the problem."""
    owner = "pau.functional.rpau_noise"
    try:
        m, n = check_degrees(degrees)
        check_groups(groups, owner)
        check_alpha(alpha, groups, m + 1 + n)
    except ValueError as error:
        message = str(error).removeprefix("pau: ")
        raise ValueError(message if message.startswith(owner) else f"{owner}: {message}") from None
    shape = tuple(shape)
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in shape):
        raise ValueError(f"{owner}: shape must be non-negative ints, got {shape!r}")
    rank = len(shape)
    if not -max(rank, 1) <= dim < max(rank, 1):
        # As the modules: with one group a 1-D or 0-D shape needs no channel dim.
        if rank >= 2 or groups > 1:
            raise ValueError(
                f"{owner}: dim {dim} is out of range for a shape of {rank} dimensions"
            )
        dim = 0
    channels = shape[dim] if rank else 1
    if channels % groups != 0:
        raise ValueError(
            f"{owner}: the {channels} channels of shape {shape} (dim {dim}) are not divisible "
            f"by the number of groups ({groups})"
        )
    return shape, dim, m + 1 + n


def rpau_noise(
    shape: Sequence[int],
    seed_offset: Tensor,
    alpha: Union[float, Tensor],
    degrees: Sequence[int] = (5, 4),
    groups: int = 1,
    dim: int = 1,
) -> Tensor:
    """The perturbations e (float64, shape ``shape + (m+1+n,)``) that ``rpau_forward``
    applies for this ``seed_offset``: coefficient j of element x[idx] is
    c_j * (1 + e[idx + (j,)]), a_0..a_m first, then b_1..b_n. For tests and
    debugging; pass the result to :func:`pau.reference.rpau_reference`.

    Raises ValueError for the arguments ``rpau_forward`` would refuse: degrees
    or groups out of range, an alpha outside [0, 1) or not broadcastable to
    (groups, m+1+n), and a ``dim`` or channel count that ``groups`` cannot split.
    """
    shape, dim, count = _check_noise_arguments(shape, alpha, degrees, groups, dim)
    numel = 1
    for s in shape:
        numel *= s
    u = torch.ops.pau.rpau_noise(seed_offset, numel, count).reshape(*shape, count)
    a = torch.as_tensor(alpha, dtype=torch.float64).expand(groups, count)
    if shape:
        d = dim % len(shape)
        channels = shape[d]
        per_channel = a.repeat_interleave(channels // groups, dim=0)  # (C, K)
        view = [1] * len(shape) + [count]
        view[d] = channels
        a = per_channel.reshape(view)
    else:
        a = a[0]
    return a * (2 * u - 1)
