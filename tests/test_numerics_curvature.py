"""Matrix-free curvature (HVP, Tg, H^2, surrogate and meta Hessians; Lanczos, power iteration,
Frobenius norms) against dense float64 references: ``torch.func.hessian`` + ``eigh`` on models of a
few hundred parameters, ``jacfwd(hessian)`` for the third-derivative operators on a smaller one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from smooth_nets import mlp_loss, mlp_params, sine_tasks

from mamlconv.numerics import curvature as cv
from mamlconv.numerics import losses
from mamlconv.numerics.tasks import Params, TaskBatch

F64 = torch.float64


ALPHA = 0.05


@pytest.fixture(scope="module")
def medium() -> tuple[Params, TaskBatch]:
    """1-14-14-1 tanh MLP: 253 parameters; 2 tasks of 5 + 5 points."""
    return mlp_params([1, 14, 14, 1], seed=0), sine_tasks(2, 5, seed=1)


@pytest.fixture(scope="module")
def small() -> tuple[Params, TaskBatch]:
    """1-5-5-1 tanh MLP: 46 parameters (the (n, n, n) tensor T stays small)."""
    return mlp_params([1, 5, 5, 1], seed=2), sine_tasks(2, 5, seed=3)


def assert_matrix_close(got: torch.Tensor, want: torch.Tensor, *, rtol: float) -> None:
    """Elementwise, relative to the largest entry; the message names the worst index."""
    scale = float(want.abs().max())
    diff = (got - want).abs()
    worst = int(diff.argmax())
    i, j = divmod(worst, want.shape[1])
    assert float(diff.max()) <= rtol * scale, (
        f"worst entry ({i}, {j}): got {float(got[i, j])!r}, want {float(want[i, j])!r}, "
        f"scale {scale:.3g}"
    )


@pytest.mark.parametrize("operator", ["hessian", "h2", "surrogate", "meta"])
def test_matvec_matches_dense_medium(operator: str, medium: tuple[Params, TaskBatch]) -> None:
    params, tasks = medium
    n = cv.n_params(params)
    assert n == 253
    mv = cv.task_matvec(mlp_loss, params, tasks, operator=operator, alpha=ALPHA)  # type: ignore[arg-type]
    from_products = cv.dense_from_matvec(mv, n, like=params["w1"])
    dense = cv.dense_operator(mlp_loss, params, tasks, operator=operator, alpha=ALPHA)  # type: ignore[arg-type]
    assert_matrix_close(from_products, dense, rtol=1e-10)
    assert_matrix_close(dense, dense.T, rtol=1e-12)  # symmetric


@pytest.mark.parametrize("operator", ["tg", "tg_plus_h2", "surrogate", "meta"])
def test_matvec_matches_dense_small(operator: str, small: tuple[Params, TaskBatch]) -> None:
    params, tasks = small
    mv = cv.task_matvec(mlp_loss, params, tasks, operator=operator, alpha=ALPHA, steps=2)  # type: ignore[arg-type]
    from_products = cv.dense_from_matvec(mv, cv.n_params(params), like=params["w1"])
    dense = cv.dense_operator(mlp_loss, params, tasks, operator=operator, alpha=ALPHA, steps=2)  # type: ignore[arg-type]
    assert_matrix_close(from_products, dense, rtol=1e-10)


def test_surrogate_hessian_is_h_minus_alpha_tg_plus_h2(small: tuple[Params, TaskBatch]) -> None:
    """Appendix A numerically: Hessian of L - (alpha/2) g^T g (autodiff of the loss) equals
    H - alpha (Tg + H^2) built from jacfwd(hessian) contracted with g."""
    params, tasks = small
    dense = {
        op: cv.dense_operator(mlp_loss, params, tasks, operator=op, alpha=0.3)
        for op in ("surrogate", "hessian", "tg_plus_h2")
    }
    assert_matrix_close(
        dense["surrogate"], dense["hessian"] - 0.3 * dense["tg_plus_h2"], rtol=1e-11
    )


def eigh_top(matrix: torch.Tensor, k: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    vals, vecs = np.linalg.eigh(matrix.numpy())
    order = {"LA": np.argsort(-vals), "SA": np.argsort(vals), "LM": np.argsort(-np.abs(vals))}
    idx = order[which][:k]
    return vals[idx], vecs[:, idx]


def assert_eigvecs_up_to_sign(got: np.ndarray, want: np.ndarray, *, atol: float) -> None:
    signs = np.sign(np.sum(got * want, axis=0))
    np.testing.assert_allclose(got * signs, want, atol=atol)


@pytest.mark.parametrize(
    ("operator", "which"),
    [
        ("hessian", "LA"),
        ("hessian", "SA"),
        ("hessian", "LM"),
        ("surrogate", "LA"),
        ("meta", "LA"),
        ("h2", "LA"),
    ],
)
def test_lanczos_matches_dense_eigh(
    operator: str, which: str, medium: tuple[Params, TaskBatch]
) -> None:
    params, tasks = medium
    k = 5
    res = cv.spectrum(
        mlp_loss,
        params,
        tasks,
        operator=operator,
        alpha=ALPHA,
        k=k,
        which=which,
        tol=1e-10,  # type: ignore[arg-type]
    )
    dense = cv.dense_operator(mlp_loss, params, tasks, operator=operator, alpha=ALPHA)  # type: ignore[arg-type]
    vals, vecs = eigh_top(dense, k, which)
    scale = float(np.abs(vals).max())
    np.testing.assert_allclose(res.eigenvalues, vals, rtol=0, atol=1e-8 * scale)
    assert res.eigenvectors.shape == (253, k) and res.method == "lanczos"
    # Eigenvectors up to sign, where the eigenvalue is separated from its neighbours.
    all_vals = np.linalg.eigvalsh(dense.numpy())
    gaps = np.array([np.sort(np.abs(all_vals - v))[1] for v in vals])
    sep = gaps > 1e-4 * scale
    assert sep.sum() >= 3
    assert_eigvecs_up_to_sign(res.eigenvectors[:, sep], vecs[:, sep], atol=1e-5)
    assert np.all(res.residuals < 1e-6 * scale)
    assert res.n_matvecs >= k
    if which == "LA":
        assert np.all(np.diff(res.eigenvalues) <= 0)
    if which == "SA":
        assert np.all(np.diff(res.eigenvalues) >= 0)


def test_lanczos_recovers_constructed_spectrum() -> None:
    """A quadratic built with eigenvalues 1..40: the top-4 and bottom-2 are known exactly.
    ``quadratic_loss`` is a sum over rows and ``task_batch`` puts the same rows in support and
    query, so the pooled data (what ``hessian`` uses) hold the loss twice: Hessian 2A."""
    eigs = np.arange(1.0, 41.0)
    q = losses.make_quadratic(eigs, seed=3)
    tasks = q.task_batch()
    p = q.params(torch.zeros(40, dtype=F64))
    top = cv.spectrum(losses.quadratic_loss, p, tasks, operator="hessian", k=4, tol=1e-12)
    np.testing.assert_allclose(top.eigenvalues, 2 * np.array([40, 39, 38, 37]), rtol=1e-10)
    bottom = cv.spectrum(
        losses.quadratic_loss, p, tasks, operator="hessian", k=2, which="SA", tol=1e-12
    )
    np.testing.assert_allclose(bottom.eigenvalues, [2, 4], rtol=1e-9)
    # h2 of the pooled quadratic is (2A)^2; Tg = 0 (T vanishes on a quadratic)
    h2 = cv.spectrum(losses.quadratic_loss, p, tasks, operator="h2", k=1, tol=1e-12)
    np.testing.assert_allclose(h2.eigenvalues, [6400.0], rtol=1e-10)
    tg = cv.spectrum(losses.quadratic_loss, p, tasks, operator="tg", k=1, which="LM")
    assert abs(tg.eigenvalues[0]) < 1e-10


def test_dense_fallback_when_k_reaches_n() -> None:
    q = losses.make_quadratic([3.0, 1.0, 2.0], seed=0)
    res = cv.spectrum(
        losses.quadratic_loss,
        q.params(torch.ones(3, dtype=F64)),
        q.task_batch(),
        operator="hessian",
        k=3,
    )
    assert res.method == "dense"
    np.testing.assert_allclose(res.eigenvalues, [6.0, 4.0, 2.0], rtol=1e-12)  # pooled: 2A
    assert res.n_matvecs == 6  # 3 to build the matrix + 3 residual checks


def test_power_iteration_with_deflation_matches_eigh() -> None:
    """Well-separated spectrum: PyHessian's method finds the top-3 by magnitude."""
    eigs = np.array([-8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05])
    q = losses.make_quadratic(np.abs(eigs), seed=4)
    # A symmetric indefinite operator with that spectrum: Q diag(eigs) Q^T.
    a = (q.basis * torch.as_tensor(eigs)) @ q.basis.T
    res = cv.power_iteration(lambda v: a @ v, 8, like=a, k=3, tol=1e-12, max_iter=2000)
    np.testing.assert_allclose(res.eigenvalues, [-8.0, 4.0, 2.0], rtol=1e-8)
    want = q.basis[:, :3].numpy()
    assert_eigvecs_up_to_sign(res.eigenvectors, want, atol=1e-5)
    assert res.method == "power" and res.n_matvecs > 3


def test_frobenius_dense_vs_hutchinson(small: tuple[Params, TaskBatch]) -> None:
    params, tasks = small
    exact = cv.frobenius_norms(mlp_loss, params, tasks, method="dense")
    est = cv.frobenius_norms(mlp_loss, params, tasks, method="hutchinson", n_probes=300, seed=1)
    dense_tg = cv.dense_operator(mlp_loss, params, tasks, operator="tg")
    dense_h2 = cv.dense_operator(mlp_loss, params, tasks, operator="h2")
    want = {
        "tg": float(torch.linalg.matrix_norm(dense_tg)),
        "h2": float(torch.linalg.matrix_norm(dense_h2)),
        "tg_plus_h2": float(torch.linalg.matrix_norm(dense_tg + dense_h2)),
    }
    for name, value in want.items():
        assert exact[name]["estimate"] == pytest.approx(value, rel=1e-10)
        assert exact[name]["stderr"] == 0.0
        # Unbiased in the square; within 5 standard errors (and the error bar is informative).
        se = est[name]["stderr"]
        assert 0 < se < 0.2 * value
        assert abs(est[name]["estimate"] - value) < 5 * se + 1e-3 * value, (name, est[name], value)


def test_float32_runs_and_agrees(medium: tuple[Params, TaskBatch]) -> None:
    params, tasks = medium
    p32 = {k: v.float() for k, v in params.items()}
    t32 = tasks.to("cpu", torch.float32)
    r32 = cv.spectrum(mlp_loss, p32, t32, operator="surrogate", alpha=ALPHA, k=2, tol=1e-4)
    r64 = cv.spectrum(mlp_loss, params, tasks, operator="surrogate", alpha=ALPHA, k=2, tol=1e-10)
    np.testing.assert_allclose(r32.eigenvalues, r64.eigenvalues, rtol=1e-3)


def test_bad_arguments(small: tuple[Params, TaskBatch]) -> None:
    params, tasks = small
    with pytest.raises(ValueError, match="operator"):
        cv.spectrum(mlp_loss, params, tasks, operator="fisher", k=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="which"):
        cv.spectrum(mlp_loss, params, tasks, operator="hessian", which="BE")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k"):
        cv.spectrum(mlp_loss, params, tasks, operator="hessian", k=0)
    with pytest.raises(ValueError, match="n_probes"):
        cv.frobenius_norms(mlp_loss, params, tasks, method="hutchinson", n_probes=1)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    width=st.integers(2, 5),
    n_points=st.integers(3, 8),
    eps=st.sampled_from([1e-3, 3e-4]),
)
def test_tg_vanishes_at_a_minimiser(seed: int, width: int, n_points: int, eps: float) -> None:
    """X-4: at a minimiser g = 0, so Tg = 0 (and H~ = H - alpha H^2 there). Realisable data
    y = f(theta*, x) make theta* an exact minimiser; T itself is not zero there (checked through
    Tg at theta* + eps d, which grows linearly in eps because g does)."""
    star = mlp_params([1, width, width, 1], seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = 10 * torch.rand(2, n_points, 1, generator=g, dtype=F64) - 5

    def model(p: Params, xx: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(xx @ p["w1"] + p["b1"])
        h = torch.tanh(h @ p["w2"] + p["b2"])
        return h @ p["w3"] + p["b3"]

    y = torch.stack([model(star, x[i]) for i in range(2)])
    tasks = TaskBatch(x, y, x, y)
    n = cv.n_params(star)

    def tg_matrix(p: Params) -> torch.Tensor:
        return cv.dense_from_matvec(cv.task_matvec(mlp_loss, p, tasks, operator="tg"), n, like=x)

    h_norm = float(
        torch.linalg.matrix_norm(cv.dense_operator(mlp_loss, star, tasks, operator="h2"))
    )
    at_min = float(torch.linalg.matrix_norm(tg_matrix(star)))
    assert at_min <= 1e-12 * max(1.0, h_norm)
    d = {k: torch.randn(v.shape, generator=g, dtype=F64) for k, v in star.items()}
    near = [
        float(torch.linalg.matrix_norm(tg_matrix({k: star[k] + e * d[k] for k in star})))
        for e in (eps, eps / 2)
    ]
    assert near[0] > 1e3 * at_min + 1e-14
    assert near[0] / near[1] == pytest.approx(2.0, rel=0.05)  # linear in the distance
