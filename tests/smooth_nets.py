"""Small smooth (tanh) networks and sinusoid tasks for the curvature tests, in float64.

tanh rather than the paper's ReLU so that the third derivative T is non-trivial. Imported by the
test modules (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import numpy as np
import torch

from mamlconv.numerics.tasks import Params, TaskBatch

F64 = torch.float64


def mlp_loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """tanh MLP regression, mean squared error (smooth, so T is non-trivial)."""
    h = x
    n_layers = len(params) // 2
    for i in range(1, n_layers + 1):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = torch.tanh(h)
    return torch.mean((h - y) ** 2)


def mlp_params(widths: list[int], seed: int, dtype: torch.dtype = F64) -> Params:
    g = torch.Generator().manual_seed(seed)
    p = {}
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True), 1):
        p[f"w{i}"] = (torch.randn(a, b, generator=g, dtype=F64) / a**0.5).to(dtype)
        p[f"b{i}"] = (0.1 * torch.randn(b, generator=g, dtype=F64)).to(dtype)
    return p


def sine_tasks(n_tasks: int, n_points: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    amp = 0.1 + 4.9 * torch.rand(n_tasks, 1, 1, generator=g, dtype=F64)
    phase = np.pi * torch.rand(n_tasks, 1, 1, generator=g, dtype=F64)
    xs = 10 * torch.rand(n_tasks, n_points, 1, generator=g, dtype=F64) - 5
    xq = 10 * torch.rand(n_tasks, n_points, 1, generator=g, dtype=F64) - 5
    return TaskBatch(xs, amp * torch.sin(xs + phase), xq, amp * torch.sin(xq + phase))
