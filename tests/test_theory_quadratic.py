"""MAML on quadratics (docs/MATH.md Sec. 4; docs/CLAIMS.md X-1, X-2): derived curvatures and
meta-Jacobians."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from mamlconv.theory import quadratic as q
from mamlconv.theory.symbols import alpha, lam

# (model, steps, docs/MATH.md closed form of the effective curvature)
CURVATURES = [
    ("surrogate", 1, lam * (1 - alpha * lam)),  # paper Eq. 9
    ("first_order", 1, lam * (1 - alpha * lam)),
    ("exact", 1, lam * (1 - alpha * lam) ** 2),
    *[("first_order", k, lam * (1 - alpha * lam) ** k) for k in (2, 3, 4)],
    *[("exact", k, lam * (1 - alpha * lam) ** (2 * k)) for k in (2, 3, 4)],
]


@pytest.mark.parametrize(
    ("model", "steps", "desired"), CURVATURES, ids=[f"{m}-k{k}" for m, k, _ in CURVATURES]
)
def test_mode_curvature_matches_math_md(model: str, steps: int, desired: sp.Expr) -> None:
    assert sp.simplify(q.mode_curvature(model, steps=steps) - desired) == 0


def test_surrogate_and_first_order_coincide_but_exact_differs() -> None:
    # docs/MATH.md fact 4: one task, no resampling, one step
    assert sp.simplify(q.mode_curvature("surrogate") - q.mode_curvature("first_order")) == 0
    assert sp.simplify(q.mode_curvature("surrogate") - q.mode_curvature("exact")) != 0


@pytest.mark.parametrize(
    ("model", "steps"),
    [("surrogate", 1), ("first_order", 1), ("exact", 1), ("first_order", 2), ("exact", 2)],
    ids=["surrogate", "fo-k1", "exact-k1", "fo-k2", "exact-k2"],
)
def test_meta_jacobian_generic_symmetric_matrix(model: str, steps: int) -> None:
    # derived J vs (I - aA)^k A (I - aA)^k (exact) or A (I - aA)^k, generic symmetric 2x2 A
    A = q.symmetric_matrix(2)
    derived = q.meta_jacobian(model, A, steps=steps)
    desired = q.meta_jacobian_closed_form(model, A, steps=steps)
    assert (derived - desired).applyfunc(sp.simplify) == sp.zeros(2, 2)


def test_meta_jacobian_3x3_exact_one_step() -> None:
    A = q.symmetric_matrix(3)
    diff = q.meta_jacobian("exact", A) - q.meta_jacobian_closed_form("exact", A)
    assert diff.applyfunc(sp.expand) == sp.zeros(3, 3)


@pytest.mark.parametrize("model", q.MODELS)
def test_meta_jacobian_eigenvalues_are_mode_curvatures(model: str) -> None:
    """Decoupling: for A = P diag(l) P^T the eigenvalues of J are lambda~(l_i) (numerically)."""
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    eigs = np.array([0.3, 1.1, 2.6])
    A_num = Q @ np.diag(eigs) @ Q.T
    A = sp.Matrix(A_num.tolist())
    a = 0.21
    J = np.array(q.meta_jacobian(model, A).subs(alpha, a).evalf(), dtype=float)
    curvature = sp.lambdify((lam, alpha), q.mode_curvature(model), "numpy")
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvals(J).real), np.sort(curvature(eigs, a)), rtol=1e-10
    )


@pytest.mark.parametrize(
    ("model", "steps", "fragment"),
    [
        ("bogus", 1, "bogus"),
        ("exact", 0, "0"),
        ("surrogate", 2, "steps=2"),
        ("exact", True, "True"),
    ],
    ids=["model", "steps0", "surrogate-k2", "bool"],
)
def test_check_model_rejects(model: str, steps: int, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        q.mode_curvature(model, steps=steps)
    assert fragment in str(info.value)
