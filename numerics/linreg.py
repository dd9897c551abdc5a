"""The paper's Appendix C / Fig. 3 study: MAML on one linear-regression task over an alpha x beta
grid for each MAML object, compared with the theoretical alpha_c and beta_c(alpha).

Setting (App. C): y = a x + b with a, b ~ U[0, 5], x ~ U[-5, 5]; model y^ = w x + c; one task,
the same data inside and outside the adaptation; full-batch gradient descent for the outer loop;
500 iterations; alpha in [1e-5, 9e-2], beta in [5e-3, 9]; a cell "converged" when its final MAML
training loss L(theta - alpha grad L(theta)) is finite and below 1e-2. Choices the paper leaves
open (recorded in every result): theta_0 = (0, 0), 100 data points, the ``mse`` loss convention
(mean of squared errors; ``half_mse`` doubles every threshold), 30 x 30 log-spaced grid.

The loss is exactly quadratic in (w, c), with the constant Hessian of
:func:`numerics.losses.linreg_hessian`; the thresholds come from ``mamlconv.theory.thresholds``
evaluated on its eigenvalues, the dynamics from the autodiff MAML code (``numerics.dynamics``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mamlconv.numerics.boundary import PAPER_LOSS_THRESHOLD, Boundary
from mamlconv.numerics.dynamics import CellRun, run_grid
from mamlconv.numerics.losses import (
    LinRegData,
    LossConvention,
    linreg_hessian,
    linreg_loss_fn,
    linreg_params,
)
from mamlconv.numerics.maml import Variant
from mamlconv.util.files import jsonable

MODELS: tuple[Variant, ...] = ("surrogate", "first_order", "exact")  # as mamlconv.MODELS
PAPER_ALPHAS = (1e-5, 9e-2)
PAPER_BETAS = (5e-3, 9.0)
PAPER_ITERS = 500
DEFAULT_GRID_POINTS = 30
"""Grid points per axis; not given by the paper. 30 log-spaced betas over [5e-3, 9] are
0.11 decades apart, the error bar of every measured boundary."""


def paper_alphas(n: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    return np.geomspace(*PAPER_ALPHAS, n)


def paper_betas(n: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    return np.geomspace(*PAPER_BETAS, n)


@dataclass(frozen=True)
class ModelResult:
    """One MAML object's grid run, its measured boundary and the theory at each alpha."""

    model: str
    run: CellRun
    converged: np.ndarray  # (n_alpha, n_beta) bool
    boundary: Boundary
    alpha_c: float
    beta_c_theory: np.ndarray  # (n_alpha,)

    @property
    def log10_error(self) -> np.ndarray:
        return self.boundary.log10_error(self.beta_c_theory)

    @property
    def max_log10_error(self) -> float:
        """Largest finite per-alpha error (columns where theory and measurement both give an
        edge); the infinite ones are counted by :attr:`contradicted_alphas`."""
        err = self.log10_error
        err = err[np.isfinite(err)]
        return float(err.max()) if err.size else float("nan")

    @property
    def contradicted_alphas(self) -> np.ndarray:
        """Alphas where theory says no beta converges (beta_c = 0: alpha just beyond alpha_c, a
        negative curvature) yet some cell met the loss criterion within the finite horizon: the
        inner step multiplies the slowly growing mode by (1 - alpha lambda) ~ 0, so the
        post-adaptation loss hides it for 500 iterations. Infinite log10 error."""
        return self.boundary.alphas[np.isinf(self.log10_error)]


@dataclass(frozen=True)
class LinRegStudy:
    hessian_eigs: np.ndarray  # ascending
    alphas: np.ndarray
    betas: np.ndarray
    results: dict[str, ModelResult]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def alpha_c(self) -> float:
        """The paper's alpha_c (Eq. 15: 1/lambda_max; surrogate and one-step first order)."""
        from mamlconv.theory.thresholds import alpha_c

        return alpha_c(self.hessian_eigs, model="surrogate")


def linreg_study(
    data: LinRegData,
    *,
    models: tuple[Variant, ...] | list[Variant] = MODELS,
    alphas: np.ndarray | None = None,
    betas: np.ndarray | None = None,
    iters: int = PAPER_ITERS,
    threshold: float = PAPER_LOSS_THRESHOLD,
    convention: LossConvention = "mse",
    theta0: tuple[float, float] = (0.0, 0.0),
    steps: int = 1,
) -> LinRegStudy:
    """Run the Fig. 3 grids (float64, CPU) and attach theory and measured boundaries.

    Progress (cell-iterations done, time left) goes to the ``mamlconv.util.progress`` logger."""
    from mamlconv.theory.thresholds import alpha_c, beta_c
    from mamlconv.util.progress import Eta

    alphas = paper_alphas() if alphas is None else np.asarray(alphas, dtype=float)
    betas = paper_betas() if betas is None else np.asarray(betas, dtype=float)
    data = LinRegData(data.x.double().cpu(), data.y.double().cpu(), data.a, data.b)
    loss_fn = linreg_loss_fn(convention)
    eigs = np.linalg.eigvalsh(linreg_hessian(data.x, convention=convention).numpy())
    params0 = linreg_params(*theta0)
    tasks = data.task_batch()
    results = {}
    per_model = len(alphas) * len(betas) * iters
    eta = Eta("linreg", len(models) * per_model, unit="cell-iterations")
    for m, model in enumerate(models):
        k = 1 if model == "surrogate" else steps
        run = run_grid(
            loss_fn,
            params0,
            tasks,
            alphas=alphas,
            betas=betas,
            model=model,
            steps=k,
            iters=iters,
            progress=lambda n, model=model: eta.advance(n, note=model),
        )
        results[model] = ModelResult(
            model=model,
            run=run,
            converged=run.converged(threshold=threshold),
            boundary=run.boundary(threshold=threshold),
            alpha_c=alpha_c(eigs, model=model, steps=k),
            beta_c_theory=np.asarray(beta_c(eigs, alphas, model=model, steps=k), dtype=float),
        )
        # Diverged cells stop early: count the model as done in full.
        eta.advance((m + 1) * per_model - eta.done, note=f"{model} done")
    eta.finish()
    config = {
        "setting": "paper App. C / Fig. 3",
        "iters": iters,
        "threshold": threshold,
        "loss": convention,
        "theta0": list(theta0),
        "steps": steps,
        "n_points": int(data.x.numel()),
        "true_slope": data.a,
        "true_bias": data.b,
        "outer_optimizer": "full-batch gradient descent",
        "inner_data": "same as outer (one task, App. C)",
    }
    return LinRegStudy(eigs, alphas, betas, results, config)


def study_to_json(study: LinRegStudy) -> dict[str, Any]:
    """The ``mamlconv linreg --json`` object (strict JSON: every non-finite number is null).

    Top level: ``hessian_eigs`` (ascending), ``alpha_c`` (Eq. 15, 1/lambda_max), ``alphas``,
    ``betas``, ``config``, ``models``. Per model: ``final_loss_post``, ``final_loss_pre``,
    ``converged`` (alpha-major (n_alpha, n_beta) nested lists), ``boundary`` (per alpha:
    ``alpha``, ``beta_lo``, ``beta_hi`` (null when above the grid), ``beta_c_theory`` (null when
    infinite), ``log10_error`` (null where infinite: theory beta_c = 0 but a cell converged),
    ``inside_grid``, ``monotone``), ``alpha_c`` (null: none, as for exact MAML),
    ``max_log10_error`` (over the finite errors), ``alphas_theory_unstable_but_converged`` and
    ``n_converged``.
    """
    models = {}
    for name, res in study.results.items():
        models[name] = {
            "alpha_c": res.alpha_c,
            "final_loss_post": res.run.final_loss_post,
            "final_loss_pre": res.run.final_loss_pre,
            "converged": res.converged,
            "boundary": res.boundary.as_records(res.beta_c_theory),
            "max_log10_error": res.max_log10_error,
            "alphas_theory_unstable_but_converged": res.contradicted_alphas,
            "n_converged": int(res.converged.sum()),
        }
    return jsonable(
        {
            "hessian_eigs": study.hessian_eigs,
            "alpha_c": study.alpha_c,
            "alphas": study.alphas,
            "betas": study.betas,
            "config": study.config,
            "models": models,
        }
    )


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))
