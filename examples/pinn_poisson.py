"""A physics-informed network (PINN) for the 1-D Poisson problem, with PAU and with tanh.

    -u''(x) = f(x) on [0, 1],  u(0) = u(1) = 0,  f = pi^2 sin(pi x),  exact u = sin(pi x).

The loss is the mean squared residual u'' + f at collocation points plus the
squared boundary values; u'' comes from two torch.autograd.grad calls with
create_graph=True, so every training step differentiates the network three
times (twice for u'', once for the parameters). Rational activations of type
(3, 2) are the ones of Boullé et al., "Rational neural networks" (2020).

Prints, for each activation, the relative L2 and the max error against the
exact solution on 1001 points and the median time per training step:

    python examples/pinn_poisson.py [--steps 3000] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Callable

import pau
import torch
from torch import Tensor, nn


def exact(x: Tensor) -> Tensor:
    return torch.sin(math.pi * x)


def source(x: Tensor) -> Tensor:
    """f = -u'' of the exact solution."""
    return math.pi**2 * torch.sin(math.pi * x)


def network(activation: Callable[[], nn.Module], width: int = 32) -> nn.Module:
    return nn.Sequential(
        nn.Linear(1, width), activation(),
        nn.Linear(width, width), activation(),
        nn.Linear(width, 1),
    )


def second_derivative(model: nn.Module, x: Tensor) -> Tensor:
    """u''(x) for a column of points, by double backward through the network."""
    x = x.detach().requires_grad_()
    u = model(x)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), x, create_graph=True)
    return d2u


def loss_of(model: nn.Module, x: Tensor, ends: Tensor) -> Tensor:
    residual = second_derivative(model, x) + source(x)
    return residual.pow(2).mean() + model(ends).pow(2).mean()


def errors(model: nn.Module) -> tuple[float, float]:
    """(relative L2 error, max error) against the exact solution on 1001 points."""
    x = torch.linspace(0, 1, 1001).unsqueeze(1)
    with torch.no_grad():
        difference = model(x) - exact(x)
    return (difference.norm() / exact(x).norm()).item(), difference.abs().max().item()


def train(name: str, activation: Callable[[], nn.Module], steps: int, points: int,
          seed: int) -> dict:
    torch.manual_seed(seed)
    model = network(activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, steps // 3), gamma=0.3)
    ends = torch.tensor([[0.0], [1.0]])
    generator = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(steps):
        x = torch.rand(points, 1, generator=generator)  # fresh collocation points per step
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_of(model, x, ends)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        schedule.step()
    l2, largest = errors(model)
    result = {
        "activation": name,
        "final_loss": loss.item(),
        "relative_l2_error": l2,
        "max_error": largest,
        "median_step_ms": 1e3 * statistics.median(times),
        "steps": steps,
        "points": points,
    }
    print(f"{name:>9}: loss {result['final_loss']:.3e}, relative L2 error {l2:.3e}, "
          f"max error {largest:.3e}, {result['median_step_ms']:.2f} ms per step")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--points", type=int, default=128, help="collocation points per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    activations = {
        "PAU (3,2)": lambda: pau.PAU((3, 2), variant="plain", init="relu"),
        "tanh": nn.Tanh,
    }
    results = [train(name, make, args.steps, args.points, args.seed)
               for name, make in activations.items()]
    if args.json:
        info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                "cpu_capability": pau._C.cpu_capability()}
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
