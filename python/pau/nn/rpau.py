"""The Randomized Padé Activation Unit module, :class:`RPAU` (PAU paper Eq. 3).

In training every coefficient c of every input element is perturbed,
c' = c * (1 + e) with e = alpha * (2u - 1), by :func:`pau.functional.rpau`;
in eval mode RPAU is PAU (the same operator, bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Union

import torch
from torch import Tensor

from .. import _C  # noqa: F401  (registers torch.ops.pau)
from .._checks import channel_dim
from ..functional._rpau import check_alpha, draw_seed_offset
from .pau import PAU, Init

__all__ = ["RPAU"]

# Monte Carlo draws of the coefficient noise for noise_band; a fixed seed makes
# a plot reproducible.
_BAND_DRAWS = 256
_BAND_SEED = 0


class RPAU(PAU):
    """Randomized Padé Activation Unit (PAU paper Eq. 3).

    Training mode: each coefficient c becomes c * (1 + e), e ~ U(-alpha, alpha),
    drawn independently per coefficient and per input element, from a seed
    drawn from the default CPU generator at every call (``torch.manual_seed``
    makes runs reproducible; two calls differ). Eval mode: exactly :class:`PAU`.

    Args:
        degrees, variant, init, groups, dim: as for :class:`PAU`.
        alpha: noise half-width, in [0, 1): a float, or a tensor broadcastable to
            (groups, m+1+n) (per coefficient a_0..a_m, b_1..b_n, optionally per
            group). Kept as a buffer (saved in the state_dict, not trained) and
            checked here and when a state_dict is loaded. The CPU operator
            raises for an alpha outside [0, 1); the CUDA one never reads alpha
            on the host (no synchronisation) and gives NaN for such a group.
    """

    config_names = ("degrees", "variant", "dim", "alpha")

    def __init__(
        self,
        degrees: Sequence[int] = (5, 4),
        variant: str = "safe",
        init: Init = "leaky_relu",
        alpha: Union[float, Tensor] = 0.01,
        groups: int = 1,
        dim: int = 1,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__(degrees, variant, init, groups, dim, device, dtype)
        m, n = self.degrees
        alpha_t = check_alpha(alpha, groups, m + 1 + n)
        # Beside the coefficients, also when they were made under a default
        # device (`with torch.device("meta")`) rather than device=.
        alpha_t = alpha_t.to(self.numerator.device, dtype or torch.get_default_dtype())
        self.register_buffer("alpha", alpha_t)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        # The CUDA operator never reads alpha on the host (no stream
        # synchronisation per call) and turns an unusable alpha into NaN
        # results: a loaded alpha is checked here, once, with a clear error.
        alpha = state_dict.get(prefix + "alpha")
        if isinstance(alpha, Tensor):
            m, n = self.degrees
            check_alpha(alpha, self.groups, m + 1 + n)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """F(x) with fresh coefficient noise per element in training mode, PAU's F(x) in eval."""
        dim = channel_dim(x, self.dim, self.groups, "RPAU")
        if not self.training:
            return torch.ops.pau.forward(x, self.numerator, self.denominator, self.variant, dim)
        return torch.ops.pau.rpau_forward(x, self.numerator, self.denominator, self.alpha,
                                          draw_seed_offset(), self.variant, dim)

    def extra_repr(self) -> str:
        if self.alpha.numel() == 1 and not self.alpha.is_meta:
            alpha = f"{self.alpha.item():.6g}"
        else:
            alpha = tuple(self.alpha.shape)
        return f"{super().extra_repr()}, alpha={alpha}"

    def describe(self) -> str:
        return "R" + super().describe()

    def noise_band(self, group: int, x: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """Pointwise min and max of F over 256 random draws of the coefficient noise.

        Every coefficient c becomes c (1 + e), e ~ U(-alpha, alpha),
        independently (PAU paper Eq. 3): the band is what one training forward
        can output. None when alpha is 0 everywhere.
        """
        if not float(self.alpha.max()) > 0:
            return None
        num = self.numerator.detach().to("cpu", torch.float64)[group]
        den = self.denominator.detach().to("cpu", torch.float64)[group]
        count = num.numel() + den.numel()
        alpha = self.alpha.detach().to("cpu", torch.float64).expand(self.groups, count)[group]
        gen = torch.Generator().manual_seed(_BAND_SEED)
        u = torch.rand(_BAND_DRAWS, count, dtype=torch.float64, generator=gen)
        factor = 1 + alpha * (2 * u - 1)
        factor[0] = 1  # include the unperturbed function
        coefficients = torch.cat([num, den]) * factor
        values = self.reference(
            x,
            {
                "numerator": coefficients[:, : num.numel()],
                "denominator": coefficients[:, num.numel() :],
            },
        )
        return values.min(1).values, values.max(1).values
