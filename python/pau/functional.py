"""Functional interface to the ``pau`` operators."""

from __future__ import annotations

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loads the operator library; registers torch.ops.pau)


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
