"""Numeric thresholds alpha_c and beta_c, generated from the SymPy derivations.

This module is the only bridge from theory to numerics. The per-mode effective curvature
lambda~(lambda, alpha) of each MAML object (``mamlconv.theory.quadratic.mode_curvature``,
docs/MATH.md Sec. 4) and the alpha at which a mode turns negative
(``conditions.alpha_turning_point``, paper Eq. 10-11) are derived symbolically once per
(model, steps), then ``sympy.lambdify``-ed into vectorised float64 NumPy functions (cached for
the process).

Definitions (issue 2; paper Sec. 3):

- beta_c(alpha) = sup{beta > 0 : gradient descent on the model's objective converges locally}
  = 2 / max_i lambda~_i over the modes of positive curvature (Eq. 12-14 over the whole spectrum);
  0 when some lambda~_i < 0 (no beta converges); zero curvatures are neutral (a flat mode neither
  converges nor diverges); inf when no lambda~_i > 0. Convergence needs beta < beta_c strictly.
- alpha_c = the largest alpha below which no curvature turns negative (Eq. 11: min over
  lambda_i > 0 of 1/lambda_i for the surrogate and one-step first-order MAML); inf where none does
  (exact MAML; first-order with an even number of steps); 0 when an eigenvalue is already
  negative (no alpha >= 0 makes the point a minimum).

Rounding: a curvature with |lambda~| <= 8 eps |lambda| is treated as exactly zero, so that
alpha = 1/lambda computed in floating point gives the flat mode it is, not a spurious negative
curvature and beta_c = 0.

SymPy is imported only when a function is first called (``mamlconv thresholds`` stays fast).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

MODELS: tuple[str, ...] = ("surrogate", "first_order", "exact")
_ZERO_TOL = 8 * np.finfo(np.float64).eps

Float = np.float64 | NDArray[np.float64]


def _check_model(model: str, steps: int) -> None:
    # Same checks as mamlconv.theory.quadratic.check_model, kept here so that bad input is
    # reported without importing SymPy.
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if model == "surrogate" and steps != 1:
        raise ValueError(f"the surrogate is a one-step object (paper Eq. 4-5); got steps={steps}")


def _as_eigs(eigs: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.asarray(eigs, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"eigs must be numbers, got {eigs!r}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"eigs must be a non-empty 1-D array, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"eigs[{bad[0]}] = {arr[bad[0]]!r} is not a finite number")
    return arr


def _as_alpha(alpha: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be numbers, got {alpha!r}") from None
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        value = arr[bad].flat[0]
        raise ValueError(f"alpha must be finite and >= 0, got {value!r}")
    return arr


def _shaped(arr: NDArray[np.float64]) -> Float:
    """0-d results come back as a NumPy float64 scalar (behaves as a float), else the array."""
    return np.float64(arr) if arr.ndim == 0 else arr


@cache
def _curvature_fn(model: str, steps: int) -> Callable[..., NDArray[np.float64]]:
    import sympy as sp

    from mamlconv.theory.quadratic import mode_curvature
    from mamlconv.theory.symbols import alpha, lam

    return sp.lambdify((lam, alpha), mode_curvature(model, steps=steps), modules="numpy")


@cache
def _turning_fn(model: str, steps: int) -> Callable[..., NDArray[np.float64]]:
    import sympy as sp

    from mamlconv.theory.conditions import alpha_turning_point
    from mamlconv.theory.symbols import lam

    return sp.lambdify((lam,), alpha_turning_point(model, steps=steps), modules="numpy")


def effective_curvatures(
    eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int = 1
) -> NDArray[np.float64]:
    """lambda~_i(alpha) for every eigenvalue: shape alpha.shape + (n,), float64.

    surrogate lambda(1 - alpha lambda) (paper Eq. 9, one step only); first_order
    lambda(1 - alpha lambda)^k; exact lambda(1 - alpha lambda)^(2k) (docs/MATH.md Sec. 4), evaluated
    from the lambdified SymPy derivation. Values within rounding of zero are set to 0.
    """
    _check_model(model, steps)
    lam = _as_eigs(eigs)
    a = _as_alpha(alpha)
    lam_b = lam.reshape((1,) * a.ndim + lam.shape)  # (1, ..., 1, n)
    a_b = a[..., None]  # alpha.shape + (1,)
    out = np.asarray(_curvature_fn(model, int(steps))(lam_b, a_b), dtype=np.float64)
    out = np.broadcast_to(out, a.shape + lam.shape).copy()
    out[np.abs(out) <= _ZERO_TOL * np.abs(lam_b)] = 0.0
    return out


def alpha_c(eigs: ArrayLike, *, model: str, steps: int = 1) -> float:
    """Largest alpha below which no effective curvature is negative (paper Eq. 11).

    Surrogate / first-order with odd k: min over lambda_i > 0 of 1/lambda_i (1/0 := inf, Eq. 11).
    Exact MAML: inf (its curvatures lambda(1 - alpha lambda)^(2k) never turn negative).
    0 when some lambda_i < 0 (the point is not a minimum for any alpha >= 0).
    """
    _check_model(model, steps)
    lam = _as_eigs(eigs)
    # At alpha = 0 every model is gradient descent; a negative curvature there means alpha_c = 0.
    if (effective_curvatures(lam, 0.0, model=model, steps=steps) < 0).any():
        return 0.0
    positive = lam[lam > 0]
    if positive.size == 0:
        return float("inf")
    turning = np.broadcast_to(
        np.asarray(_turning_fn(model, int(steps))(positive), dtype=np.float64), positive.shape
    )
    return float(turning.min())


def beta_c(eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int = 1) -> Float:
    """Supremum of the stable meta learning rates: 2 / max positive lambda~_i (paper Eq. 14).

    0 where some lambda~_i < 0; inf where no lambda~_i > 0. Output has alpha's shape.
    GD on the model converges locally iff 0 < beta < beta_c (strict; paper Eq. 12).
    """
    c = effective_curvatures(eigs, alpha, model=model, steps=steps)
    largest = c.max(axis=-1)
    with np.errstate(divide="ignore"):
        out = np.where(largest > 0, 2.0 / np.where(largest > 0, largest, 1.0), np.inf)
    out = np.where((c < 0).any(axis=-1), 0.0, out)
    return _shaped(out)


def binding_eigenvalue(eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int = 1) -> Float:
    """The eigenvalue lambda_i that sets beta_c(alpha); output has alpha's shape.

    Where beta_c is finite and positive: the lambda_i of largest lambda~_i (the first of equal
    ones); where beta_c = 0: the lambda_i of most negative lambda~_i; where beta_c = inf: NaN.
    For the surrogate this is lambda_max only while alpha <= 1/(2 lambda_max) (docs/MATH.md
    Sec. 5).
    """
    lam = _as_eigs(eigs)
    c = effective_curvatures(lam, alpha, model=model, steps=steps)
    negative = (c < 0).any(axis=-1)
    index = np.where(negative, c.argmin(axis=-1), c.argmax(axis=-1))
    out = lam[index]
    out = np.where(~negative & (c.max(axis=-1) <= 0), np.nan, out)
    return _shaped(np.asarray(out, dtype=np.float64))


__all__ = ["MODELS", "alpha_c", "beta_c", "binding_eigenvalue", "effective_curvatures"]
