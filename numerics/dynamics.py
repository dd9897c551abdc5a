"""Outer-loop gradient descent over a whole alpha x beta grid at once, and the empirical
stability boundary it implies (MATH.md "Empirical thresholds"; the paper's Fig. 3 and App. C).

Two engines give the same numbers on quadratic losses (a test holds them to float64 round-off):

- :func:`run_cells` / :func:`run_grid`: any differentiable ``loss_fn(params, x, y)``; each outer
  step is ``theta <- theta - beta * mean_tau direction_tau`` with the direction of
  :func:`mamlconv.numerics.maml.task_meta_gradient` (exact, first_order or surrogate, k steps),
  ``vmap``-ed over tasks and over cells (no Python loop over cells). Dead cells (non-finite
  parameters) are frozen and dropped from the batch, so NaN never spreads and nothing warns.
- :func:`run_grid_quadratic`: the closed-form linear update of :mod:`numerics.quadratic` for
  quadratic tasks (same data inside and outside), thousands of cells in milliseconds.

Recorded per cell, at the FINAL parameters theta_N: the pre-adaptation loss L(theta_N) and the
MAML training loss L(theta_N - alpha grad L(theta_N)) (k steps; "post-adaptation"), both as the
mean over tasks of the query loss, NaN when non-finite; the norm of the mean meta-gradient at
theta_0 and theta_N; the iteration (checked every ``CHECK_EVERY`` steps) at which the
parameters were found non-finite.
Classification and boundaries use :mod:`mamlconv.numerics.boundary` (not re-implemented here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap

from mamlconv.numerics.boundary import (
    PAPER_LOSS_THRESHOLD,
    BisectionResult,
    Boundary,
    bisect_boundary,
    classify,
    extract_boundary,
)
from mamlconv.numerics.maml import LossFn, Variant, check_variant, task_meta_gradient
from mamlconv.numerics.quadratic import direction_matrix, inner_jacobian
from mamlconv.numerics.tasks import Params, TaskBatch

CHECK_EVERY = 10
"""Iterations between finiteness checks (each check synchronises the device)."""


@dataclass(frozen=True)
class CellRun:
    """Results of independent training runs, one per (alphas[i], betas[i]) cell.

    Arrays have shape ``alphas.shape`` (1-D for :func:`run_cells`, (n_alpha, n_beta) for grids).
    """

    alphas: np.ndarray
    betas: np.ndarray
    final_loss_pre: np.ndarray  # L(theta_N), NaN when non-finite
    final_loss_post: np.ndarray  # L(theta_N - alpha g), NaN when non-finite
    initial_loss_pre: np.ndarray
    initial_loss_post: np.ndarray
    initial_grad_norm: np.ndarray  # ||mean meta-gradient|| at theta_0
    final_grad_norm: np.ndarray  # at theta_N, NaN when non-finite
    diverged_at: np.ndarray  # check (every CHECK_EVERY its) that found non-finite params; -1 none
    iters: int
    model: str
    steps: int

    @property
    def finite(self) -> np.ndarray:
        return np.isfinite(self.final_loss_post) & np.isfinite(self.final_loss_pre)

    def converged(self, *, threshold: float = PAPER_LOSS_THRESHOLD) -> np.ndarray:
        """Finite and MAML training (post-adaptation) loss below ``threshold`` (Fig. 3)."""
        return classify(self.final_loss_post, threshold=threshold)

    def not_growing(self, *, rtol: float = 1e-9) -> np.ndarray:
        """Finite and ``||meta-gradient||`` at theta_N no larger than at theta_0.

        The stability criterion for linear dynamics (quadratic tasks): the mean meta-gradient
        evolves as ``(I - beta D) grad`` with a symmetric ``D``, so its norm cannot grow iff every
        mode has ``|1 - beta d_i| <= 1``; unlike a loss threshold it does not depend on how slowly
        the stable modes converge in N iterations.
        """
        with np.errstate(invalid="ignore"):
            ok = self.final_grad_norm <= self.initial_grad_norm * (1 + rtol)
        return np.isfinite(self.final_grad_norm) & ok

    def boundary(self, *, threshold: float = PAPER_LOSS_THRESHOLD) -> Boundary:
        """Per-alpha upper edge of the converged cells of a grid (needs grid-shaped arrays)."""
        if self.alphas.ndim != 2:
            raise ValueError("boundary() needs a grid run (arrays of shape (n_alpha, n_beta))")
        return extract_boundary(
            self.alphas[:, 0], self.betas[0], self.converged(threshold=threshold)
        )

    def reshape(self, shape: tuple[int, ...]) -> CellRun:
        fields = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            fields[name] = value.reshape(shape) if isinstance(value, np.ndarray) else value
        return CellRun(**fields)


def maml_step(
    params: Params,
    tasks: TaskBatch,
    *,
    loss_fn: LossFn,
    alpha: float | Tensor,
    beta: float | Tensor,
    steps: int = 1,
    model: Variant,
) -> tuple[Params, Tensor, Tensor, Tensor]:
    """One full-batch outer MAML step (paper Eq. 2, task mean):
    ``theta <- theta - beta * mean_tau d_tau(theta)`` with ``d_tau`` the ``model`` meta-gradient of
    :func:`numerics.maml.task_meta_gradient` (k = ``steps`` inner steps), ``vmap``-ed over the
    leading task axis of ``tasks``. A pure function, ``vmap``-able over (params, alpha, beta).

    Returns ``(new_params, loss_pre, loss_post, grad_norm)`` with the losses (mean over tasks of
    L_q(theta) and L_q(theta_k)) and the norm of the mean meta-gradient, all at the INPUT params.
    On a quadratic this is the closed-form ``numerics.quadratic.update_matrix`` (tested).
    """

    def per_task(task: TaskBatch) -> tuple[Params, Tensor, Tensor]:
        d, aux = task_meta_gradient(
            params, task, loss_fn=loss_fn, alpha=alpha, steps=steps, variant=model
        )
        return d, aux["loss_pre"], aux["loss_post"]

    d, pre, post = vmap(per_task)(tasks)
    mean_d = {k: v.mean(0) for k, v in d.items()}
    norm2 = sum((v * v).sum() for v in mean_d.values())
    new = {k: p - beta * mean_d[k] for k, p in params.items()}
    return new, pre.mean(), post.mean(), torch.sqrt(norm2)


def _as_cells(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(alphas, dtype=float).reshape(-1)
    b = np.asarray(betas, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"alphas and betas must pair up, got {a.size} and {b.size} values")
    if np.any(~np.isfinite(a)) or np.any(a < 0):
        raise ValueError("alphas must be finite and >= 0")
    if np.any(~np.isfinite(b)) or np.any(b <= 0):
        raise ValueError("betas must be finite and > 0")
    return a, b


def _nan_where_nonfinite(x: Tensor) -> np.ndarray:
    out = x.detach().double().cpu().numpy()
    return np.where(np.isfinite(out), out, np.nan)


def run_cells(
    loss_fn: LossFn,
    params0: Params,
    tasks: TaskBatch,
    *,
    alphas: np.ndarray,
    betas: np.ndarray,
    model: Variant,
    steps: int = 1,
    iters: int,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CellRun:
    """Train one MAML model per cell (alphas[i], betas[i]) from ``params0`` for ``iters`` full-batch
    outer steps on the fixed ``tasks`` (leading task axis; all tasks every step).
    ``progress(n)``: called after each outer step of a chunk of ``n`` cells.

    Outer update (paper Eq. 2 with a task mean): ``theta <- theta - beta * mean_tau d_tau(theta)``
    with ``d_tau`` the ``model`` meta-gradient of ``task_meta_gradient``. Computation follows the
    device and dtype of ``params0`` (use float64 for checks against theory).
    """
    check_variant(model, steps)
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    a_np, b_np = _as_cells(alphas, betas)
    n = a_np.size
    chunk = n if chunk_size is None else max(1, int(chunk_size))
    parts = [
        _run_chunk(
            loss_fn,
            params0,
            tasks,
            a_np[s : s + chunk],
            b_np[s : s + chunk],
            model=model,
            steps=steps,
            iters=iters,
            progress=progress,
        )
        for s in range(0, n, chunk)
    ]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return CellRun(alphas=a_np, betas=b_np, iters=iters, model=model, steps=steps, **merged)


def _run_chunk(
    loss_fn: LossFn,
    params0: Params,
    tasks: TaskBatch,
    alphas: np.ndarray,
    betas: np.ndarray,
    *,
    model: Variant,
    steps: int,
    iters: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    ref = next(iter(params0.values()))
    dtype, device = ref.dtype, ref.device
    n = alphas.size

    def cell_update(
        params: Params, alpha: Tensor, beta: Tensor
    ) -> tuple[Params, Tensor, Tensor, Tensor]:
        return maml_step(
            params, tasks, loss_fn=loss_fn, alpha=alpha, beta=beta, steps=steps, model=model
        )

    step = vmap(cell_update)
    alpha_t = torch.as_tensor(alphas, dtype=dtype, device=device)
    beta_t = torch.as_tensor(betas, dtype=dtype, device=device)
    params = {k: v.detach().expand(n, *v.shape).clone() for k, v in params0.items()}

    diverged_at = np.full(n, -1, dtype=np.int64)
    active = torch.arange(n, device=device)
    _, pre0, post0, g0 = step(params, alpha_t, beta_t)
    a_act, b_act = alpha_t, beta_t
    for t in range(1, iters + 1):
        params, _, _, _ = step(params, a_act, b_act)
        if progress is not None:
            progress(n)
        if t % CHECK_EVERY == 0 or t == iters:
            ok = torch.ones(active.numel(), dtype=torch.bool, device=device)
            for v in params.values():
                ok &= torch.isfinite(v.reshape(active.numel(), -1)).all(dim=1)
            if not bool(ok.all()):
                dead = active[~ok].cpu().numpy()
                diverged_at[dead] = t
                active, a_act, b_act = active[ok], a_act[ok], b_act[ok]
                params = {k: v[ok] for k, v in params.items()}
            if active.numel() == 0:
                break
    result = {
        "final_loss_pre": np.full(n, np.nan),
        "final_loss_post": np.full(n, np.nan),
        "final_grad_norm": np.full(n, np.nan),
    }
    if active.numel() > 0:
        _, pre, post, g = step(params, a_act, b_act)
        idx = active.cpu().numpy()
        result["final_loss_pre"][idx] = _nan_where_nonfinite(pre)
        result["final_loss_post"][idx] = _nan_where_nonfinite(post)
        result["final_grad_norm"][idx] = _nan_where_nonfinite(g)
    result.update(
        initial_loss_pre=_nan_where_nonfinite(pre0),
        initial_loss_post=_nan_where_nonfinite(post0),
        initial_grad_norm=_nan_where_nonfinite(g0),
        diverged_at=diverged_at,
    )
    return result


def _grid(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
    a = np.asarray(alphas, dtype=float).reshape(-1)
    b = np.asarray(betas, dtype=float).reshape(-1)
    aa, bb = np.meshgrid(a, b, indexing="ij")  # (n_alpha, n_beta), alpha-major
    return aa.reshape(-1), bb.reshape(-1), aa.shape


def run_grid(
    loss_fn: LossFn,
    params0: Params,
    tasks: TaskBatch,
    *,
    alphas: np.ndarray,
    betas: np.ndarray,
    model: Variant,
    steps: int = 1,
    iters: int,
    chunk_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CellRun:
    """:func:`run_cells` on the alpha-major grid alphas x betas; arrays (n_alpha, n_beta)."""
    a, b, shape = _grid(alphas, betas)
    run = run_cells(
        loss_fn,
        params0,
        tasks,
        alphas=a,
        betas=b,
        model=model,
        steps=steps,
        iters=iters,
        chunk_size=chunk_size,
        progress=progress,
    )
    return run.reshape(shape)


def run_cells_quadratic(
    hessians: Tensor,
    centers: Tensor,
    theta0: Tensor,
    *,
    alphas: np.ndarray,
    betas: np.ndarray,
    model: Variant,
    steps: int = 1,
    iters: int,
    offsets: Tensor | None = None,
) -> CellRun:
    """Closed-form twin of :func:`run_cells` for quadratic tasks
    ``L_tau = 1/2 (theta - c_tau)^T A_tau (theta - c_tau) + offset_tau`` (same data inside and
    outside the adaptation). ``hessians`` (T, d, d), ``centers`` (T, d), ``theta0`` (d,);
    ``alphas``/``betas`` pair up into cells.

    Outer step: ``theta <- theta - beta (Dbar theta - mean_tau D_tau c_tau)`` with the ``D_tau`` of
    :func:`numerics.quadratic.direction_matrix`; one batched matrix product per iteration.
    """
    check_variant(model, steps)
    a_np, b_np = _as_cells(alphas, betas)
    dtype, device = hessians.dtype, hessians.device
    if hessians.ndim == 2:
        hessians, centers = hessians[None], centers.reshape(1, -1)
    n_tasks, dim = hessians.shape[0], hessians.shape[-1]
    off = torch.zeros(n_tasks, dtype=dtype, device=device) if offsets is None else offsets
    al = torch.as_tensor(a_np, dtype=dtype, device=device)  # (C,)
    be = torch.as_tensor(b_np, dtype=dtype, device=device)[:, None]  # (C, 1)
    d_mat = direction_matrix(hessians[:, None], alpha=al[None, :], steps=steps, model=model)
    d_bar = d_mat.mean(0)  # (C, d, d)
    b_bar = (d_mat @ centers[:, None, :, None])[..., 0].mean(0)  # (C, d)
    inner_steps = 1 if model == "surrogate" else steps
    p_mat = inner_jacobian(hessians[:, None], alpha=al[None, :], steps=inner_steps)  # (T,C,d,d)

    def direction(theta: Tensor) -> Tensor:
        return torch.einsum("cij,cj->ci", d_bar, theta) - b_bar

    def losses(theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        v = theta[None] - centers[:, None, :]  # v_tau = theta - c_tau: (T, C, d)
        av = torch.einsum("tij,tcj->tci", hessians, v)
        pre = (0.5 * (v * av).sum(-1) + off[:, None]).mean(0)
        vk = torch.einsum("tcij,tcj->tci", p_mat, v)
        avk = torch.einsum("tij,tcj->tci", hessians, vk)
        post = (0.5 * (vk * avk).sum(-1) + off[:, None]).mean(0)
        return pre, post, direction(theta).norm(dim=-1)

    theta = theta0.to(dtype=dtype, device=device).expand(a_np.size, dim).clone()
    pre0, post0, g0 = losses(theta)
    diverged_at = torch.full((a_np.size,), -1, dtype=torch.int64, device=device)
    for t in range(1, iters + 1):
        theta = theta - be * direction(theta)
        if t % CHECK_EVERY == 0 or t == iters:
            bad = ~torch.isfinite(theta).all(-1)
            diverged_at = torch.where(bad & (diverged_at < 0), t, diverged_at)
            # Freeze dead cells at NaN: no inf arithmetic in later steps, no warnings.
            theta = torch.where(bad[:, None], torch.nan, theta)
    pre, post, g = losses(theta)
    dead = (diverged_at >= 0).cpu().numpy()

    def final(x: Tensor) -> np.ndarray:
        return np.where(dead, np.nan, _nan_where_nonfinite(x))

    return CellRun(
        alphas=a_np,
        betas=b_np,
        final_loss_pre=final(pre),
        final_loss_post=final(post),
        initial_loss_pre=_nan_where_nonfinite(pre0),
        initial_loss_post=_nan_where_nonfinite(post0),
        initial_grad_norm=_nan_where_nonfinite(g0),
        final_grad_norm=final(g),
        diverged_at=diverged_at.cpu().numpy(),
        iters=iters,
        model=model,
        steps=steps,
    )


def run_grid_quadratic(
    hessians: Tensor,
    centers: Tensor,
    theta0: Tensor,
    *,
    alphas: np.ndarray,
    betas: np.ndarray,
    model: Variant,
    steps: int = 1,
    iters: int,
    offsets: Tensor | None = None,
) -> CellRun:
    """:func:`run_cells_quadratic` on the alpha-major grid; arrays (n_alpha, n_beta)."""
    a, b, shape = _grid(alphas, betas)
    run = run_cells_quadratic(
        hessians,
        centers,
        theta0,
        alphas=a,
        betas=b,
        model=model,
        steps=steps,
        iters=iters,
        offsets=offsets,
    )
    return run.reshape(shape)


def bisect_beta_c(
    loss_fn: LossFn,
    params0: Params,
    tasks: TaskBatch,
    *,
    alphas: np.ndarray,
    model: Variant,
    steps: int = 1,
    iters: int,
    beta_min: float,
    beta_max: float,
    rtol: float = 1e-2,
    threshold: float = PAPER_LOSS_THRESHOLD,
) -> BisectionResult:
    """The empirical beta_c(alpha) for every alpha at once by bisection on log(beta), each probe a
    :func:`run_cells` training run classified like the grid (finite, post loss < threshold).

    Uses :func:`numerics.boundary.bisect_boundary`; about ``log2(log(beta_max/beta_min) /
    log(1 + rtol))`` rounds, i.e. ~10 runs per alpha for rtol = 1e-2 over three decades,
    against ``n_beta`` runs per alpha for a grid of the same range.
    """

    def is_stable(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        run = run_cells(
            loss_fn, params0, tasks, alphas=a, betas=b, model=model, steps=steps, iters=iters
        )
        return run.converged(threshold=threshold)

    return bisect_boundary(is_stable, alphas, beta_min=beta_min, beta_max=beta_max, rtol=rtol)
