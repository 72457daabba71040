"""The Piecewise Linear Unit module (PWLU, Zhou et al. 2021).

A PWLU has N intervals between learnable bounds B_L < B_R, N+1 learnable points
Y_0..Y_N and learnable outer slopes K_L, K_R (per group of channels). Left of
B_L it is Y_0 + (x - B_L) K_L, right of B_R it is Y_N + (x - B_R) K_R, and in
between it interpolates the two neighbouring points linearly.

Its statistic-based realignment (phase I: collect input statistics, phase II:
realign to them) is :meth:`PWLU.collect_statistics` / :meth:`PWLU.realign` per
module and :mod:`pau.nn.pwlu_realignment` for a whole model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .. import _C  # noqa: F401  (registers torch.ops.pau)
from .._checks import channel_dim
from ..functional import SegmentTables, segment_tables
from ..reference import pwlu_reference
from ._distributed import all_ranks_mean_var, assign
from ._unit import ConversionStart, Function, Unit

INITS = ("relu", "leaky_relu", "identity")
LEAKY_RELU_SLOPE = 0.01
MOMENTUM = 0.9
MAX_INTERVALS = 4096  # as the operators (pwlu_math.h)


def _positions(left: Tensor, right: Tensor, num_points: int) -> Tensor:
    """(G, N+1) breakpoints B_L + i (B_R - B_L) / N of (G,) bounds."""
    steps = torch.arange(num_points + 1, dtype=left.dtype, device=left.device)
    return left[:, None] + steps * ((right - left) / num_points)[:, None]


def _check_num_points(num_points: object) -> None:
    if (
        not isinstance(num_points, int)
        or isinstance(num_points, bool)
        or not (1 <= num_points <= MAX_INTERVALS)
    ):
        raise ValueError(
            f"num_points (the number of intervals N) must be an int in [1, {MAX_INTERVALS}],"
            f" got {num_points!r}"
        )


def _check_bound(bound: object) -> None:
    if not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a finite positive number, got {bound!r}")


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


class PWLU(Unit):
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
    state dict. See :mod:`pau.nn.pwlu_realignment` for the realignment schedule.
    :meth:`from_function` builds one that interpolates any function.
    """

    parameter_names = ("points", "bounds", "slopes")
    config_names = ("num_points", "bound", "dim")
    shape_config_names = ("num_points", "bound")
    own_inits = INITS
    samples_functions = True

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
        _check_num_points(num_points)
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        _check_bound(bound)
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
        """F(x) element-wise (``pau::pwlu_forward``); in phase I also updates the statistics."""
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
                mean, var = all_ranks_mean_var(mean, var, count, group)
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
            assign(param, value)
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

    # The unit protocol (pau.nn._unit.Unit).

    def reference(self, x: Tensor, parameters: Optional[Mapping[str, Tensor]] = None) -> Tensor:
        params = self.current_parameters() if parameters is None else parameters
        points = params["points"]
        xs = x[:, None].expand(-1, points.shape[0])
        return pwlu_reference(xs, points, params["bounds"], params["slopes"], dim=1)

    def describe(self) -> str:
        return f"PWLU N={self.num_points}"

    def natural_range(self) -> Optional[tuple[float, float]]:
        bounds = self.bounds.detach().to("cpu", torch.float64)
        return float(bounds[:, 0].min()), float(bounds[:, 1].max())

    def knots(
        self, parameters: Mapping[str, Tensor], group: int
    ) -> Optional[tuple[Tensor, Tensor]]:
        steps = torch.linspace(0, 1, self.num_points + 1, dtype=torch.float64)
        left, right = parameters["bounds"][group]
        return left + steps * (right - left), parameters["points"][group]

    def _initial_from_init(self) -> Optional[dict[str, Tensor]]:
        if getattr(self, "init", None) not in INITS:
            return None
        points, bounds, slopes = initial_parameters(self.init, self.num_points, self.bound)
        return {
            "points": points.reshape(1, -1),
            "bounds": bounds.reshape(1, -1),
            "slopes": slopes.reshape(1, -1),
        }

    @classmethod
    def function_parameters(
        cls, fn: Function, num_points: int = 16, bound: float = 3.0
    ) -> dict[str, Tensor]:
        """Points, bounds and slopes (float64) that interpolate ``fn`` on [-bound, bound].

        The outer slopes are ``fn``'s secants over one interval outside each
        bound, which continues ReLU-like functions exactly.
        """
        _check_num_points(num_points)
        _check_bound(bound)
        bound = float(bound)
        h = 2 * bound / num_points
        x = torch.linspace(-bound, bound, num_points + 1, dtype=torch.float64)
        with torch.no_grad():
            y = fn(x).to(torch.float64)
            outer = fn(torch.tensor([-bound - h, bound + h], dtype=torch.float64))
            outer = outer.to(torch.float64)
        slopes = torch.stack([(y[0] - outer[0]) / h, (outer[1] - y[-1]) / h])
        return {
            "points": y,
            "bounds": torch.tensor([-bound, bound], dtype=torch.float64),
            "slopes": slopes,
        }

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
    ) -> PWLU:
        module = cls(groups=groups, dim=dim, init="relu", device=device, dtype=dtype, **config)
        with torch.no_grad():
            for name in cls.parameter_names:
                param = getattr(module, name)
                param.copy_(parameters[name].expand_as(param))
        module.init = init
        return module

    @classmethod
    def _native_init(cls, start: ConversionStart) -> Optional[str]:
        if start.init in INITS:
            return start.init
        if start.init == "match" and start.preset in INITS and start.exact:
            return start.preset  # the PWLU's own init is this very function
        return None

    @classmethod
    def _function_label(cls, name: str) -> str:
        return f"sampled {name}"
