"""The activation functions the experiments compare, by the names the CLI accepts.

Every factory returns a fresh module, so each activation layer of a network
gets its own instance (one PAU per layer, as in the PAU paper). RPAU and PWLU
join the registry only when the installed ``pau`` provides them.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

# RPAU noise band: the PAU paper (appendix A.4.1) uses alpha = 1% for its
# small networks; it gives no value for MNIST, so we use the same.
RPAU_ALPHA = 0.01
PAU_DEGREES = (5, 4)
PAU_INIT = "leaky_relu"

# The order of the paper's Table 2; also the order of rows in our tables.
ALL_NAMES = (
    "relu",
    "relu6",
    "leaky_relu",
    "rrelu",
    "elu",
    "celu",
    "swish",
    "prelu",
    "gelu",
    "pau",
    "rpau",
    "pwlu",
)

# Display names as the paper's Table 2 writes them.
LABELS = {
    "relu": "ReLU",
    "relu6": "ReLU6",
    "leaky_relu": "LReLU",
    "rrelu": "RReLU",
    "elu": "ELU",
    "celu": "CELU",
    "swish": "Swish",
    "prelu": "PReLU",
    "gelu": "GELU",
    "pau": "PAU",
    "rpau": "RPAU",
    "pwlu": "PWLU",
}

# Activations implemented by the pau package itself (and so only present once
# the extension imports and, for RPAU/PWLU, once they have landed).
PAU_FAMILY = ("pau", "rpau", "pwlu")

_TORCH_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,  # slope 0.01, the function PAU is initialised to
    "rrelu": nn.RReLU,
    "elu": nn.ELU,
    "celu": nn.CELU,
    "swish": nn.SiLU,
    "prelu": nn.PReLU,  # one learnable slope per layer, as in the paper
    "gelu": nn.GELU,
}


def _pau_module() -> Any:
    """The ``pau`` package, or None when it (its compiled extension) cannot be imported."""
    try:
        import pau
    except ImportError:
        return None
    return pau


def _accepted_kwargs(cls: type, wanted: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``wanted`` that ``cls.__init__`` accepts.

    RPAU and PWLU are written in parallel with this file; passing only the
    keywords they declare keeps us working whatever their final signatures are.
    """
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(wanted)
    return {k: v for k, v in wanted.items() if k in params}


def available() -> list[str]:
    """Names of the activations usable in this environment, in table order."""
    pau = _pau_module()
    names = list(_TORCH_FACTORIES)
    if pau is not None:
        names += [
            n
            for n, attr in (("pau", "PAU"), ("rpau", "RPAU"), ("pwlu", "PWLU"))
            if hasattr(pau, attr)
        ]
    return [n for n in ALL_NAMES if n in names]


def make(name: str, pau_variant: str = "safe") -> nn.Module:
    """A new activation module for ``name`` (see :data:`ALL_NAMES`).

    Args:
        name: the activation's CLI name.
        pau_variant: the denominator form for PAU and RPAU (``"safe"`` is the
            paper's Eq. 2).

    Raises:
        ValueError: unknown name, or one the installed ``pau`` does not provide.
    """
    if name in _TORCH_FACTORIES:
        return _TORCH_FACTORIES[name]()
    if name not in PAU_FAMILY:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ALL_NAMES)}")
    pau = _pau_module()
    attr = {"pau": "PAU", "rpau": "RPAU", "pwlu": "PWLU"}[name]
    if pau is None or not hasattr(pau, attr):
        raise ValueError(f"activation {name!r} needs pau.{attr}, which this pau build lacks")
    cls = getattr(pau, attr)
    if name == "pwlu":
        return cls()
    wanted: dict[str, Any] = {"degrees": PAU_DEGREES, "variant": pau_variant, "init": PAU_INIT}
    if name == "rpau":
        wanted["alpha"] = RPAU_ALPHA
    return cls(**_accepted_kwargs(cls, wanted))
