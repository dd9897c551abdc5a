"""The slow twin of the engine: MAML written the way learn2learn and higher users write it.

One cell at a time, one task at a time, plain autograd: the inner step is
``torch.autograd.grad(loss_s, params, create_graph=True)`` (second order) or the same without
the graph (first order), the outer step is ``torch.optim.SGD`` / ``torch.optim.Adam`` on leaf
tensors. It shares nothing with :mod:`mamlconv.experiments.engine` but the problem (model, loss,
task sampler) and :func:`~mamlconv.experiments.engine.state.initial_state` (so both see the same
initial parameters and task samples). It is the baseline of ``benchmarks/sweep_bench.py`` and
the independent check in ``tests/test_engine.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.loop import CellRun
from mamlconv.experiments.engine.state import initial_state, resolve_device, resolve_dtype
from mamlconv.numerics.tasks import Problem


def train_cell_loop(
    problem: Problem,
    config: SweepConfig,
    *,
    alpha: float,
    beta: float,
    iters: int | None = None,
) -> CellRun:
    """Train one cell (alpha, beta) with a per-task autograd loop; a CellRun of one cell.

    ``iters`` overrides ``config.iters`` (the benchmark times fewer iterations); the record
    grid stays that of ``config``, so records past ``iters`` stay NaN.
    """
    iters = config.iters if iters is None else iters
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    init, stream = initial_state(problem, config, dtype=dtype, device=device)
    params = {n: p.clone().requires_grad_(True) for n, p in init.items()}
    names = list(params)
    leaves = [params[n] for n in names]
    opt: torch.optim.Optimizer
    if config.outer == "sgd":
        opt = torch.optim.SGD(leaves, lr=beta)
    else:
        opt = torch.optim.Adam(leaves, lr=beta)
    record = {int(t): r for r, t in enumerate(config.record_iters)}
    n_rec = config.record_iters.size
    traj = {f: np.full((1, n_rec), np.nan) for f in CellRun.TRAJECTORIES}
    final_loss = math.nan
    diverged_at = -1
    alpha_f, variant = float(alpha), config.variant

    for t in range(iters + 1):
        tasks = stream.next()
        meta_loss = 0.0
        direction = [torch.zeros_like(p) for p in leaves]
        support_grads = []
        pre = 0.0
        for i in range(tasks.n_tasks):
            xs, ys, xq, yq = (f[i] for f in tasks)
            loss_s = problem.loss(params, xs, ys)
            g_s = torch.autograd.grad(loss_s, leaves, create_graph=variant != "first_order")
            if t in record:
                support_grads.append(torch.cat([g.detach().flatten() for g in g_s]))
            if variant == "first_order":
                # FOMAML: the query gradient at theta_k, the Jacobian of the inner steps dropped.
                fast = [(p - alpha_f * g).detach() for p, g in zip(leaves, g_s, strict=True)]
                for _ in range(config.steps - 1):
                    fast = [f.requires_grad_(True) for f in fast]
                    g = torch.autograd.grad(
                        problem.loss(dict(zip(names, fast, strict=True)), xs, ys), fast
                    )
                    fast = [(f - alpha_f * gi).detach() for f, gi in zip(fast, g, strict=True)]
                fast = [f.requires_grad_(True) for f in fast]
                loss_q = problem.loss(dict(zip(names, fast, strict=True)), xq, yq)
                d = torch.autograd.grad(loss_q, fast)
            elif variant == "exact":
                # Second-order MAML: differentiate through every inner step.
                fast = [p - alpha_f * g for p, g in zip(leaves, g_s, strict=True)]
                for _ in range(config.steps - 1):
                    g = torch.autograd.grad(
                        problem.loss(dict(zip(names, fast, strict=True)), xs, ys),
                        fast,
                        create_graph=True,
                    )
                    fast = [f - alpha_f * gi for f, gi in zip(fast, g, strict=True)]
                loss_q = problem.loss(dict(zip(names, fast, strict=True)), xq, yq)
                d = torch.autograd.grad(loss_q, leaves)
            else:  # surrogate: g_q - alpha H_s g_q
                with torch.no_grad():
                    adapted = {
                        n: p - alpha_f * g for n, p, g in zip(names, leaves, g_s, strict=True)
                    }
                    loss_q = problem.loss(adapted, xq, yq)
                g_q = torch.autograd.grad(problem.loss(params, xq, yq), leaves)
                dot = sum((gs * gq).sum() for gs, gq in zip(g_s, g_q, strict=True))
                hvp = torch.autograd.grad(dot, leaves)
                d = [gq - alpha_f * h for gq, h in zip(g_q, hvp, strict=True)]
            if t in record:  # diagnostics only where recorded, as the engine does
                with torch.no_grad():
                    pre += float(problem.loss(params, xq, yq))
            for acc, di in zip(direction, d, strict=True):
                acc += di.detach() / tasks.n_tasks
            meta_loss += float(loss_q.detach()) / tasks.n_tasks

        r = record.get(t)
        if r is not None:
            g = torch.stack(support_grads).double()  # (T, P)
            gram = g @ g.T
            n = g.shape[0]
            traj["loss"][0, r] = meta_loss
            traj["loss_pre"][0, r] = pre / n
            traj["grad_norm"][0, r] = float(gram.diagonal().sqrt().mean())
            off = gram.sum() - gram.diagonal().sum()
            traj["grad_inner"][0, r] = float(off / (n * (n - 1))) if n > 1 else math.nan
            if t < iters:
                traj["meta_grad_norm"][0, r] = float(
                    torch.sqrt(sum((d.double() ** 2).sum() for d in direction))
                )
        if not math.isfinite(meta_loss) or meta_loss > config.divergence_level:
            diverged_at, final_loss = t, meta_loss
            break
        if t == iters:
            final_loss = meta_loss
            break
        opt.zero_grad()
        for p, d in zip(leaves, direction, strict=True):
            p.grad = d
        opt.step()

    return CellRun(
        alphas=np.array([alpha], dtype=float),
        betas=np.array([beta], dtype=float),
        record_iters=config.record_iters,
        final_loss=np.array([final_loss]),
        diverged_at=np.array([diverged_at], dtype=np.int64),
        final_params={n: p.detach().double().cpu().numpy()[None] for n, p in params.items()},
        **traj,
    )
