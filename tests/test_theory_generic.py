"""The bookkeeping of theory/generic.py: canonical partial derivatives of a generic L."""

from __future__ import annotations

import sympy as sp

from mamlconv.theory.generic import (
    Identity,
    canonical,
    generic_loss,
    grad,
    gradient_symbols,
    hessian_symbols,
    is_zero,
    jacobian,
    partial_function,
    third_derivative_contracted,
)
from mamlconv.theory.symbols import alpha


def test_partials_are_symmetric_and_sorted() -> None:
    assert partial_function("L", (1, 0)) == partial_function("L", (0, 1))
    L, theta = generic_loss(2)
    assert jacobian(grad(L, theta), theta) == hessian_symbols(2)
    assert hessian_symbols(2).is_symmetric()


def test_canonical_makes_chain_rule_orders_agree() -> None:
    # the same mixed derivative reached in two orders through a shifted point
    L, (x, y) = generic_loss(2)
    shifted = L.subs({x: x - alpha * y**2}, simultaneous=True)
    a = canonical(sp.diff(canonical(sp.diff(shifted, x)), y))
    b = canonical(sp.diff(canonical(sp.diff(shifted, y)), x))
    assert is_zero(a - b)


def test_canonical_matches_a_concrete_function() -> None:
    """Replace L by a concrete function after canonicalisation: equals direct differentiation."""
    L, (x, y) = generic_loss(2)
    concrete = sp.exp(x) * sp.sin(y) + x**3 * y
    shifted = L.subs({x: x - alpha * y, y: y + alpha * x**2}, simultaneous=True)
    # one derivative at a time, canonical in between (as grad / jacobian do)
    generic_result = canonical(sp.diff(canonical(sp.diff(shifted, x)), y))

    def realise(e):
        # every L_{idx}(p) -> the corresponding derivative of `concrete` at p
        def swap(node):
            name = node.func.__name__
            index = name[3:-1] if name.startswith("L_{") else ""
            d = concrete
            for ch in index:
                d = sp.diff(d, (x, y)[int(ch) - 1])
            return d.subs(dict(zip((x, y), node.args, strict=True)), simultaneous=True)

        return e.replace(lambda n: getattr(n.func, "__name__", "").startswith("L"), swap)

    direct = sp.diff(
        concrete.subs({x: x - alpha * y, y: y + alpha * x**2}, simultaneous=True), x, y
    )
    point = {x: sp.Rational(1, 3), y: sp.Rational(-1, 2), alpha: sp.Rational(1, 7)}
    assert abs(float(realise(generic_result).subs(point)) - float(direct.subs(point))) < 1e-12


def test_tg_contraction_shape_and_entries() -> None:
    Tg = third_derivative_contracted(2)
    g = gradient_symbols(2)
    assert Tg.shape == (2, 2) and Tg.is_symmetric()
    assert sp.diff(Tg[0, 1], g[1]) == partial_function("L", (0, 1, 1))(*generic_loss(2)[1])


def test_identity_residual_detects_a_wrong_statement() -> None:
    g, H = gradient_symbols(2), hessian_symbols(2)
    wrong = Identity("test", "deliberately wrong", 2 * H * g, H * g, 2)
    assert not wrong.holds()
    assert Identity("test", "right", H * g + H * g, 2 * H * g, 2).holds()
