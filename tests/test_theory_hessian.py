"""Appendix A (Eq. 16-20), Tg at a stationary point, and exact MAML's meta-Hessian; n = 2, 3."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from mamlconv.theory import hessian as hs
from mamlconv.theory.generic import at_stationary_point, hessian_symbols, is_zero
from mamlconv.theory.symbols import alpha

N = [2, 3]


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_appendix_a_surrogate_hessian(n: int) -> None:
    # Paper Eq. (16)-(20): grad^2 [L - (alpha/2) g^T g] = H - alpha (Tg + H^2)
    identity = hs.appendix_a(n)
    assert identity.holds()
    H = hessian_symbols(n)
    # Dropping Tg is NOT exact away from a stationary point
    assert not is_zero(identity.derived - (H - alpha * H * H))


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_tg_vanishes_where_g_vanishes(n: int) -> None:
    # App. A / docs/MATH.md fact 3: Tg = 0 at g = 0 (Tg is linear in g)
    assert hs.tg_at_stationary_point(n).holds()
    assert hs.tg_is_linear_in_g(n)


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_stationary_surrogate_hessian_is_H_minus_alpha_H2(n: int) -> None:
    # Paper Eq. (8)-(9) with Tg = 0: H~ = H - alpha H^2 at a stationary point
    assert hs.stationary_surrogate_hessian(n).holds()


@pytest.mark.parametrize("n", N, ids=lambda n: f"n{n}")
def test_exact_meta_hessian_at_stationary_point(n: int) -> None:
    # docs/MATH.md Sec. 4: (I - alpha H) H (I - alpha H) at g = 0, for a generic L
    identity = hs.exact_stationary_meta_hessian(n)
    assert identity.holds()
    # not the surrogate's H - alpha H^2
    H = hessian_symbols(n)
    assert not is_zero(identity.derived - (H - alpha * H * H))
    # and away from g = 0 it is not (I - aH)H(I - aH)
    assert not is_zero(hs.exact_meta_hessian(n) - identity.stated)


def test_stationary_helper_only_touches_first_partials() -> None:
    H = hessian_symbols(2)
    assert at_stationary_point(H, 2) == H


def test_appendix_a_against_finite_differences() -> None:
    """Independent twin: a concrete L; central finite differences (float64) of the gradient of
    L - (alpha/2)|g|^2 (differentiated directly) against H - alpha (Tg + H^2), T from SymPy."""
    x, y = sp.symbols("x y", real=True)
    L = sp.log(1 + x**2) + x * y**3 + sp.cos(y)
    a = 0.07
    g = sp.Matrix([sp.diff(L, v) for v in (x, y)])
    H = sp.hessian(L, (x, y))
    Tg = sp.Matrix(2, 2, lambda i, j: sum(sp.diff(H[i, j], v) * g[k] for k, v in enumerate((x, y))))
    formula = sp.lambdify((x, y), H - a * (Tg + H * H), "numpy")
    penalised = L - a / 2 * (g.T * g)[0, 0]
    pen_grad = sp.lambdify((x, y), sp.Matrix([sp.diff(penalised, v) for v in (x, y)]), "numpy")
    p, h = np.array([0.4, -0.3]), 1e-5
    fd = np.column_stack(
        [
            (np.ravel(pen_grad(*(p + h * e))) - np.ravel(pen_grad(*(p - h * e)))) / (2 * h)
            for e in np.eye(2)
        ]
    )
    np.testing.assert_allclose(fd, np.array(formula(*p), dtype=float), rtol=1e-8, atol=1e-9)
