"""Paper Sec. 3 (Eq. 9-15), its limits and the bound near alpha_c; the exact-MAML counterpart."""

from __future__ import annotations

import pytest
import sympy as sp

from mamlconv.theory import conditions as cd
from mamlconv.theory.symbols import alpha, beta, curv, lam, lam_max, lam_pos


def test_eq9_eigenvalues_of_surrogate_hessian() -> None:
    # Paper Eq. (9): eigenvalues of H - alpha H^2 are lambda_i - alpha lambda_i^2
    assert cd.eq9_eigenvalues().holds()


@pytest.mark.parametrize(
    ("model", "steps", "desired"),
    [
        ("surrogate", 1, sp.Interval(0, 1 / lam_pos)),  # paper Eq. (10)-(11): alpha <= 1/lambda
        ("first_order", 1, sp.Interval(0, 1 / lam_pos)),
        ("first_order", 3, sp.Interval(0, 1 / lam_pos)),
        ("first_order", 2, sp.Interval(0, sp.oo)),
        ("exact", 1, sp.Interval(0, sp.oo)),  # exact MAML: no alpha_c at a minimum
        ("exact", 2, sp.Interval(0, sp.oo)),
    ],
    ids=["surrogate", "fo-k1", "fo-k3", "fo-k2", "exact-k1", "exact-k2"],
)
def test_alpha_condition(model: str, steps: int, desired: sp.Set) -> None:
    assert cd.curvature_nonnegative_set(model, steps=steps) == desired


@pytest.mark.parametrize(
    ("model", "steps", "desired"),
    [
        ("surrogate", 1, 1 / lam),
        ("first_order", 3, 1 / lam),
        ("exact", 1, sp.oo),
        ("first_order", 2, sp.oo),
    ],
    ids=["surrogate", "fo-k3", "exact", "fo-k2"],
)
def test_alpha_turning_point(model: str, steps: int, desired: sp.Expr) -> None:
    assert cd.alpha_turning_point(model, steps=steps) == desired


def test_beta_condition_is_strict_open_interval() -> None:
    # Paper Eq. (12)-(14): |1 - beta c| < 1  <=>  0 < beta < 2/c, open at 2/c
    assert cd.beta_stable_set() == sp.Interval.open(0, 2 / curv)
    # Eq. (15) prints <=; beta = 2/c is NOT stable
    assert cd.beta_c_excluded() == sp.false


@pytest.mark.parametrize(
    ("model", "desired"),
    [
        ("surrogate", 2 / (lam - alpha * lam**2)),  # paper Eq. (14)
        ("exact", 2 / (lam * (1 - alpha * lam) ** 2)),
    ],
)
def test_beta_bound(model: str, desired: sp.Expr) -> None:
    assert sp.simplify(cd.beta_bound(model) - desired) == 0


def test_eq15_combined_condition() -> None:
    # Paper Eq. (15), strict in beta
    cond = cd.eq15()
    x = sp.Rational(2)
    at = {lam_pos: x}
    assert cond.subs(at | {alpha: sp.Rational(1, 4), beta: 1}) == sp.true
    assert cond.subs(at | {alpha: sp.Rational(1, 4), beta: 4}) == sp.false  # beta = 2/c exactly
    assert cond.subs(at | {alpha: sp.Rational(3, 5), beta: sp.Rational(1, 10)}) == sp.false


@pytest.mark.parametrize("model", ["surrogate", "first_order", "exact"])
def test_mode_is_flat_at_alpha_one_over_lambda(model: str) -> None:
    # docs/MATH.md fact 6: at alpha = 1/lambda the factor 1 - beta lambda~ is 1 for every beta
    assert cd.flat_mode_factor(model) == 1


def test_alpha_zero_limit_is_gradient_descent() -> None:
    # Paper Sec. 3.2: alpha = 0 gives beta < 2/lambda, and 2/lambda decreases in lambda,
    # so lambda_max binds: beta < 2/lambda_max
    assert cd.gd_limit() == 2 / lam
    assert sp.simplify(cd.gd_limit_slope() + 2 / lam**2) == 0


@pytest.mark.parametrize("model", ["surrogate", "exact"])
def test_beta_c_diverges_as_alpha_approaches_one_over_lambda(model: str) -> None:
    # Paper Sec. 3.2: "beta_c diverges as alpha approaches 1/lambda_i"
    assert cd.limit_at_turning_point(model) == sp.oo


@pytest.mark.parametrize(
    ("model", "steps", "argmax", "peak", "bound"),
    [
        ("surrogate", 1, 1 / (2 * alpha), 1 / (4 * alpha), 8 * alpha),
        ("exact", 1, 1 / (3 * alpha), 4 / (27 * alpha), sp.Rational(27, 2) * alpha),
    ],
    ids=["surrogate", "exact"],
)
def test_curvature_peak(model: str, steps: int, argmax, peak, bound) -> None:
    found = cd.curvature_peak(model, steps=steps)
    assert sp.simplify(found.argmax - argmax) == 0
    assert sp.simplify(found.peak - peak) == 0
    assert sp.simplify(found.beta_lower - bound) == 0


@pytest.mark.parametrize(
    ("model", "steps", "ratio", "binding"),
    [
        ("surrogate", 1, 4, lam_max / 2),  # beta_c(alpha_c) >= 8/lambda_max = 4 x GD
        ("exact", 1, sp.Rational(27, 4), lam_max / 3),  # the exact-MAML counterpart
        ("first_order", 1, 4, lam_max / 2),
        ("exact", 2, sp.Rational(5**5, 4**4), lam_max / 5),  # m = 2k: (m+1)^(m+1)/m^m / 2
    ],
    ids=["surrogate", "exact", "fo", "exact-k2"],
)
def test_bound_at_alpha_c(model: str, steps: int, ratio, binding) -> None:
    bound = cd.bound_at_alpha_c(model, steps=steps)
    assert bound.ratio_to_gd == ratio
    assert sp.simplify(bound.beta_lower - ratio * 2 / lam_max) == 0
    assert sp.simplify(bound.binding_eigenvalue - binding) == 0


def test_limit_near_alpha_c_two_modes() -> None:
    limit, minimum = cd.limit_near_alpha_c("surrogate")
    assert sp.simplify(limit - 2 * lam_max / (lam_pos * (lam_max - lam_pos))) == 0
    assert minimum == 8 / lam_max
    _, exact_min = cd.limit_near_alpha_c("exact")
    assert exact_min == sp.Rational(27, 2) / lam_max


def test_exact_curvature_below_surrogate_on_alpha_below_one_over_lambda() -> None:
    gap = cd.exact_minus_surrogate_curvature()
    assert sp.simplify(gap - alpha * lam**2 * (1 - alpha * lam)) == 0
    # numeric spot check on a grid of (lambda, alpha) with alpha lambda <= 1
    f = sp.lambdify((lam, alpha), gap)
    for x in (0.1, 1.0, 7.0):
        for t in (0.0, 0.3, 0.99, 1.0):
            assert f(x, t / x) >= 0
