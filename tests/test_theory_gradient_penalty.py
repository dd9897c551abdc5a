"""Sec. 2.2 (paper Eq. 3-7) for a generic smooth L of n = 2 and 3 parameters, simplified exactly."""

from __future__ import annotations

import pytest
import sympy as sp

from mamlconv.theory import gradient_penalty as gp
from mamlconv.theory.generic import gradient_symbols, hessian_symbols, is_zero
from mamlconv.theory.symbols import alpha

N = [2, 3]


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_eq3_chain_rule(n: int) -> None:
    # Paper Eq. (3): grad_theta L(theta') = (I - alpha H) dL/dtheta'
    assert gp.eq3_chain_rule(n).holds()


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_eq4_is_an_approximation_not_an_identity(n: int) -> None:
    # Paper Eq. (4): replacing g(theta') by g(theta) gives g - alpha H g ...
    assert gp.eq4_approximation(n).holds()
    # ... but the exact MAML gradient differs from it for a generic L (Eq. 3 != Eq. 4).
    assert not is_zero(gp.eq3_differs_from_eq4(n))
    assert not is_zero(gp.maml_gradient(n) - gp.surrogate_direction(n))


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_gradient_of_squared_norm_is_2Hg(n: int) -> None:
    # Paper Sec. 2.2: grad(g^T g) = 2 H g; and not H g
    identity = gp.gradient_of_squared_norm(n)
    assert identity.holds()
    assert not is_zero(identity.derived - hessian_symbols(n) * gradient_symbols(n))


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_eq5_surrogate_is_gradient_of_penalised_loss(n: int) -> None:
    # Paper Eq. (5): g - alpha H g = grad[L - (alpha/2) g^T g] exactly
    assert gp.eq5_penalised_gradient(n).holds()


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_eq6_7_taylor_has_full_alpha(n: int) -> None:
    # Paper Eq. (6)-(7): L(theta - alpha g) = L - alpha g^T g + O(alpha^2)
    identity = gp.eq6_7_taylor(n)
    assert identity.holds()
    # the alpha/2 version (Eq. 5's loss) is NOT the Taylor polynomial
    assert not is_zero(identity.derived - gp.penalised_loss(n))


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_exact_gradient_to_first_order_is_g_minus_2alpha_Hg(n: int) -> None:
    # Eq. (3) expanded in alpha: g - 2 alpha H g (docs/MATH.md fact 2)
    assert gp.exact_gradient_expansion(n).holds()
    g, H = gradient_symbols(n), hessian_symbols(n)
    assert not is_zero(gp.exact_gradient_first_order(n) - (g - alpha * H * g))


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_factor_two_between_eq5_and_eq7(n: int) -> None:
    # The factor between Eq. (5) (alpha/2) and Eq. (7) (alpha), derived twice.
    assert gp.penalty_factor(n) == 2
    assert gp.gradient_correction_factor(n) == 2


def test_exact_gradient_numerically_on_a_concrete_loss() -> None:
    """Independent twin: a concrete L, differentiate L(theta - alpha g) directly, compare with the
    generic result of Eq. 3 specialised to that L."""
    x, y = sp.symbols("theta1 theta2", real=True)
    concrete = sp.exp(x) * y**2 + sp.sin(x * y)
    g = sp.Matrix([sp.diff(concrete, x), sp.diff(concrete, y)])
    H = sp.hessian(concrete, (x, y))
    shifted = {x: x - alpha * g[0], y: y - alpha * g[1]}
    direct = sp.Matrix([sp.diff(concrete.subs(shifted, simultaneous=True), t) for t in (x, y)])
    via_eq3 = (sp.eye(2) - alpha * H) * g.subs(shifted, simultaneous=True)
    point = {x: sp.Rational(3, 10), y: sp.Rational(-7, 10), alpha: sp.Rational(1, 20)}
    for d, e in zip(direct, via_eq3, strict=True):
        assert abs(float(d.subs(point)) - float(e.subs(point))) < 1e-13
