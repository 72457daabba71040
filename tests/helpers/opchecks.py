"""torch.library.opcheck of the PWLU operators, and torch.compile against eager."""

from __future__ import annotations

import torch
from torch import Tensor


def opcheck_pwlu(x: Tensor, points: Tensor, bounds: Tensor, slopes: Tensor) -> None:
    """torch.library.opcheck of pau::pwlu_forward (all parameters requiring grad) and of
    pau::pwlu_backward, on x's device, with channel dim 1."""
    torch.library.opcheck(
        torch.ops.pau.pwlu_forward,
        (x, points.requires_grad_(), bounds.requires_grad_(), slopes.requires_grad_(), 1),
    )
    grad = torch.randn_like(x)
    torch.library.opcheck(
        torch.ops.pau.pwlu_backward, (grad, x, points.detach(), bounds.detach(), slopes.detach(), 1)
    )


def check_compiled_matches_eager(model: torch.nn.Module, x: torch.Tensor) -> None:
    """``torch.compile(model, fullgraph=True)`` gives the eager output and, through
    its backward, the eager gradients of every parameter."""
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for got, p in zip(grads, model.parameters()):
        torch.testing.assert_close(got, p.grad)
