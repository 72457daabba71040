"""LeNet and VGG-8 as the PAU paper's appendix lists them (Table 7; A.4.2 for CIFAR-10).

Inputs are 32x32 images: the 28x28 (Fashion-)MNIST images resized, as the
paper authors' published training script does (1 channel), or CIFAR-10 as it
is (3 channels). Table 7's layer list and per-layer parameter counts then fix
the geometry: LeNet's unpadded 5x5 convolutions leave a 5x5 map for the
5x5x120 convolution (48,120 parameters, 120 features into the 84-unit linear
layer), and VGG-8's 3x3 convolutions pad by 1 so that its five 2x2 poolings
leave 1x1x512 features for the single linear layer.

For CIFAR-10 the paper (A.4.2) uses "reference implementations" and gives
only the total: 3,918,858 trainable parameters for VGG-8 (50 more with PAU),
not Table 7's network with a 3-channel first layer (9,225,610). ``vgg8_bn``
is our inference of that network: five 3x3 convolutions (64, 128, 256, 512,
512 channels), each followed by batch normalisation, the activation and a
2x2 max-pooling, then one 512 -> 10 linear layer, has exactly 3,918,858
(3,915,914 weights and biases + 2,944 batch-norm scales and shifts), and its
five activation layers give PAU's 50 parameters. The paper does not list the
layers; the order (batch norm before the activation) is our assumption, the
counts do not fix it.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

ActivationFactory = Callable[[], nn.Module]

MODELS = ("lenet", "vgg8", "vgg8_bn", "mobilenetv2", "resnet101", "densenet121")
INPUT_SIZE = 32

# Appendix A.3.1 (1-channel input): (total trainable parameters, of which in the PAU layers).
PAPER_PARAMETER_COUNTS = {"lenet": (61_746, 40), "vgg8": (9_224_508, 50)}
# Appendix A.4.2 (CIFAR-10, 3-channel input): VGG-8 3,918,858 + 50 for PAU.
# MobileNetV2, ResNet-101, DenseNet-121 (models_cifar.py): the same appendix.
PAPER_CIFAR10_PARAMETER_COUNTS = {
    "vgg8_bn": (3_918_908, 50),
    "mobilenetv2": (2_297_282, 360),
    "resnet101": (42_513_970, 1_000),
    "densenet121": (6_957_498, 1_200),
}
ACTIVATION_LAYERS = {
    "lenet": 4,
    "vgg8": 5,
    "vgg8_bn": 5,
    "mobilenetv2": 36,
    "resnet101": 100,
    "densenet121": 120,
}


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
    """LeNet of Table 7: 61,706 weights plus the four activation layers' parameters.

    ``in_channels=3`` (CIFAR-10; not in the paper) widens only the first convolution.
    """

    def __init__(
        self, activation: ActivationFactory, num_classes: int = 10, in_channels: int = 1
    ) -> None:
        spec = [
            nn.Conv2d(in_channels, 6, 5), "act", nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), "act", nn.MaxPool2d(2),
            nn.Conv2d(16, 120, 5), "act", nn.Flatten(),
            nn.Linear(120, 84), "act",
            nn.Linear(84, num_classes),
        ]  # fmt: skip
        super().__init__(*_build(spec, activation))


class VGG8(_Sequential):
    """VGG-8 of Table 7: 9,224,458 weights plus the five activation layers' parameters.

    As in the table, the paired convolutions have no activation between them.
    ``in_channels=3`` (CIFAR-10) widens only the first convolution: 9,225,610
    weights; the paper's CIFAR-10 VGG-8 is :class:`VGG8BN`.
    """

    def __init__(
        self, activation: ActivationFactory, num_classes: int = 10, in_channels: int = 1
    ) -> None:
        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=1)

        spec = [
            conv(in_channels, 64), "act", nn.MaxPool2d(2),
            conv(64, 128), "act", nn.MaxPool2d(2),
            conv(128, 256), conv(256, 256), "act", nn.MaxPool2d(2),
            conv(256, 512), conv(512, 512), "act", nn.MaxPool2d(2),
            conv(512, 512), conv(512, 512), "act", nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(512, num_classes),
        ]  # fmt: skip
        super().__init__(*_build(spec, activation))


class VGG8BN(_Sequential):
    """The CIFAR-10 VGG-8 of appendix A.4.2 as we infer it from its parameter count.

    Five blocks conv 3x3 (padding 1) -> batch norm -> activation -> 2x2
    max-pool with 64, 128, 256, 512, 512 channels, then linear 512 -> 10:
    3,918,858 parameters for 3-channel input, as the paper states (see the
    module docstring for why this layout).
    """

    def __init__(
        self, activation: ActivationFactory, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        spec: list = []
        cin = in_channels
        for cout in (64, 128, 256, 512, 512):
            spec += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), "act"]
            spec.append(nn.MaxPool2d(2))
            cin = cout
        spec += [nn.Flatten(), nn.Linear(512, num_classes)]
        super().__init__(*_build(spec, activation))


def build_model(name: str, activation: ActivationFactory, in_channels: int = 1) -> nn.Module:
    """One of :data:`MODELS` with a fresh ``activation()`` per activation layer.

    ``in_channels``: 1 for (Fashion-)MNIST, 3 for CIFAR-10; inputs are 32x32.
    Every model has ``activation_modules()``. MobileNetV2, ResNet-101 and
    DenseNet-121 are in :mod:`.models_cifar`.
    """
    if name == "lenet":
        return LeNet(activation, in_channels=in_channels)
    if name == "vgg8":
        return VGG8(activation, in_channels=in_channels)
    if name == "vgg8_bn":
        return VGG8BN(activation, in_channels=in_channels)
    from .models_cifar import CIFAR_MODELS  # imports this module: import here, not at the top

    if name in CIFAR_MODELS:
        return CIFAR_MODELS[name](activation, in_channels=in_channels)
    raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")


def paper_parameter_counts(name: str, in_channels: int = 1) -> tuple[int, int] | None:
    """The paper's (total, PAU) parameter counts for this model and input, or None."""
    if in_channels == 1:
        return PAPER_PARAMETER_COUNTS.get(name)
    if in_channels == 3:
        return PAPER_CIFAR10_PARAMETER_COUNTS.get(name)
    return None


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all trainable parameters, those in the activation layers)."""
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    act = sum(
        p.numel() for m in model.activation_modules() for p in m.parameters() if p.requires_grad
    )
    return total, act


def check_parameter_counts(
    name: str, model: nn.Module, activation: str, in_channels: int = 1
) -> tuple[bool, str]:
    """Compare ``model``'s parameter counts with appendix A.3.1 (A.4.2 for 3 channels).

    The paper lists totals with PAU (10 parameters a layer); for other
    activations only the weights (total minus activation parameters) can be
    compared. Returns (matches, a one-line description); (True, a line
    saying so) when the paper has no count for this model and input.
    """
    total, act = count_parameters(model)
    counts = paper_parameter_counts(name, in_channels)
    if counts is None:
        return True, (
            f"{name} with {activation}: {total:,} parameters ({act} in activations); "
            f"the paper gives no count for {in_channels}-channel input"
        )
    paper_total, paper_pau = counts
    paper_weights = paper_total - paper_pau
    ok = total - act == paper_weights
    if activation == "pau":
        ok = ok and total == paper_total and act == paper_pau
        ref = f"paper: {paper_total:,} with {paper_pau} for PAU"
    else:
        ref = f"paper: {paper_weights:,} weights + activation parameters"
    verdict = "matches" if ok else "DIFFERS FROM"
    section = "A.3" if in_channels == 1 else "A.4.2"
    return ok, (
        f"{name} with {activation}: {total:,} parameters ({act} in activations), "
        f"{verdict} appendix {section} ({ref})"
    )
