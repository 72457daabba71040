"""Functional PWLU: :func:`pwlu`, and its inference tables (:func:`segment_tables`).

Inference. A PWLU is N+2 linear pieces, so it can be tabulated once per
parameter update as a slope and an intercept per piece (:func:`segment_tables`)
and evaluated as F(x) = c_s + (x - B_L) b_s with s the piece of x
(:func:`pwlu_segments`): one lookup and one multiply-add instead of the
interpolation and the outer-piece selects. The fused operator
``pau::pwlu_forward`` stays the forward of :class:`pau.PWLU` in eval mode too,
because a single pass over memory beats any chain of PyTorch ops that
evaluates the tables (see ``benchmarks/README.md`` for the measurement); the
tables are what the ONNX export (:mod:`pau.onnx`) computes with, and a
formulation for kernels to adopt.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .. import _C  # noqa: F401  (registers torch.ops.pau)


def pwlu(x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor, dim: int = 1) -> Tensor:
    """Piecewise Linear Unit (Zhou et al. 2021), applied element-wise.

    Args:
        x: input of any shape, dtype float32/float64/float16/bfloat16.
        points: (G, N+1) values Y_0..Y_N at the N+1 equally spaced breakpoints.
        bounds: (G, 2) holding (B_L, B_R), finite with B_L < B_R.
        slopes: (G, 2) holding (K_L, K_R), the slopes left of B_L and right of B_R.
        dim: the channel dimension; its size must be divisible by G.

    Left of B_L: Y_0 + (x - B_L) K_L; right of B_R: Y_N + (x - B_R) K_R; in
    between: linear interpolation of the neighbouring points. Differentiable
    with respect to all four tensors, to any order, and usable under
    ``torch.func`` transforms, as :func:`pau`.
    """
    return torch.ops.pau.pwlu_forward(x, points, bounds, slopes, dim)


class SegmentTables(NamedTuple):
    """A PWLU as linear pieces F(x) = intercepts[g, s] + (x - left[g]) slopes[g, s].

    Row s of a group: 0 is the left outer piece, 1..N the intervals, N+1 the
    right outer piece and N+2 a NaN row that NaN inputs are sent to. All
    tensors are in the compute dtype (float32, or float64 for float64).
    """

    left: Tensor  # (G,) B_L
    inv_width: Tensor  # (G,) N / (B_R - B_L), which locates the piece
    intercepts: Tensor  # (G, N+3)
    slopes: Tensor  # (G, N+3)


def segment_tables(
    points: Tensor, bounds: Tensor, slopes: Tensor, dtype: torch.dtype = torch.float32
) -> SegmentTables:
    """Per-piece slopes and intercepts of a PWLU, for :func:`pwlu_segments`.

    Args:
        points: (G, N+1) Y_0..Y_N, bounds (G, 2) (B_L, B_R), slopes (G, 2)
            (K_L, K_R), as for ``pau::pwlu_forward``.
        dtype: the compute dtype of the inputs they will be applied to
            (:func:`pau.reference.compute_dtype`).

    The intercepts are taken at B_L rather than at 0: the products
    (x - B_L) b_s inside [B_L, B_R] are then no larger than the operator's own
    terms, so the rounding errors stay those of the operator's path even
    when the bounds lie far from 0. Computed in float64, rounded once.
    Differentiable, but meant for inference (compute them under no_grad).
    """
    y = points.double()
    left, right = bounds.double().unbind(1)
    k_left, k_right = slopes.double().unbind(1)
    n = y.shape[1] - 1
    steps = y.diff(dim=1)  # S_k = Y_{k+1} - Y_k
    index = torch.arange(n, dtype=torch.float64, device=y.device)
    inner_slopes = steps * (n / (right - left))[:, None]
    # c_k + (x - B_L) b_k = Y_k + (u - k) S_k with u = (x - B_L) N / (B_R - B_L).
    inner_intercepts = y[:, :-1] - index * steps
    nan = torch.full_like(left, float("nan"))
    intercepts = torch.cat(
        [y[:, :1], inner_intercepts, (y[:, -1] - (right - left) * k_right)[:, None], nan[:, None]],
        dim=1,
    )
    zero = torch.zeros_like(left)
    piece_slopes = torch.cat(
        [k_left[:, None], inner_slopes, k_right[:, None], zero[:, None]], dim=1
    )
    return SegmentTables(
        left.to(dtype), (n / (right - left)).to(dtype), intercepts.to(dtype), piece_slopes.to(dtype)
    )


def pwlu_segments(x: Tensor, tables: SegmentTables, dim: int = 1) -> Tensor:
    """PWLU of ``x`` from precomputed :func:`segment_tables`, with plain PyTorch ops.

    Equals ``pau::pwlu_forward`` up to rounding (a few ulp of the function's
    scale, max |Y| + (B_R - B_L) max(|K_L|, |K_R|)); NaN gives NaN and
    +-inf the limits of the outer pieces, as the operator. x of dtype
    float16/bfloat16 computes in float32. Works under torch.compile,
    torch.export and TorchScript.
    """
    ndim = x.dim()
    dim = dim % ndim if ndim > 0 else 0
    ctype = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc = x.to(ctype) if ndim > 0 else x.to(ctype).reshape(1)
    groups, rows = tables.intercepts.shape
    n = rows - 3
    channels = xc.shape[dim]
    shape = [1] * xc.dim()
    shape[dim] = channels
    per_group = channels // groups
    left = tables.left.repeat_interleave(per_group).reshape(shape)
    inv_width = tables.inv_width.repeat_interleave(per_group).reshape(shape)
    dx = xc - left
    # Piece -1 (left outer), 0..N-1 (intervals) or N (right outer); NaN -> N+1.
    piece = torch.nan_to_num(torch.floor(dx * inv_width).clamp(-1.0, float(n)), nan=float(n + 1))
    offsets = torch.arange(1, rows * groups, rows, device=x.device)
    index = piece.long() + offsets.repeat_interleave(per_group).reshape(shape)
    intercept = tables.intercepts.reshape(-1).take(index)
    slope = tables.slopes.reshape(-1).take(index)
    # An infinite x on a flat outer piece gives its end point, not inf * 0.
    y = intercept + torch.where(slope == 0, torch.zeros_like(dx), dx) * slope
    return y.reshape(x.shape).to(x.dtype)
