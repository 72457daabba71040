"""Functional activations (``F.relu``, ``torch.relu``, ``x.relu()``, ...) in
``torch.fx``-traceable models, turned into modules that :func:`pau.convert`
then replaces like any other."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn import Unit
from .channels import channel_source

__all__ = ["Tracer", "replace_functionals"]


def functional_table() -> dict[Any, Callable[[tuple, dict], nn.Module]]:
    """call_function / call_method targets -> builder of the equivalent nn module."""

    def arg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(name, default)

    def relu(a: tuple, k: dict) -> nn.Module:
        return nn.ReLU()

    def relu6(a: tuple, k: dict) -> nn.Module:
        return nn.ReLU6()

    def leaky(a: tuple, k: dict) -> nn.Module:
        return nn.LeakyReLU(arg(a, k, 1, "negative_slope", 0.01))

    def gelu(a: tuple, k: dict) -> nn.Module:
        return nn.GELU(approximate=k.get("approximate", "none"))

    def silu(a: tuple, k: dict) -> nn.Module:
        return nn.SiLU()

    def mish(a: tuple, k: dict) -> nn.Module:
        return nn.Mish()

    def elu(a: tuple, k: dict) -> nn.Module:
        return nn.ELU(arg(a, k, 1, "alpha", 1.0))

    def celu(a: tuple, k: dict) -> nn.Module:
        return nn.CELU(arg(a, k, 1, "alpha", 1.0))

    def softplus(a: tuple, k: dict) -> nn.Module:
        return nn.Softplus(arg(a, k, 1, "beta", 1.0), arg(a, k, 2, "threshold", 20.0))

    def tanh(a: tuple, k: dict) -> nn.Module:
        return nn.Tanh()

    def sigmoid(a: tuple, k: dict) -> nn.Module:
        return nn.Sigmoid()

    def hardswish(a: tuple, k: dict) -> nn.Module:
        return nn.Hardswish()

    return {
        F.relu: relu,
        torch.relu: relu,
        torch.relu_: relu,
        F.relu_: relu,
        "relu": relu,
        "relu_": relu,
        F.relu6: relu6,
        F.leaky_relu: leaky,
        F.gelu: gelu,
        "gelu": gelu,
        F.silu: silu,
        F.mish: mish,
        F.elu: elu,
        F.celu: celu,
        F.softplus: softplus,
        torch.tanh: tanh,
        F.tanh: tanh,
        "tanh": tanh,
        torch.sigmoid: sigmoid,
        F.sigmoid: sigmoid,
        "sigmoid": sigmoid,
        F.hardswish: hardswish,
    }


def target_name(target: Any) -> str:
    if isinstance(target, str):
        return f"Tensor.{target}"
    name = getattr(target, "__name__", str(target))
    for prefix, namespace in (("F.", F), ("torch.", torch)):
        if getattr(namespace, name, None) is target:
            return prefix + name
    return name


class Tracer(torch.fx.Tracer):
    """Keeps activation modules and pau modules as leaves (call_module nodes)."""

    # ``leaves`` has a default because unpickling a GraphModule (torch.load,
    # pickle.loads) re-traces its code with a subclass of the recorded tracer
    # class constructed without arguments; that subclass makes every module a
    # leaf anyway, so the empty default changes nothing there.
    def __init__(self, leaves: tuple[type[nn.Module], ...] = ()) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        """Whether fx records ``m`` as one call_module node instead of tracing into it."""
        return isinstance(m, self._leaves) or super().is_leaf_module(m, qualname)


def replace_functionals(
    model: nn.Module, activations: tuple[type[nn.Module], ...], notes: list[str]
) -> tuple[nn.Module, dict[str, str], dict[str, Optional[tuple[int, int]]]]:
    """Turn functional activation calls into call_module nodes of equivalent nn modules.

    Returns the (possibly new) model, {new module name: description of the
    call it replaced} and, for those modules, the (channels, dim) of the
    closest preceding channel-source module in execution order.
    """
    try:
        tracer = Tracer(tuple(activations) + (Unit,))
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        notes.append(
            f"model is not torch.fx-traceable ({type(exc).__name__}); "
            "functional activations, if any, were left alone"
        )
        return model, {}, {}
    table = functional_table()
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    found = []
    last_source: Optional[tuple[int, int]] = None
    sources: dict[Any, Optional[tuple[int, int]]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
            src = channel_source(modules[node.target])
            if src is not None:
                last_source = src
        elif node.op in ("call_function", "call_method"):
            try:
                builder = table.get(node.target)
            except TypeError:  # unhashable target
                builder = None
            if builder is None:
                continue
            constant = all(not isinstance(a, torch.fx.Node) for a in node.args[1:]) and all(
                not isinstance(v, torch.fx.Node) for v in node.kwargs.values()
            )
            new = builder(tuple(node.args), dict(node.kwargs)) if constant else None
            if new is None or not isinstance(new, activations):
                continue
            found.append((node, new))
            sources[node] = last_source
    for target, count in calls.items():
        if count > 1 and isinstance(modules[target], activations):
            notes.append(
                f"module {target!r} is called {count} times; its call sites share one replacement"
            )
    if not found:
        return model, {}, {}
    gm = torch.fx.GraphModule(model, graph, class_name=type(model).__name__)
    described, channel_sources = {}, {}
    taken = set(dict(gm.named_modules()))
    for node, new in found:
        name = base = f"{node.name}_act"
        i = 1
        while name in taken:
            name, i = f"{base}{i}", i + 1
        taken.add(name)
        gm.add_submodule(name, new)
        with gm.graph.inserting_after(node):
            call = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(call)
        gm.graph.erase_node(node)
        described[name] = f"{target_name(node.target)} (functional, node {node.name})"
        channel_sources[name] = sources[node]
    gm.graph.lint()
    gm.recompile()
    return gm, described, channel_sources
