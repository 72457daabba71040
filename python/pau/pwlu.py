"""Piecewise Linear Unit (PWLU, Zhou et al. 2021) and its statistic-based realignment.

A PWLU has N intervals between learnable bounds B_L < B_R, N+1 learnable points
Y_0..Y_N and learnable outer slopes K_L, K_R (per group of channels). Left of
B_L it is Y_0 + (x - B_L) K_L, right of B_R it is Y_N + (x - B_R) K_R, and in
between it interpolates the two neighbouring points linearly.

Training follows the paper's two phases:

* Phase I (the first epoch or first few): the PWLU parameters stay frozen at
  their initialisation and every PWLU keeps a running mean and variance of its
  input per group (momentum 0.9, like batch norm's statistics).
* Phase II (the rest of training): each PWLU is realigned to its input
  distribution, B_L, B_R = mean -/+ 3 std, K_L = 0, K_R = 1,
  Y_i = relu(B_L + i (B_R - B_L) / N), and then all parameters train.

Usage::

    model = build_model()  # contains pau.PWLU modules
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # frozen ones are skipped
    with pau.pwlu_collect_statistics(model):  # phase I
        train(model, optimizer, epochs=5)
    # leaving the block without an exception realigns every PWLU (phase II)
    train(model, optimizer, epochs=95)

or call ``pau.pwlu_collect_statistics(model)`` and later ``pau.pwlu_realign(model)``
explicitly. Statistics are only updated in training mode, so validation passes
during phase I do not change them.

Inference. A PWLU is N+2 linear pieces, so it can be tabulated once per
parameter update as a slope and an intercept per piece (:func:`segment_tables`)
and evaluated as F(x) = c_s + (x - B_L) b_s with s the piece of x
(:func:`pwlu_segments`): one lookup and one multiply-add instead of the
interpolation and the outer-piece selects. The fused operator
``pau::pwlu_forward`` stays the forward of :class:`PWLU` in eval mode too,
because a single pass over memory beats any chain of PyTorch ops that
evaluates the tables (see ``benchmarks/README.md`` for the measurement); the
tables are what the ONNX export (:mod:`pau.onnx`) computes with, and a
formulation for kernels to adopt.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from . import _C  # noqa: F401  (registers torch.ops.pau)

INITS = ("relu", "leaky_relu", "identity")
LEAKY_RELU_SLOPE = 0.01
MOMENTUM = 0.9
MAX_INTERVALS = 4096  # as the operators (pwlu_math.h)


def _positions(left: Tensor, right: Tensor, num_points: int) -> Tensor:
    """(G, N+1) breakpoints B_L + i (B_R - B_L) / N of (G,) bounds."""
    steps = torch.arange(num_points + 1, dtype=left.dtype, device=left.device)
    return left[:, None] + steps * ((right - left) / num_points)[:, None]


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


def initial_parameters(init: str, num_points: int, bound: float) -> tuple[Tensor, Tensor, Tensor]:
    """Points (N+1,), bounds (2,) and slopes (2,) in float64 for a preset ``init``."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}, expected one of {INITS}")
    bounds = torch.tensor([-bound, bound], dtype=torch.float64)
    x = _positions(bounds[:1], bounds[1:], num_points)[0]
    if init == "relu":
        return x.clamp_min(0), bounds, torch.tensor([0.0, 1.0], dtype=torch.float64)
    if init == "leaky_relu":
        points = torch.where(x >= 0, x, LEAKY_RELU_SLOPE * x)
        return points, bounds, torch.tensor([LEAKY_RELU_SLOPE, 1.0], dtype=torch.float64)
    return x, bounds, torch.tensor([1.0, 1.0], dtype=torch.float64)


class PWLU(nn.Module):
    """Piecewise Linear Unit with learnable bounds, points and outer slopes.

    Args:
        num_points: N, the number of intervals between the bounds (N+1 points).
        groups: G; channels along ``dim`` are split into G groups with their own
            parameters (1: one PWLU per layer, C: one per channel).
        dim: the channel dimension (1 for NCHW, -1 for (batch, tokens, C)).
        init: ``"relu"`` (the paper's), ``"leaky_relu"`` or ``"identity"``.
        bound: initial bounds (-bound, bound).

    Parameters ``points`` (G, N+1), ``bounds`` (G, 2) = (B_L, B_R) and ``slopes``
    (G, 2) = (K_L, K_R). Buffers ``running_mean``, ``running_var`` (G,) and
    ``num_batches_tracked`` hold the phase I statistics; they are part of the
    state dict. See the module docstring for the realignment schedule.
    """

    def __init__(
        self,
        num_points: int = 16,
        groups: int = 1,
        dim: int = 1,
        init: str = "relu",
        bound: float = 3.0,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if (
            not isinstance(num_points, int)
            or isinstance(num_points, bool)
            or not (1 <= num_points <= MAX_INTERVALS)
        ):
            raise ValueError(
                f"num_points (the number of intervals N) must be an int in [1, {MAX_INTERVALS}],"
                f" got {num_points!r}"
            )
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ValueError(f"bound must be a finite positive number, got {bound!r}")
        self.num_points = num_points
        self.groups = groups
        self.dim = dim
        self.init = init
        self.bound = float(bound)
        self.collecting = False  # phase I: update the statistics in training forwards
        points, bounds, slopes = initial_parameters(init, num_points, self.bound)
        factory = {"device": device, "dtype": dtype or torch.get_default_dtype()}
        self.points = nn.Parameter(points.to(**factory).repeat(groups, 1))
        self.bounds = nn.Parameter(bounds.to(**factory).repeat(groups, 1))
        self.slopes = nn.Parameter(slopes.to(**factory).repeat(groups, 1))
        self.register_buffer("running_mean", torch.zeros(groups, **factory))
        self.register_buffer("running_var", torch.ones(groups, **factory))
        self.register_buffer(
            "num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device)
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.collecting and self.training:
            self._update_statistics(x)
        return torch.ops.pau.pwlu_forward(x, self.points, self.bounds, self.slopes, self.dim)

    # Left unannotated: TorchScript cannot resolve the postponed (string)
    # annotations of an unused method, and scripted models never collect.
    @torch.jit.unused
    def _update_statistics(self, x):
        with torch.no_grad():
            xs = x.detach()
            xs = xs.reshape(1) if xs.dim() == 0 else xs
            if xs.dtype != torch.float64:
                xs = xs.float()
            dim = self.dim % xs.dim()
            grouped = xs.unflatten(dim, (self.groups, xs.shape[dim] // self.groups))
            others = [d for d in range(grouped.dim()) if d != dim]
            var, mean = torch.var_mean(grouped, dim=others, correction=0)
            # The first batch initialises the statistics instead of being
            # averaged with the arbitrary starting values.
            keep = torch.where(self.num_batches_tracked > 0, MOMENTUM, 0.0).to(mean.dtype)
            dtype = self.running_mean.dtype
            self.running_mean.copy_((keep * self.running_mean + (1 - keep) * mean).to(dtype))
            self.running_var.copy_((keep * self.running_var + (1 - keep) * var).to(dtype))
            self.num_batches_tracked.add_(1)

    def reset_statistics(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()

    def collect_statistics(self) -> None:
        """Phase I: freeze the parameters and start fresh running statistics."""
        self.reset_statistics()
        self.collecting = True
        for p in (self.points, self.bounds, self.slopes):
            p.requires_grad_(False)

    @torch.no_grad()
    def realign(self) -> bool:
        """Phase II: reset the parameters from the statistics and unfreeze them.

        B_L, B_R = mean -/+ 3 std (std at least 1e-3 max(1, |mean|), so a
        constant input still gives an interval), K_L = 0, K_R = 1 and
        Y_i = relu(B_L + i (B_R - B_L) / N). Returns False (with a warning and
        the parameters unchanged, but unfrozen) when no statistics were
        collected, e.g. for a PWLU that never saw a training batch.
        """
        self.collecting = False
        for p in (self.points, self.bounds, self.slopes):
            p.requires_grad_(True)
        if int(self.num_batches_tracked) == 0:
            warnings.warn(
                "pau.PWLU.realign: no statistics were collected (no training forward since "
                "pwlu_collect_statistics); parameters left unchanged",
                stacklevel=2,
            )
            return False
        mean = self.running_mean.double()
        std = self.running_var.double().clamp_min(0).sqrt()
        std = torch.maximum(std, 1e-3 * mean.abs().clamp_min(1.0))
        left, right = mean - 3 * std, mean + 3 * std
        self.points.copy_(_positions(left, right, self.num_points).clamp_min(0))
        self.bounds.copy_(torch.stack([left, right], dim=1))
        self.slopes.copy_(torch.tensor([0.0, 1.0], dtype=torch.float64).expand(self.groups, 2))
        return True

    def segment_tables(self, dtype: torch.dtype = torch.float32) -> SegmentTables:
        """The current parameters as per-piece slopes and intercepts (see :func:`segment_tables`).

        For inference outside this module, e.g. ``pwlu_segments(x, act.segment_tables(), act.dim)``;
        take them again after every parameter update.
        """
        with torch.no_grad():
            return segment_tables(self.points, self.bounds, self.slopes, dtype)

    def extra_repr(self) -> str:
        text = (
            f"num_points={self.num_points}, groups={self.groups}, dim={self.dim}, "
            f"init={self.init!r}, bound={self.bound}"
        )
        return text + (", collecting statistics" if self.collecting else "")


def pwlu_modules(model: nn.Module) -> list[PWLU]:
    """Every :class:`PWLU` in ``model`` (including ``model`` itself)."""
    return [m for m in model.modules() if isinstance(m, PWLU)]


class StatisticsCollection:
    """Phase I in progress for ``model``; returned by :func:`pwlu_collect_statistics`.

    As a context manager, leaving the block without an exception runs
    :func:`pwlu_realign` (phase II).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> StatisticsCollection:
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is None:
            pwlu_realign(self.model)
        return False


def pwlu_collect_statistics(model: nn.Module) -> StatisticsCollection:
    """Phase I for every PWLU in ``model``: freeze its parameters and collect statistics.

    Works on a model or, through ``model.apply(pau.pwlu_collect_statistics)``,
    module by module. Returns a context manager that realigns on exit.
    """
    for module in pwlu_modules(model):
        module.collect_statistics()
    return StatisticsCollection(model)


def pwlu_realign(model: nn.Module) -> int:
    """Phase II for every PWLU in ``model`` (see :meth:`PWLU.realign`).

    Returns how many PWLUs were realigned from statistics.
    """
    return sum(module.realign() for module in pwlu_modules(model))
