"""Functional PAU: :func:`pau`."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _C  # noqa: F401  (loads the operator library; registers torch.ops.pau)


def pau(
    x: Tensor, numerator: Tensor, denominator: Tensor, variant: str = "safe", dim: int = 1
) -> Tensor:
    """Padé Activation Unit F(x) = P(x) / Q(x), applied element-wise.

    Args:
        x: input of any shape, dtype float32/float64/float16/bfloat16.
        numerator: (G, m+1) coefficients a_0..a_m of P.
        denominator: (G, n) coefficients b_1..b_n of A; n may be 0.
        variant: ``"safe"`` (Q = 1 + |A(x)|), ``"abs_sum"`` (Q = 1 + sum |b_k x^k|)
            or ``"plain"`` (Q = 1 + A(x)).
        dim: the channel dimension; its size must be divisible by G.

    Differentiable with respect to all three tensors, to any order
    (``create_graph=True``), and usable under ``torch.func`` transforms (grad,
    vmap, jacrev, jacfwd, jvp, hessian); see the README's "Higher-order
    gradients and torch.func".
    """
    return torch.ops.pau.forward(x, numerator, denominator, variant, dim)

