"""Grid dynamics: the autodiff engine (vmap over cells and tasks) against the closed-form linear
engine, divergence handling, the bisection finder against the grid bracket, and the linear
regression boundary against theory. float64 throughout."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mamlconv.numerics import dynamics, losses
from mamlconv.numerics.boundary import extract_boundary
from mamlconv.numerics.linreg import linreg_study
from mamlconv.numerics.multitask import random_task_family
from mamlconv.numerics.tasks import TaskBatch
from mamlconv.theory.thresholds import beta_c

F64 = torch.float64


@pytest.fixture(scope="module")
def linreg_data() -> losses.LinRegData:
    return losses.sample_linreg(torch.Generator().manual_seed(0), n_points=50)


def close_losses(a: np.ndarray, b: np.ndarray, *, rtol: float, scale: np.ndarray) -> None:
    """Same non-finite pattern; finite values agree to rtol, with an absolute floor of 1e-12
    of the initial value ``scale``: autodiff computes the gradient from residuals, so it bottoms
    out at round-off of the initial size where the closed form keeps contracting."""
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    m = np.isfinite(a)
    np.testing.assert_allclose(a[m], b[m], rtol=rtol, atol=1e-12 * float(np.max(scale)))


@pytest.mark.parametrize("model", ["surrogate", "first_order", "exact"])
def test_autodiff_grid_matches_closed_form_on_linreg(
    model: str, linreg_data: losses.LinRegData
) -> None:
    alphas = np.geomspace(1e-4, 9e-2, 5)
    betas = np.geomspace(5e-3, 9, 7)
    loss_fn = losses.linreg_loss_fn("mse")
    auto = dynamics.run_grid(
        loss_fn,
        losses.linreg_params(),
        linreg_data.task_batch(),
        alphas=alphas,
        betas=betas,
        model=model,  # type: ignore[arg-type]
        iters=160,
    )
    closed = dynamics.run_grid_quadratic(
        losses.linreg_hessian(linreg_data.x, convention="mse"),
        torch.tensor([linreg_data.a, linreg_data.b], dtype=F64),
        torch.zeros(2, dtype=F64),
        alphas=alphas,
        betas=betas,
        model=model,  # type: ignore[arg-type]
        iters=160,
    )
    assert auto.final_loss_post.shape == (5, 7)
    close_losses(
        auto.final_loss_pre, closed.final_loss_pre, rtol=1e-9, scale=closed.initial_loss_pre
    )
    close_losses(
        auto.final_loss_post, closed.final_loss_post, rtol=1e-9, scale=closed.initial_loss_pre
    )
    close_losses(
        auto.final_grad_norm, closed.final_grad_norm, rtol=1e-9, scale=closed.initial_grad_norm
    )
    np.testing.assert_allclose(auto.initial_loss_post, closed.initial_loss_post, rtol=1e-12)
    assert (auto.diverged_at >= 0).any() and (auto.diverged_at < 0).any()  # both kinds occur


@pytest.mark.parametrize(("model", "steps"), [("exact", 2), ("first_order", 2), ("surrogate", 1)])
def test_autodiff_grid_matches_closed_form_multitask(model: str, steps: int) -> None:
    """Three quadratic tasks with different bases and centres, k inner steps."""
    fam = random_task_family(3, 3, seed=5, eig_range=(0.1, 10.0))
    xs, ys = [], []
    for h, c in zip(fam.hessians, fam.centers, strict=True):
        ev, vec = torch.linalg.eigh(h)
        x = torch.sqrt(ev.clamp_min(0))[:, None] * vec.T  # x^T x = A
        xs.append(x)
        ys.append(x @ c)
    tasks = TaskBatch(torch.stack(xs), torch.stack(ys), torch.stack(xs), torch.stack(ys))
    theta0 = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    alphas, betas = np.array([0.0, 0.02, 0.08]), np.array([0.01, 0.1, 0.3])
    auto = dynamics.run_grid(
        losses.quadratic_loss,
        {"theta": theta0},
        tasks,
        alphas=alphas,
        betas=betas,
        model=model,  # type: ignore[arg-type]
        steps=steps,
        iters=40,
    )
    closed = dynamics.run_grid_quadratic(
        fam.hessians,
        fam.centers,
        theta0,
        alphas=alphas,
        betas=betas,
        model=model,  # type: ignore[arg-type]
        steps=steps,
        iters=40,
    )
    close_losses(
        auto.final_loss_pre, closed.final_loss_pre, rtol=1e-9, scale=closed.initial_loss_pre
    )
    close_losses(
        auto.final_loss_post, closed.final_loss_post, rtol=1e-9, scale=closed.initial_loss_pre
    )
    close_losses(
        auto.final_grad_norm, closed.final_grad_norm, rtol=1e-9, scale=closed.initial_grad_norm
    )


def test_divergence_is_nan_without_warnings(linreg_data: losses.LinRegData) -> None:
    """Cells that blow up end as NaN, are flagged with the iteration, and nothing warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            run = dynamics.run_grid(
                losses.linreg_loss_fn(),
                losses.linreg_params(),
                linreg_data.task_batch(),
                alphas=[1e-3],
                betas=[0.01, 50.0],
                model="exact",
                iters=400,
            )
            stable = run.converged()
            boundary = run.boundary()
    assert run.diverged_at[0, 0] == -1 and run.diverged_at[0, 1] > 0
    assert np.isnan(run.final_loss_post[0, 1]) and np.isnan(run.final_loss_pre[0, 1])
    assert np.isfinite(run.final_loss_post[0, 0])
    assert stable.tolist() == [[True, False]]
    assert boundary.beta_lo[0] == 0.01 and boundary.beta_hi[0] == 50.0


def test_chunked_run_equals_single_batch(linreg_data: losses.LinRegData) -> None:
    kwargs = dict(alphas=np.geomspace(1e-3, 0.05, 3), betas=np.geomspace(0.01, 3, 4), iters=30)
    tasks, p0 = linreg_data.task_batch(), losses.linreg_params()
    whole = dynamics.run_grid(losses.linreg_loss_fn(), p0, tasks, model="exact", **kwargs)
    parts = dynamics.run_grid(
        losses.linreg_loss_fn(), p0, tasks, model="exact", chunk_size=5, **kwargs
    )
    np.testing.assert_array_equal(whole.final_loss_post, parts.final_loss_post)


@pytest.mark.parametrize("model", ["first_order", "exact"])
def test_bisection_lands_inside_grid_bracket(model: str, linreg_data: losses.LinRegData) -> None:
    """The bisection finder's bracket lies inside the grid's [beta_lo, beta_hi] per alpha, with
    fewer training runs than the grid."""
    alphas = np.array([1e-3, 0.02, 0.05])
    betas = np.geomspace(0.05, 9, 12)
    loss_fn, p0, tasks = losses.linreg_loss_fn(), losses.linreg_params(), linreg_data.task_batch()
    grid = dynamics.run_grid(
        loss_fn,
        p0,
        tasks,
        alphas=alphas,
        betas=betas,
        model=model,  # type: ignore[arg-type]
        iters=150,
    ).boundary()
    bis = dynamics.bisect_beta_c(
        loss_fn,
        p0,
        tasks,
        alphas=alphas,
        model=model,  # type: ignore[arg-type]
        iters=150,
        beta_min=0.05,
        beta_max=9.0,
        rtol=0.05,
    )
    assert bis.inside_range.all() and grid.inside_grid.all()
    assert np.all(bis.beta_hi / bis.beta_lo <= 1 + 0.05)
    assert np.all(bis.beta_lo >= grid.beta_lo) and np.all(bis.beta_hi <= grid.beta_hi)
    assert bis.n_runs < alphas.size * betas.size


@pytest.mark.parametrize("model", ["surrogate", "first_order", "exact"])
def test_linreg_boundary_brackets_theory(model: str, linreg_data: losses.LinRegData) -> None:
    """App. C: on a coarse 8 x 16 version of the paper's grid the measured edge contains theory's
    beta_c (zero log10 error) in most alpha columns; where it misses, by far less than one cell
    (500 iterations are a finite horizon: just below beta_c the slowest mode contracts by
    |1 - beta lambda~| ~ 1 per step and may not reach the 1e-2 loss in time)."""
    study = linreg_study(
        linreg_data,
        models=[model],  # type: ignore[list-item]
        alphas=np.geomspace(1e-5, 9e-2, 8),
        betas=np.geomspace(5e-3, 9, 16),
    )
    res = study.results[model]
    eigs = np.linalg.eigvalsh(losses.linreg_hessian(linreg_data.x).numpy())
    np.testing.assert_allclose(study.hessian_eigs, eigs, rtol=1e-14)
    np.testing.assert_allclose(
        res.beta_c_theory, beta_c(eigs, study.alphas, model=model), rtol=0, atol=0
    )
    err = res.log10_error
    inside = res.boundary.inside_grid
    cell = np.log10(study.betas[1] / study.betas[0])
    assert inside.sum() >= 6
    assert np.mean(err[inside] == 0.0) >= 0.75
    assert np.max(err[inside]) < 0.1 * cell


def test_classification_threshold_and_boundary_reuse_boundary_module() -> None:
    run = dynamics.CellRun(
        alphas=np.array([[0.1, 0.1, 0.1]]),
        betas=np.array([[1.0, 2.0, 3.0]]),
        final_loss_pre=np.array([[1e-3, 0.5, np.nan]]),
        final_loss_post=np.array([[1e-3, 0.5, np.nan]]),
        initial_loss_pre=np.ones((1, 3)),
        initial_loss_post=np.ones((1, 3)),
        initial_grad_norm=np.ones((1, 3)),
        final_grad_norm=np.array([[0.1, 1.0, np.nan]]),
        diverged_at=np.array([[-1, -1, 7]]),
        iters=10,
        model="exact",
        steps=1,
    )
    assert run.converged().tolist() == [[True, False, False]]
    assert run.converged(threshold=1.0).tolist() == [[True, True, False]]
    assert run.not_growing().tolist() == [[True, True, False]]
    b = run.boundary(threshold=1.0)
    ref = extract_boundary(np.array([0.1]), np.array([1.0, 2.0, 3.0]), [[True, True, False]])
    assert b.beta_lo[0] == ref.beta_lo[0] == 2.0 and b.beta_hi[0] == 3.0


@pytest.mark.parametrize(
    ("alphas", "betas", "match"),
    [
        pytest.param([0.1], [0.0], "betas", id="zero-beta"),
        pytest.param([-0.1], [0.1], "alphas", id="negative-alpha"),
        pytest.param([0.1, 0.2], [0.1], "pair", id="unpaired"),
    ],
)
def test_run_cells_rejects_bad_rates(alphas: list[float], betas: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dynamics.run_cells(
            losses.quadratic_loss,
            {"theta": torch.zeros(1, dtype=F64)},
            TaskBatch(
                *(torch.ones(1, 1, 1, dtype=F64),) * 2, *(torch.ones(1, 1, 1, dtype=F64),) * 2
            ),
            alphas=np.array(alphas),
            betas=np.array(betas),
            model="exact",
            iters=1,
        )


@pytest.mark.slow
def test_appendix_c_full_grid_matches_theory() -> None:
    """The default ``mamlconv linreg`` study (30 x 30 paper grid, 500 iterations, seed 0):
    every measured edge within 0.05 decades of theory (a grid step is 0.11 decades)."""
    from mamlconv.numerics.linreg import MODELS

    data = losses.sample_linreg(torch.Generator().manual_seed(0))
    study = linreg_study(data)
    assert list(study.results) == list(MODELS)
    for res in study.results.values():
        assert res.boundary.inside_grid.sum() >= 25
        assert res.max_log10_error < 0.05, (res.model, res.max_log10_error)


def test_post_adaptation_loss_hides_slow_divergence_beyond_alpha_c() -> None:
    """Seed 1 of App. C, alpha 2.7% beyond alpha_c = 1/lambda_max: theory (Eq. 15) says no beta
    converges (curvature lambda(1 - alpha lambda) < 0), but within 500 iterations small-beta cells
    meet the 1e-2 criterion on the post-adaptation loss, because the inner step multiplies the
    growing mode by (1 - alpha lambda) ~ -0.03. Reported as an infinite error, not hidden; the
    pre-adaptation loss of the same cells has grown."""
    data = losses.sample_linreg(torch.Generator().manual_seed(1))
    study = linreg_study(
        data,
        models=["first_order"],
        alphas=np.array([0.05, 0.0671]),
        betas=np.geomspace(5e-3, 9, 12),
    )
    res = study.results["first_order"]
    assert study.alpha_c < 0.0671 and res.beta_c_theory[1] == 0.0
    np.testing.assert_array_equal(res.contradicted_alphas, [0.0671])
    assert np.isinf(res.log10_error[1]) and res.log10_error[0] == 0.0
    hidden = res.converged[1]
    assert hidden.any()
    assert np.all(res.run.final_loss_pre[1][hidden] > res.run.initial_loss_pre[1][hidden])
    assert np.isfinite(res.max_log10_error) and res.max_log10_error == 0.0
