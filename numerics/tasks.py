"""The task interface shared by numerics (spectra) and experiments (training sweeps).

A *problem* is a family of tasks plus a functional model. Every function of the package that
trains or measures a network sees it through this interface, so the sinusoid MLP and the
few-shot CNNs are interchangeable.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch
from torch import Tensor

Params = dict[str, Tensor]


class TaskBatch(NamedTuple):
    """Support and query data of a batch of tasks; every field has the task index first.

    A NamedTuple so that ``torch.func.vmap`` maps over it as a pytree. Regression tasks hold
    float targets of shape (tasks, points, 1); classification tasks hold int64 labels of shape
    (tasks, points).
    """

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor

    @property
    def n_tasks(self) -> int:
        return self.x_support.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        def move(t: Tensor) -> Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return TaskBatch(*(move(t) for t in self))

    def task(self, i: int) -> TaskBatch:
        """Task ``i`` alone, keeping a leading task axis of length 1."""
        return TaskBatch(*(t[i : i + 1] for t in self))

    def pooled(self) -> TaskBatch:
        """Support and query joined into one data set per task (both fields hold it).

        The paper's analysis (Section 2.2) uses the same data inside and outside the
        adaptation; spectra of H and of the surrogate Hessian are taken on this pooled data.
        """
        x = torch.cat([self.x_support, self.x_query], dim=1)
        y = torch.cat([self.y_support, self.y_query], dim=1)
        return TaskBatch(x, y, x, y)


class Problem(Protocol):
    """A task family with a functional model.

    ``loss(params, x, y)`` is the loss of ONE task (no task axis), a pure function of its
    arguments that ``torch.func.grad``/``jvp``/``vmap`` can transform.
    """

    name: str

    def init_params(
        self, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
    ) -> Params: ...

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor: ...

    def sample_tasks(
        self,
        generator: torch.Generator,
        n_tasks: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> TaskBatch: ...
