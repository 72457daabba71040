"""Fit PAU coefficients to a target function.

:func:`fit` finds numerator and denominator coefficients so that the rational
function F(x) = P(x) / Q(x) of a given variant (see :mod:`pau.reference`)
approximates a target on an interval in the least-squares sense:

1. linear starts from the Padé linearisation P(x) - y A(x) ≈ y, re-weighted
   by 1 / Q(x) of the previous solution (Sanathanan-Koerner iteration) so
   that they track the true residual rather than the linearised one; for
   "safe" each iteration also takes the sign pattern of A(x) from the last;
   one more with an even A (the same function in every variant);
2. Levenberg-Marquardt refinement of the true objective sum_i w_i (F(x_i) - y_i)^2
   for the variant from these starts, from the polynomial least-squares fit,
   from any user-given starts and, for "safe", from a fit of the smooth
   subproblem A(x) >= 0 (where "safe" and "plain" agree); then a few seeded
   perturbations of the best. The winner is the candidate with the smallest
   error on a grid 8 times denser than the fitting points, so that a bump
   hidden between two fitting points (a "safe" A(x) can change sign there)
   does not win;
3. for ``"plain"``, whose denominator 1 + A(x) may vanish, a penalty keeps
   Q(x) >= 0.05 during refinement, and a candidate with 1 + A(x) <= 0.025
   anywhere in the range (checked on a dense grid, and through the real roots
   of 1 + A for a sign change between grid points) is never chosen; the
   polynomial start has Q = 1, so a valid answer always exists.

Everything runs in float64 on the CPU with plain PyTorch and is
deterministic: the restarts use a fixed seed.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import Tensor

from .reference import VARIANTS, pau_reference

__all__ = ["FitResult", "fit", "evaluate", "approximation_error", "has_pole", "ERROR_POINTS"]

#: Number of uniformly spaced points on which :func:`fit` and the presets
#: measure max / RMS errors (a step of 1e-4 on [-3, 3]).
ERROR_POINTS = 60001

# 1 + A(x) of a "plain" fit must stay above this on the range: a denominator
# that nearly vanishes makes F and its gradients explode under small
# coefficient changes, which is exactly what training does to it.
_PLAIN_MIN_DENOMINATOR = 0.05
_PLAIN_PENALTY = 1e4
_SEED = 20200214

Weight = Union[None, Tensor, Callable[[Tensor], Tensor]]


@dataclass(frozen=True, eq=False)
class FitResult:
    """Coefficients found by :func:`fit` and how well they approximate the target.

    Attributes:
        numerator: float64 tensor (m+1,), a_0..a_m.
        denominator: float64 tensor (n,), b_1..b_n.
        max_error: max |F(x) - f(x)| over ``x_range`` (on :data:`ERROR_POINTS`
            uniform points when fitted to a function, on the samples otherwise).
        rms_error: root mean square of F(x) - f(x) on the same points.
        degrees: (m, n).
        variant: ``"safe"``, ``"abs_sum"`` or ``"plain"``.
        x_range: (lo, hi), the interval fitted.
    """

    numerator: Tensor
    denominator: Tensor
    max_error: float
    rms_error: float
    degrees: tuple[int, int]
    variant: str
    x_range: tuple[float, float]

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate the fitted rational function at ``x`` (any shape)."""
        return evaluate(x, self.numerator, self.denominator, self.variant)


# ----------------------------------------------------------------------------
# Public helpers
# ----------------------------------------------------------------------------


def evaluate(x: Tensor, numerator: Tensor, denominator: Tensor, variant: str = "safe") -> Tensor:
    """F(x) for 1-D coefficient vectors ``numerator`` (m+1,) and ``denominator`` (n,).

    Uses the plain-PyTorch reference; ``x`` may have any shape and keeps its dtype.
    """
    x = torch.as_tensor(x)
    flat = x.reshape(-1)
    num = torch.as_tensor(numerator, dtype=torch.float64).reshape(1, -1)
    den = torch.as_tensor(denominator, dtype=torch.float64).reshape(1, -1)
    return pau_reference(flat, num, den, variant, dim=0).reshape(x.shape)


def approximation_error(
    fn: Callable[[Tensor], Tensor],
    numerator: Tensor,
    denominator: Tensor,
    variant: str = "safe",
    x_range: Sequence[float] = (-3.0, 3.0),
    num_points: int = ERROR_POINTS,
) -> tuple[float, float]:
    """(max, RMS) of F(x) - fn(x) on ``num_points`` uniform points of ``x_range`` (float64)."""
    lo, hi = _check_range(x_range)
    x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
    y = _call_target(fn, x)
    err = evaluate(x, numerator, denominator, variant) - y
    return _max_rms(err)


def has_pole(
    denominator: Tensor,
    x_range: Sequence[float] = (-3.0, 3.0),
    min_value: float = 0.0,
    num_points: int = ERROR_POINTS,
) -> bool:
    """Whether 1 + A(x) of the ``"plain"`` variant falls to ``min_value`` or below on ``x_range``.

    Checks a dense grid and, since a sign change can hide between grid
    points, the real roots of 1 + A(x) in the interval.
    """
    lo, hi = _check_range(x_range)
    den = torch.as_tensor(denominator, dtype=torch.float64).reshape(-1)
    if den.numel() == 0:
        return min_value >= 1.0
    x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
    q = 1.0 + _polyval(torch.cat([den.new_zeros(1), den]), x)
    if not bool(torch.isfinite(q).all()) or float(q.min()) <= min_value:
        return True
    return any(lo <= r <= hi for r in _real_roots(torch.cat([den.new_ones(1), den])))


# ----------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------


def fit(
    fn: Optional[Callable[[Tensor], Tensor]] = None,
    degrees: Sequence[int] = (5, 4),
    variant: str = "safe",
    x_range: Optional[Sequence[float]] = None,
    weight: Weight = None,
    num_points: int = 2001,
    samples: Optional[tuple[Tensor, Tensor]] = None,
    *,
    init: Union[None, tuple[Tensor, Tensor], Sequence[tuple[Tensor, Tensor]]] = None,
    restarts: int = 3,
    max_iter: int = 400,
    value_at_zero: Optional[float] = None,
) -> FitResult:
    """Least-squares fit of a PAU rational function to ``fn`` (or to ``samples``).

    Args:
        fn: target, a callable taking a float64 tensor and returning values of
            the same shape (e.g. ``torch.tanh``). Leave it ``None`` when passing
            ``samples``.
        degrees: (m, n), numerator and denominator degrees.
        variant: ``"safe"``, ``"abs_sum"`` or ``"plain"`` (see :mod:`pau.reference`).
            ``"plain"`` results are guaranteed pole-free on ``x_range``
            (1 + A(x) > 0.025 there; the fit aims for 0.05).
        x_range: (lo, hi) interval to fit; default (-3, 3) for ``fn``, the span
            of the samples for ``samples`` (given explicitly, samples outside
            it are dropped).
        weight: optional non-negative weights of the squared residuals: a
            callable of x, or a tensor with one entry per fitting point.
        num_points: number of uniformly spaced fitting points when ``fn`` is given.
        samples: ``(x, y)`` 1-D tensors to fit instead of ``fn``.
        init: optional ``(numerator, denominator)`` pair, or a list of pairs, used
            as extra starting points (e.g. a fit of lower degree padded with zeros).
        restarts: number of perturbed restarts around the best solution.
        max_iter: iteration limit of each Levenberg-Marquardt run.
        value_at_zero: pin F(0) to this value instead of fitting it (e.g.
            ``float(fn(torch.zeros(1)))``). Every variant has Q(0) = 1, so
            F(0) = a_0 and the pin is the constraint a_0 = value_at_zero: the
            other coefficients are fitted with a_0 held there.

    Returns:
        A :class:`FitResult` with float64 coefficients and the max / RMS error
        (measured on :data:`ERROR_POINTS` uniform points when ``fn`` is given,
        on the samples otherwise; the weight does not enter them).

    Raises:
        TypeError: ``fn`` is not callable, or an argument has the wrong type.
        ValueError: unknown variant, invalid degrees, an empty or non-finite
            range, too few points, a target with non-finite values, or a
            non-finite ``value_at_zero``.
    """
    m, n = _check_degrees(degrees)
    value_at_zero = _check_value_at_zero(value_at_zero)
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}, expected one of {VARIANTS}")
    for name, value, low in (("num_points", num_points, 2), ("restarts", restarts, 0),
                             ("max_iter", max_iter, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")

    if samples is not None:
        if fn is not None:
            raise ValueError("pass either fn or samples=(x, y), not both")
        x, y, (lo, hi) = _check_samples(samples, x_range)
    else:
        if fn is None:
            raise TypeError("fit() needs a target: a callable fn or samples=(x, y)")
        if not callable(fn):
            raise TypeError(f"fn must be callable (e.g. torch.tanh), got {type(fn).__name__}")
        lo, hi = _check_range((-3.0, 3.0) if x_range is None else x_range)
        x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
        y = _call_target(fn, x)

    if x.numel() < m + n + 1:
        raise ValueError(
            f"{x.numel()} fitting points cannot determine {m + n + 1} coefficients "
            f"for degrees ({m}, {n}); use more points"
        )
    w = _check_weight(weight, x)

    with _single_thread():
        problem = _Problem(x, y, w, m, n, variant, (lo, hi), value_at_zero)
        if fn is not None and (weight is None or callable(weight)):
            dense_x = torch.linspace(lo, hi, 8 * (num_points - 1) + 1, dtype=torch.float64)
            problem.set_check_grid(dense_x, _call_target(fn, dense_x),
                                   _check_weight(weight, dense_x))
        theta = problem.solve(
            [problem.from_coefficients(*pair) for pair in _init_pairs(init)], restarts, max_iter
        )
        numerator, denominator = problem.to_coefficients(theta)
        if samples is not None:
            max_error, rms_error = _max_rms(evaluate(x, numerator, denominator, variant) - y)
        else:
            max_error, rms_error = approximation_error(
                fn, numerator, denominator, variant, (lo, hi))
    return FitResult(numerator, denominator, max_error, rms_error, (m, n), variant, (lo, hi))


# ----------------------------------------------------------------------------
# The optimisation problem, in the scaled variable t = x / s, |t| <= 1
# ----------------------------------------------------------------------------


class _Problem:
    """Residuals, Jacobians and starts for one fit.

    Works with t = x / s (s = max |x| on the range) so that the monomials are
    bounded by 1: for degree 16 on [-3, 3], x^16 ~ 4e7 and the unscaled
    Jacobian would lose most of float64's digits.

    ``model`` is the form of Q(t) the residual uses (normally the variant) and
    ``q_min``, when set, adds a penalty that keeps a "plain" Q(t) >= q_min on
    a dense grid. ``a0``, when set, holds alpha_0 = a_0 (unchanged by the
    scaling) at that value: the linear solves move its column to the right-hand
    side and Levenberg-Marquardt only sees the other parameters.
    """

    def __init__(
        self, x: Tensor, y: Tensor, w: Tensor, m: int, n: int, variant: str,
        x_range: tuple[float, float], a0: Optional[float] = None,
    ) -> None:
        self.m, self.n, self.variant = m, n, variant
        self.a0 = a0
        self.scale = max(abs(x_range[0]), abs(x_range[1]))
        self.t_range = (x_range[0] / self.scale, x_range[1] / self.scale)
        self.t = x / self.scale
        self.y = y
        self.sqrt_w = (w / w.sum()).sqrt()
        self.powers = torch.arange(max(m, n) + 1, dtype=torch.float64)
        vander = self.t.unsqueeze(1) ** self.powers
        self.va = vander[:, : m + 1]
        self.vb = vander[:, 1 : n + 1]
        self.model = variant
        self.q_min: Optional[float] = None
        self.check: Optional[tuple[Tensor, Tensor, Tensor]] = None
        self.y_scale = max(1.0, float((self.sqrt_w * y).pow(2).sum()))
        if variant == "plain" and n > 0:
            self._set_bound(_PLAIN_MIN_DENOMINATOR)

    def _set_bound(self, q_min: float) -> None:
        # The penalty grid is denser than the data so that Q cannot slip
        # below the bound between two fitting points unnoticed.
        grid = torch.linspace(*self.t_range, 4 * self.t.numel() + 1, dtype=torch.float64)
        self.q_min = q_min
        self.penalty_vb = grid.unsqueeze(1) ** self.powers[1 : self.n + 1]
        self.penalty_scale = math.sqrt(_PLAIN_PENALTY / grid.numel())

    def bounded_plain(self, q_min: float) -> _Problem:
        """The same data with Q = 1 + A(t) kept >= q_min (q_min = 1: A >= 0, where safe = plain)."""
        other = copy.copy(self)
        other.model = "plain"
        other._set_bound(q_min)
        return other

    # -- model ---------------------------------------------------------------

    def _denominator(self, beta: Tensor) -> tuple[Tensor, Tensor]:
        """Q(t) and dQ/dbeta for the model."""
        if self.model == "abs_sum":
            basis = self.vb.abs()
            return 1.0 + basis @ beta.abs(), basis * torch.sign(beta)
        a_of_t = self.vb @ beta
        if self.model == "safe":
            return 1.0 + a_of_t.abs(), self.vb * torch.sign(a_of_t).unsqueeze(1)
        return 1.0 + a_of_t, self.vb

    def residual(self, theta: Tensor, jacobian: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """Weighted residuals sqrt(w) (F - y), the denominator penalty, and their Jacobian."""
        alpha, beta = theta[: self.m + 1], theta[self.m + 1 :]
        p = self.va @ alpha
        q, dq = self._denominator(beta)
        r = self.sqrt_w * (p / q - self.y)
        jac = None
        if jacobian:
            jac_a = self.va * (self.sqrt_w / q).unsqueeze(1)
            jac_b = -dq * (self.sqrt_w * p / (q * q)).unsqueeze(1)
            jac = torch.cat([jac_a, jac_b], dim=1)
        if self.q_min is not None:
            qg = 1.0 + self.penalty_vb @ beta
            active = (qg < self.q_min).to(torch.float64)
            r = torch.cat([r, self.penalty_scale * active * (self.q_min - qg)])
            if jac is not None:
                jac_pen = -self.penalty_scale * active.unsqueeze(1) * self.penalty_vb
                zeros = jac_pen.new_zeros(jac_pen.shape[0], self.m + 1)
                jac = torch.cat([jac, torch.cat([zeros, jac_pen], dim=1)])
        return r, jac

    def cost(self, theta: Tensor) -> float:
        r, _ = self.residual(theta, jacobian=False)
        c = float(r @ r)
        return c if math.isfinite(c) else math.inf

    def set_check_grid(self, x: Tensor, y: Tensor, w: Tensor) -> None:
        """Points (denser than the fitting points) on which candidates are compared."""
        self.check = (x / self.scale, y, w / w.sum())

    def score(self, theta: Tensor) -> float:
        """Weighted mean squared error of the variant on the check grid; inf if infeasible."""
        if not self.feasible(theta):
            return math.inf
        if self.check is None:
            r, _ = self.residual(theta, jacobian=False)
            r = r[: self.t.numel()]
            c = float(r @ r)
        else:
            t, y, w = self.check
            num, den = self.to_coefficients(theta)
            f = evaluate(t * self.scale, num, den, self.variant)
            c = float((w * (f - y).pow(2)).sum())
        return c if math.isfinite(c) else math.inf

    def feasible(self, theta: Tensor) -> bool:
        """No pole (1 + A > q_min / 2) on the range, for a bounded plain model."""
        if self.q_min is None:
            return True
        _, den = self.to_coefficients(theta)
        lo, hi = (v * self.scale for v in self.t_range)
        return not has_pole(den, (lo, hi), min_value=0.5 * self.q_min)

    def to_coefficients(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        alpha, beta = theta[: self.m + 1], theta[self.m + 1 :]
        s = self.scale
        num = alpha / s ** torch.arange(self.m + 1, dtype=torch.float64)
        den = beta / s ** torch.arange(1, self.n + 1, dtype=torch.float64)
        if self.model == "abs_sum":
            den = den.abs()  # only |b_k| enters Q: report the canonical sign
        return num.clone(), den.clone()

    def from_coefficients(self, numerator: Tensor, denominator: Tensor) -> Tensor:
        num = torch.as_tensor(numerator, dtype=torch.float64).reshape(-1)
        den = torch.as_tensor(denominator, dtype=torch.float64).reshape(-1)
        if num.numel() != self.m + 1 or den.numel() != self.n:
            raise ValueError(
                f"init has {num.numel()} numerator and {den.numel()} denominator coefficients; "
                f"degrees ({self.m}, {self.n}) need {self.m + 1} and {self.n}"
            )
        s = self.scale
        alpha = num * s ** torch.arange(self.m + 1, dtype=torch.float64)
        beta = den * s ** torch.arange(1, self.n + 1, dtype=torch.float64)
        return torch.cat([alpha, beta])

    # -- starts --------------------------------------------------------------

    def _linear_starts(self, even_only: bool = False, iterations: int = 6) -> list[Tensor]:
        """Sanathanan-Koerner iterates of the linearised problem P - y B beta ≈ y.

        B is the model's denominator basis: t^k for "plain", sign(A(t)) t^k
        for "safe" (the sign pattern of the previous iterate; all + at first,
        i.e. the Padé linearisation), |t|^k with beta >= 0 for "abs_sum".
        ``even_only`` keeps only the even powers in A: an even A with
        non-negative coefficients is positive, so "safe", "abs_sum" and
        "plain" agree on it and the start is smooth for all three.
        """
        starts = []
        row_w = self.sqrt_w.clone()
        sign = torch.ones_like(self.t)
        mask = torch.ones(self.n, dtype=torch.float64)
        if even_only:
            mask[0::2] = 0.0  # beta_1, beta_3, ...
        for _ in range(iterations):
            basis = self.vb.abs() if self.model == "abs_sum" else self.vb * sign.unsqueeze(1)
            nonnegative = self.model == "abs_sum" or even_only
            theta = self._weighted_linear_solve(basis * mask, row_w, nonnegative)
            if theta is None:
                break
            starts.append(theta)
            beta = theta[self.m + 1 :]
            a_of_t = basis @ beta
            if self.model == "safe":
                sign = torch.where(self.vb @ beta >= 0, 1.0, -1.0).to(torch.float64)
                a_of_t = (self.vb @ beta).abs()
            row_w = self.sqrt_w / (1.0 + a_of_t).abs().clamp_min(1e-3)
        return starts

    def _weighted_linear_solve(
        self, basis: Tensor, row_w: Tensor, nonnegative: bool
    ) -> Optional[Tensor]:
        keep = basis.abs().sum(dim=0) > 0
        # For beta >= 0, drop the columns that come out negative and solve
        # again: a simple active-set scheme, enough for a start.
        va, rhs = self._free_numerator_columns()
        for _ in range(self.n + 1):
            cols = torch.cat([va, -self.y.unsqueeze(1) * basis[:, keep]], dim=1)
            matrix = cols * row_w.unsqueeze(1)
            norms = matrix.norm(dim=0).clamp_min(1e-300)
            sol = torch.linalg.lstsq(matrix / norms, (row_w * rhs).unsqueeze(1),
                                     driver="gelsd").solution.squeeze(1) / norms
            if not bool(torch.isfinite(sol).all()):
                return None
            sol = self._with_a0(sol)
            beta = torch.zeros(self.n, dtype=torch.float64)
            beta[keep] = sol[self.m + 1 :]
            if not nonnegative or bool((beta >= 0).all()):
                break
            keep &= beta > 0
        return torch.cat([sol[: self.m + 1], beta])

    def _polynomial_start(self) -> Tensor:
        va, rhs = self._free_numerator_columns()
        matrix = va * self.sqrt_w.unsqueeze(1)
        alpha = torch.linalg.lstsq(matrix, (self.sqrt_w * rhs).unsqueeze(1),
                                   driver="gelsd").solution.squeeze(1)
        return torch.cat([self._with_a0(alpha), alpha.new_zeros(self.n)])

    # -- the pinned a_0 ------------------------------------------------------

    def _free_numerator_columns(self) -> tuple[Tensor, Tensor]:
        """The numerator's free Vandermonde columns and the right-hand side y - a_0."""
        if self.a0 is None:
            return self.va, self.y
        return self.va[:, 1:], self.y - self.a0  # the column of a_0 is all ones

    def _with_a0(self, free: Tensor) -> Tensor:
        """Parameters from the free ones (all of them when a_0 is not pinned)."""
        if self.a0 is None:
            return free
        return torch.cat([free.new_full((1,), self.a0), free])

    def pin(self, theta: Tensor) -> Tensor:
        """``theta`` with alpha_0 set to the pinned a_0 (unchanged when none)."""
        return theta if self.a0 is None else self._with_a0(theta[1:])

    def refine(self, theta: Tensor, max_iter: int) -> Tensor:
        """Levenberg-Marquardt from ``theta`` on the parameters that are free."""
        if self.a0 is None:
            return _levenberg_marquardt(self.residual, theta, max_iter)[0]

        def residual(free: Tensor, jacobian: bool = True) -> tuple[Tensor, Optional[Tensor]]:
            r, jac = self.residual(self._with_a0(free), jacobian)
            return r, (None if jac is None else jac[:, 1:])

        free, _ = _levenberg_marquardt(residual, self.pin(theta)[1:], max_iter)
        return self._with_a0(free)

    def _nudge(self, theta: Tensor) -> Tensor:
        """Replace exactly-zero denominator coefficients by a small positive value.

        At beta_k = 0, sign(beta_k) (abs_sum) or, when all of beta is 0,
        sign(A) (safe) vanish, and so does the gradient in beta: the
        refinement could never move away from them.
        """
        if self.model not in ("safe", "abs_sum"):
            return theta
        beta = theta[self.m + 1 :]
        if self.model == "abs_sum":
            beta = beta.abs()
        elif bool((beta != 0).any()):
            return theta
        beta = torch.where(beta == 0, torch.full_like(beta, 1e-4), beta)
        return torch.cat([theta[: self.m + 1], beta])

    def _best_linear(self, count: int, even_only: bool = False) -> list[Tensor]:
        # Only the best few linear iterates are worth refining.
        return sorted(self._linear_starts(even_only), key=self.cost)[:count]

    # -- driver --------------------------------------------------------------

    def solve(self, inits: list[Tensor], restarts: int, max_iter: int) -> Tensor:
        poly = self._polynomial_start()
        if self.n == 0:
            return poly  # linear least squares is already the optimum
        starts = [self.pin(theta) for theta in inits]
        starts += self._best_linear(2)
        starts += self._best_linear(1, even_only=True)
        starts.append(poly)
        if self.model == "safe":
            # Where the optimum has A >= 0 on the range (smooth targets), safe
            # equals plain, a smooth problem; the safe objective itself has a
            # kink wherever A changes sign, on which Levenberg-Marquardt crawls.
            smooth = self.bounded_plain(1.0)
            for theta in smooth._best_linear(1) + smooth._best_linear(1, even_only=True):
                starts.append(smooth.refine(theta, max_iter))

        # Candidates are refined on the fitting points but chosen by their
        # error on the denser check grid: a "safe" fit can hide a sign change
        # of A, and so a small bump of F, between two fitting points.
        generator = torch.Generator().manual_seed(_SEED)
        candidates = [poly] + [self._nudge(theta) for theta in starts]
        best, best_score = poly, math.inf
        for i in range(len(starts) + restarts):
            if best_score <= 1e-26 * self.y_scale:
                break  # exact already: nothing left to gain
            if i < len(starts):
                theta = candidates[i + 1]
            else:
                noise = torch.randn(best.numel(), generator=generator, dtype=torch.float64)
                spread = 0.1 * (i - len(starts) + 1)
                theta = self._nudge(best * (1 + spread * noise) + 1e-3 * spread * noise.flip(0))
                theta = self.pin(theta)
            refined = self.refine(theta, max_iter)
            for candidate in (refined, theta) if i < len(starts) else (refined,):
                score = self.score(candidate)
                if score < best_score:
                    best, best_score = candidate, score
        # If nothing was feasible (not seen in practice), the polynomial
        # start, with A = 0, is pole-free by construction.
        return best


def _levenberg_marquardt(
    residual: Callable[[Tensor, bool], tuple[Tensor, Optional[Tensor]]],
    theta: Tensor,
    max_iter: int,
    tol: float = 1e-13,
) -> tuple[Tensor, float]:
    """Minimise ||r(theta)||^2 with Levenberg-Marquardt (Nielsen's damping update).

    Each step solves the damped normal equations as a least-squares problem
    on the stacked matrix [J; sqrt(lambda D)], which avoids squaring the
    condition number of J. D is the running maximum of diag(J^T J)
    (Moré's scaling), so the damping is invariant to column scaling.
    """
    r, jac = residual(theta, True)
    cost = float(r @ r)
    if not math.isfinite(cost):
        return theta, math.inf
    lam, nu = 1e-3, 2.0
    diag = torch.zeros(theta.numel(), dtype=torch.float64)
    stalls = 0
    for _ in range(max_iter):
        diag = torch.maximum(diag, (jac * jac).sum(dim=0))
        d = diag.clamp_min(1e-12 * float(diag.max().clamp_min(1e-300)))
        aug = torch.cat([jac, torch.diag((lam * d).sqrt())])
        rhs = torch.cat([-r, r.new_zeros(theta.numel())])
        # The damping rows give aug full column rank, so plain QR (gels) suffices.
        step = torch.linalg.lstsq(aug, rhs.unsqueeze(1), driver="gels").solution.squeeze(1)
        if not bool(torch.isfinite(step).all()):
            break
        new_theta = theta + step
        new_r, new_jac = residual(new_theta, True)
        new_cost = float(new_r @ new_r)
        # Predicted decrease of the linear model: -(2 g.step + |J step|^2).
        js = jac @ step
        predicted = -(2.0 * float(r @ js) + float(js @ js))
        actual = cost - new_cost
        if math.isfinite(new_cost) and actual > 0 and predicted > 0:
            rho = actual / predicted
            theta, r, jac = new_theta, new_r, new_jac
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
            nu = 2.0
            small = actual <= tol * cost
            cost = new_cost
            stalls = stalls + 1 if small else 0
            if stalls >= 3 or cost == 0.0:
                break
        else:
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                break
    return theta, cost


# ----------------------------------------------------------------------------
# Validation and small numerics
# ----------------------------------------------------------------------------


def _check_degrees(degrees: Sequence[int]) -> tuple[int, int]:
    try:
        m, n = degrees
    except (TypeError, ValueError):
        raise ValueError(f"degrees must be a pair of ints (m, n), got {degrees!r}") from None
    if any(not isinstance(d, int) or isinstance(d, bool) for d in (m, n)):
        raise ValueError(f"degrees must be a pair of ints (m, n), got {degrees!r}")
    if m < 0 or n < 0:
        raise ValueError(f"degrees must be non-negative, got (m, n) = ({m}, {n})")
    return m, n


def _check_value_at_zero(value: object) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"pau.fit: value_at_zero must be a number or None, got {type(value).__name__}"
        )
    if not math.isfinite(float(value)):
        raise ValueError(f"pau.fit: value_at_zero must be finite, got {value!r}")
    return float(value)


def _check_range(x_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in x_range)
    except (TypeError, ValueError):
        raise ValueError(f"x_range must be a pair of numbers (lo, hi), got {x_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"x_range must be finite, got ({lo}, {hi})")
    if not lo < hi:
        raise ValueError(f"x_range is empty: need lo < hi, got ({lo}, {hi})")
    return lo, hi


def _check_samples(
    samples: tuple[Tensor, Tensor], x_range: Optional[Sequence[float]]
) -> tuple[Tensor, Tensor, tuple[float, float]]:
    try:
        x, y = samples
    except (TypeError, ValueError):
        raise TypeError("samples must be a pair of tensors (x, y)") from None
    x = torch.as_tensor(x, dtype=torch.float64).reshape(-1)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"samples x and y differ in size: {x.numel()} vs {y.numel()}")
    if not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("samples contain non-finite values (NaN or inf)")
    if x_range is not None:
        lo, hi = _check_range(x_range)
        inside = (x >= lo) & (x <= hi)
        x, y = x[inside], y[inside]
    if x.numel() < 2 or float(x.min()) == float(x.max()):
        raise ValueError("samples must contain at least two distinct x values in the range")
    if x_range is None:
        lo, hi = float(x.min()), float(x.max())
    return x, y, (lo, hi)


def _init_pairs(init: object) -> list[tuple[Tensor, Tensor]]:
    if init is None:
        return []
    if not isinstance(init, (tuple, list)):
        raise TypeError("init must be a (numerator, denominator) pair or a list of such pairs")
    is_pair = len(init) == 2 and not any(isinstance(c, (tuple, list)) and len(c) == 2
                                         and isinstance(c[0], (Tensor, list, tuple)) for c in init)
    return [tuple(init)] if is_pair else [tuple(pair) for pair in init]


def _call_target(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    y = torch.as_tensor(fn(x), dtype=torch.float64)
    if y.shape != x.shape:
        raise ValueError(f"fn returned shape {tuple(y.shape)} for input shape {tuple(x.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("fn returned non-finite values (NaN or inf) on the range")
    return y


def _check_weight(weight: Weight, x: Tensor) -> Tensor:
    if weight is None:
        return torch.ones_like(x)
    w = weight(x) if callable(weight) else weight
    w = torch.as_tensor(w, dtype=torch.float64).reshape(-1)
    if w.shape != x.shape:
        raise ValueError(f"weight has {w.numel()} entries, expected one per point ({x.numel()})")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weight must be finite, non-negative and not all zero")
    return w


_THREADS_LOCK = threading.Lock()
_THREADS_USERS = 0
_THREADS_SAVED = 1


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch single-threaded for the duration.

    The matrices here are small (a few thousand rows, at most ~35 columns):
    intra-op threads cost more than they save, and on a busy machine they
    make each solve tens of times slower. One thread also makes the result
    independent of the thread count. The count is shared by the whole
    process, so concurrent fits share one save / restore.
    """
    global _THREADS_USERS, _THREADS_SAVED
    with _THREADS_LOCK:
        if _THREADS_USERS == 0:
            _THREADS_SAVED = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS_USERS += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS -= 1
            if _THREADS_USERS == 0:
                torch.set_num_threads(_THREADS_SAVED)


def _max_rms(err: Tensor) -> tuple[float, float]:
    return float(err.abs().max()), float(err.pow(2).mean().sqrt())


def _polyval(coefficients: Tensor, x: Tensor) -> Tensor:
    """sum_j c_j x^j by Horner's rule."""
    out = torch.zeros_like(x)
    for c in coefficients.flip(0):
        out = out * x + c
    return out


def _real_roots(coefficients: Tensor, imag_tol: float = 1e-9) -> list[float]:
    """Real roots of sum_j c_j x^j, from the companion matrix."""
    c = coefficients.clone()
    while c.numel() > 1 and float(c[-1]) == 0.0:
        c = c[:-1]
    degree = c.numel() - 1
    if degree < 1:
        return []
    companion = torch.zeros(degree, degree, dtype=torch.float64)
    companion[1:, :-1] = torch.eye(degree - 1, dtype=torch.float64)
    companion[:, -1] = -c[:-1] / c[-1]
    roots = torch.linalg.eigvals(companion)
    real = roots.real[roots.imag.abs() <= imag_tol * roots.abs().clamp_min(1.0)]
    return [float(v) for v in real]
