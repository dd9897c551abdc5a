"""Several quadratic tasks: the extended version's "every eigenvalue of every task" condition
against the true stability edge (docs/MATH.md section 7; docs/CLAIMS.md X-3).

With tasks ``L_tau = 1/2 (theta - c_tau)^T A_tau (theta - c_tau)`` (same data inside and
outside), outer gradient descent on the task mean is the affine map
``theta <- theta - beta (Dbar theta - b)`` with ``Dbar = E_tau D_tau``, ``D_tau`` the direction
matrix of :func:`numerics.quadratic.direction_matrix`; it is stable iff
``beta < 2 / lambda_max(Dbar)``. For the surrogate ``Dbar`` is the task-mean surrogate Hessian
``E_tau [A_tau - alpha A_tau^2]`` (Tg = 0 on quadratics), for exact MAML the meta-Hessian. The
A_tau are not simultaneously diagonalisable, so this edge is not a function of the task
spectra; the bound ``beta < 2 / max_{tau, i} lambda~(lambda_{tau, i})`` (theory ``beta_c`` on all
eigenvalues of all tasks together) is sufficient because ``lambda_max(E D_tau) <=
max_tau lambda_max(D_tau)`` for symmetric positive semi-definite ``D_tau``. This module measures the
three numbers (bound, spectral edge, empirical edge by bisection on the dynamics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mamlconv.numerics.boundary import bisect_boundary
from mamlconv.numerics.dynamics import run_cells_quadratic
from mamlconv.numerics.losses import make_quadratic
from mamlconv.numerics.maml import Variant, check_variant
from mamlconv.numerics.quadratic import direction_matrix


@dataclass(frozen=True)
class TaskFamily:
    """Quadratic tasks sharing a dimension: ``hessians`` (T, d, d), ``centers`` (T, d), and the
    spectrum of each task (list of (d,) arrays)."""

    hessians: Tensor
    centers: Tensor
    eigs: list[np.ndarray]

    @property
    def all_eigs(self) -> np.ndarray:
        return np.concatenate(self.eigs)


def random_task_family(
    n_tasks: int,
    dim: int,
    *,
    seed: int,
    eig_range: tuple[float, float] = (1e-2, 1e2),
    center_scale: float = 1.0,
) -> TaskFamily:
    """T tasks with log-uniform spectra in ``eig_range``, independent Haar bases, Gaussian
    centres of scale ``center_scale``; everything drawn from ``seed`` (float64)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.log10(eig_range[0]), np.log10(eig_range[1])
    hs, cs, eigs = [], [], []
    for _ in range(n_tasks):
        lam = 10.0 ** rng.uniform(lo, hi, dim)
        centre = torch.as_tensor(center_scale * rng.standard_normal(dim))
        q = make_quadratic(lam, seed=int(rng.integers(2**31)), center=centre)
        hs.append(q.hessian)
        cs.append(q.center)
        eigs.append(lam)
    return TaskFamily(torch.stack(hs), torch.stack(cs), eigs)


def every_eigenvalue_bound(
    family: TaskFamily, alpha: float, *, model: Variant, steps: int = 1
) -> float:
    """The extended version's sufficient beta: theory ``beta_c`` over every eigenvalue of every
    task (``mamlconv.theory.thresholds.beta_c`` on the pooled spectra)."""
    from mamlconv.theory.thresholds import beta_c

    return float(beta_c(family.all_eigs, alpha, model=model, steps=steps))


def mean_operator_beta_c(
    family: TaskFamily, alpha: float, *, model: Variant, steps: int = 1
) -> float:
    """``2 / lambda_max(E_tau D_tau)``: the exact edge of the multi-task linear dynamics
    (inf when no eigenvalue is positive, 0 when one is negative, as theory's ``beta_c``)."""
    check_variant(model, steps)
    d_bar = direction_matrix(family.hessians, alpha=alpha, steps=steps, model=model).mean(0)
    ev = torch.linalg.eigvalsh(0.5 * (d_bar + d_bar.T)).numpy()
    if ev.min() < -1e-12 * max(1.0, abs(ev).max()):
        return 0.0
    top = ev.max()
    return float(2.0 / top) if top > 0 else float("inf")


def empirical_beta_c(
    family: TaskFamily,
    alphas: np.ndarray,
    *,
    model: Variant,
    steps: int = 1,
    iters: int = 1000,
    beta_min: float,
    beta_max: float,
    rtol: float = 1e-3,
    seed: int = 0,
) -> np.ndarray:
    """Measured edge per alpha: bisection (``numerics.boundary.bisect_boundary``) on the
    closed-form dynamics from a random theta_0, a run counted stable when its mean
    meta-gradient did not grow (:meth:`CellRun.not_growing`). Returns the geometric centre of
    the final bracket (NaN where the edge is outside [beta_min, beta_max]). A finite horizon:
    just above the edge the binding mode grows by only ``|1 - beta d| = 1 + 2 delta`` per step,
    from a component that may be small, so the measured edge can sit a few ``1/iters``
    (relative) above the true one."""
    theta0 = torch.as_tensor(np.random.default_rng(seed).standard_normal(family.hessians.shape[-1]))

    def is_stable(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        run = run_cells_quadratic(
            family.hessians,
            family.centers,
            theta0,
            alphas=a,
            betas=b,
            model=model,
            steps=steps,
            iters=iters,
        )
        return run.not_growing()

    res = bisect_boundary(is_stable, alphas, beta_min=beta_min, beta_max=beta_max, rtol=rtol)
    return np.where(res.inside_range, np.sqrt(res.beta_lo * res.beta_hi), np.nan)
