"""Training with PWLU and its statistic-based realignment (Zhou et al. 2021).

Phase I (here the first 2 of 10 epochs; the paper uses the first few epochs):
the PWLU parameters stay frozen at their ReLU initialisation while the rest of
the network trains and every PWLU records the running mean and variance of its
input. Phase II: each PWLU is realigned to that distribution (bounds at
mean -/+ 3 std, points on ReLU) and then trains with everything else.

Runs on the CPU in well under a minute: python examples/pwlu_realignment.py
"""

from __future__ import annotations

import pau
import torch
from torch import nn


def data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D, 3-class spiral."""
    t = torch.rand(n, generator=generator) * 3 * torch.pi
    label = torch.randint(0, 3, (n,), generator=generator)
    angle = t + label * 2 * torch.pi / 3
    x = torch.stack([t * angle.cos(), t * angle.sin()], dim=1) / 3
    return x + 0.05 * torch.randn(n, 2, generator=generator), label


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    x, y = data(3000, generator)
    model = nn.Sequential(
        nn.Linear(2, 64), pau.PWLU(groups=64, dim=-1),  # one PWLU per channel
        nn.Linear(64, 64), pau.PWLU(),  # one PWLU for the layer
        nn.Linear(64, 3),
    )
    # All parameters go to the optimizer: frozen ones simply get no gradient.
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def epoch() -> float:
        model.train()
        for batch in torch.randperm(len(x)).split(100):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()

    with pau.pwlu_collect_statistics(model):  # phase I
        for e in range(2):
            print(f"epoch {e} (phase I, PWLU frozen): accuracy {epoch():.3f}")
    # Leaving the block realigned every PWLU (phase II starts).
    layer = model[3]
    print(f"realigned: bounds {layer.bounds[0].tolist()} from mean "
          f"{layer.running_mean.item():.3f}, std {layer.running_var.sqrt().item():.3f}")
    for e in range(2, 10):
        print(f"epoch {e} (phase II): accuracy {epoch():.3f}")


if __name__ == "__main__":
    main()
