"""numerics on a CUDA device (opt in with ``--gpu``): the computation follows the params' device
and dtype. float32 on the GPU is compared with float64 on the CPU, with tolerances for float32
(docs/engine.md: a float32 edge is fuzzy by about one grid cell)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from smooth_nets import mlp_loss, mlp_params, sine_tasks

from mamlconv.numerics import curvature as cv
from mamlconv.numerics import dynamics, losses

pytestmark = pytest.mark.gpu
F64 = torch.float64


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.fail("--gpu was given but torch sees no CUDA device")
    return torch.device("cuda")


@pytest.mark.parametrize("operator", ["hessian", "surrogate", "meta", "tg_plus_h2"])
def test_spectrum_float32_cuda_matches_float64_cpu(operator: str, cuda: torch.device) -> None:
    params, tasks = mlp_params([1, 40, 40, 1], seed=0), sine_tasks(8, 10, seed=1)
    ref = cv.spectrum(mlp_loss, params, tasks, operator=operator, alpha=0.05, k=3, tol=1e-10)
    p32 = {k: v.to(cuda, torch.float32) for k, v in params.items()}
    got = cv.spectrum(
        mlp_loss, p32, tasks.to(cuda, torch.float32), operator=operator, alpha=0.05, k=3, tol=1e-5
    )
    np.testing.assert_allclose(got.eigenvalues, ref.eigenvalues, rtol=2e-3)
    assert np.all(got.residuals < 1e-2 * np.abs(ref.eigenvalues).max())


def test_frobenius_hutchinson_on_cuda(cuda: torch.device) -> None:
    params, tasks = mlp_params([1, 5, 5, 1], seed=2), sine_tasks(2, 5, seed=3)
    exact = cv.frobenius_norms(mlp_loss, params, tasks, method="dense")
    p32 = {k: v.to(cuda, torch.float32) for k, v in params.items()}
    est = cv.frobenius_norms(
        mlp_loss, p32, tasks.to(cuda, torch.float32), method="hutchinson", n_probes=400, seed=0
    )
    for name in ("tg", "h2", "tg_plus_h2"):
        want, se = exact[name]["estimate"], est[name]["stderr"]
        assert abs(est[name]["estimate"] - want) < 5 * se + 1e-3 * want, (name, est[name], want)


def test_linreg_grid_on_cuda(cuda: torch.device) -> None:
    data = losses.sample_linreg(torch.Generator().manual_seed(0), n_points=100)
    alphas, betas = np.geomspace(1e-5, 9e-2, 12), np.geomspace(5e-3, 9, 30)
    kwargs = dict(alphas=alphas, betas=betas, model="exact", iters=500)
    ref = dynamics.run_grid(
        losses.linreg_loss_fn(), losses.linreg_params(), data.task_batch(), **kwargs
    )
    p64 = losses.linreg_params(device="cuda")
    got64 = dynamics.run_grid(losses.linreg_loss_fn(), p64, data.task_batch().to(cuda), **kwargs)
    # float64 on another device: rounding may flip a cell sitting on the threshold, no more
    assert np.mean(got64.converged() == ref.converged()) >= 0.99
    p32 = {k: v.float() for k, v in p64.items()}
    got32 = dynamics.run_grid(
        losses.linreg_loss_fn(), p32, data.task_batch().to(cuda, torch.float32), **kwargs
    )
    step = np.log10(betas[1] / betas[0])
    b32, b64 = got32.boundary(), ref.boundary()
    both = b32.inside_grid & b64.inside_grid
    assert both.sum() >= 10
    assert np.all(np.abs(np.log10(b32.beta_lo[both] / b64.beta_lo[both])) <= step + 1e-12)
