"""The training loop: :func:`train_cells` trains many cells (alpha_c, beta_c) at once by the
outer rule (SGD or Adam) on shared task samples, freezing a cell at the iteration it diverges;
:func:`make_step` chooses the step backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.generic import make_generic_step
from mamlconv.experiments.engine.mlp import make_mlp_step
from mamlconv.experiments.engine.state import initial_state, resolve_device, resolve_dtype
from mamlconv.experiments.engine.step import StepFn
from mamlconv.numerics.tasks import Params, Problem

BACKENDS: tuple[str, ...] = ("auto", "generic", "mlp", "grouped")


ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
"""Adam's defaults (Kingma & Ba 2015; torch.optim.Adam)."""


ProgressFn = Callable[[int, int], None]
"""Called as ``progress(iteration, n_active_cells)`` after every outer iteration."""


def auto_backend(problem: Problem, *, variant: str, steps: int, device: str | None) -> str:
    """The backend ``auto`` picks (docs/engine.md, "Three backends"): ``mlp`` for the sinusoid
    MLP with one inner step; ``grouped`` on a CPU for a network of known layers
    (:func:`~mamlconv.experiments.engine.grouped.layer_plan`) and exact or first-order MAML
    (measured ahead of ``generic`` and of a per-task loop, ``benchmarks/cnn_bench.py``);
    ``generic`` otherwise, the batched path a GPU runs (``device`` None: not known to be a
    CPU)."""
    from mamlconv.experiments.engine.grouped import VARIANTS, layer_plan
    from mamlconv.experiments.problems.sinusoid import SinusoidProblem

    if isinstance(problem, SinusoidProblem) and steps == 1:
        return "mlp"
    on_cpu = device is not None and str(device).startswith("cpu")
    if on_cpu and variant in VARIANTS and layer_plan(problem) is not None:
        return "grouped"
    return "generic"


def make_step(
    problem: Problem,
    *,
    variant: str,
    steps: int,
    backend: str = "auto",
    device: str | None = None,
) -> StepFn:
    """The step function of ``backend`` (``auto``: :func:`auto_backend` for ``device``)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = auto_backend(problem, variant=variant, steps=steps, device=device)
    if backend == "mlp":
        return make_mlp_step(problem, variant=variant, steps=steps)
    if backend == "grouped":
        from mamlconv.experiments.engine.grouped import make_grouped_step

        return make_grouped_step(problem, variant=variant, steps=steps)
    return make_generic_step(problem, variant=variant, steps=steps)


@dataclass
class CellRun:
    """Results of training a set of cells; arrays have the cell index first.

    Trajectories (C, R) are recorded at ``record_iters`` (the value at iteration t is measured
    at the parameters *before* update t) and are NaN after a cell diverged. ``diverged_at`` is
    the iteration whose loss crossed the divergence level (-1: never); ``final_loss`` is the
    MAML loss after ``iters`` updates, or the loss that froze the cell.
    """

    alphas: np.ndarray
    betas: np.ndarray
    record_iters: np.ndarray
    loss: np.ndarray
    loss_pre: np.ndarray
    grad_norm: np.ndarray
    grad_inner: np.ndarray
    meta_grad_norm: np.ndarray
    final_loss: np.ndarray
    diverged_at: np.ndarray
    final_params: dict[str, np.ndarray] | None
    max_loss: np.ndarray | None = None
    """Running maximum of the MAML loss over every iteration a cell trained (up to and
    including the one that froze it; NaN when that loss was NaN): with the loss at iteration 0
    and ``final_loss`` it decides every divergence criterion after the fact
    (:mod:`mamlconv.experiments.readings`)."""

    @property
    def diverged(self) -> np.ndarray:
        return self.diverged_at >= 0

    TRAJECTORIES = ("loss", "loss_pre", "grad_norm", "grad_inner", "meta_grad_norm")

    @classmethod
    def concatenate(cls, runs: list[CellRun]) -> CellRun:
        first = runs[0]
        params = None
        if first.final_params is not None:
            params = {
                n: np.concatenate([r.final_params[n] for r in runs])  # type: ignore[index]
                for n in first.final_params
            }
        cat = {
            f: np.concatenate([getattr(r, f) for r in runs])
            for f in ("alphas", "betas", *cls.TRAJECTORIES, "final_loss", "diverged_at")
        }
        max_loss = None
        if all(r.max_loss is not None for r in runs):
            max_loss = np.concatenate([r.max_loss for r in runs])  # type: ignore[misc]
        return cls(record_iters=first.record_iters, final_params=params, max_loss=max_loss, **cat)


class _Adam:
    """Functional Adam with per-cell learning rates (torch.optim.Adam's update, batched)."""

    def __init__(self, params: Params) -> None:
        self.m = {n: torch.zeros_like(p) for n, p in params.items()}
        self.v = {n: torch.zeros_like(p) for n, p in params.items()}
        self.t = 0

    def update(self, params: Params, grads: Params, lr: Tensor) -> Params:
        self.t += 1
        c1 = 1 - ADAM_B1**self.t
        c2 = 1 - ADAM_B2**self.t
        out = {}
        for n, p in params.items():
            g = grads[n]
            self.m[n] = self.m[n] * ADAM_B1 + g * (1 - ADAM_B1)
            self.v[n] = self.v[n] * ADAM_B2 + g * g * (1 - ADAM_B2)
            denom = self.v[n].sqrt() / math.sqrt(c2) + ADAM_EPS
            shape = (-1,) + (1,) * (p.dim() - 1)
            out[n] = p - (lr / c1).reshape(shape) * self.m[n] / denom
        return out

    def keep(self, mask: Tensor) -> None:
        self.m = {n: v[mask] for n, v in self.m.items()}
        self.v = {n: v[mask] for n, v in self.v.items()}


def train_cells(
    problem: Problem,
    config: SweepConfig,
    alphas: np.ndarray,
    betas: np.ndarray,
    *,
    backend: str = "auto",
    save_params: bool = False,
    progress: ProgressFn | None = None,
    check_every: int = 1,
    compile: bool = False,
) -> CellRun:
    """Train the cells (alphas[c], betas[c]) together for ``config.iters`` outer iterations.

    Uses the config's variant, steps, outer optimizer, task stream, seed, dtype, device and
    divergence level; ``chunk_size`` is the caller's business (see :mod:`.sweep`): all cells
    given here form one batch. ``save_params``: also return every cell's final parameters.
    ``check_every`` (host looks for diverged cells every k iterations) and ``compile``
    (``torch.compile`` the step) are the opt-in GPU options of :mod:`.deferred`; same numbers.
    """
    alphas = np.asarray(alphas, dtype=float).ravel()
    betas = np.asarray(betas, dtype=float).ravel()
    if alphas.shape != betas.shape:
        raise ValueError(f"alphas and betas differ in size: {alphas.size} vs {betas.size}")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    step = make_step(
        problem, variant=config.variant, steps=config.steps, backend=backend, device=device
    )
    if compile:
        step = torch.compile(step, dynamic=False)
    init, stream = initial_state(problem, config, dtype=dtype, device=device)

    n_cells = alphas.size
    record_iters = config.record_iters
    n_rec = record_iters.size
    rec_index = {int(t): r for r, t in enumerate(record_iters)}
    traj = {f: np.full((n_cells, n_rec), np.nan) for f in CellRun.TRAJECTORIES}
    final_loss = np.full(n_cells, np.nan)
    diverged_at = np.full(n_cells, -1, dtype=np.int64)
    max_loss = np.full(n_cells, -np.inf)
    final_params = (
        {n: np.full((n_cells, *p.shape), np.nan, dtype=np.float64) for n, p in init.items()}
        if save_params
        else None
    )

    # State of the active cells only; `active` maps rows to cell indices.
    active = torch.arange(n_cells)
    params = {n: p.unsqueeze(0).repeat(n_cells, *([1] * p.dim())) for n, p in init.items()}
    alpha_t = torch.as_tensor(alphas, dtype=dtype, device=device)
    beta_t = torch.as_tensor(betas, dtype=dtype, device=device)
    adam = _Adam(params) if config.outer == "adam" else None
    deferred = None
    if check_every != 1:
        from mamlconv.experiments.engine.deferred import DeferredDivergence

        deferred = DeferredDivergence(
            n_cells, every=check_every, device=device, keep_params=save_params
        )

    def store_params(rows: Tensor, cells: np.ndarray, source: Params | None = None) -> None:
        if final_params is not None and cells.size:
            for n, p in (params if source is None else source).items():
                final_params[n][cells] = p[rows].detach().cpu().double().numpy()

    def beta_views() -> dict[str, Tensor]:  # beta_c broadcast against each parameter
        return {n: beta_t.reshape((-1,) + (1,) * (p.dim() - 1)) for n, p in params.items()}

    betas_b = beta_views()
    run_max = torch.full((n_cells,), -math.inf, dtype=dtype, device=device)  # of active rows
    for t in range(config.iters + 1):
        if active.numel() == 0:
            break
        tasks = stream.next()
        last = t == config.iters
        rec = rec_index.get(t)
        out = step(params, alpha_t, tasks, need_direction=not last, need_stats=rec is not None)
        loss = out.loss_post.detach()
        dead = ~torch.isfinite(loss) | (loss > config.divergence_level)
        fresh = slice(None)  # rows recorded at `rec`: all, or (deferred) those alive before t
        check = True
        if deferred is not None:
            dead, loss = deferred.observe(t, dead, loss, params)
            check = deferred.is_check(t, last=last, recorded=rec is not None)
            if check:
                at_np = deferred.iteration(t).cpu().numpy()
                fresh = at_np == t
        # Running maximum for the post-hoc criteria, taken after the deferred check so that a
        # diverged row reports its loss at the crossing (the maximum stops there, as it does
        # with a check every iteration). fmax ignores one NaN: keep a NaN loss visible.
        run_max = torch.where(torch.isnan(loss), loss, torch.fmax(run_max, loss))
        any_dead = check and bool(dead.any())  # (deferred) no host sync between checks
        if rec is not None or any_dead or last:  # host-side bookkeeping only when needed
            cells = active.numpy()
            loss_np = loss.double().cpu().numpy()
            dead_np = dead.cpu().numpy()
        if rec is not None:
            traj["loss"][cells[fresh], rec] = loss_np[fresh]
            for name in ("loss_pre", "grad_norm", "grad_inner"):
                value = getattr(out, name)
                if value is not None:  # None: a diagnostic the backend did not compute
                    traj[name][cells[fresh], rec] = value.double().cpu().numpy()[fresh]
            if out.direction is not None:
                sq = sum((d.flatten(1) ** 2).sum(1) for d in out.direction.values())
                traj["meta_grad_norm"][cells[fresh], rec] = sq.sqrt().double().cpu().numpy()[fresh]
        if any_dead:
            gone = cells[dead_np]
            max_loss[gone] = run_max[dead].double().cpu().numpy()
            diverged_at[gone] = t if deferred is None else at_np[dead_np]
            final_loss[gone] = loss_np[dead_np]
            rows = torch.from_numpy(np.flatnonzero(dead_np)).to(device)
            store_params(rows, gone, None if deferred is None else deferred.params)
        if last:
            final_loss[cells[~dead_np]] = loss_np[~dead_np]
            max_loss[cells[~dead_np]] = run_max[~dead].double().cpu().numpy()
            store_params(torch.arange(cells.size, device=device)[~dead.to(device)], cells[~dead_np])
            break
        assert out.direction is not None
        if adam is None:
            params = {n: p - betas_b[n] * out.direction[n] for n, p in params.items()}
        else:
            params = adam.update(params, out.direction, beta_t)
        if any_dead:
            keep = ~dead
            params = {n: p[keep] for n, p in params.items()}
            alpha_t, beta_t, run_max = alpha_t[keep], beta_t[keep], run_max[keep]
            betas_b = beta_views()
            active = active[~torch.from_numpy(dead_np)]
            if adam is not None:
                adam.keep(keep)
            if deferred is not None:
                deferred.keep(keep)
        if progress is not None:
            progress(t + 1, int(active.numel()))
    return CellRun(
        alphas=alphas,
        betas=betas,
        record_iters=record_iters,
        final_loss=final_loss,
        diverged_at=diverged_at,
        final_params=final_params,
        max_loss=max_loss,
        **traj,
    )
