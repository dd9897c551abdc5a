"""Opt-in options that make the few-shot engine faster on a GPU without changing its numbers.

Each option here is off by default and checked on the CPU in float64 against the per-cell
reference loop (:mod:`mamlconv.experiments.engine.reference`), final losses equal to 1e-10
(``tests/test_gpuprep.py``). What they save on a GPU is for ``benchmarks/`` to measure.

* ``check_every=k`` (:class:`DeferredDivergence`, an argument of
  :func:`mamlconv.experiments.engine.loop.train_cells`): the engine asks the host whether a cell
  diverged after every outer iteration, one device-to-host synchronisation per iteration. With
  ``k > 1`` the test runs on the device, the first diverging iteration, its loss and (when
  asked for) the parameters at that moment are kept there, and the host looks only every k
  iterations, at recorded iterations and at the end. A diverged cell keeps computing until then
  (cells never interact, so its NaNs reach no other cell) and is dropped with exactly the
  iteration, loss and parameters the per-iteration check gives.
* ``channels_last`` (an option of the few-shot problems of
  :mod:`mamlconv.experiments.problems.fewshot`): the episode images are stored in NHWC memory
  order, the layout tensor cores read natively.
* ``compile`` (an argument of ``train_cells``): the step function goes through
  ``torch.compile`` with static shapes. NOT verified: with ``dynamic=True`` torch 2.13 fails
  (symbolic sizes inside the vmap of ``convolution_backward``); with static shapes the float64
  check against the reference loop (``tests/test_gpuprep.py``, marked slow) did not finish
  within 20 minutes on the shared 2-core CPU. Time it on a GPU before relying on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mamlconv.numerics.tasks import Params


class DeferredDivergence:
    """Sticky per-cell divergence state on the device, read by the host only at checks.

    ``first`` (C,) int64: the iteration at which a row first diverged, -1 while it has not;
    ``loss`` (C,): the loss at that iteration; ``params``: the row's parameters at that
    iteration (only when ``keep_params``).
    """

    def __init__(self, n_rows: int, *, every: int, device: torch.device, keep_params: bool):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"check_every must be an integer >= 1, got {every!r}")
        self.every = every
        self.first = torch.full((n_rows,), -1, dtype=torch.int64, device=device)
        self.loss: Tensor | None = None
        self.keep_params = keep_params
        self.params: Params | None = None

    def is_check(self, t: int, *, last: bool, recorded: bool) -> bool:
        """Whether the host looks at iteration ``t``."""
        return last or recorded or t % self.every == 0

    def observe(self, t: int, dead: Tensor, loss: Tensor, params: Params) -> tuple[Tensor, Tensor]:
        """Fold iteration ``t``'s test into the sticky state; returns (dead so far, the loss
        to report: the loss at first divergence for dead rows, ``loss`` for the others)."""
        new = dead & (self.first < 0)
        self.first = torch.where(new, torch.full_like(self.first, t), self.first)
        self.loss = loss.clone() if self.loss is None else torch.where(new, loss, self.loss)
        if self.keep_params:
            if self.params is None:
                self.params = {n: p.clone() for n, p in params.items()}
            else:
                self.params = {
                    n: torch.where(new.reshape((-1,) + (1,) * (p.dim() - 1)), p, self.params[n])
                    for n, p in params.items()
                }
        gone = self.first >= 0
        return gone, torch.where(gone, self.loss, loss)

    def iteration(self, t: int) -> Tensor:
        """Per row: the iteration of first divergence, ``t`` for rows that have not."""
        return torch.where(self.first >= 0, self.first, torch.full_like(self.first, t))

    def keep(self, mask: Tensor) -> None:
        """Drop the rows not in ``mask`` (as the engine drops diverged cells)."""
        self.first = self.first[mask]
        if self.loss is not None:
            self.loss = self.loss[mask]
        if self.params is not None:
            self.params = {n: p[mask] for n, p in self.params.items()}
