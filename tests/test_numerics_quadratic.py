"""Closed-form MAML on quadratics (docs/MATH.md section 4) against autodiff through
``numerics.maml.task_meta_gradient`` and against central finite differences, float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mamlconv.numerics import losses, quadratic
from mamlconv.numerics.maml import adapt, task_meta_gradient
from mamlconv.numerics.tasks import TaskBatch
from mamlconv.theory.thresholds import effective_curvatures

F64 = torch.float64


def two_quadratics(dim: int, seed: int) -> tuple[losses.Quadratic, losses.Quadratic]:
    rng = np.random.default_rng(seed)
    qs = []
    for j in range(2):
        eigs = 10.0 ** rng.uniform(-1, 1, dim)
        centre = torch.as_tensor(rng.standard_normal(dim))
        qs.append(losses.make_quadratic(eigs, seed=seed * 10 + j, center=centre))
    return qs[0], qs[1]


CASES = [
    pytest.param(model, steps, same, id=f"{model}-k{steps}-{'same' if same else 'split'}")
    for model, steps in [
        ("exact", 1),
        ("exact", 2),
        ("exact", 3),
        ("first_order", 1),
        ("first_order", 3),
        ("surrogate", 1),
    ]
    for same in (True, False)
]


@pytest.mark.parametrize(("model", "steps", "same"), CASES)
def test_closed_form_matches_autodiff(model: str, steps: int, same: bool) -> None:
    sup, qry = two_quadratics(4, seed=steps)
    if same:
        qry = sup
    theta = torch.randn(4, generator=torch.Generator().manual_seed(7), dtype=F64)
    alpha = 0.07
    task = TaskBatch(sup.x, sup.y, qry.x, qry.y)
    auto, aux = task_meta_gradient(
        {"theta": theta},
        task,
        loss_fn=losses.quadratic_loss,
        alpha=alpha,
        steps=steps,
        variant=model,  # type: ignore[arg-type]
    )
    closed = quadratic.meta_direction(
        theta,
        a_support=sup.hessian,
        c_support=sup.center,
        a_query=qry.hessian,
        c_query=qry.center,
        alpha=alpha,
        steps=steps,
        model=model,  # type: ignore[arg-type]
    )
    torch.testing.assert_close(auto["theta"], closed, rtol=1e-12, atol=1e-12)
    if same:  # the one-task direction matrix D gives the same vector
        d = quadratic.direction_matrix(sup.hessian, alpha=alpha, steps=steps, model=model)
        torch.testing.assert_close(d @ (theta - sup.center), closed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_exact_direction_matches_finite_differences(steps: int) -> None:
    """grad_theta L_q(theta_k) by central differences (h = 1e-5, error O(h^2) ~ 1e-10)."""
    sup, qry = two_quadratics(3, seed=20 + steps)
    theta = torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=F64)
    alpha, h = 0.05, 1e-5

    def objective(t: torch.Tensor) -> float:
        adapted = adapt({"theta": t}, losses.quadratic_loss, sup.x, sup.y, alpha=alpha, steps=steps)
        return float(losses.quadratic_loss(adapted, qry.x, qry.y))

    eye = torch.eye(3, dtype=F64)
    fd = torch.tensor(
        [(objective(theta + h * e) - objective(theta - h * e)) / (2 * h) for e in eye], dtype=F64
    )
    closed = quadratic.meta_direction(
        theta,
        a_support=sup.hessian,
        c_support=sup.center,
        a_query=qry.hessian,
        c_query=qry.center,
        alpha=alpha,
        steps=steps,
        model="exact",
    )
    torch.testing.assert_close(fd, closed, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("alpha", [0.0, 0.03, 0.2, 1.5])
def test_first_order_equals_surrogate_on_one_quadratic(alpha: float) -> None:
    """docs/MATH.md 4: same data, one step: A (I - alpha A) v = (I - alpha A) A v."""
    q = losses.make_quadratic([0.3, 2.0, 9.0], seed=4, center=torch.ones(3, dtype=F64))
    theta = torch.tensor([0.5, -2.0, 3.0], dtype=F64)
    task = TaskBatch(q.x, q.y, q.x, q.y)
    dirs = {
        m: task_meta_gradient(
            {"theta": theta}, task, loss_fn=losses.quadratic_loss, alpha=alpha, variant=m
        )[0]["theta"]
        for m in ("first_order", "surrogate")
    }
    torch.testing.assert_close(dirs["first_order"], dirs["surrogate"], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    ("model", "steps"),
    [("surrogate", 1), ("first_order", 1), ("first_order", 2), ("exact", 1), ("exact", 3)],
)
def test_direction_matrix_spectrum_is_theory_curvature(model: str, steps: int) -> None:
    """Eigenvalues of D are the theory's effective curvatures (lambdified SymPy) for each alpha."""
    eigs = np.array([0.1, 1.0, 4.0, 12.0])
    q = losses.make_quadratic(eigs, seed=9)
    alphas = np.array([0.0, 0.01, 0.05, 0.09, 0.2])
    d = quadratic.direction_matrix(
        q.hessian, alpha=torch.as_tensor(alphas), steps=steps, model=model
    )
    assert d.shape == (alphas.size, 4, 4)
    got = np.sort(torch.linalg.eigvalsh(d).numpy(), axis=-1)
    want = np.sort(effective_curvatures(eigs, alphas, model=model, steps=steps), axis=-1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_update_matrix_spectral_radius_crosses_one_at_beta_c() -> None:
    from mamlconv.theory.thresholds import beta_c

    eigs = [0.5, 3.0, 8.0]
    q = losses.make_quadratic(eigs, seed=2)
    for model in ("surrogate", "exact"):
        bc = float(beta_c(eigs, 0.05, model=model))
        below = quadratic.update_matrix(q.hessian, alpha=0.05, beta=0.999 * bc, model=model)
        above = quadratic.update_matrix(q.hessian, alpha=0.05, beta=1.001 * bc, model=model)
        assert float(quadratic.spectral_radius(below)) < 1 < float(quadratic.spectral_radius(above))


@pytest.mark.parametrize(
    ("model", "steps"), [("exact", 1), ("exact", 2), ("first_order", 2), ("surrogate", 1)]
)
def test_maml_step_is_closed_form_update(model: str, steps: int) -> None:
    """One outer step of the autodiff MAML (numerics.dynamics.maml_step) on a quadratic task is
    v <- (I - beta D) v with the closed-form D."""
    from mamlconv.numerics.dynamics import maml_step

    q = losses.make_quadratic(
        [0.2, 1.5, 6.0], seed=8, center=torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    )
    theta = torch.tensor([0.3, -0.7, 2.2], dtype=F64)
    new, pre, post, gnorm = maml_step(
        {"theta": theta},
        q.task_batch(),
        loss_fn=losses.quadratic_loss,
        alpha=0.1,
        beta=0.2,
        steps=steps,
        model=model,  # type: ignore[arg-type]
    )
    m = quadratic.update_matrix(q.hessian, alpha=0.1, beta=0.2, steps=steps, model=model)
    torch.testing.assert_close(
        new["theta"] - q.center, m @ (theta - q.center), rtol=1e-13, atol=1e-13
    )
    v = theta - q.center
    torch.testing.assert_close(pre, 0.5 * v @ q.hessian @ v, rtol=1e-13, atol=0)
