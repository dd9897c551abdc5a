"""The contract of the two step backends (:mod:`.generic`, :mod:`.mlp`): one batched
evaluation returns a :class:`StepOut` of per-cell meta-gradients and diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from mamlconv.numerics.tasks import Params


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
