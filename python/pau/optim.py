"""Optimizer parameter groups that keep the activation coefficients apart.

PAU / RPAU / PWLU coefficients are few, shared by whole layers or channels,
and shape every activation of their layer: a step size that suits the
network's weights can throw them far off (a trial report: EfficientNet-B0
with per-channel PAU diverged under AdamW at lr 1e-3 and converged with lr
1e-4 on the coefficients), and weight decay pulls them toward 0, i.e. toward
the zero function, not toward the activation they started as.
:func:`parameter_groups` puts them in their own group with their own
learning rate and, by default, no weight decay.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from torch import nn

from .nn import Unit

__all__ = ["parameter_groups", "activation_parameters"]


def activation_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every PAU, RPAU and PWLU in ``model``, each once, in module order."""
    seen: set[int] = set()
    out = []
    for module in model.modules():
        if isinstance(module, Unit):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def _check_number(name: str, value: Any, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"pau.parameter_groups: {name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"pau.parameter_groups: {name} must be finite and {bound}, got {value}")
    return value


def parameter_groups(
    model: nn.Module,
    lr: Optional[float] = None,
    weight_decay: float = 0.0,
    **options: Any,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the activation coefficients apart from the rest.

    Pass the result to any ``torch.optim`` optimizer; its own ``lr`` and
    ``weight_decay`` (and other defaults) apply to the rest of the model::

        groups = pau.parameter_groups(model, lr=1e-4)
        optimizer = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.05)

    Args:
        model: a module holding PAU, RPAU or PWLU units (e.g. from :func:`pau.convert`).
        lr: learning rate of the coefficients; None uses the optimizer's.
        weight_decay: weight decay of the coefficients (default 0: decay
            pulls them toward the zero function).
        **options: further per-group options for the coefficients (e.g.
            ``betas=(0.9, 0.99)``, ``momentum=0``).

    Returns:
        ``[{"params": coefficients, "weight_decay": ..., ["lr": ...,] **options},
        {"params": the other parameters}]``; the second group is left out when
        the model has no other parameters. Every parameter appears once (shared
        ones included), frozen ones too (PWLU's phase I freezes its
        parameters and phase II unfreezes them: they still need a group).

    Raises:
        TypeError: ``model`` is not a module, or ``lr`` / ``weight_decay`` is not a number.
        ValueError: ``lr`` not finite and > 0, ``weight_decay`` not finite and
            >= 0, an option named ``params``, or no PAU/RPAU/PWLU in ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"pau.parameter_groups: model must be a torch.nn.Module, got {type(model).__name__}"
        )
    if "params" in options:
        raise ValueError("pau.parameter_groups: 'params' is chosen here; pass other options")
    coefficients = activation_parameters(model)
    if not coefficients:
        raise ValueError(
            "pau.parameter_groups: the model has no PAU, RPAU or PWLU module "
            "(convert it with pau.convert first?)"
        )
    group: dict[str, Any] = {
        "params": coefficients,
        "weight_decay": _check_number("weight_decay", weight_decay, allow_zero=True),
    }
    if lr is not None:
        group["lr"] = _check_number("lr", lr, allow_zero=False)
    group.update(options)
    taken = {id(p) for p in coefficients}
    rest = [p for p in model.parameters() if id(p) not in taken]
    return [group, {"params": rest}] if rest else [group]
