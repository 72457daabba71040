"""Published numbers from the PAU paper (Molina et al., ICLR 2020), Tables 2 and 3.

Test accuracy in % after 100 epochs, mean ± std over 5 seeds and the best of
the 5 runs, for VGG-8 and LeNet on MNIST and Fashion-MNIST. The paper does
not say which of its two optimisers (Adam lr 0.002, SGD lr 0.01) each entry
used. Activations we do not implement (SLAF, APL, SReLU) are listed for
completeness; GELU and PWLU are not in the table.
"""

from __future__ import annotations

from typing import NamedTuple


class PaperResult(NamedTuple):
    mean: float
    std: float
    best: float


PAPER_EPOCHS = 100
PAPER_SEEDS = 5
PAPER_CIFAR10_EPOCHS = 400  # appendix A.4.1


def paper_epochs(dataset: str) -> int:
    """The paper's number of training epochs for ``dataset``."""
    return PAPER_CIFAR10_EPOCHS if dataset == "cifar10" else PAPER_EPOCHS


# (model, dataset) -> activation -> (mean, std, best), rows in the paper's order.
_COLUMNS: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("vgg8", "mnist"): {
        "relu": (99.17, 0.10, 99.30),
        "relu6": (99.28, 0.04, 99.31),
        "leaky_relu": (99.13, 0.11, 99.27),
        "rrelu": (99.16, 0.13, 99.28),
        "elu": (99.15, 0.09, 99.28),
        "celu": (99.15, 0.09, 99.28),
        "swish": (99.10, 0.06, 99.20),
        "prelu": (99.16, 0.09, 99.25),
        "apl": (99.35, 0.11, 99.50),
        "srelu": (99.15, 0.03, 99.20),
        "pau": (99.30, 0.05, 99.40),
        "rpau": (99.35, 0.04, 99.38),
    },
    ("lenet", "mnist"): {
        "relu": (99.17, 0.05, 99.25),
        "relu6": (99.09, 0.09, 99.22),
        "leaky_relu": (99.10, 0.06, 99.22),
        "rrelu": (99.20, 0.13, 99.38),
        "elu": (99.15, 0.06, 99.22),
        "celu": (99.15, 0.06, 99.22),
        "swish": (99.19, 0.09, 99.29),
        "prelu": (99.14, 0.09, 99.24),
        "apl": (99.18, 0.10, 99.33),
        "srelu": (99.13, 0.14, 99.27),
        "pau": (99.21, 0.04, 99.26),
        "rpau": (99.26, 0.11, 99.42),
    },
    ("vgg8", "fashion-mnist"): {
        "relu": (89.11, 0.43, 89.69),
        "relu6": (89.87, 0.62, 90.38),
        "leaky_relu": (89.37, 0.30, 89.74),
        "rrelu": (88.46, 0.85, 89.32),
        "elu": (89.65, 0.33, 90.06),
        "celu": (89.65, 0.33, 90.06),
        "swish": (88.54, 0.59, 89.36),
        "prelu": (88.82, 0.51, 89.54),
        "slaf": (90.60, 0.00, 90.60),
        "apl": (91.41, 0.48, 92.25),
        "srelu": (89.65, 0.42, 90.31),
        "pau": (91.25, 0.18, 91.56),
        "rpau": (91.23, 0.15, 91.41),
    },
    ("lenet", "fashion-mnist"): {
        "relu": (89.86, 0.32, 90.48),
        "relu6": (89.74, 0.27, 89.96),
        "leaky_relu": (89.74, 0.24, 90.02),
        "rrelu": (89.74, 0.19, 89.88),
        "elu": (89.84, 0.47, 90.25),
        "celu": (89.84, 0.47, 90.25),
        "swish": (89.54, 0.22, 89.89),
        "prelu": (90.09, 0.22, 90.29),
        "slaf": (89.33, 0.28, 89.80),
        "apl": (89.72, 0.30, 90.01),
        "srelu": (89.83, 0.30, 90.28),
        "pau": (90.33, 0.15, 90.62),
        "rpau": (90.20, 0.11, 90.29),
    },
}

TABLE2: dict[tuple[str, str], dict[str, PaperResult]] = {
    column: {act: PaperResult(*cells) for act, cells in rows.items()}
    for column, rows in _COLUMNS.items()
}

# Table 3 (CIFAR-10: 400 epochs, SGD momentum 0.9, batch 64, appendix A.4.1),
# under our model names (models.VGG8BN, models_cifar). Maxout and Mixture, which
# we do not implement, are left out; DenseNet-121 has no Maxout entry anyway.
_TABLE3_ROWS = ("relu", "relu6", "leaky_relu", "rrelu", "elu", "celu", "prelu", "swish",
                "apl", "srelu", "pau", "rpau")  # fmt: skip
_TABLE3: dict[str, list[tuple[float, float, float]]] = {
    "vgg8_bn": [
        (92.32, 0.16, 92.58), (92.36, 0.06, 92.47), (92.43, 0.14, 92.65), (92.32, 0.07, 92.42),
        (91.24, 0.09, 91.33), (91.24, 0.09, 91.33), (92.22, 0.26, 92.51), (91.58, 0.18, 91.86),
        (91.63, 0.13, 91.82), (92.66, 0.27, 93.13), (92.51, 0.16, 92.70), (92.50, 0.09, 92.62),
    ],
    "mobilenetv2": [
        (91.51, 0.28, 91.82), (91.30, 0.23, 91.57), (91.94, 0.12, 92.08), (94.66, 0.16, 94.94),
        (90.43, 0.14, 90.61), (90.69, 0.27, 90.97), (93.54, 0.45, 93.95), (92.04, 0.13, 92.21),
        (93.62, 0.64, 94.50), (94.03, 0.11, 94.25), (94.57, 0.21, 94.90), (94.82, 0.21, 95.13),
    ],
    "resnet101": [
        (95.07, 0.17, 95.36), (95.11, 0.24, 95.29), (95.08, 0.19, 95.29), (95.21, 0.23, 95.51),
        (94.04, 0.14, 94.24), (93.80, 0.36, 94.25), (94.15, 0.39, 94.50), (91.83, 1.61, 92.84),
        (94.12, 0.36, 94.50), (95.24, 0.13, 95.38), (95.16, 0.13, 95.28), (95.34, 0.13, 95.54),
    ],
    "densenet121": [
        (95.36, 0.18, 95.63), (95.33, 0.14, 95.46), (95.42, 0.17, 95.65), (95.00, 0.12, 95.14),
        (90.78, 0.29, 91.23), (90.88, 0.19, 91.08), (94.98, 0.16, 95.15), (93.04, 0.16, 93.32),
        (94.45, 0.23, 94.78), (94.77, 0.24, 95.20), (95.03, 0.07, 95.16), (95.27, 0.10, 95.41),
    ],
}  # fmt: skip
TABLE3: dict[tuple[str, str], dict[str, PaperResult]] = {
    (model, "cifar10"): {act: PaperResult(*cells) for act, cells in zip(_TABLE3_ROWS, column)}
    for model, column in _TABLE3.items()
}


def published(model: str, dataset: str, activation: str) -> PaperResult | None:
    """Table 2's (or for CIFAR-10 Table 3's) entry for this setting, or None (digits, PWLU, ...)."""
    table = TABLE3 if dataset == "cifar10" else TABLE2
    return table.get((model, dataset), {}).get(activation)
