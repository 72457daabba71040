"""One learning rate for everything vs a smaller one for the PAU coefficients.

    python examples/coefficient_lr.py [--epochs 30] [--seeds 3] [--lr 1e-3,1e-2]

A small CNN with per-channel PAU (init "relu", groups = channels) on
scikit-learn's digits (8x8 images, 1,437 train / 360 test), trained with AdamW
(weight decay 0.05 on the weights) in two setups per learning rate lr:

* "same": every parameter at lr, the coefficients decayed like the weights;
* "no-decay": ``pau.parameter_groups(model)``: the coefficients at lr too, but
  without weight decay;
* "groups": ``pau.parameter_groups(model, lr=lr / 10)``: the coefficients at
  lr / 10 without weight decay, the rest at lr;
* "relu": the same CNN with ReLU instead of PAU, for scale.

It prints, per setup, the final training loss and test accuracy of each seed
(nan: the run diverged) and how far the coefficients moved from their start.
Runs on the CPU in about a minute per learning rate.
"""

from __future__ import annotations

import argparse
import math
import time

import pau
import torch
import torch.nn.functional as F
from torch import nn


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = (x[order] - 0.5) / 0.5, y[order]
    return x[:1437], y[:1437], x[1437:], y[1437:]


def model(relu: bool = False) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        act = nn.ReLU() if relu else pau.PAU(init="relu", groups=cout)
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), act]

    return nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def optimizer(net: nn.Module, setup: str, lr: float) -> torch.optim.Optimizer:
    if setup in ("same", "relu"):
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    if setup == "no-decay":
        return torch.optim.AdamW(pau.parameter_groups(net), lr=lr, weight_decay=0.05)
    return torch.optim.AdamW(pau.parameter_groups(net, lr=lr / 10), lr=lr, weight_decay=0.05)


def run(setup: str, lr: float, seed: int, epochs: int) -> tuple[float, float, float]:
    """(final training loss, test accuracy, max coefficient change) of one run."""
    x, y, x_test, y_test = data()
    torch.manual_seed(seed)
    net = model(relu=setup == "relu")
    start = [p.detach().clone() for p in pau.optim.activation_parameters(net)]
    opt = optimizer(net, setup, lr)
    loss = torch.tensor(math.nan)
    for _ in range(epochs):
        net.train()
        for i in torch.randperm(len(y)).split(64):
            loss = F.cross_entropy(net(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if not math.isfinite(float(loss.detach())):
            break
    net.eval()
    with torch.no_grad():
        accuracy = float((net(x_test).argmax(1) == y_test).float().mean())
    moved = max((float((p.detach() - s).abs().max())
                 for p, s in zip(pau.optim.activation_parameters(net), start)), default=0.0)
    return float(loss.detach()), accuracy, moved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", default="1e-3,1e-2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for lr in (float(v) for v in args.lr.split(",")):
        for setup in ("same", "no-decay", "groups", "relu"):
            begin = time.time()
            results = [run(setup, lr, seed, args.epochs) for seed in range(args.seeds)]
            losses = ", ".join(f"{r[0]:.3g}" for r in results)
            accuracy = ", ".join(f"{100 * r[1]:.1f}" for r in results)
            moved = max(r[2] for r in results)
            print(f"lr {lr:g} {setup:8s}: final loss {losses}; test accuracy % {accuracy}; "
                  f"max coefficient change {moved:.3g} ({time.time() - begin:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
