"""Training-step throughput per activation, measured side by side.

Epoch times of separate runs are skewed by whatever else the machine did
meanwhile; here every activation's model takes turns for a few steps, several
rounds over, and each keeps its fastest round, so the comparison with ReLU
is made under the same conditions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn

from . import activations
from .models import INPUT_SIZE, build_model


def measure_training_speed(
    model_name: str,
    names: Sequence[str],
    device: torch.device,
    batch_size: int = 256,
    steps: int = 10,
    rounds: int = 3,
    pau_variant: str = "safe",
    in_channels: int = 1,
) -> dict[str, float]:
    """Training images/second (forward, backward, Adam step) for each activation in ``names``.

    ``in_channels``: 1 for (Fashion-)MNIST, 3 for CIFAR-10 (32x32 inputs either way).
    """
    torch.manual_seed(0)
    x = torch.randn(batch_size, in_channels, INPUT_SIZE, INPUT_SIZE, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    setups = {}
    for name in names:
        model = build_model(
            model_name, lambda n=name: activations.make(n, pau_variant), in_channels=in_channels
        ).to(device)
        setups[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))

    def step(model: nn.Module, opt: torch.optim.Optimizer) -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    best = dict.fromkeys(names, float("inf"))
    for _ in range(rounds):
        for name, (model, opt) in setups.items():
            model.train()
            step(model, opt)  # warm-up: allocator, kernel selection
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(model, opt)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return {name: batch_size / seconds for name, seconds in best.items()}
