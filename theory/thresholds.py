"""Numeric thresholds alpha_c and beta_c of the MAML objects, float64 and vectorised.

This module is the only bridge from theory to numerics. The per-mode effective curvature
lambda~(lambda, alpha) of each MAML object is the polynomial in alpha*lambda derived by
``mamlconv.theory.quadratic.mode_curvature`` (docs/MATH.md Sec. 4):

    surrogate    lambda (1 - alpha lambda)          (paper Eq. 9, one step only)
    first_order  lambda (1 - alpha lambda)^K
    exact        lambda (1 - alpha lambda)^(2K)

It is evaluated here in that product form, never expanded: one power per mode, so any K
(10,000 or more) costs the same as K = 1. Expanding the SymPy derivation instead doubles the
time per inner step (K = 18 took 27 s). ``tests/test_thresholds.py`` checks that the product
form equals the SymPy derivation exactly (in rationals) for K <= 6, and that the turning points
below equal ``conditions.alpha_turning_point``. A mode of eigenvalue lambda > 0 turns negative
at alpha = 1/lambda when the power is odd (surrogate; first-order with odd K; paper Eq. 10-11)
and never when it is even (exact MAML; first-order with even K).

Definitions (paper Sec. 3):

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
curvature and beta_c = 0. For large K, |1 - alpha lambda| > 1 makes lambda~ overflow to inf
(beta_c then rounds to 0.0, the float64 value of 2/lambda~) and |1 - alpha lambda| < 1 makes it
underflow to a flat mode; both are the float64 values of the exact polynomial.

No SymPy is imported here: ``mamlconv thresholds`` starts in well under a second.
"""

from __future__ import annotations

from typing import Any

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


def curvature_power(model: str, steps: int) -> int:
    """The exponent m in lambda~ = lambda (1 - alpha lambda)^m: 1, K or 2K (docs/MATH.md Sec. 4)."""
    _check_model(model, steps)
    return {"surrogate": 1, "first_order": int(steps), "exact": 2 * int(steps)}[model]


def mode_curvature_value(lam: Any, alpha: Any, *, model: str, steps: int = 1) -> Any:
    """lambda (1 - alpha lambda)^m for numbers or arrays of any exact or float type.

    The product form of ``theory.quadratic.mode_curvature``: works for NumPy float64 arrays
    (broadcasting) and for ``fractions.Fraction`` (exact, used by the tests against SymPy).
    """
    return lam * (1 - alpha * lam) ** curvature_power(model, steps)


def turning_point(lam: NDArray[np.float64], *, model: str, steps: int) -> NDArray[np.float64]:
    """The alpha where a mode of eigenvalue lambda > 0 first turns negative (paper Eq. 10-11).

    1/lambda when the power m of (1 - alpha lambda) is odd (a root of odd multiplicity), inf when
    it is even (the curvature only touches zero). Equals ``conditions.alpha_turning_point``.
    """
    if curvature_power(model, steps) % 2 == 0:
        return np.full(lam.shape, np.inf)
    return 1.0 / lam


def _curvature_parts(
    eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(lambda, lambda~, sign of lambda~, ranking key), the last three of shape alpha.shape + (n,).

    The sign is exact (sign(lambda) sign(1 - alpha lambda)^m), so a curvature that underflows
    keeps its sign. The key orders |lambda~| even beyond float64's range: log|lambda~| from the
    float value where that is finite and non-zero, else log|lambda| + m log|1 - alpha lambda|.
    """
    _check_model(model, steps)
    lam = _as_eigs(eigs)
    a = _as_alpha(alpha)
    power = curvature_power(model, steps)
    lam_b = lam.reshape((1,) * a.ndim + lam.shape)  # (1, ..., 1, n)
    base = 1.0 - a[..., None] * lam_b  # alpha.shape + (n,)
    base = np.where(np.abs(base) <= _ZERO_TOL, 0.0, base)  # alpha lambda within rounding of 1
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        value = lam_b * base**power
        sign = np.sign(lam_b) * np.sign(base) ** power
        normal = np.isfinite(value) & (value != 0)
        log_abs = np.log(np.abs(np.where(normal, value, 1.0)))
        key = np.where(normal, log_abs, np.log(np.abs(lam_b)) + power * np.log(np.abs(base)))
    key = np.where(sign == 0, -np.inf, key)
    return lam, value + 0.0, sign, key  # + 0.0 turns -0.0 into 0.0


def effective_curvatures(
    eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int = 1
) -> NDArray[np.float64]:
    """lambda~_i(alpha) for every eigenvalue: shape alpha.shape + (n,), float64.

    surrogate lambda(1 - alpha lambda) (paper Eq. 9, one step only); first_order
    lambda(1 - alpha lambda)^k; exact lambda(1 - alpha lambda)^(2k) (docs/MATH.md Sec. 4),
    evaluated in product form (never expanded). A mode with alpha lambda within 8 eps of 1 is flat
    (0); for large k a value may round to 0 or +-inf (``beta_c`` and ``binding_eigenvalue`` still
    rank and sign such modes correctly).
    """
    _, value, _, _ = _curvature_parts(eigs, alpha, model=model, steps=steps)
    return value


def alpha_c(eigs: ArrayLike, *, model: str, steps: int = 1) -> float:
    """Largest alpha below which no effective curvature is negative (paper Eq. 11).

    Surrogate / first-order with odd k: min over lambda_i > 0 of 1/lambda_i (1/0 := inf, Eq. 11).
    Exact MAML: inf (its curvatures lambda(1 - alpha lambda)^(2k) never turn negative).
    0 when some lambda_i < 0 (the point is not a minimum for any alpha >= 0).
    """
    _check_model(model, steps)
    lam = _as_eigs(eigs)
    # At alpha = 0 every model is gradient descent; a negative curvature there means alpha_c = 0.
    if (lam < 0).any():
        return 0.0
    positive = lam[lam > 0]
    if positive.size == 0:
        return float("inf")
    return float(turning_point(positive, model=model, steps=int(steps)).min())


def _binding_index(
    sign: NDArray[np.float64], key: NDArray[np.float64]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.intp]]:
    """(some mode negative, some mode positive, index of the mode that sets beta_c)."""
    negative = (sign < 0).any(axis=-1)
    positive = (sign > 0).any(axis=-1)
    # Negative somewhere: the most negative mode; else the largest positive one (first of ties).
    wanted = np.where(negative[..., None], sign < 0, sign > 0)
    index = np.where(wanted, key, -np.inf).argmax(axis=-1)
    return negative, positive, index


def beta_c(eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int = 1) -> Float:
    """Supremum of the stable meta learning rates: 2 / max positive lambda~_i (paper Eq. 14).

    0 where some lambda~_i < 0; inf where no lambda~_i > 0. Output has alpha's shape.
    GD on the model converges locally iff 0 < beta < beta_c (strict; paper Eq. 12).
    Where lambda~ lies beyond float64's range (large K) the result is 2 / lambda~ rounded to
    float64: inf for a curvature below the smallest float, 0.0 for one above the largest.
    """
    _, value, sign, key = _curvature_parts(eigs, alpha, model=model, steps=steps)
    negative, positive, index = _binding_index(sign, key)
    top = np.take_along_axis(value, index[..., None], axis=-1)[..., 0]
    top_key = np.take_along_axis(key, index[..., None], axis=-1)[..., 0]
    with np.errstate(over="ignore", divide="ignore"):
        ok = np.isfinite(top) & (top > 0)
        out = np.where(ok, 2.0 / np.where(ok, top, 1.0), 2.0 * np.exp(-top_key))
    out = np.where(positive, out, np.inf)
    out = np.where(negative, 0.0, out)
    return _shaped(np.asarray(out, dtype=np.float64))


def binding_eigenvalue(eigs: ArrayLike, alpha: ArrayLike, *, model: str, steps: int = 1) -> Float:
    """The eigenvalue lambda_i that sets beta_c(alpha); output has alpha's shape.

    Where beta_c is finite and positive: the lambda_i of largest lambda~_i (the first of equal
    ones); where beta_c = 0: the lambda_i of most negative lambda~_i; where beta_c = inf: NaN.
    For the surrogate this is lambda_max only while alpha <= 1/(2 lambda_max) (docs/MATH.md
    Sec. 5).
    """
    lam, _, sign, key = _curvature_parts(eigs, alpha, model=model, steps=steps)
    negative, positive, index = _binding_index(sign, key)
    out = np.where(negative | positive, lam[index], np.nan)
    return _shaped(np.asarray(out, dtype=np.float64))


__all__ = [
    "MODELS",
    "alpha_c",
    "beta_c",
    "binding_eigenvalue",
    "curvature_power",
    "effective_curvatures",
    "mode_curvature_value",
    "turning_point",
]
