"""The batched MAML engine.

Modules:

- :mod:`.deferred`: Opt-in options that make the few-shot engine faster on a GPU without changing
  its numbers.
- :mod:`.flops`: Floating-point operations of one few-shot cell-iteration, counted with
  FlopCounterMode.
- :mod:`.generic`: The generic step backend: ``task_meta_gradient`` vmapped over tasks and over
  cells; works
- :mod:`.loop`: The training loop: :func:`train_cells` trains many cells (alpha_c, beta_c) at once
  by the
- :mod:`.memory`: Peak memory of a batched few-shot step, and the GPU chunk size (cells per call) it
  allows.
- :mod:`.mlp`: The hand-batched step backend for the ReLU MLP of sinusoid regression and one inner
  step.
- :mod:`.reference`: The slow twin of the engine: MAML written the way learn2learn and higher users
  write it.
- :mod:`.state`: What a training run starts from: the device and dtype, the initial parameters and
  the
- :mod:`.step`: The contract of the two step backends (:mod:`.generic`, :mod:`.mlp`): one batched
"""

from __future__ import annotations

from mamlconv.experiments.engine.generic import (
    make_generic_step,
)
from mamlconv.experiments.engine.loop import (
    ADAM_B1,
    ADAM_B2,
    ADAM_EPS,
    BACKENDS,
    CellRun,
    ProgressFn,
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
    # state
    "resolve_device",
    "resolve_dtype",
    "TaskStream",
    "initial_state",
    # step
    "StepOut",
    "StepFn",
    # generic
    "make_generic_step",
    # mlp
    "make_mlp_step",
    # loop
    "BACKENDS",
    "ADAM_B1",
    "ADAM_B2",
    "ADAM_EPS",
    "ProgressFn",
    "make_step",
    "CellRun",
    "train_cells",
]
