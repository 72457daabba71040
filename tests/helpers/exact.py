"""High-precision evaluation of PAU (200 significant decimal digits, no overflow)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import MAX_EMAX, MIN_EMIN, Decimal, localcontext

import torch

HIGH_PRECISION = 200


def exact_pau(
    x: float, numerator: Sequence[float], denominator: Sequence[float], variant: str
) -> tuple[Decimal, Decimal, list[Decimal], list[Decimal]]:
    """F(x), dF/dx, dF/da_j, dF/db_k in 200-digit decimal arithmetic.

    The float inputs convert exactly; every operation rounds to 200 digits and
    the exponent range is practically unbounded, so for these tests the results
    are exact (sign(0) = 0, as torch.abs's gradient).
    """
    with localcontext() as ctx:
        ctx.prec = HIGH_PRECISION
        ctx.Emax = MAX_EMAX
        ctx.Emin = MIN_EMIN
        xd = Decimal(x)
        a = [Decimal(c) for c in numerator]
        b = [Decimal(c) for c in denominator]
        zero = Decimal(0)
        p = sum((aj * xd**j for j, aj in enumerate(a)), zero)
        dp = sum((j * aj * xd ** (j - 1) for j, aj in enumerate(a) if j), zero)
        big_a = sum((bk * xd ** (k + 1) for k, bk in enumerate(b)), zero)
        dbig_a = sum(((k + 1) * bk * xd**k for k, bk in enumerate(b)), zero)

        def sign(v: Decimal) -> int:
            return (v > 0) - (v < 0)

        if variant == "safe":
            q = 1 + abs(big_a)
            dq = sign(big_a) * dbig_a
            dq_db = [sign(big_a) * xd ** (k + 1) for k in range(len(b))]
        elif variant == "abs_sum":
            q = 1 + sum((abs(bk * xd ** (k + 1)) for k, bk in enumerate(b)), zero)
            dq = sum((sign(xd) * (k + 1) * abs(bk) * abs(xd**k) for k, bk in enumerate(b)), zero)
            dq_db = [sign(bk) * abs(xd ** (k + 1)) for k, bk in enumerate(b)]
        else:
            q = 1 + big_a
            dq = dbig_a
            dq_db = [xd ** (k + 1) for k in range(len(b))]
        f = p / q
        df_dx = (dp - f * dq) / q
        df_da = [xd**j / q for j in range(len(a))]
        df_db = [-f / q * c for c in dq_db]
        return +f, +df_dx, df_da, df_db


def to_dtype_float(v: Decimal, dtype: torch.dtype) -> float:
    """The value rounded to ``dtype`` (as a Python float); +-inf where it overflows ``dtype``."""
    as_float = float(v)  # correctly rounded; +-inf beyond float64's range
    return torch.tensor(as_float, dtype=torch.float64).to(dtype).item()
