"""The batched MAML engine: many cells (alpha_c, beta_c) trained at once on shared task samples.

Every cell c holds its own parameters theta_c and trains by the outer rule (paper Eq. 2)

    theta_c <- theta_c - beta_c * mean_tau d_tau(theta_c; alpha_c)          (SGD, the default)

where d_tau is one task's meta-gradient for the chosen variant (docs/MATH.md):
exact ``grad L_q(theta - alpha grad L_s(theta))``, first_order ``grad L_q`` at the adapted point,
surrogate ``(I - alpha H_s) grad L_q`` (Eq. 4). All cells start from the same initial parameters
and see the same task batch at each iteration, so a cell's trajectory is the one a per-cell
training loop with the same seed makes (:mod:`mamlconv.experiments.engine.reference` is that
loop, and the tests hold the two together).

Three step backends compute the same numbers (:mod:`.step` is their contract):

- ``generic`` (:mod:`.generic`): :func:`mamlconv.numerics.maml.task_meta_gradient`, ``vmap``-ed
  over tasks and over cells; works for any ``Problem`` and any number of inner steps.
- ``grouped`` (:mod:`.grouped`): for convolutional networks of known layers on a CPU: the
  (cell, task) pairs as channel groups of native kernels (grouped convolutions, native batch
  norm), plain autograd, the first convolution and its batch norm folded into one affine
  convolution, the query pass a few pairs at a time; ``make_step(..., device='cpu')`` picks
  it for the few-shot CNN and for ``problem_from_module`` networks of supported layers.
- ``mlp`` (:mod:`.mlp`): for the ReLU MLP of :mod:`mamlconv.experiments.problems.sinusoid` and
  one inner step. The support gradient is written out layer by layer, and the adapted forward
  pass uses ``a' W' = a' W - alpha (a' a_s^T) dz_s`` (the adapted weight of a task is
  W - alpha a_s^T dz_s), so no per-task adapted weight matrix is ever built: only
  (query x support) Gram matrices. For ``exact`` and ``first_order`` the backward pass through
  all of this is written out too (with fused in-place products; tested against autograd
  through the same forward); ``surrogate`` uses autograd over the
  cell-stacked tensors (cells do not interact, so the gradient of the sum is the stack of the
  cells' gradients).

A cell whose MAML loss is non-finite or above ``divergence_level`` is frozen at that iteration
and dropped from the batch, so it costs nothing afterwards and never reaches another cell's
numbers.

Modules, in data-flow order:

- :mod:`.state`: what a run starts from: device and dtype, the initial parameters, the seeded
  task stream (a fixed pool or fresh tasks).
- :mod:`.step`: the step contract: one batched evaluation returns a ``StepOut`` of per-cell
  meta-gradients and diagnostics.
- :mod:`.generic`: the generic step backend (``task_meta_gradient`` vmapped over tasks and cells).
- :mod:`.mlp`: the hand-batched step backend for the sinusoid MLP, one inner step.
- :mod:`.grouped`: the grouped step backend for CNNs on a CPU (native kernels, autograd).
- :mod:`.loop`: the training loop: ``train_cells`` (SGD or Adam, freezing diverged cells) and
  ``make_step``, the choice of backend.
- :mod:`.reference`: the slow twin: one cell, one task at a time, plain autograd and
  ``torch.optim``, to test the engine against.
- :mod:`.deferred`: opt-in GPU options that keep the numbers (deferred divergence checks,
  ``channels_last``, ``compile``).
- :mod:`.memory`: the peak memory of a batched few-shot step (affine in the cells) and the GPU
  chunk size it allows.
- :mod:`.flops`: the floating-point operations of one few-shot cell-iteration (FlopCounterMode).
"""

from __future__ import annotations

from mamlconv.experiments.engine.generic import (
    make_generic_step,
)
from mamlconv.experiments.engine.grouped import (
    make_grouped_step,
)
from mamlconv.experiments.engine.loop import (
    ADAM_B1,
    ADAM_B2,
    ADAM_EPS,
    BACKENDS,
    CellRun,
    ProgressFn,
    auto_backend,
    make_step,
    train_cells,
)
from mamlconv.experiments.engine.mlp import (
    make_mlp_step,
)
from mamlconv.experiments.engine.state import (
    TaskStream,
    initial_state,
    resolve_device,
    resolve_dtype,
)
from mamlconv.experiments.engine.step import (
    StepFn,
    StepOut,
)

__all__ = [
    # state: what a run starts from
    "resolve_device",
    "resolve_dtype",
    "TaskStream",
    "initial_state",
    # the step contract
    "StepOut",
    "StepFn",
    # the step backends
    "make_generic_step",
    "make_mlp_step",
    "make_grouped_step",
    # the training loop and its choice of backend
    "BACKENDS",
    "auto_backend",
    "make_step",
    "ADAM_B1",
    "ADAM_B2",
    "ADAM_EPS",
    "ProgressFn",
    "CellRun",
    "train_cells",
]
