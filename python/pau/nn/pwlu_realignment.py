"""PWLU's statistic-based realignment (Zhou et al. 2021) over a whole model.

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
"""

from __future__ import annotations

from types import TracebackType
from typing import Optional

import torch
from torch import nn

from .pwlu import PWLU


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

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool:
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
