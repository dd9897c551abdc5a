"""The generic step backend: ``task_meta_gradient`` vmapped over tasks and over cells; works
for any ``Problem``, any number of inner steps and every MAML variant. The reference-grade
backend that the hand-written :mod:`.mlp` backend is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mamlconv.experiments.engine.step import StepFn, StepOut, _pair_stats
from mamlconv.numerics.maml import task_meta_gradient
from mamlconv.numerics.tasks import Params, Problem, TaskBatch


def make_generic_step(problem: Problem, *, variant: str, steps: int) -> StepFn:
    """The reference-grade backend: ``task_meta_gradient`` vmapped over tasks and cells.

    The query loss at the shared theta (``loss_pre``, a diagnostic: one more query forward
    pass per task) is computed only at the iterations the loop records (``need_stats``)."""

    def cell_fn(with_loss_pre: bool):
        def one_cell(params: Params, alpha: Tensor, tasks: TaskBatch):
            def one_task(task: TaskBatch):
                return task_meta_gradient(
                    params,
                    task,
                    loss_fn=problem.loss,
                    alpha=alpha,
                    steps=steps,
                    variant=variant,
                    with_loss_pre=with_loss_pre,
                )

            directions, aux = torch.func.vmap(one_task)(tasks)
            direction = {n: d.mean(0) for n, d in directions.items()}
            flat = torch.cat([g.flatten(1) for g in aux["support_grad"].values()], dim=1)  # (T, P)
            sq = (flat * flat).sum(1)
            total = flat.sum(0)
            pre = aux["loss_pre"].mean() if with_loss_pre else aux["loss_post"].new_zeros(())
            return direction, aux["loss_post"].mean(), pre, sq, (total * total).sum()

        return torch.func.vmap(one_cell, in_dims=(0, 0, None))

    batched = {True: cell_fn(True), False: cell_fn(False)}

    def step(
        params: Params, alphas: Tensor, tasks: TaskBatch, *, need_direction: bool, need_stats: bool
    ) -> StepOut:
        direction, loss_post, loss_pre, sq, total_sq = batched[need_stats](params, alphas, tasks)
        grad_norm, grad_inner = _pair_stats(sq, total_sq)
        return StepOut(
            direction if need_direction else None,
            loss_post,
            loss_pre if need_stats else None,
            grad_norm,
            grad_inner,
        )

    return step
