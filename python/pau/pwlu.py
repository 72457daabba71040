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
from .modules import channel_dim

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
        dim = channel_dim(x, self.dim, self.groups, "PWLU")
        # The operator first: it checks x (e.g. that G divides C) with clear errors.
        y = torch.ops.pau.pwlu_forward(x, self.points, self.bounds, self.slopes, dim)
        if self.collecting and self.training:
            self._update_statistics(x)
        return y

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
            group = self._statistics_group()
            if group is not None:
                count = grouped.numel() // max(1, self.groups)
                mean, var = _all_ranks_mean_var(mean, var, count, group)
            # The first batch initialises the statistics instead of being
            # averaged with the arbitrary starting values.
            keep = torch.where(self.num_batches_tracked > 0, MOMENTUM, 0.0).to(mean.dtype)
            dtype = self.running_mean.dtype
            self.running_mean.copy_((keep * self.running_mean + (1 - keep) * mean).to(dtype))
            self.running_var.copy_((keep * self.running_var + (1 - keep) * var).to(dtype))
            self.num_batches_tracked.add_(1)

    @torch.jit.unused
    def _statistics_group(self):
        """The process group a batch's statistics are reduced over, or None (this process)."""
        if not getattr(self, "sync_statistics", True):
            return None
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return None
        group = getattr(self, "process_group", None)
        return group if group is not None else torch.distributed.group.WORLD

    def reset_statistics(self) -> None:
        """Forget the phase I statistics (running mean 0, variance 1, no batches)."""
        self.running_mean.zero_()
        self.running_var.fill_(1)
        self.num_batches_tracked.zero_()

    def collect_statistics(self, sync: bool = True, process_group: Optional[object] = None) -> None:
        """Phase I: freeze the parameters and start fresh running statistics.

        With ``sync`` (the default) and torch.distributed initialised, every
        training batch's statistics are reduced over ``process_group`` (default:
        the default group) before they enter the running ones, so that all
        ranks hold, and realign to, the statistics of the whole distributed
        batch. Every rank of the group must then run the same number of
        training forwards through this PWLU (as DDP and FSDP training do).
        """
        self.reset_statistics()
        self.collecting = True
        self.sync_statistics = bool(sync)
        self.process_group = process_group
        for p in (self.points, self.bounds, self.slopes):
            p.requires_grad_(False)

    @torch.no_grad()
    def realigned_parameters(self, name: str = "") -> Optional[tuple[Tensor, Tensor, Tensor]]:
        """The (points, bounds, slopes) :meth:`realign` would set, in the parameters' dtype.

        None when no statistics were collected. Raises ValueError, naming the
        layer (``name``, e.g. its name in the model), when the statistics or
        the bounds made from them are not finite in the parameters' dtype
        (phase I saw NaN/inf inputs, or their variance overflowed), or the
        bounds do not stay apart there.
        """
        if int(self.num_batches_tracked) == 0:
            return None
        mean = self.running_mean.double()
        std = self.running_var.double().clamp_min(0).sqrt()
        std = torch.maximum(std, 1e-3 * mean.abs().clamp_min(1.0))
        left, right = mean - 3 * std, mean + 3 * std
        dtype = self.points.dtype
        bounds = torch.stack([left, right], dim=1).to(dtype)
        points = _positions(left, right, self.num_points).clamp_min(0).to(dtype)
        usable = bounds.isfinite().all(1) & (bounds[:, 0] < bounds[:, 1])
        usable &= points.isfinite().all(1)
        if not bool(usable.all()):
            g = int((~usable).nonzero()[0, 0])
            layer = f"PWLU {name!r}" if name else "a PWLU"
            raise ValueError(
                f"pau.PWLU.realign: {layer} cannot be realigned: group {g} has running mean "
                f"{self.running_mean[g].item()!r} and variance {self.running_var[g].item()!r}, "
                f"giving bounds {tuple(bounds[g].tolist())} in {dtype} (phase I saw NaN or inf "
                "inputs, or their statistics overflowed); parameters left unchanged. Find the "
                "non-finite activations, then collect the statistics again"
            )
        slopes = torch.tensor([0.0, 1.0], dtype=dtype).expand(self.groups, 2)
        return points, bounds, slopes

    @torch.no_grad()
    def realign(self, name: str = "") -> bool:
        """Phase II: reset the parameters from the statistics and unfreeze them.

        B_L, B_R = mean -/+ 3 std (std at least 1e-3 max(1, |mean|), so a
        constant input still gives an interval), K_L = 0, K_R = 1 and
        Y_i = relu(B_L + i (B_R - B_L) / N). Returns False (with a warning and
        the parameters unchanged, but unfrozen) when no statistics were
        collected, e.g. for a PWLU that never saw a training batch. Raises
        ValueError (see :meth:`realigned_parameters`), with the parameters
        untouched and still frozen, for non-finite statistics. Parameters
        sharded by FSDP2 (``fully_shard``, DTensors) get their shards.
        """
        values = self.realigned_parameters(name)
        self.collecting = False
        for p in (self.points, self.bounds, self.slopes):
            p.requires_grad_(True)
        if values is None:
            warnings.warn(
                "pau.PWLU.realign: no statistics were collected (no training forward since "
                "pwlu_collect_statistics); parameters left unchanged",
                stacklevel=2,
            )
            return False
        for param, value in zip((self.points, self.bounds, self.slopes), values):
            _assign(param, value)
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


def _all_ranks_mean_var(
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


def _assign(param: Tensor, value: Tensor) -> None:
    """param.copy_(value) for a plain parameter or an FSDP2-sharded (DTensor) one."""
    value = value.to(device=param.device)
    if type(param).__name__ == "DTensor" or hasattr(param, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        # Every rank computed the same value: take its own shard, no communication.
        value = distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
    param.copy_(value)


def pwlu_modules(model: nn.Module, caller: str = "pau.pwlu_modules") -> list[PWLU]:
    """Every :class:`PWLU` in ``model`` (including ``model`` itself).

    Raises TypeError for a ``model`` that is not a module and for scripted
    PWLUs, which can neither collect statistics nor be realigned (TorchScript
    compiles no statistics code), rather than finding nothing to do.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{caller}: model must be a torch.nn.Module, got {type(model).__name__}")
    for name, m in model.named_modules():
        if isinstance(m, torch.jit.ScriptModule) and getattr(m, "original_name", None) == "PWLU":
            where = f"module {name!r}" if name else "the model"
            raise TypeError(
                f"{caller}: {where} is a TorchScript PWLU; scripted PWLUs cannot collect "
                "statistics or be realigned. Run phase I and pwlu_realign on the eager "
                "model, then script it"
            )
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


def _data_parallel_wrappers(model: nn.Module) -> list[nn.Module]:
    """The DistributedDataParallel modules in ``model`` (including ``model`` itself)."""
    ddp = torch.nn.parallel.DistributedDataParallel
    return [m for m in model.modules() if isinstance(m, ddp)]


def _check_ddp_before_phase_one(model: nn.Module) -> None:
    for wrapper in _data_parallel_wrappers(model):
        if not wrapper.find_unused_parameters:
            raise ValueError(
                "pau.pwlu_collect_statistics: the model is wrapped in DistributedDataParallel "
                "without find_unused_parameters=True; phase I freezes the PWLU parameters, so "
                "DDP would fail on its second step waiting for their gradients. Construct it "
                "with find_unused_parameters=True (see the README's PWLU section)"
            )


def pwlu_collect_statistics(
    model: nn.Module, sync: bool = True, process_group: Optional[object] = None
) -> StatisticsCollection:
    """Phase I for every PWLU in ``model``: freeze its parameters and collect statistics.

    Works on a model or, through ``model.apply(pau.pwlu_collect_statistics)``,
    module by module. Returns a context manager that realigns on exit.

    Distributed training: with ``sync`` and torch.distributed initialised, the
    statistics of each training batch are reduced over ``process_group``
    (default: the default group), so that every rank realigns to the same
    parameters, those of one process seeing the whole distributed batch (see
    :meth:`PWLU.collect_statistics`). A DistributedDataParallel ``model`` must
    have ``find_unused_parameters=True`` (the frozen parameters get no
    gradients in phase I); ValueError otherwise.
    """
    modules = pwlu_modules(model, "pau.pwlu_collect_statistics")  # checks model first
    _check_ddp_before_phase_one(model)
    for module in modules:
        module.collect_statistics(sync, process_group)
    return StatisticsCollection(model)


def pwlu_realign(model: nn.Module) -> int:
    """Phase II for every PWLU in ``model`` (see :meth:`PWLU.realign`).

    Checks every PWLU's statistics first, so that on a ValueError (non-finite
    statistics, naming the layer) no PWLU has changed. Returns how many PWLUs
    were realigned from statistics.
    """
    modules = pwlu_modules(model, "pau.pwlu_realign")
    names = {id(m): name for name, m in model.named_modules()}
    for module in modules:
        module.realigned_parameters(names.get(id(module), ""))
    return sum(module.realign(names.get(id(module), "")) for module in modules)
