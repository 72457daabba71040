"""The other CIFAR-10 networks of the PAU paper's Table 3: MobileNetV2, ResNet-101, DenseNet-121.

Appendix A.4.2 says the networks were "taken from reference implementations
in PyTorch" and gives only their sizes: MobileNetV2 2,296,922 trainable
parameters (360 more with PAU), ResNet-101 42,512,970 (+1,000), DenseNet-121
6,956,298 (+1,200). Those totals are the ones of the widely used CIFAR-10
adaptations of the three ImageNet architectures (32x32 input: a 3x3 stem
convolution with stride 1 and no stem pooling, 4x4 average pooling before
one linear layer), and the PAU counts match one activation layer, 10
coefficients each, per place the reference code applies a ReLU: 36, 100 and
120. We wrote the three networks from their published descriptions with that
layout; the tests check all six counts. Where the reference code calls one
ReLU function several times, each call site gets its own activation module
here, as the paper's PAU counts require.

Details of the layouts (ours to state, as the paper states none):

* MobileNetV2 (Sandler et al. 2018): stem 3x3 conv to 32 channels; inverted
  residual blocks (expansion, channels, repeats, first stride) (1, 16, 1, 1),
  (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
  (6, 320, 1, 1) (the second group's stride is 1 instead of ImageNet's 2,
  for 32x32 inputs); every block expands with a 1x1 convolution (also at
  expansion 1), has a 3x3 depthwise convolution and a linear 1x1 projection;
  stride-1 blocks add a shortcut (a 1x1 convolution with batch norm when the
  channel count changes); then 1x1 conv to 1280, 4x4 average pool, linear.
* ResNet-101 (He et al. 2016): stem 3x3 conv to 64; bottleneck blocks
  (1x1, 3x3, 1x1 with 4x expansion) in stages of 3, 4, 23, 3 blocks with
  64, 128, 256, 512 planes, strides 1, 2, 2, 2 (on the 3x3), projection
  shortcuts (1x1 conv + batch norm) where the shape changes; the activation
  after the residual sum; 4x4 average pool, linear 2048 -> 10.
* DenseNet-121 (Huang et al. 2017): growth rate 32, stem 3x3 conv to 64;
  dense blocks of 6, 12, 24, 16 layers (BN, act, 1x1 conv to 128, BN, act,
  3x3 conv to 32, output concatenated in front of the input), transitions
  halving the channels (BN, act, 1x1 conv, 2x2 average pool); final BN, act,
  4x4 average pool, linear.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .models import ActivationFactory


class _ActivationsMixin:
    """Collects the activation modules in creation order (= network order here)."""

    def _init_activations(self, factory: ActivationFactory) -> None:
        self._factory = factory
        self._acts: list[nn.Module] = []

    def _act(self) -> nn.Module:
        module = self._factory()
        self._acts.append(module)
        return module

    def activation_modules(self) -> list[nn.Module]:
        """The activation layers, in network order."""
        return list(self._acts)


def _bn_conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # Bias-free: every convolution here is followed by batch norm.
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)


# ---------------------------------------------------------------- MobileNetV2


class _InvertedResidual(nn.Module):
    def __init__(self, owner: MobileNetV2, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = expansion * cin
        self.stride = stride
        self.expand, self.bn1, self.act1 = (
            _bn_conv(cin, hidden, 1),
            nn.BatchNorm2d(hidden),
            owner._act(),
        )
        self.depthwise = _bn_conv(hidden, hidden, 3, stride, groups=hidden)
        self.bn2, self.act2 = nn.BatchNorm2d(hidden), owner._act()
        self.project, self.bn3 = _bn_conv(hidden, cout, 1), nn.BatchNorm2d(cout)
        self.shortcut: nn.Module | None = None
        if stride == 1:
            self.shortcut = (
                nn.Sequential(_bn_conv(cin, cout, 1), nn.BatchNorm2d(cout))
                if cin != cout
                else nn.Identity()
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.expand(x)))
        out = self.act2(self.bn2(self.depthwise(out)))
        out = self.bn3(self.project(out))  # linear bottleneck: no activation
        return out + self.shortcut(x) if self.shortcut is not None else out


class MobileNetV2(_ActivationsMixin, nn.Module):
    """CIFAR-10 MobileNetV2: 2,296,922 parameters (36 activation layers)."""

    CONFIG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(
        self, activation: ActivationFactory, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self._init_activations(activation)
        self.stem, self.bn1, self.act1 = (
            _bn_conv(in_channels, 32, 3),
            nn.BatchNorm2d(32),
            self._act(),
        )
        blocks, cin = [], 32
        for expansion, cout, repeats, stride in self.CONFIG:
            for i in range(repeats):
                blocks.append(
                    _InvertedResidual(self, cin, cout, expansion, stride if i == 0 else 1)
                )
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head, self.bn2, self.act2 = _bn_conv(320, 1280, 1), nn.BatchNorm2d(1280), self._act()
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.stem(x)))
        out = self.act2(self.bn2(self.head(self.blocks(out))))
        return self.linear(nn.functional.avg_pool2d(out, 4).flatten(1))


# ---------------------------------------------------------------- ResNet-101


class _Bottleneck(nn.Module):
    EXPANSION = 4

    def __init__(self, owner: ResNet101, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.EXPANSION
        self.conv1, self.bn1, self.act1 = (
            _bn_conv(cin, planes, 1),
            nn.BatchNorm2d(planes),
            owner._act(),
        )
        self.conv2 = _bn_conv(planes, planes, 3, stride)
        self.bn2, self.act2 = nn.BatchNorm2d(planes), owner._act()
        self.conv3, self.bn3 = _bn_conv(planes, cout, 1), nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            nn.Sequential(_bn_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.act3 = owner._act()  # after the residual sum

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return self.act3(self.bn3(self.conv3(out)) + self.shortcut(x))


class ResNet101(_ActivationsMixin, nn.Module):
    """CIFAR-10 ResNet-101: 42,512,970 parameters (100 activation layers)."""

    STAGES = ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2))

    def __init__(
        self, activation: ActivationFactory, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self._init_activations(activation)
        self.stem, self.bn1, self.act1 = (
            _bn_conv(in_channels, 64, 3),
            nn.BatchNorm2d(64),
            self._act(),
        )
        blocks, cin = [], 64
        for planes, repeats, stride in self.STAGES:
            for i in range(repeats):
                blocks.append(_Bottleneck(self, cin, planes, stride if i == 0 else 1))
                cin = planes * _Bottleneck.EXPANSION
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(self.act1(self.bn1(self.stem(x))))
        return self.linear(nn.functional.avg_pool2d(out, 4).flatten(1))


# ---------------------------------------------------------------- DenseNet-121


class _DenseLayer(nn.Module):
    def __init__(self, owner: DenseNet121, cin: int, growth: int):
        super().__init__()
        self.bn1, self.act1, self.conv1 = (
            nn.BatchNorm2d(cin),
            owner._act(),
            _bn_conv(cin, 4 * growth, 1),
        )
        self.bn2, self.act2 = nn.BatchNorm2d(4 * growth), owner._act()
        self.conv2 = _bn_conv(4 * growth, growth, 3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        return torch.cat([out, x], 1)


class _Transition(nn.Module):
    def __init__(self, owner: DenseNet121, cin: int, cout: int):
        super().__init__()
        self.bn, self.act, self.conv = nn.BatchNorm2d(cin), owner._act(), _bn_conv(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(self.conv(self.act(self.bn(x))), 2)


class DenseNet121(_ActivationsMixin, nn.Module):
    """CIFAR-10 DenseNet-121 (growth 32): 6,956,298 parameters (120 activation layers)."""

    BLOCKS = (6, 12, 24, 16)
    GROWTH = 32

    def __init__(
        self, activation: ActivationFactory, num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        self._init_activations(activation)
        g = self.GROWTH
        channels = 2 * g
        self.stem = _bn_conv(in_channels, channels, 3)
        stages: list[nn.Module] = []
        for i, layers in enumerate(self.BLOCKS):
            for _ in range(layers):
                stages.append(_DenseLayer(self, channels, g))
                channels += g
            if i < len(self.BLOCKS) - 1:
                stages.append(_Transition(self, channels, channels // 2))
                channels //= 2
        self.features = nn.Sequential(*stages)
        self.bn, self.act = nn.BatchNorm2d(channels), self._act()
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn(self.features(self.stem(x))))
        return self.linear(nn.functional.avg_pool2d(out, 4).flatten(1))


CIFAR_MODELS = {"mobilenetv2": MobileNetV2, "resnet101": ResNet101, "densenet121": DenseNet121}
# Appendix A.4.2: (total with PAU, PAU parameters).
PAPER_COUNTS = {
    "mobilenetv2": (2_296_922 + 360, 360),
    "resnet101": (42_512_970 + 1_000, 1_000),
    "densenet121": (6_956_298 + 1_200, 1_200),
}
