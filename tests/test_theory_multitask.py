"""Several tasks (extended version; docs/MATH.md fact 7; docs/CLAIMS.md X-3)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mamlconv.theory import multitask as mt
from mamlconv.theory.quadratic import symmetric_matrix
from mamlconv.theory.symbols import alpha, beta
from mamlconv.theory.thresholds import alpha_c, beta_c


@pytest.mark.parametrize(("n", "tasks"), [(2, 2), (2, 3), (3, 2)], ids=["n2m2", "n2m3", "n3m2"])
def test_mean_surrogate_hessian(n: int, tasks: int) -> None:
    # App. A per task, averaged: mean of H_tau - alpha (T_tau g_tau + H_tau^2)
    assert mt.mean_surrogate_hessian_identity(n, tasks).holds()


def test_quadratic_mean_meta_jacobian_generic() -> None:
    A, B = symmetric_matrix(2, "a"), symmetric_matrix(2, "b")
    M = mt.quadratic_mean_meta_jacobian([A, B], model="surrogate")
    desired = ((A - alpha * A * A) + (B - alpha * B * B)) / 2
    assert (M - desired).applyfunc(sp.expand) == sp.zeros(2, 2)


def test_noncommuting_example_shows_the_condition_is_only_sufficient() -> None:
    ex = mt.noncommuting_example()
    assert ex.alpha_c_per_task == sp.Rational(1, 4)
    assert ex.alpha_c_mean > ex.alpha_c_per_task  # the mean stays PSD longer
    assert ex.beta_c_per_task == 1
    assert ex.beta_c_mean > ex.beta_c_per_task  # the mean tolerates a larger beta
    # independent numeric twin of beta_c_mean: eigh of the float64 mean matrix
    A1, A2 = (np.array(A, dtype=float) for A in ex.matrices)
    a = float(ex.alpha_value)
    M = (A1 - a * A1 @ A1 + A2 - a * A2 @ A2) / 2
    assert float(ex.beta_c_mean) == pytest.approx(2 / np.linalg.eigvalsh(M).max(), rel=1e-13)
    lo = float(ex.alpha_c_mean)
    for t, sign in ((lo * (1 - 1e-9), 1), (lo * (1 + 1e-9), -1)):
        M = (A1 - t * A1 @ A1 + A2 - t * A2 @ A2) / 2
        assert np.sign(np.linalg.eigvalsh(M).min()) == sign


def test_sufficient_condition_symbolic() -> None:
    cond = mt.sufficient_condition([[4, 1], [2]])
    assert cond.subs({alpha: sp.Rational(1, 5), beta: sp.Rational(1, 2)}) == sp.true
    assert cond.subs({alpha: sp.Rational(3, 10), beta: sp.Rational(1, 100)}) == sp.false
    with pytest.raises(ValueError, match="-1"):
        mt.sufficient_condition([[-1]])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    tasks=st.integers(2, 4),
    n=st.integers(2, 4),
    u=st.floats(0.0, 1.0),
)
def test_sufficient_condition_guarantees_stability_of_the_mean(
    seed: int, tasks: int, n: int, u: float
) -> None:
    """If every eigenvalue of every task satisfies Eq. 15, the mean surrogate Hessian is PSD and
    its beta_c is at least the per-task bound (random non-commuting quadratic tasks)."""
    rng = np.random.default_rng(seed)
    mats, spectra = [], []
    for _ in range(tasks):
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        eigs = rng.uniform(0.05, 5.0, size=n)
        mats.append(Q @ np.diag(eigs) @ Q.T)
        spectra.append(eigs)
    all_eigs = np.concatenate(spectra)
    a = u * alpha_c(all_eigs, model="surrogate")  # alpha <= 1/lambda for every task eigenvalue
    bound = float(beta_c(all_eigs, a, model="surrogate"))  # 2 / max (lambda - alpha lambda^2)
    M = sum(A - a * A @ A for A in mats) / tasks
    top_bottom = np.linalg.eigvalsh(M)
    assert top_bottom.min() >= -1e-12
    true_beta_c = 2 / top_bottom.max()
    assert true_beta_c >= bound * (1 - 1e-12)
