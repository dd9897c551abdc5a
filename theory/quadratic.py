"""MAML on a quadratic loss: the meta-Jacobians of the three MAML objects (docs/MATH.md Sec. 4).

On L(v) = 1/2 v^T A v (linear regression with MSE is one, paper App. C), with one task and the same
data inner and outer, every MAML update is linear in v, v <- v - beta * J v, so local convergence
is decided by the eigenvalues of J, the *effective curvatures* lambda~. The functions here DERIVE J
(and lambda~ for one eigen-mode) by letting SymPy run the algorithm symbolically:

- ``exact``        d/dv L(v_k) with v_{j+1} = v_j - alpha grad L(v_j)   (paper Eq. 1-3)
- ``first_order``  grad L(v_k), the Jacobian of the inner steps dropped   (FOMAML)
- ``surrogate``    grad [L - (alpha/2) g^T g], one step only             (paper Eq. 5)

The results are (derived, then checked in the tests): surrogate and first-order one-step
J = A(I - alpha A), lambda~ = lambda(1 - alpha lambda); exact one-step
J = (I - alpha A) A (I - alpha A), lambda~ = lambda(1 - alpha lambda)^2; k steps: exact
lambda(1 - alpha lambda)^(2k), first-order lambda(1 - alpha lambda)^k.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from mamlconv.theory.symbols import alpha, lam, v

MODELS: tuple[str, ...] = ("surrogate", "first_order", "exact")


def check_model(model: str, steps: int) -> None:
    """Raise ValueError naming the bad value for an unknown model or step count."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if model == "surrogate" and steps != 1:
        raise ValueError(f"the surrogate is a one-step object (paper Eq. 4-5); got steps={steps}")


def _direction(model: str, loss: sp.Expr, coords: list[sp.Symbol], steps: int) -> sp.Matrix:
    """The update direction of ``model`` for a loss in ``coords``, derived by running MAML.

    ``loss`` is any expression in ``coords``; the inner loop is applied symbolically.
    """
    x = sp.Matrix(coords)

    def grad_at(point: sp.Matrix) -> sp.Matrix:
        grad = sp.Matrix([sp.diff(loss, c) for c in coords])
        return grad.subs(dict(zip(coords, point, strict=True)), simultaneous=True)

    if model == "surrogate":
        g = grad_at(x)
        penalised = loss - alpha / 2 * (g.T * g)[0, 0]  # paper Eq. 5
        return sp.Matrix([sp.diff(penalised, c) for c in coords])
    point = x
    for _ in range(steps):  # paper Eq. 1, repeated k times
        point = point - alpha * grad_at(point)
    if model == "exact":  # gradient through the inner steps (Eq. 2-3)
        adapted_loss = loss.subs(dict(zip(coords, point, strict=True)), simultaneous=True)
        return sp.Matrix([sp.diff(adapted_loss, c) for c in coords])
    return grad_at(point)  # first_order: gradient at the adapted point only


def mode_curvature(model: str, *, steps: int = 1) -> sp.Expr:
    """Effective curvature lambda~(lambda, alpha) of one eigen-mode, derived.

    For the one-dimensional quadratic L(v) = lambda v^2 / 2 (one eigen-mode of H, paper Sec. 3.2
    with v = P(theta - theta*)), the update direction d(v) of ``model`` is linear in v and
    lambda~ = d'(v) is the factor in v(t+1) = (1 - beta lambda~) v(t) (paper Eq. 12).
    Returned factored, e.g. surrogate ``-lambda*(alpha*lambda - 1)``.
    """
    check_model(model, steps)  # before the cache: True == 1 would hit steps=1's entry
    return _mode_curvature(model, int(steps))


@cache
def _mode_curvature(model: str, steps: int) -> sp.Expr:
    direction = _direction(model, lam * v**2 / 2, [v], steps)[0]
    slope = sp.diff(direction, v)
    if sp.diff(slope, v) != 0:  # the update must be linear on a quadratic
        raise AssertionError(f"{model} direction is not linear in v: {direction}")
    return sp.factor(sp.expand(slope))


def symmetric_matrix(n: int, name: str = "a") -> sp.Matrix:
    """A generic symmetric n x n matrix of real symbols a_ij = a_ji."""
    entries = {}
    for i in range(n):
        for j in range(i, n):
            entries[(i, j)] = entries[(j, i)] = sp.Symbol(f"{name}_{i + 1}{j + 1}", real=True)
    return sp.Matrix(n, n, lambda i, j: entries[(i, j)])


def meta_jacobian(model: str, A: sp.Matrix, *, steps: int = 1) -> sp.Matrix:
    """The Jacobian J = d(direction)/dv of ``model`` on L(v) = 1/2 v^T A v, derived by SymPy.

    v <- v - beta J v is the model's MAML update (docs/MATH.md Sec. 4); entries are expanded.
    """
    check_model(model, steps)
    n = A.shape[0]
    coords = list(sp.symbols(f"v1:{n + 1}", real=True))
    x = sp.Matrix(coords)
    loss = sp.expand((x.T * A * x)[0, 0] / 2)
    direction = _direction(model, loss, coords, steps)
    return direction.jacobian(coords).applyfunc(sp.expand)


def meta_jacobian_closed_form(model: str, A: sp.Matrix, *, steps: int = 1) -> sp.Matrix:
    """docs/MATH.md Sec. 4's closed forms: exact (I-aA)^k A (I-aA)^k, first-order/surrogate
    A(I-aA)^k."""
    check_model(model, steps)
    step = sp.eye(A.shape[0]) - alpha * A
    if model == "exact":
        return (step**steps * A * step**steps).applyfunc(sp.expand)
    return (A * step**steps).applyfunc(sp.expand)
