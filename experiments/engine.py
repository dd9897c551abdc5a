"""A batched MAML trainer: many cells (alpha_c, beta_c) trained at once on shared task samples.

Every cell c holds its own parameters theta_c and trains by the outer rule (paper Eq. 2)

    theta_c <- theta_c - beta_c * mean_tau d_tau(theta_c; alpha_c)          (SGD, the default)

where d_tau is one task's meta-gradient for the chosen variant (docs/MATH.md):
exact ``grad L_q(theta - alpha grad L_s(theta))``, first_order ``grad L_q`` at the adapted point,
surrogate ``(I - alpha H_s) grad L_q`` (Eq. 4). All cells start from the same initial parameters
and see the same task batch at each iteration, so a cell's trajectory is the one a per-cell
training loop with the same seed makes (:mod:`mamlconv.experiments.reference_loop` is that loop,
and the tests hold the two together).

Two backends compute the same numbers:

- ``generic``: :func:`mamlconv.numerics.maml.task_meta_gradient`, ``vmap``-ed over tasks and
  over cells; works for any ``Problem`` and any number of inner steps.
- ``mlp``: for the ReLU MLP of :mod:`mamlconv.experiments.sinusoid` and one inner step. The
  support gradient is written out layer by layer, and the adapted forward pass uses
  ``a' W' = a' W - alpha (a' a_s^T) dz_s`` (the adapted weight of a task is W - alpha a_s^T dz_s),
  so no per-task adapted weight matrix is ever built: only (query x support) Gram matrices.
  For ``exact`` and ``first_order`` the backward pass through all of this is written out too
  (:func:`_mlp_meta_gradient`, with fused in-place products; 1.3-1.5x faster than autograd
  through the same forward, against which it is tested); ``surrogate`` uses autograd over the
  cell-stacked tensors (cells do not interact, so the gradient of the sum is the stack of the
  cells' gradients).

A cell whose MAML loss is non-finite or above ``divergence_level`` is frozen at that iteration
and dropped from the batch, so it costs nothing afterwards and never reaches another cell's
numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from mamlconv.experiments.config import SweepConfig
from mamlconv.numerics.maml import task_meta_gradient
from mamlconv.numerics.tasks import Params, Problem, TaskBatch

BACKENDS: tuple[str, ...] = ("auto", "generic", "mlp")
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
"""Adam's defaults (Kingma & Ba 2015; torch.optim.Adam)."""

ProgressFn = Callable[[int, int], None]
"""Called as ``progress(iteration, n_active_cells)`` after every outer iteration."""


# --------------------------------------------------------------------------------------------
# devices, dtypes, initial state, task stream
# --------------------------------------------------------------------------------------------


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is a ValueError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


class TaskStream:
    """The task batches of a run, one per outer iteration, replayable from the seed.

    ``task_source='pool'``: ``pool_size`` tasks drawn once; an iteration uses all of them (when
    ``tasks_per_batch == pool_size``) or a random subset drawn without replacement.
    ``task_source='fresh'``: ``tasks_per_batch`` new tasks per iteration.
    """

    def __init__(
        self,
        problem: Problem,
        config: SweepConfig,
        *,
        generator: torch.Generator,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.problem, self.config, self.generator = problem, config, generator
        self.dtype, self.device = dtype, device
        self.pool: TaskBatch | None = None
        if config.task_source == "pool":
            self.pool = problem.sample_tasks(
                generator, config.pool_size, dtype=dtype, device=device
            )

    def next(self) -> TaskBatch:
        cfg = self.config
        if self.pool is None:
            return self.problem.sample_tasks(
                self.generator, cfg.tasks_per_batch, dtype=self.dtype, device=self.device
            )
        if cfg.tasks_per_batch == cfg.pool_size:
            return self.pool
        idx = torch.randperm(cfg.pool_size, generator=self.generator)[: cfg.tasks_per_batch]
        idx = idx.to(self.pool.x_support.device)
        return TaskBatch(*(t[idx] for t in self.pool))


def _check_signature(method: Any, name: str, *args: Any, **kwargs: Any) -> None:
    """A user problem's method must take the arguments the engine passes (ProblemError)."""
    import inspect

    from mamlconv.errors import ProblemError

    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError as exc:
        owner = type(getattr(method, "__self__", method)).__name__
        raise ProblemError(
            f"{owner}.{name} cannot be called as the engine calls it ({exc}); give it the "
            "arguments of the Problem protocol, e.g. init_params(generator, *, dtype, device) "
            "(docs/api.md)"
        ) from None
    except ValueError:
        return  # no signature to inspect (a builtin): let the call itself decide


def initial_state(
    problem: Problem, config: SweepConfig, *, dtype: torch.dtype, device: torch.device | str
) -> tuple[Params, TaskStream]:
    """Initial parameters and the task stream of a run: one CPU generator seeded with
    ``config.seed`` draws the parameters first, then the tasks."""
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    _check_signature(problem.init_params, "init_params", generator, dtype=dtype, device=device)
    _check_signature(problem.sample_tasks, "sample_tasks", generator, 1, dtype=dtype, device=device)
    params = problem.init_params(generator, dtype=dtype, device=device)
    stream = TaskStream(problem, config, generator=generator, dtype=dtype, device=device)
    return params, stream


# --------------------------------------------------------------------------------------------
# one batched evaluation: meta-gradients and diagnostics of all active cells
# --------------------------------------------------------------------------------------------


class StepOut(NamedTuple):
    """Per-cell results of one evaluation (leading axis: active cells)."""

    direction: Params | None
    """Task-mean meta-gradient (None when not requested)."""
    loss_post: Tensor
    """MAML loss: task mean of L_q(theta') -- what the sweep calls the training loss."""
    loss_pre: Tensor | None
    """Task mean of L_q(theta), before adaptation."""
    grad_norm: Tensor | None
    """Task mean of ||grad L_s,tau(theta)|| (Fig. 1's "norm per task, then the average")."""
    grad_inner: Tensor | None
    """Mean over task pairs tau != tau' of <grad L_s,tau, grad L_s,tau'> (Fig. 1's text)."""


StepFn = Callable[..., StepOut]


def _pair_stats(sq_norms: Tensor, total_sq: Tensor) -> tuple[Tensor, Tensor]:
    """From per-task squared norms (C, T) and |sum_tau g_tau|^2 (C,): the mean norm and the
    mean off-diagonal inner product (|sum g|^2 - sum |g|^2) / (T (T - 1))."""
    n_tasks = sq_norms.shape[1]
    mean_norm = sq_norms.clamp_min(0).sqrt().mean(1)
    if n_tasks < 2:
        return mean_norm, torch.full_like(mean_norm, math.nan)
    inner = (total_sq - sq_norms.sum(1)) / (n_tasks * (n_tasks - 1))
    return mean_norm, inner


def make_generic_step(problem: Problem, *, variant: str, steps: int) -> StepFn:
    """The reference-grade backend: ``task_meta_gradient`` vmapped over tasks and cells."""

    def one_cell(params: Params, alpha: Tensor, tasks: TaskBatch):
        def one_task(task: TaskBatch):
            return task_meta_gradient(
                params, task, loss_fn=problem.loss, alpha=alpha, steps=steps, variant=variant
            )

        directions, aux = torch.func.vmap(one_task)(tasks)
        direction = {n: d.mean(0) for n, d in directions.items()}
        flat = torch.cat([g.flatten(1) for g in aux["support_grad"].values()], dim=1)  # (T, P)
        sq = (flat * flat).sum(1)
        total = flat.sum(0)
        return direction, aux["loss_post"].mean(), aux["loss_pre"].mean(), sq, (total * total).sum()

    batched = torch.func.vmap(one_cell, in_dims=(0, 0, None))

    def step(
        params: Params, alphas: Tensor, tasks: TaskBatch, *, need_direction: bool, need_stats: bool
    ) -> StepOut:
        direction, loss_post, loss_pre, sq, total_sq = batched(params, alphas, tasks)
        grad_norm, grad_inner = _pair_stats(sq, total_sq)
        return StepOut(
            direction if need_direction else None, loss_post, loss_pre, grad_norm, grad_inner
        )

    return step


# --- the hand-batched MLP backend ------------------------------------------------------------


def _lin(a: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """a @ w + b per cell. a: (C, T, n, i), or (T, n, i) shared by the cells; w: (C, i, o);
    b: (C, o) -> (C, T, n, o). Bias and product fused (baddbmm / addcmul)."""
    c, i, o = w.shape
    if a.dim() == 3:
        t, n, _ = a.shape
        if i == 1:  # the sinusoid input layer: an outer product, one fused elementwise op
            return torch.addcmul(b[:, None, None, :], a[None], w[:, None, :, :])
        a = a.expand(c, t, n, i)
    else:
        _, t, n, _ = a.shape
    return torch.baddbmm(b[:, None, :], a.reshape(c, t * n, i), w).view(c, t, n, o)


def _back(dz: Tensor, w: Tensor) -> Tensor:
    """dz @ w^T per cell: (C, T, n, o), (C, i, o) -> (C, T, n, i)."""
    c, t, n, o = dz.shape
    return torch.bmm(dz.reshape(c, t * n, o), w.transpose(1, 2)).view(c, t, n, w.shape[1])


def _gram(a: Tensor, b: Tensor) -> Tensor:
    """a @ b^T over the point axes: (C|., T, n, i), (C|., T, m, i) -> (C, T, n, m).

    One bmm over the flattened (cell, task) batch on a transposed *view* of b (torch.matmul
    would copy the transposed operand of a 4-d product)."""
    if a.dim() == 3 and b.dim() == 3:  # both shared by the cells (the input layer)
        return torch.bmm(a, b.transpose(1, 2))
    c = a.shape[0] if a.dim() == 4 else b.shape[0]
    t, n, i = a.shape[-3:]
    m = b.shape[-2]
    a3 = a.expand(c, t, n, i).reshape(c * t, n, i)
    b3 = b.expand(c, t, m, i).reshape(c * t, m, i)
    return torch.bmm(a3, b3.transpose(1, 2)).view(c, t, n, m)


def _mlp_pass(
    params: Params, n_layers: int, x: Tensor, y: Tensor
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Forward and hand-written backward of the ReLU MLP with MSE loss, for every cell and task.

    Returns the layer inputs a_l (a_0 = x, shared), the pre-activation gradients
    dz_l = dL/dz_l and the per-(cell, task) losses (C, T). With z_l = a_l W_l + b_l the task's
    gradient is dL/dW_l = a_l^T dz_l, dL/db_l = sum_n dz_l (never formed per task here).
    """
    acts: list[Tensor] = [x]
    pre: list[Tensor] = []
    a = x
    for layer in range(1, n_layers + 1):
        z = _lin(a, params[f"w{layer}"], params[f"b{layer}"])
        pre.append(z)
        if layer < n_layers:
            a = torch.relu(z)
            acts.append(a)
    err = pre[-1] - y  # (C, T, n, 1); y broadcasts over cells
    loss = (err * err).mean(dim=(2, 3))
    dz = err * (2.0 / err.shape[2] / err.shape[3])  # d mean((f - y)^2) / d f
    deltas = [dz]
    for layer in range(n_layers, 1, -1):
        # relu' is a constant mask: its derivative is zero, as in autograd's own relu backward.
        # Detaching the mask's argument spares autograd building and adding those zeros.
        mask_arg = pre[layer - 2].detach()
        dz = torch.ops.aten.threshold_backward(_back(dz, params[f"w{layer}"]), mask_arg, 0)
        deltas.append(dz)
    deltas.reverse()
    return acts, deltas, loss


def _adapted_query_loss(
    params: Params,
    n_layers: int,
    alpha: Tensor,
    support_acts: list[Tensor],
    support_deltas: list[Tensor],
    xq: Tensor,
    yq: Tensor,
) -> Tensor:
    """L_q(theta - alpha grad L_s(theta)) per (cell, task) without forming adapted weights.

    Layer l of the adapted net: a' (W - alpha a_s^T dz_s) + (b - alpha sum_n dz_s)
    = a' W + b + K dz_s with the (nq x ns) kernel K = -alpha (a' a_s^T + 1).
    """
    neg_alpha = -alpha[:, None, None, None]
    a = xq
    for layer in range(1, n_layers + 1):
        kernel = torch.addcmul(neg_alpha, _gram(a, support_acts[layer - 1]), neg_alpha)
        z = _lin(a, params[f"w{layer}"], params[f"b{layer}"])
        c, t, n, o = z.shape
        dz_s = support_deltas[layer - 1]
        z = torch.baddbmm(
            z.view(c * t, n, o), kernel.reshape(c * t, n, -1), dz_s.reshape(c * t, -1, o)
        ).view(c, t, n, o)
        a = torch.relu(z) if layer < n_layers else z
    err = a - yq
    return (err * err).mean(dim=(2, 3))


def _flat(t: Tensor, c: int) -> Tensor:
    """(C|., T, n, k) -> (C, T*n, k), broadcasting a tensor shared by the cells."""
    t = t.expand(c, *t.shape[-3:]) if t.dim() == 3 else t
    return t.reshape(c, -1, t.shape[-1])


def _bt(t: Tensor, c: int) -> Tensor:
    """(C|., T, n, k) -> (C*T, n, k): one small matrix per (cell, task)."""
    t = t.expand(c, *t.shape[-3:]) if t.dim() == 3 else t
    return t.reshape(-1, *t.shape[-2:])


def _mlp_meta_gradient(
    params: Params,
    n_layers: int,
    alpha: Tensor,
    tasks: TaskBatch,
    *,
    second_order: bool,
) -> tuple[Params, Tensor, list[Tensor], list[Tensor]]:
    """Exact (``second_order``) or first-order MAML meta-gradient of every cell, by hand.

    Forward: the support pass of :func:`_mlp_pass` and the adapted query pass of
    :func:`_adapted_query_loss` (U_l = P_l W_l + b_l + K_l dz_s,l with K_l = -alpha
    (P_l A_s,l^T + 1), P_{l+1} = relu(U_l)). Backward, written out (J = mean_tau L_q):

    - query: Ubar_L = dJ/dU_L; Wbar_l += P_l^T Ubar_l; Kbar_l = Ubar_l dz_s,l^T;
      Pbar_l = Ubar_l W_l^T - alpha Kbar_l A_s,l; Ubar_{l-1} = Pbar_l * relu'(U_{l-1});
    - second order only, through the support gradient dz_s: dzbar_s,l = K_l^T Ubar_l,
      Abar_s,l = -alpha Kbar_l^T P_l; then back through dz_s,l = (dz_s,l+1 W_{l+1}^T) * relu'
      (W_{l+1} gets t_l^T dz_s,l+1 with t_l = dzbar_s,l * relu'), through
      dz_s,L = (2/n)(f - y) and through the support forward pass.

    First order drops the second group: the gradient of L_q at the adapted point (FOMAML).
    The ReLU masks are constants (their derivative is zero, as in autograd). Checked against
    autograd, the generic torch.func backend and the per-task loop in tests/test_engine.py.
    Returns (direction, per-(cell, task) query losses, support activations, support deltas).
    """
    xs, ys, xq, yq = tasks
    w = [params[f"w{l}"] for l in range(1, n_layers + 1)]
    b = [params[f"b{l}"] for l in range(1, n_layers + 1)]
    c = w[0].shape[0]
    a_s, dz_s, _ = _mlp_pass(params, n_layers, xs, ys)
    neg_alpha = -alpha[:, None, None, None]
    # adapted query forward, keeping what the backward needs
    p_in: list[Tensor] = []  # P_l, the input of layer l
    kern: list[Tensor] = []  # K_l
    a = xq
    for l in range(n_layers):
        p_in.append(a)
        k = torch.addcmul(neg_alpha, _gram(a, a_s[l]), neg_alpha)
        kern.append(k)
        z = _lin(a, w[l], b[l])
        cz, t, n, o = z.shape
        z.view(cz * t, n, o).baddbmm_(_bt(k, c), _bt(dz_s[l], c))  # in place: z is ours
        a = torch.relu(z) if l < n_layers - 1 else z
    err = a - yq
    loss = (err * err).mean(dim=(2, 3))  # (C, T)
    n_tasks = err.shape[1]
    u_bar = err * (2.0 / (err.shape[2] * err.shape[3] * n_tasks))
    w_bar = [torch.zeros_like(x) for x in w]
    b_bar = [torch.zeros_like(x) for x in b]
    dz_bar: list[Tensor | None] = [None] * n_layers
    a_bar: list[Tensor | None] = [None] * n_layers
    for l in range(n_layers - 1, -1, -1):
        cu, t, n, o = u_bar.shape
        w_bar[l].baddbmm_(_flat(p_in[l], c).transpose(1, 2), _flat(u_bar, c))
        b_bar[l] = b_bar[l] + u_bar.sum((1, 2))
        u3 = u_bar.reshape(cu * t, n, o)
        if second_order:
            dz_bar[l] = torch.bmm(_bt(kern[l], c).transpose(1, 2), u3).view(c, t, -1, o)
        if l == 0:
            break  # the input layer's inputs (x) are data
        k_bar = torch.bmm(u3, _bt(dz_s[l], c).transpose(1, 2))  # (C*T, nq, ns)
        k_bar = (k_bar.view(c, t, n, -1) * neg_alpha).view(c * t, n, -1)  # -alpha Kbar_l
        p_bar = _back(u_bar, w[l])
        p_bar.view(c * t, n, -1).baddbmm_(k_bar, _bt(a_s[l], c))
        if second_order:
            a_bar[l] = torch.bmm(k_bar.transpose(1, 2), _bt(p_in[l], c)).view(
                c, t, -1, w[l].shape[1]
            )
        u_bar = torch.ops.aten.threshold_backward(p_bar, p_in[l], 0)
    if second_order:
        # through dz_s,l = (dz_s,l+1 W_{l+1}^T) * relu'(Z_s,l)   (relu'(Z_s,l) = [A_s,l+1 > 0])
        for l in range(n_layers - 1):
            t_l = torch.ops.aten.threshold_backward(dz_bar[l], a_s[l + 1], 0)
            cz, t, n, i = t_l.shape
            t_flat = t_l.reshape(c, t * n, i)
            w_bar[l + 1].baddbmm_(t_flat.transpose(1, 2), _flat(dz_s[l + 1], c))
            _flat(dz_bar[l + 1], c).baddbmm_(t_flat, w[l + 1])  # in place (a view of ours)
        # through dz_s,L = (2/n)(f - y): the support output's gradient
        z_bar = dz_bar[n_layers - 1] * (2.0 / (ys.shape[-2] * ys.shape[-1]))
        for l in range(n_layers - 1, -1, -1):
            cz, t, n, o = z_bar.shape
            w_bar[l].baddbmm_(_flat(a_s[l], c).transpose(1, 2), _flat(z_bar, c))
            b_bar[l] = b_bar[l] + z_bar.sum((1, 2))
            if l == 0:
                break
            total = a_bar[l]
            _flat(total, c).baddbmm_(_flat(z_bar, c), w[l].transpose(1, 2))
            z_bar = torch.ops.aten.threshold_backward(total, a_s[l], 0)
    direction = {}
    for l in range(n_layers):
        direction[f"w{l + 1}"] = w_bar[l]
        direction[f"b{l + 1}"] = b_bar[l]
    return direction, loss, a_s, dz_s


def _layer_task_stats(acts: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-task squared gradient norms (C, T) and |sum_tau g_tau|^2 (C,) by Gram matrices:
    |a^T dz|_F^2 = sum_ij (a a^T)_ij (dz dz^T)_ij."""
    sq = None
    total = None
    for a, dz in zip(acts, deltas, strict=True):
        bias_g = dz.sum(2)  # (C, T, o)
        layer_sq = (_gram(a, a) * _gram(dz, dz)).sum((2, 3)) + (bias_g * bias_g).sum(2)
        c, t, n, o = dz.shape
        a_full = a.expand(c, *a.shape[-3:]) if a.dim() == 3 else a
        w_sum = torch.bmm(a_full.reshape(c, t * n, -1).transpose(1, 2), dz.reshape(c, t * n, o))
        b_sum = bias_g.sum(1)
        layer_total = (w_sum * w_sum).sum((1, 2)) + (b_sum * b_sum).sum(1)
        sq = layer_sq if sq is None else sq + layer_sq
        total = layer_total if total is None else total + layer_total
    assert sq is not None and total is not None
    return sq, total


def make_mlp_step(problem: Problem, *, variant: str, steps: int) -> StepFn:
    """The hand-batched backend for the ReLU MLP of ``SinusoidProblem`` (one inner step)."""
    from mamlconv.experiments.sinusoid import SinusoidProblem

    if not isinstance(problem, SinusoidProblem):
        raise ValueError(f"the mlp backend needs the sinusoid MLP, got {problem.name!r}")
    if steps != 1:
        raise ValueError(f"the mlp backend takes one inner step, got steps={steps}")
    n_layers = len(problem.widths) - 1

    def step(
        params: Params, alphas: Tensor, tasks: TaskBatch, *, need_direction: bool, need_stats: bool
    ) -> StepOut:
        xs, ys, xq, yq = tasks
        names = list(params)
        if variant != "surrogate" and need_direction:
            with torch.no_grad():
                direction, per_task, s_acts, s_deltas = _mlp_meta_gradient(
                    params, n_layers, alphas, tasks, second_order=variant == "exact"
                )
            loss_pre = grad_norm = grad_inner = None
            if need_stats:
                with torch.no_grad():
                    loss_pre = _mlp_pass(params, n_layers, xq, yq)[2].mean(1)
                    grad_norm, grad_inner = _pair_stats(*_layer_task_stats(s_acts, s_deltas))
            direction = {n: direction[n] for n in names}
            return StepOut(direction, per_task.mean(1), loss_pre, grad_norm, grad_inner)
        with torch.enable_grad():
            leaves = {n: p.detach().requires_grad_(need_direction) for n, p in params.items()}
            second_order = need_direction and variant in ("exact", "surrogate")
            with torch.set_grad_enabled(second_order):
                s_acts, s_deltas, _ = _mlp_pass(leaves, n_layers, xs, ys)
            loss_pre = None
            if variant == "surrogate":
                with torch.set_grad_enabled(need_direction):
                    q_acts, q_deltas, q_loss = _mlp_pass(leaves, n_layers, xq, yq)
                # <grad L_s, sg(grad L_q)> per (cell, task), by Gram matrices of the two sets.
                inner = 0.0
                for a_s, dz_s, a_q, dz_q in zip(s_acts, s_deltas, q_acts, q_deltas, strict=True):
                    a_q, dz_q = a_q.detach(), dz_q.detach()
                    inner = inner + (_gram(a_s, a_q) * _gram(dz_s, dz_q)).sum((2, 3))
                    inner = inner + (dz_s.sum(2) * dz_q.sum(2)).sum(2)
                objective = q_loss - alphas[:, None] * inner
                loss_pre = q_loss.detach().mean(1)
                with torch.no_grad():
                    loss_post = _adapted_query_loss(
                        leaves, n_layers, alphas, s_acts, s_deltas, xq, yq
                    ).mean(1)
            else:
                with torch.set_grad_enabled(need_direction):
                    per_task = _adapted_query_loss(
                        leaves, n_layers, alphas, s_acts, s_deltas, xq, yq
                    )
                objective = per_task
                loss_post = per_task.detach().mean(1)
            direction = None
            if need_direction:
                grads = torch.autograd.grad(objective.mean(1).sum(), [leaves[n] for n in names])
                direction = dict(zip(names, grads, strict=True))
        grad_norm = grad_inner = None
        if need_stats:
            with torch.no_grad():
                if loss_pre is None:
                    loss_pre = _mlp_pass(params, n_layers, xq, yq)[2].mean(1)
                detached = [t.detach() for t in s_acts], [t.detach() for t in s_deltas]
                grad_norm, grad_inner = _pair_stats(*_layer_task_stats(*detached))
        return StepOut(direction, loss_post, loss_pre, grad_norm, grad_inner)

    return step


def make_step(problem: Problem, *, variant: str, steps: int, backend: str = "auto") -> StepFn:
    """The step function of ``backend`` (``auto``: ``mlp`` where it applies, else ``generic``)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        from mamlconv.experiments.sinusoid import SinusoidProblem

        backend = "mlp" if isinstance(problem, SinusoidProblem) and steps == 1 else "generic"
    if backend == "mlp":
        return make_mlp_step(problem, variant=variant, steps=steps)
    return make_generic_step(problem, variant=variant, steps=steps)


# --------------------------------------------------------------------------------------------
# training many cells
# --------------------------------------------------------------------------------------------


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
    (``torch.compile`` the step) are the opt-in GPU options of :mod:`.speed`; same numbers.
    """
    alphas = np.asarray(alphas, dtype=float).ravel()
    betas = np.asarray(betas, dtype=float).ravel()
    if alphas.shape != betas.shape:
        raise ValueError(f"alphas and betas differ in size: {alphas.size} vs {betas.size}")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    step = make_step(problem, variant=config.variant, steps=config.steps, backend=backend)
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
        from mamlconv.experiments.speed import DeferredDivergence

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
