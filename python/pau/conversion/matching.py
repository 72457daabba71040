"""Which preset each activation type starts from under ``init="match"``, and
the function it computes (see :mod:`pau.convert` for the table)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import presets

__all__ = ["Match", "match"]


@dataclass
class Match:
    """The preset that matches an activation and the function it computes."""

    preset: Optional[str]  # None: no preset for this type
    target: Callable[[Tensor], Tensor]  # the replaced function, float64 in and out
    note: str = ""


def leaky_presets() -> dict[float, str]:
    """Slope -> canonical preset name, read off the names (the aliases spell out 0.01)."""
    out = {}
    for name in presets.names():
        if name.startswith("leaky_relu_"):
            out[float(name[len("leaky_relu_") :])] = presets.ALIASES.get(name, name)
    return out


def leaky_match(slope: float, what: str) -> Match:
    def target(x: Tensor) -> Tensor:
        return F.leaky_relu(x, slope)

    table = leaky_presets()
    nearest = min(table, key=lambda s: (abs(s - slope), s))
    note = ""
    if not math.isclose(nearest, slope, rel_tol=1e-9, abs_tol=1e-12):
        note = (
            f"{what} slope {slope:g} has no preset; started from the nearest, "
            f"{table[nearest]!r} (slope {nearest:g}); init='fit' matches it exactly"
        )
    return Match(table[nearest], target, note)


def match(module: nn.Module) -> Match:
    """The preset that matches ``module`` and the function it computes."""
    if isinstance(module, nn.ReLU6):
        return Match("relu", F.relu6, "ReLU6 equals ReLU on [-3, 3]; the preset does not cap at 6")
    if isinstance(module, nn.ReLU):
        return Match("relu", torch.relu)
    if isinstance(module, nn.LeakyReLU):
        return leaky_match(float(module.negative_slope), "LeakyReLU")
    if isinstance(module, nn.PReLU):
        weight = module.weight.detach().double()
        slope = float(weight.mean())
        match = leaky_match(slope, "PReLU")
        if weight.numel() > 1 and float(weight.max() - weight.min()) > 0:
            match.note = (
                f"PReLU has per-channel slopes; matched their mean {slope:g}. " + match.note
            ).strip()
        return match
    if isinstance(module, nn.GELU):
        approximate = getattr(module, "approximate", "none")

        def gelu(x: Tensor) -> Tensor:
            return F.gelu(x, approximate=approximate)

        note = (
            "GELU(approximate='tanh'): the preset fits the exact (erf) GELU"
            if approximate != "none"
            else ""
        )
        return Match("gelu", gelu, note)
    if isinstance(module, nn.SiLU):
        return Match("silu", F.silu)
    if isinstance(module, nn.Mish):
        return Match("mish", F.mish)
    if isinstance(module, (nn.ELU, nn.CELU)):
        alpha = float(module.alpha)
        kind = type(module).__name__

        def elu(x: Tensor) -> Tensor:
            return F.elu(x, alpha)

        note = "" if alpha == 1.0 else f"{kind} alpha {alpha:g}: the preset has alpha 1"
        return Match("elu", elu, note)
    if isinstance(module, nn.Softplus):
        beta, threshold = float(module.beta), float(module.threshold)

        def softplus(x: Tensor) -> Tensor:
            return F.softplus(x, beta, threshold)

        note = "" if beta == 1.0 else f"Softplus beta {beta:g}: the preset has beta 1"
        return Match("softplus", softplus, note)
    if isinstance(module, nn.Tanh):
        return Match("tanh", torch.tanh)
    if isinstance(module, nn.Sigmoid):
        return Match("sigmoid", torch.sigmoid)
    if isinstance(module, nn.Hardswish):
        return Match("silu", F.hardswish, "Hardswish has no preset; started from 'silu'")
    if isinstance(module, nn.Identity):
        return Match("identity", presets.function("identity"))
    return Match(None, module_target(module))


def module_target(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """``module`` as a float64 function of a 1-D tensor (for unknown activation types)."""

    def target(x: Tensor) -> Tensor:
        with torch.no_grad():
            clone = copy.deepcopy(module).to(torch.float64).eval()
            return clone(x)

    return target
