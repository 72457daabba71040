"""LeNet and VGG-8 exactly as the PAU paper's appendix A.3 (Table 7) lists them.

Inputs are 1x32x32 images: the 28x28 (Fashion-)MNIST images resized, as the
paper authors' published training script does. The layer list and per-layer
parameter counts then fix the geometry: LeNet's unpadded 5x5 convolutions
leave a 5x5 map for the 5x5x120 convolution (48,120 parameters, 120 features
into the 84-unit linear layer), and VGG-8's 3x3 convolutions pad by 1 so that
its five 2x2 poolings leave 1x1x512 features for the single linear layer.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

ActivationFactory = Callable[[], nn.Module]

MODELS = ("lenet", "vgg8")
INPUT_SIZE = 32

# Appendix A.3.1: (total trainable parameters, of which in the PAU layers).
PAPER_PARAMETER_COUNTS = {"lenet": (61_746, 40), "vgg8": (9_224_508, 50)}
ACTIVATION_LAYERS = {"lenet": 4, "vgg8": 5}


class _Sequential(nn.Module):
    """A layer stack that remembers which of its layers are activations."""

    def __init__(self, layers: list[nn.Module], activation_indices: list[int]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self._activation_indices = tuple(activation_indices)

    def activation_modules(self) -> list[nn.Module]:
        """The activation layers, in network order."""
        return [self.layers[i] for i in self._activation_indices]

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _build(spec: list, activation: ActivationFactory) -> tuple[list[nn.Module], list[int]]:
    layers: list[nn.Module] = []
    indices: list[int] = []
    for item in spec:
        if item == "act":
            indices.append(len(layers))
            layers.append(activation())
        else:
            layers.append(item)
    return layers, indices


class LeNet(_Sequential):
    """LeNet of Table 7: 61,706 weights plus the four activation layers' parameters."""

    def __init__(self, activation: ActivationFactory, num_classes: int = 10) -> None:
        spec = [
            nn.Conv2d(1, 6, 5), "act", nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), "act", nn.MaxPool2d(2),
            nn.Conv2d(16, 120, 5), "act", nn.Flatten(),
            nn.Linear(120, 84), "act",
            nn.Linear(84, num_classes),
        ]  # fmt: skip
        super().__init__(*_build(spec, activation))


class VGG8(_Sequential):
    """VGG-8 of Table 7: 9,224,458 weights plus the five activation layers' parameters.

    As in the table, the paired convolutions have no activation between them.
    """

    def __init__(self, activation: ActivationFactory, num_classes: int = 10) -> None:
        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=1)

        spec = [
            conv(1, 64), "act", nn.MaxPool2d(2),
            conv(64, 128), "act", nn.MaxPool2d(2),
            conv(128, 256), conv(256, 256), "act", nn.MaxPool2d(2),
            conv(256, 512), conv(512, 512), "act", nn.MaxPool2d(2),
            conv(512, 512), conv(512, 512), "act", nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(512, num_classes),
        ]  # fmt: skip
        super().__init__(*_build(spec, activation))


def build_model(name: str, activation: ActivationFactory) -> _Sequential:
    """``"lenet"`` or ``"vgg8"`` with a fresh ``activation()`` in every activation layer."""
    if name == "lenet":
        return LeNet(activation)
    if name == "vgg8":
        return VGG8(activation)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def count_parameters(model: _Sequential) -> tuple[int, int]:
    """(all trainable parameters, those in the activation layers)."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    act = sum(
        p.numel() for m in model.activation_modules() for p in m.parameters() if p.requires_grad
    )
    return total, act


def check_parameter_counts(name: str, model: _Sequential, activation: str) -> tuple[bool, str]:
    """Compare ``model``'s parameter counts with appendix A.3.1.

    The paper lists totals with PAU (10 parameters a layer); for other
    activations only the weights (total minus activation parameters) can be
    compared. Returns (matches, a one-line description).
    """
    total, act = count_parameters(model)
    paper_total, paper_pau = PAPER_PARAMETER_COUNTS[name]
    paper_weights = paper_total - paper_pau
    ok = total - act == paper_weights
    if activation == "pau":
        ok = ok and total == paper_total and act == paper_pau
        ref = f"paper: {paper_total:,} with {paper_pau} for PAU"
    else:
        ref = f"paper: {paper_weights:,} weights + activation parameters"
    verdict = "matches" if ok else "DIFFERS FROM"
    return ok, (
        f"{name} with {activation}: {total:,} parameters ({act} in activations), "
        f"{verdict} appendix A.3 ({ref})"
    )
