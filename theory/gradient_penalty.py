"""Sec. 2.2: MAML as optimisation with a negative gradient penalty (paper Eq. 3-7), derived.

For a generic smooth L of n parameters (an undefined SymPy Function; n = 2 and 3 in the tests),
one task, one inner step, the same data inner and outer (paper Sec. 2.2):

- Eq. 3    grad_theta L(theta') = (I - alpha H) g(theta'),  theta' = theta - alpha g   (chain rule)
- Eq. 4    ~ g - alpha H g,  replacing g(theta') by g(theta) ("since alpha is usually small")
- Sec 2.2  grad(g^T g) = 2 H g
- Eq. 5    g - alpha H g = grad[L - (alpha/2) g^T g]  exactly
- Eq. 6-7  L(theta - alpha g) = L - alpha g^T g + O(alpha^2)
- exact    grad_theta L(theta') = g - 2 alpha H g + O(alpha^2)

The last two carry a factor 2 that Eq. 4-5 do not: the surrogate keeps half of exact MAML's
first-order correction ("up to scale" in the text). :func:`penalty_factor` derives the 2.
Each function returns an :class:`~mamlconv.theory.generic.Identity` (derived vs stated).
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from mamlconv.theory.generic import (
    Identity,
    at_point,
    canonical,
    generic_loss,
    grad,
    gradient_symbols,
    hessian_symbols,
)
from mamlconv.theory.symbols import alpha


def _setup(n: int) -> tuple[sp.Expr, tuple[sp.Symbol, ...], sp.Matrix, sp.Matrix]:
    L, theta = generic_loss(n)
    return L, theta, gradient_symbols(n), hessian_symbols(n)


def adapted_point(n: int) -> sp.Matrix:
    """theta' = theta - alpha g(theta) (paper Eq. 1, one task)."""
    _, theta, g, _ = _setup(n)
    return sp.Matrix(theta) - alpha * g


@cache
def adapted_loss(n: int) -> sp.Expr:
    """L~(theta) = L(theta - alpha g(theta)), the one-step MAML loss (paper Eq. 6, left)."""
    L, theta, _, _ = _setup(n)
    return L.subs(dict(zip(theta, adapted_point(n), strict=True)), simultaneous=True)


@cache
def maml_gradient(n: int) -> sp.Matrix:
    """grad_theta L(theta - alpha g(theta)) by SymPy's chain rule: exact one-step MAML (Eq. 2)."""
    _, theta, _, _ = _setup(n)
    return grad(adapted_loss(n), theta)


@cache
def penalised_loss(n: int) -> sp.Expr:
    """L - (alpha/2) g^T g, the paper's simplified MAML loss (Eq. 5)."""
    L, _, g, _ = _setup(n)
    return L - alpha / 2 * (g.T * g)[0, 0]


def eq3_chain_rule(n: int) -> Identity:
    """Paper Eq. 3: grad_theta L(theta') = (I - alpha H(theta)) g(theta')."""
    _, _, g, H = _setup(n)
    stated = (sp.eye(n) - alpha * H) * at_point(g, adapted_point(n), n)
    return Identity(
        "Eq. 3",
        "chain rule through the inner step: the MAML gradient is (I - alpha H) g(theta')",
        maml_gradient(n),
        stated,
        n,
    )


@cache
def surrogate_direction(n: int) -> sp.Matrix:
    """Paper Eq. 4, derived: Eq. 3 with g(theta') replaced by g(theta) (the approximation)."""
    _, _, g, H = _setup(n)
    at_shifted = at_point(g, adapted_point(n), n)
    eq3 = (sp.eye(n) - alpha * H) * at_shifted
    return eq3.xreplace(dict(zip(at_shifted, g, strict=True))).applyfunc(sp.expand)


def eq4_approximation(n: int) -> Identity:
    """Paper Eq. 4: replacing g(theta') by g(theta) in Eq. 3 gives g - alpha H g."""
    _, _, g, H = _setup(n)
    return Identity(
        "Eq. 4",
        "with g(theta') replaced by g(theta), Eq. 3 becomes g - alpha H g",
        surrogate_direction(n),
        g - alpha * H * g,
        n,
    )


def eq3_differs_from_eq4(n: int) -> sp.Matrix:
    """Eq. 3 minus Eq. 4, expanded: the part Eq. 4 drops, (I - alpha H)(g(theta') - g(theta)).

    Non-zero for generic L: Eq. 4 is an approximation, not an identity.
    """
    return (maml_gradient(n) - surrogate_direction(n)).applyfunc(sp.expand)


def gradient_of_squared_norm(n: int) -> Identity:
    """Paper Sec. 2.2: grad_theta (g^T g) = 2 H g."""
    _, theta, g, H = _setup(n)
    return Identity(
        "Sec. 2.2",
        "the gradient of the squared gradient norm is twice H g",
        grad((g.T * g)[0, 0], theta),
        2 * H * g,
        n,
    )


def eq5_penalised_gradient(n: int) -> Identity:
    """Paper Eq. 5: g - alpha H g (Eq. 4) is exactly the gradient of L - (alpha/2) g^T g."""
    _, theta, _, _ = _setup(n)
    return Identity(
        "Eq. 5",
        "the approximate MAML direction of Eq. 4 is the gradient of L - (alpha/2) g^T g",
        grad(penalised_loss(n), theta),
        surrogate_direction(n),
        n,
    )


def first_order_in_alpha(expr: sp.Basic) -> sp.Basic:
    """expr(0) + alpha * d expr / d alpha (0): the first-order Taylor polynomial in alpha."""
    value = canonical(expr.subs(alpha, 0))
    slope = canonical(sp.diff(expr, alpha)).subs(alpha, 0)
    return canonical(value + alpha * slope)


@cache
def taylor_adapted_loss(n: int) -> sp.Expr:
    """L(theta - alpha g) to first order in alpha, derived (paper Eq. 6)."""
    return sp.expand(first_order_in_alpha(adapted_loss(n)))


def eq6_7_taylor(n: int) -> Identity:
    """Paper Eq. 6-7: L(theta - alpha g) = L - alpha g^T g + O(alpha^2)."""
    L, _, g, _ = _setup(n)
    return Identity(
        "Eq. 6-7",
        "to first order in alpha, L(theta - alpha g) = L - alpha g^T g",
        taylor_adapted_loss(n),
        L - alpha * (g.T * g)[0, 0],
        n,
    )


@cache
def exact_gradient_first_order(n: int) -> sp.Matrix:
    """grad_theta L(theta - alpha g) to first order in alpha, derived from Eq. 3."""
    return first_order_in_alpha(maml_gradient(n)).applyfunc(sp.expand)


def exact_gradient_expansion(n: int) -> Identity:
    """Exact one-step MAML to first order: grad L(theta') = g - 2 alpha H g + O(alpha^2)."""
    _, _, g, H = _setup(n)
    return Identity(
        "Eq. 3 (1st order)",
        "to first order in alpha the exact MAML gradient is g - 2 alpha H g",
        exact_gradient_first_order(n),
        g - 2 * alpha * H * g,
        n,
    )


def penalty_factor(n: int) -> sp.Expr:
    """The factor between Eq. 7's penalty and Eq. 5's, derived: coefficient ratio = 2.

    Eq. 7: d/dalpha L(theta - alpha g) at 0 = -g^T g; Eq. 5: d/dalpha [L - (alpha/2) g^T g]
    = -g^T g / 2. The ratio is 2 exactly, so the surrogate is L - (alpha/2) g^T g while exact MAML
    is L - alpha g^T g to first order ("up to scale", paper Sec. 2.2).
    """
    exact = sp.diff(taylor_adapted_loss(n), alpha)
    surrogate = sp.diff(penalised_loss(n), alpha)
    return sp.simplify(exact / surrogate)


def gradient_correction_factor(n: int) -> sp.Expr:
    """The same factor on gradients: exact's alpha-coefficient over the surrogate's, = 2.

    Derived per component from :func:`exact_gradient_first_order` (-2Hg) and
    :func:`surrogate_direction` (-Hg); raises if the components disagree.
    """
    exact = sp.diff(exact_gradient_first_order(n), alpha)
    surrogate = sp.diff(surrogate_direction(n), alpha)
    ratios = {sp.simplify(e / s) for e, s in zip(exact, surrogate, strict=True)}
    if len(ratios) != 1:
        raise AssertionError(f"the first-order corrections are not proportional: {ratios}")
    return ratios.pop()


def all_identities(n: int) -> list[Identity]:
    """Every identity of Sec. 2.2 in paper order (used by the LaTeX document and the tests)."""
    return [
        eq3_chain_rule(n),
        eq4_approximation(n),
        gradient_of_squared_norm(n),
        eq5_penalised_gradient(n),
        eq6_7_taylor(n),
        exact_gradient_expansion(n),
    ]
