"""Appendix A: the Hessian of the surrogate loss, and the exact MAML meta-Hessian at a minimum.

- App. A, Eq. 16-20: grad^2 [L - (alpha/2) g^T g] = H - alpha (Tg + H^2), derived by SymPy from a
  generic L (not typed in), with (Tg)_ij = sum_k T_ijk g_k and T the third-derivative tensor.
- Tg = 0 wherever g = 0, so at a stationary point the surrogate Hessian is exactly H - alpha H^2
  (the matrix whose eigenvalues Eq. 9 uses; docs/MATH.md fact 3).
- Exact one-step MAML at a stationary point: grad^2 L(theta - alpha g) =
  (I - alpha H) H (I - alpha H) for a generic L (docs/MATH.md Sec. 4; the terms with T and the
  fourth derivative multiply g = 0).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from mamlconv.theory.generic import (
    Identity,
    at_stationary_point,
    generic_loss,
    gradient_symbols,
    hessian_symbols,
    jacobian,
    third_derivative_contracted,
)
from mamlconv.theory.gradient_penalty import maml_gradient, penalised_loss
from mamlconv.theory.symbols import alpha


@cache
def surrogate_hessian(n: int) -> sp.Matrix:
    """grad^2 [L - (alpha/2) g^T g] for a generic L of n parameters, derived (App. A, Eq. 16-17)."""
    _, theta = generic_loss(n)
    gradient = jacobian(sp.Matrix([penalised_loss(n)]), theta).T  # column, canonical
    return jacobian(gradient, theta).applyfunc(sp.expand)


def appendix_a(n: int) -> Identity:
    """Paper Eq. 20: the surrogate Hessian is H - alpha (Tg + H^2)."""
    H = hessian_symbols(n)
    return Identity(
        "Eq. 16-20",
        "the Hessian of L - (alpha/2) g^T g is H - alpha (Tg + H^2)",
        surrogate_hessian(n),
        H - alpha * (third_derivative_contracted(n) + H * H),
        n,
    )


def tg_at_stationary_point(n: int) -> Identity:
    """Tg = 0 where g = 0: every entry of Tg is linear in g (docs/MATH.md fact 3,
    docs/CLAIMS.md X-4)."""
    return Identity(
        "App. A, g = 0",
        "the contraction Tg vanishes at a stationary point",
        at_stationary_point(third_derivative_contracted(n), n),
        sp.zeros(n, n),
        n,
    )


def tg_is_linear_in_g(n: int) -> bool:
    """True when every entry of Tg is a homogeneous linear form in g_1..g_n (so Tg(0) = 0)."""
    g = list(gradient_symbols(n))
    tg = third_derivative_contracted(n)
    return all(sp.Poly(entry, *g).is_linear and sp.Poly(entry, *g).is_homogeneous for entry in tg)


def stationary_surrogate_hessian(n: int) -> Identity:
    """At g = 0 the derived surrogate Hessian equals H - alpha H^2 exactly (Eq. 8-9 without Tg)."""
    H = hessian_symbols(n)
    return Identity(
        "Eq. 8-9, g = 0",
        "at a stationary point of L the surrogate Hessian is exactly H - alpha H^2",
        at_stationary_point(surrogate_hessian(n), n),
        H - alpha * H * H,
        n,
    )


@cache
def exact_meta_hessian(n: int) -> sp.Matrix:
    """grad^2_theta L(theta - alpha g(theta)) for a generic L, derived (exact one-step MAML)."""
    _, theta = generic_loss(n)
    return jacobian(maml_gradient(n), theta)


def exact_stationary_meta_hessian(n: int) -> Identity:
    """At g = 0: grad^2 L(theta - alpha g) = (I - alpha H) H (I - alpha H) (docs/MATH.md Sec. 4)."""
    H = hessian_symbols(n)
    step = sp.eye(n) - alpha * H
    return Identity(
        "exact MAML, g = 0",
        "at a stationary point of L the exact one-step meta-Hessian is "
        "(I - alpha H) H (I - alpha H)",
        at_stationary_point(exact_meta_hessian(n), n).applyfunc(sp.expand),
        step * H * step,
        n,
    )


def all_identities(n: int) -> list[Identity]:
    """Every identity of App. A and its consequences, in order."""
    return [
        appendix_a(n),
        tg_at_stationary_point(n),
        stationary_surrogate_hessian(n),
        exact_stationary_meta_hessian(n),
    ]
