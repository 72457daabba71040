"""Build the model and data that the LibTorch example (main.cpp) runs and trains.

    python examples/libtorch/make_model.py DIR [--model pau|pwlu]

writes DIR/model.pt (TorchScript), DIR/input.pt and DIR/target.pt
(``torch.save`` of plain tensors, which C++ reads with ``torch::jit::pickle_load``).
"""

from __future__ import annotations

import argparse
import os

import pau
import torch
from torch import nn


class PauNet(nn.Module):
    """A small CNN with PAU layers of every variant, one PAU per layer (G = 1)
    and one per channel (G = C), on NCHW (dim=1) and (batch, features) (dim=-1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = pau.PAU(degrees=(5, 4), variant="safe", groups=1, dim=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = pau.PAU(degrees=(5, 4), variant="abs_sum", groups=8, dim=1)
        self.fc1 = nn.Linear(8, 16)
        self.act3 = pau.PAU(degrees=(3, 2), variant="plain", groups=16, dim=-1)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        x = x.mean(dim=(2, 3))
        return self.fc2(self.act3(self.fc1(x)))


class PwluNet(nn.Module):
    """A small CNN with PWLU layers: one per channel (G = C) on NCHW, one per layer
    (G = 1) on (batch, features)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = pau.PWLU(num_points=16, groups=8, dim=1, bound=0.5)
        self.fc1 = nn.Linear(8, 16)
        self.act2 = pau.PWLU(num_points=8, groups=1, dim=-1, init="leaky_relu", bound=0.25)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x)).mean(dim=(2, 3))
        return self.fc2(self.act2(self.fc1(x)))


MODELS = {"pau": PauNet, "pwlu": PwluNet}


def make_example(directory: str, seed: int = 0, model: str = "pau") -> torch.jit.ScriptModule:
    """Writes model.pt, input.pt and target.pt into ``directory``; returns the model.

    ``model`` picks :class:`PauNet` (``"pau"``) or :class:`PwluNet` (``"pwlu"``).
    """
    torch.manual_seed(seed)
    model = MODELS[model]()
    # Per-group perturbations so that the groups of a G = C layer differ.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, pau.PAU):
                module.numerator.add_(0.05 * torch.randn_like(module.numerator))
                module.denominator.add_(0.05 * torch.randn_like(module.denominator))
            if isinstance(module, pau.PWLU):
                module.points.add_(0.05 * torch.randn_like(module.points))
    scripted = torch.jit.script(model)
    os.makedirs(directory, exist_ok=True)
    scripted.save(os.path.join(directory, "model.pt"))
    torch.save(torch.randn(4, 3, 8, 8), os.path.join(directory, "input.pt"))
    torch.save(torch.randn(4, 4), os.path.join(directory, "target.pt"))
    return scripted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="where to write model.pt, input.pt and target.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", choices=sorted(MODELS), default="pau")
    args = parser.parse_args()
    make_example(args.directory, args.seed, args.model)
    print(f"wrote model.pt, input.pt and target.pt to {args.directory}")


if __name__ == "__main__":
    main()
