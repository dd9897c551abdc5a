"""Floating-point operations of one few-shot cell-iteration, counted with FlopCounterMode.

One *cell-iteration* is one evaluation of the engine's step for one cell (alpha, beta): every
task's support forward, its ``steps`` inner gradient steps, the query loss and the meta-gradient
(for ``exact`` MAML the backward pass through the inner steps, i.e. second order), as
:func:`mamlconv.experiments.engine.loop.train_cells` runs it once per outer iteration.

Counting uses :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
convolutions, 2 FLOPs per multiply-add, elementwise work not counted), with one correction:
torch's formula for the weight gradient of ``convolution_backward`` ignores ``groups`` and so
counts a grouped convolution's weight gradient ``groups`` times. The engine's ``vmap`` over
tasks and cells turns every convolution into a grouped one (groups = tasks x cells), so the
stock count grows with the batch although the work per cell does not. :func:`count_step_flops`
divides that term by ``groups``; the tests hold the corrected count of C cells to C times the
count of one, and to the count of the plain-autograd per-cell loop, which has no groups.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from mamlconv.experiments.config import SweepConfig
from mamlconv.numerics.tasks import Problem

aten = torch.ops.aten
_stock_conv_backward = getattr(
    flop_counter.conv_backward_flop, "__wrapped__", flop_counter.conv_backward_flop
)  # the formula on shapes, without the registry's tensor-to-shape wrapper


def grouped_conv_backward_flop(
    grad_out_shape: Any,
    x_shape: Any,
    w_shape: Any,
    bias: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    transposed: Any,
    output_padding: Any,
    groups: int,
    output_mask: list[bool],
    out_shape: Any,
    **kwargs: Any,
) -> int:
    """torch's ``conv_backward_flop`` with the weight-gradient term divided by ``groups``.

    Each group's weight gradient contracts only its own C_out / groups output channels, so the
    stock term (which treats all C_out as one group) is exactly ``groups`` times too large.
    """
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed)
    rest = (output_padding, groups)
    flops = 0
    if output_mask[0]:
        flops += _stock_conv_backward(*args, *rest, [True, False, False], out_shape)
    if output_mask[1]:
        flops += _stock_conv_backward(*args, *rest, [False, True, False], out_shape) // groups
    return flops


def counter() -> FlopCounterMode:
    """A FlopCounterMode with the grouped-convolution correction (display off); the mode itself
    hands the formula shapes instead of tensors, as for its own entries."""
    return FlopCounterMode(
        display=False, custom_mapping={aten.convolution_backward: grouped_conv_backward_flop}
    )


def count_step_flops(
    problem: Problem,
    config: SweepConfig,
    *,
    n_cells: int = 1,
    alpha: float = 0.1,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    """FLOPs of one engine step (meta-gradients, no diagnostics) for ``n_cells`` cells.

    Uses the config's variant, steps and tasks per meta-step and one task batch of its stream.
    Returns ``{"flops": total, "flops_per_cell": total / n_cells, "by_op": {op: flops}}``.
    """
    from mamlconv.experiments.engine.loop import make_step
    from mamlconv.experiments.engine.state import initial_state

    init, stream = initial_state(problem, config, dtype=dtype, device=device)
    tasks = stream.next()
    step = make_step(problem, variant=config.variant, steps=config.steps)
    params = {n: p.unsqueeze(0).repeat(n_cells, *([1] * p.dim())) for n, p in init.items()}
    alphas = torch.full((n_cells,), float(alpha), dtype=dtype, device=device)
    mode = counter()
    with mode:
        step(params, alphas, tasks, need_direction=True, need_stats=False)
    total = int(mode.get_total_flops())
    by_op = {str(k): int(v) for k, v in mode.get_flop_counts().get("Global", {}).items()}
    return {"flops": total, "flops_per_cell": total / n_cells, "by_op": by_op}


def count_loop_flops(
    problem: Problem, config: SweepConfig, *, alpha: float = 0.1, beta: float = 0.0
) -> int:
    """FLOPs of one outer iteration of the plain-autograd reference loop (one cell, CPU),
    without its diagnostic query forward passes at the shared theta.

    The independent count for the tests: per-task autograd has no vmap, hence no grouped
    convolutions. ``iters=0`` runs one evaluation and no update; iteration 0 is always
    recorded, so the loop also evaluates the diagnostics there: its query loss at theta per
    task (``loss_pre``, which the engine computes only at recorded iterations and
    :func:`count_step_flops` leaves out) is counted apart and subtracted; the Gram matrix of the
    support gradients stays (a small excess over :func:`count_step_flops`).
    """
    from mamlconv.experiments.engine.reference import train_cell_loop
    from mamlconv.experiments.engine.state import initial_state, resolve_dtype

    mode = counter()
    with mode:
        train_cell_loop(problem, config, alpha=alpha, beta=beta, iters=0)
    params, stream = initial_state(problem, config, dtype=resolve_dtype(config.dtype), device="cpu")
    tasks = stream.next()
    diagnostics = counter()
    with diagnostics, torch.no_grad():
        for i in range(tasks.n_tasks):
            problem.loss(params, tasks.x_query[i], tasks.y_query[i])
    return int(mode.get_total_flops()) - int(diagnostics.get_total_flops())
