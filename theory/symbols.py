"""Symbols shared by every derivation, declared once with their assumptions.

Notation follows the paper (Takagi et al., 2019, Sec. 2-3) and ``docs/MATH.md``: ``alpha`` the inner
learning rate, ``beta`` the meta learning rate, ``lam`` an eigenvalue of the Hessian H of L.
"""

from __future__ import annotations

import sympy as sp

alpha = sp.Symbol("alpha", nonnegative=True)
"""Inner learning rate alpha >= 0 (paper Eq. 1)."""

beta = sp.Symbol("beta", positive=True)
"""Meta learning rate beta > 0 (paper Eq. 2)."""

lam = sp.Symbol("lambda", real=True)
"""An eigenvalue of H = grad^2 L, any sign (a minimum of L has lam >= 0)."""

lam_pos = sp.Symbol("lambda", positive=True)
"""An eigenvalue known to be positive (a mode of positive curvature of L)."""

lam_max = sp.Symbol("lambda_max", positive=True)
"""The largest eigenvalue of H (positive at a non-degenerate minimum)."""

curv = sp.Symbol("c", positive=True)
"""A positive effective curvature (an eigenvalue of the model's meta-Hessian)."""

v = sp.Symbol("v", real=True)
"""Coordinate of one eigen-mode, v = P(theta - theta*) (paper Sec. 3.2)."""


def thetas(n: int) -> tuple[sp.Symbol, ...]:
    """The parameters theta_1, ..., theta_n as real symbols."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return tuple(sp.symbols(f"theta1:{n + 1}", real=True))
