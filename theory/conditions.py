"""The convergence conditions of Sec. 3 derived from the eigen-decomposition (Eq. 9-15).

All results are SymPy objects derived from the effective curvatures lambda~(lambda, alpha) of
``mamlconv.theory.quadratic.mode_curvature`` (surrogate lambda - alpha lambda^2, exact
lambda(1 - alpha lambda)^2, ...); nothing here is typed in except the symbols.

- Eq. 9: the eigenvalues of H - alpha H^2 are lambda_i - alpha lambda_i^2 (any orthogonal P).
- Eq. 10-11: lambda~ >= 0 iff alpha <= 1/lambda (surrogate; exact MAML: every alpha).
- Eq. 12-14: |1 - beta c| < 1 iff 0 < beta < 2/c, an OPEN interval (Eq. 15's <= is wrong there;
  and at alpha = 1/lambda the mode is flat, factor 1, and does not converge).
- Sec. 3.2: alpha = 0 gives GD's 2/lambda, bound by lambda_max; beta_c -> oo as alpha -> 1/lambda.
- Bound near alpha_c, derived: beta_c(alpha_c) >= 8/lambda_max = 4 x (2/lambda_max) for the
  surrogate; exact MAML at the same alpha = 1/lambda_max: >= 27/(2 lambda_max) = 6.75 x GD.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import sympy as sp

from mamlconv.theory.generic import Identity
from mamlconv.theory.quadratic import check_model, mode_curvature
from mamlconv.theory.symbols import alpha, beta, curv, lam, lam_max, lam_pos


def alpha_turning_point(model: str, *, steps: int = 1) -> sp.Expr:
    """The alpha at which a mode of eigenvalue lambda > 0 first turns to negative curvature.

    lambda~(lambda, alpha) is a polynomial in alpha; it turns negative at its smallest positive
    root of ODD multiplicity (an even root only touches zero). Surrogate and first-order with
    odd k: 1/lambda (paper Eq. 10-11); exact MAML (root 1/lambda of multiplicity 2k) and
    first-order with even k: never, ``sympy.oo``. Returned as an expression in ``lam``
    (to be evaluated only for lambda > 0).
    """
    check_model(model, steps)
    return _alpha_turning_point(model, int(steps))


@cache
def _alpha_turning_point(model: str, steps: int) -> sp.Expr:
    curvature = mode_curvature(model, steps=steps).subs(lam, lam_pos)
    # At alpha = 0 every model is gradient descent: lambda~ = lambda > 0.
    assert sp.simplify(curvature.subs(alpha, 0) - lam_pos) == 0
    roots = sp.roots(sp.Poly(curvature, alpha))
    turning = [r for r, mult in roots.items() if mult % 2 == 1 and r.is_positive]
    if not turning:
        return sp.oo
    return sp.Min(*turning).subs(lam_pos, lam)


def curvature_nonnegative_set(model: str, *, steps: int = 1) -> sp.Set:
    """{alpha >= 0 : lambda~(lambda, alpha) >= 0} for lambda > 0 (paper Eq. 9-11).

    Surrogate: Interval(0, 1/lambda), i.e. alpha <= 1/lambda (Eq. 11, non-strict: at
    alpha = 1/lambda the mode is flat). Exact: [0, oo).
    """
    check_model(model, steps)
    a = sp.Symbol("alpha", real=True)  # solved over the reals, then cut to alpha >= 0
    curvature = mode_curvature(model, steps=steps).subs({lam: lam_pos, alpha: a})
    solution = sp.solveset(curvature >= 0, a, sp.S.Reals)
    if isinstance(solution, sp.Interval):  # SymPy leaves Intersection(...) unsimplified
        start_below_zero = bool(solution.start < 0)
        return sp.Interval(
            sp.Max(solution.start, 0),
            solution.end,
            solution.left_open and not start_below_zero,
            solution.right_open,
        )
    return solution.intersect(sp.Interval(0, sp.oo))


def beta_stable_set() -> sp.Set:
    """{beta > 0 : |1 - beta c| < 1} for a mode of positive curvature c (paper Eq. 12-14).

    The result is the OPEN interval (0, 2/c): beta = 2/c is excluded (Eq. 15 prints <=, wrong).
    """
    b = sp.Symbol("beta", real=True)  # solved over the reals; the result lies in beta > 0
    return sp.solveset(sp.Abs(1 - b * curv) < 1, b, sp.S.Reals)


def beta_bound(model: str, *, steps: int = 1) -> sp.Expr:
    """beta_c for one mode: 2 / lambda~(lambda, alpha) = sup of ``beta_stable_set`` (Eq. 14)."""
    stable = beta_stable_set()
    return sp.factor(stable.sup.subs(curv, mode_curvature(model, steps=steps)))


def eq9_eigenvalues() -> Identity:
    """Paper Eq. 9: P^T (H - alpha H^2) P = diag(lambda_i - alpha lambda_i^2) for H = P Lambda P^T.

    Derived for n = 2 with a generic rotation P (t = tan(phi/2)); the diagonal is
    ``mode_curvature``.
    """
    # A generic rotation with rational entries (t = tan(phi/2)), so that cancellation is exact.
    t = sp.Symbol("t", real=True)
    l1, l2 = sp.symbols("lambda_1 lambda_2", real=True)
    P = sp.Matrix([[1 - t**2, -2 * t], [2 * t, 1 - t**2]]) / (1 + t**2)
    H = P * sp.diag(l1, l2) * P.T
    derived = (P.T * (H - alpha * H * H) * P).applyfunc(lambda e: sp.factor(sp.cancel(e)))
    curvature = mode_curvature("surrogate")
    stated = sp.diag(curvature.subs(lam, l1), curvature.subs(lam, l2))
    return Identity(
        "Eq. 9",
        "in the eigenbasis of H, H - alpha H^2 is diagonal with entries "
        "lambda_i - alpha lambda_i^2",
        derived,
        stated,
        2,
    )


def eq15(model: str = "surrogate", *, steps: int = 1) -> sp.Boolean:
    """Paper Eq. 15 for one mode of eigenvalue lambda > 0, as derived here (strict in beta).

    alpha in ``curvature_nonnegative_set`` and beta in ``beta_stable_set`` at c = lambda~:
    surrogate: 0 <= alpha <= 1/lambda and 0 < beta < 2/(lambda - alpha lambda^2).
    """
    alpha_part = curvature_nonnegative_set(model, steps=steps).as_relational(alpha)
    c = mode_curvature(model, steps=steps).subs(lam, lam_pos)
    b = sp.Symbol("beta", real=True)
    beta_part = beta_stable_set().as_relational(b).subs({b: beta, curv: c})
    return sp.And(alpha_part.subs(lam, lam_pos), beta_part)


def beta_c_excluded() -> sp.Boolean:
    """Is beta = 2/c itself stable? Derived: ``S.false`` (Eq. 14 strict; Eq. 15's <= is wrong)."""
    return beta_stable_set().contains(2 / curv)


def flat_mode_factor(model: str = "surrogate", *, steps: int = 1) -> sp.Expr:
    """The mode's update factor 1 - beta lambda~ at alpha = 1/lambda: 1, for every beta.

    At alpha = 1/lambda the mode is flat (lambda~ = 0): v(t+1) = v(t), it does not converge,
    although Eq. 15 (alpha <= 1/lambda) admits this alpha.
    """
    factor = 1 - beta * mode_curvature(model, steps=steps).subs(lam, lam_pos)
    return sp.simplify(factor.subs(alpha, 1 / lam_pos))


def gd_limit() -> sp.Expr:
    """beta_c at alpha = 0 for one mode: 2/lambda, GD's bound (paper Sec. 3.2, LeCun et al.)."""
    return sp.simplify(beta_bound("surrogate").subs(alpha, 0))


def gd_limit_slope() -> sp.Expr:
    """d(2/lambda)/d lambda = -2/lambda^2 < 0: the largest eigenvalue binds at alpha = 0."""
    return sp.diff(gd_limit(), lam)


def limit_at_turning_point(model: str = "surrogate", *, steps: int = 1) -> sp.Expr:
    """lim_{alpha -> 1/lambda^-} 2 / lambda~(lambda, alpha) = oo (paper Sec. 3.2, after Eq. 15)."""
    bound = beta_bound(model, steps=steps).subs(lam, lam_pos)
    return sp.limit(bound, alpha, 1 / lam_pos, "-")


class CurvaturePeak(NamedTuple):
    """Where lambda~(., alpha) peaks over lambda in (0, 1/alpha], and the beta_c bound it gives."""

    model: str
    steps: int
    argmax: sp.Expr  # lambda* (in alpha)
    peak: sp.Expr  # lambda~(lambda*, alpha)
    beta_lower: sp.Expr  # 2 / peak: beta_c(alpha) >= this for every spectrum in (0, 1/alpha]


def curvature_peak(model: str = "surrogate", *, steps: int = 1) -> CurvaturePeak:
    """Maximise lambda~(lambda, alpha) over 0 < lambda <= 1/alpha, derived by calculus.

    Surrogate: lambda* = 1/(2 alpha), peak 1/(4 alpha), so beta_c(alpha) >= 8 alpha whenever all
    eigenvalues lie in (0, 1/alpha] (i.e. alpha <= alpha_c); lambda_max binds only while
    alpha <= 1/(2 lambda_max). Exact one-step: lambda* = 1/(3 alpha), beta_c >= 27 alpha / 2.
    """
    check_model(model, steps)
    return _curvature_peak(model, int(steps))


@cache
def _curvature_peak(model: str, steps: int) -> CurvaturePeak:
    a = sp.Symbol("alpha", positive=True)
    curvature = mode_curvature(model, steps=steps).subs({lam: lam_pos, alpha: a})
    stationary = sp.solve(sp.diff(curvature, lam_pos), lam_pos)
    # Candidates: interior stationary points, and the end lambda = 1/alpha (lambda -> 0 gives 0).
    candidates = [r for r in stationary if (r * a).is_positive and (r * a - 1).is_negative]
    candidates.append(1 / a)
    values = [sp.simplify(curvature.subs(lam_pos, r)) for r in candidates]
    # All candidates are c/alpha with numeric c: compare the numbers.
    best = max(range(len(values)), key=lambda i: float(values[i] * a))
    return CurvaturePeak(
        model,
        steps,
        candidates[best].subs(a, alpha),
        values[best].subs(a, alpha),
        sp.simplify(2 / values[best]).subs(a, alpha),
    )


class FlatPointBound(NamedTuple):
    """The beta_c bound at alpha = 1/lambda_max (the surrogate's alpha_c), relative to GD."""

    model: str
    steps: int
    alpha_at: sp.Expr  # 1/lambda_max
    binding_eigenvalue: sp.Expr  # lambda* at which the bound is attained (e.g. lambda_max/2)
    beta_lower: sp.Expr  # beta_c(1/lambda_max) >= this
    ratio_to_gd: sp.Expr  # beta_lower / (2/lambda_max)


def bound_at_alpha_c(model: str = "surrogate", *, steps: int = 1) -> FlatPointBound:
    """Lower bound of beta_c at alpha = alpha_c = 1/lambda_max over all spectra in (0, lambda_max].

    Surrogate (paper Sec. 3.2, Fig. 2, docs/MATH.md fact 5): beta_c >= 8/lambda_max, four times GD's
    2/lambda_max, attained when an eigenvalue sits at lambda_max/2. The top mode is flat there
    (it neither converges nor diverges), so the other modes set beta_c; as alpha -> alpha_c from
    below the top mode's 2/lambda~ -> oo and beta_c tends to the same value (see
    :func:`limit_near_alpha_c`). Exact-MAML counterpart (no alpha_c of its own; its top mode is
    also flat at 1/lambda_max): beta_c >= 27/(2 lambda_max) = 6.75 x GD, at lambda_max/3.
    """
    peak = curvature_peak(model, steps=steps)
    at = {alpha: 1 / lam_max}
    beta_lower = sp.simplify(peak.beta_lower.subs(at))
    gd = gd_limit().subs(lam, lam_max)
    return FlatPointBound(
        model,
        steps,
        1 / lam_max,
        sp.simplify(peak.argmax.subs(at)),
        beta_lower,
        sp.simplify(beta_lower / gd),
    )


def limit_near_alpha_c(model: str = "surrogate", *, steps: int = 1) -> tuple[sp.Expr, sp.Expr]:
    """Two modes lambda < lambda_max, alpha -> 1/lambda_max from below: (limit, its minimum).

    The top mode's curvature tends to 0 (its 2/lambda~ to oo), so beta_c tends to
    2/lambda~(lambda, 1/lambda_max) = 2 lambda_max / (lambda (lambda_max - lambda)) for the
    surrogate, whose minimum over 0 < lambda < lambda_max is 8/lambda_max (at lambda_max/2).
    Returns (limit as a function of lambda, minimum over lambda).
    """
    curvature = mode_curvature(model, steps=steps)
    top = sp.limit(curvature.subs(lam, lam_max), alpha, 1 / lam_max, "-")
    if top != 0:
        raise AssertionError(f"top mode not flat at alpha = 1/lambda_max: {top}")
    other = sp.simplify(curvature.subs({lam: lam_pos, alpha: 1 / lam_max}))
    limit = sp.simplify(2 / other)
    # Interior critical points 0 < lambda < lambda_max (each is lambda_max times a number).
    critical = [r for r in sp.solve(sp.diff(limit, lam_pos), lam_pos) if 0 < float(r / lam_max) < 1]
    values = [sp.simplify(limit.subs(lam_pos, r)) for r in critical]
    minimum = min(values, key=lambda e: float(e * lam_max))
    return limit, minimum


def exact_minus_surrogate_curvature() -> sp.Expr:
    """Surrogate minus exact curvature, factored: alpha lambda^2 (1 - alpha lambda).

    Non-negative for 0 <= alpha <= 1/lambda: there exact MAML's curvatures are smaller, so its
    beta_c is at least the surrogate's (and first-order MAML's, which equals the surrogate's).
    """
    return sp.factor(mode_curvature("surrogate") - mode_curvature("exact"))


__all__ = [
    "CurvaturePeak",
    "FlatPointBound",
    "alpha_turning_point",
    "beta_bound",
    "beta_c_excluded",
    "beta_stable_set",
    "bound_at_alpha_c",
    "curvature_nonnegative_set",
    "curvature_peak",
    "eq15",
    "eq9_eigenvalues",
    "exact_minus_surrogate_curvature",
    "flat_mode_factor",
    "gd_limit",
    "gd_limit_slope",
    "limit_at_turning_point",
    "limit_near_alpha_c",
]
