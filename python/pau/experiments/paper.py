"""Published numbers from the PAU paper (Molina et al., ICLR 2020), Table 2.

Test accuracy in % after 100 epochs, mean ± std over 5 seeds and the best of
the 5 runs, for VGG-8 and LeNet on MNIST and Fashion-MNIST. The paper does
not say which of its two optimisers (Adam lr 0.002, SGD lr 0.01) each entry
used. Activations we do not implement (SLAF, APL, SReLU) are listed for
completeness; GELU and PWLU are not in the table.
"""

from __future__ import annotations

from typing import NamedTuple, Optional


class PaperResult(NamedTuple):
    mean: float
    std: float
    best: float


PAPER_EPOCHS = 100
PAPER_SEEDS = 5

# (model, dataset) -> activation -> result. Rows in the paper's order.
_ROWS = {
    #            MNIST VGG-8          MNIST LeNet          F-MNIST VGG-8        F-MNIST LeNet
    "relu":       ((99.17, 0.10, 99.30), (99.17, 0.05, 99.25), (89.11, 0.43, 89.69), (89.86, 0.32, 90.48)),
    "relu6":      ((99.28, 0.04, 99.31), (99.09, 0.09, 99.22), (89.87, 0.62, 90.38), (89.74, 0.27, 89.96)),
    "leaky_relu": ((99.13, 0.11, 99.27), (99.10, 0.06, 99.22), (89.37, 0.30, 89.74), (89.74, 0.24, 90.02)),
    "rrelu":      ((99.16, 0.13, 99.28), (99.20, 0.13, 99.38), (88.46, 0.85, 89.32), (89.74, 0.19, 89.88)),
    "elu":        ((99.15, 0.09, 99.28), (99.15, 0.06, 99.22), (89.65, 0.33, 90.06), (89.84, 0.47, 90.25)),
    "celu":       ((99.15, 0.09, 99.28), (99.15, 0.06, 99.22), (89.65, 0.33, 90.06), (89.84, 0.47, 90.25)),
    "swish":      ((99.10, 0.06, 99.20), (99.19, 0.09, 99.29), (88.54, 0.59, 89.36), (89.54, 0.22, 89.89)),
    "prelu":      ((99.16, 0.09, 99.25), (99.14, 0.09, 99.24), (88.82, 0.51, 89.54), (90.09, 0.22, 90.29)),
    "slaf":       (None,                 None,                 (90.60, 0.00, 90.60), (89.33, 0.28, 89.80)),
    "apl":        ((99.35, 0.11, 99.50), (99.18, 0.10, 99.33), (91.41, 0.48, 92.25), (89.72, 0.30, 90.01)),
    "srelu":      ((99.15, 0.03, 99.20), (99.13, 0.14, 99.27), (89.65, 0.42, 90.31), (89.83, 0.30, 90.28)),
    "pau":        ((99.30, 0.05, 99.40), (99.21, 0.04, 99.26), (91.25, 0.18, 91.56), (90.33, 0.15, 90.62)),
    "rpau":       ((99.35, 0.04, 99.38), (99.26, 0.11, 99.42), (91.23, 0.15, 91.41), (90.20, 0.11, 90.29)),
}  # fmt: skip
_COLUMNS = (("vgg8", "mnist"), ("lenet", "mnist"), ("vgg8", "fashion-mnist"), ("lenet", "fashion-mnist"))

TABLE2: dict[tuple[str, str], dict[str, PaperResult]] = {
    column: {
        act: PaperResult(*cells[i]) for act, cells in _ROWS.items() if cells[i] is not None
    }
    for i, column in enumerate(_COLUMNS)
}


def published(model: str, dataset: str, activation: str) -> Optional[PaperResult]:
    """Table 2's entry for this setting, or None (digits, GELU, PWLU, ...)."""
    return TABLE2.get((model, dataset), {}).get(activation)
