"""The configuration of one MAML training sweep over an alpha x beta grid.

A :class:`SweepConfig` is everything that decides the numbers of a sweep (apart from the code
and the hardware, which :func:`mamlconv.util.provenance.describe` records). It is frozen, JSON
round-trips exactly, and is written into every result file, so that a result can be re-run
and a resumed sweep can refuse chunks that were made with another configuration.

Defaults are the sinusoid settings of the paper's Section 4.1 where the paper states them;
each field's comment says where the value comes from, or that the paper is silent and what
was chosen instead. Presets (``paper``, ``smoke``) live in
:func:`mamlconv.experiments.problems.registry.get_preset`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from mamlconv.numerics.variants import VARIANTS, check_variant
from mamlconv.util.devices import DEVICE_SPELLINGS, is_device_spec

OuterOptimizer = Literal["sgd", "adam"]
TaskSource = Literal["pool", "fresh"]
DType = Literal["float32", "float64"]
SaveParams = Literal["none", "best", "all"]

# The allowed values, checked in SweepConfig.__post_init__: the same lists as the field types.
OUTER_OPTIMIZERS: tuple[str, ...] = get_args(OuterOptimizer)
TASK_SOURCES: tuple[str, ...] = get_args(TaskSource)
DTYPES: tuple[str, ...] = get_args(DType)
SAVE_PARAMS: tuple[str, ...] = get_args(SaveParams)

PAPER_SINUSOID_ALPHAS = tuple(float(a) for a in np.geomspace(1e-4, 9e-1, 20))
"""Section 4.1: "alpha in the range of [1e-4, 9e-1]"; the grid size (20, log-spaced) is ours."""
PAPER_SINUSOID_BETAS = tuple(float(b) for b in np.geomspace(1e-2, 9.0, 20))
"""Section 4.1: "beta in the range of [1e-2, 9e-0]"; the grid size (20, log-spaced) is ours."""


def _float_tuple(name: str, values: Sequence[float] | np.ndarray) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.asarray(values, dtype=float).ravel())
    if not out:
        raise ValueError(f"{name} must not be empty")
    bad = [v for v in out if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"{name} must be finite and >= 0, got {bad[0]!r}")
    return out


@dataclass(frozen=True)
class SweepConfig:
    """One alpha x beta sweep of MAML training (paper Section 4, Fig. 4).

    Every cell (alpha_i, beta_j) starts from the same initial parameters (drawn from
    ``seed``) and sees the same task samples at every iteration, so a cell of the sweep is the
    run a per-cell training loop would make with that seed.
    """

    problem: str = "sinusoid"
    """Name for :func:`mamlconv.experiments.problems.registry.get_problem`."""

    variant: str = "exact"
    """exact | first_order | surrogate (docs/MATH.md). Fig. 4a trains Finn et al.'s MAML; the paper
    does not say whether first or second order, so the paper preset runs ``exact`` and the
    results folder holds a ``first_order`` sweep too."""

    alphas: tuple[float, ...] = PAPER_SINUSOID_ALPHAS
    """Inner learning rates (the grid's rows). Section 4.1: [1e-4, 9e-1]."""

    betas: tuple[float, ...] = PAPER_SINUSOID_BETAS
    """Meta learning rates (the grid's columns), strictly increasing. Section 4.1: [1e-2, 9]."""

    alpha_zero_row: bool = True
    """Also run alpha = 0 (joint training) on every beta: Fig. 4's dashed line is beta above
    which the loss diverges at alpha = 0. Stored apart from the log-spaced grid."""

    iters: int = 500
    """Outer iterations. Section 4.1: "the training loss after 500 iterations"."""

    tasks_per_batch: int = 100
    """Tasks per meta-update. Section 4.1: "the number of tasks was 100"."""

    steps: int = 1
    """Inner steps. Section 4.1: "1 step was taken for update"."""

    outer: OuterOptimizer = "sgd"
    """Outer optimizer. Section 4.1: "trained with SGD" (also what the theory assumes);
    ``adam`` (functional, per cell, betas 0.9/0.999, eps 1e-8) is for Fig. 1."""

    divergence_level: float = 1e3
    """A cell is diverged (frozen and dropped) once its MAML loss is non-finite or above this.
    The paper is silent ("the area with no color represents the diverged losses"); 1e3 is about
    250 times the sinusoid loss at initialisation (about 4), far above anything a converging
    run visits, so the level only decides *when* a divergence is noticed, not whether."""

    task_source: TaskSource = "pool"
    """``pool``: a fixed pool of ``pool_size`` tasks (amplitude, phase AND data points) drawn
    once from the seed; each iteration uses ``tasks_per_batch`` of them (all, in order, when the
    two are equal), so training is full-batch gradient descent on one fixed MAML objective --
    the setting the theory analyses. ``fresh``: new tasks and points every iteration (Finn et
    al.'s sinusoid training). The paper is ambiguous: "the number of tasks was 100" can mean
    either a pool of 100 tasks or 100 tasks per batch; the paper preset chooses ``pool``."""

    pool_size: int = 100
    """Size of the fixed task pool (``task_source='pool'``); see ``task_source``."""

    record_every: int = 10
    """Trajectory subsampling: losses and gradient statistics are recorded at iterations
    0, record_every, 2*record_every, ... and at the end. Ours; the paper reports final losses."""

    seed: int = 0
    """Seeds the initial parameters and the task samples (one torch.Generator on the CPU)."""

    dtype: DType = "float32"
    """Training precision. float32 as in the paper's era of MAML code; float64 on request."""

    device: str = "auto"
    """auto (CUDA when present, else CPU) | cpu | cuda | cuda:N."""

    chunk_size: int | None = None
    """Cells trained together in one batched computation; None lets the engine choose. Does
    not change the numbers (up to float rounding of batched kernels)."""

    save_params: SaveParams = "best"
    """Final parameters stored in the result: none | best (per alpha row, the non-diverged
    cell with the lowest final loss: the "trained point" of the comparison) | all."""

    problem_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword options for ``get_problem`` (e.g. sinusoid ``k_support``, ``init``)."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "alphas", _float_tuple("alphas", self.alphas))
        set_(self, "betas", _float_tuple("betas", self.betas))
        set_(self, "problem_options", dict(self.problem_options))
        check_variant(self.variant, self.steps)
        if any(b <= 0 for b in self.betas):
            raise ValueError(f"betas must be > 0, got {min(self.betas)!r}")
        if any(b1 <= b0 for b0, b1 in zip(self.betas, self.betas[1:], strict=False)):
            raise ValueError("betas must be strictly increasing")
        if any(a1 <= a0 for a0, a1 in zip(self.alphas, self.alphas[1:], strict=False)):
            raise ValueError("alphas must be strictly increasing")
        for name in ("iters", "tasks_per_batch", "record_every", "pool_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.chunk_size is not None and (
            not isinstance(self.chunk_size, int) or self.chunk_size < 1
        ):
            raise ValueError(f"chunk_size must be None or an integer >= 1, got {self.chunk_size!r}")
        if self.outer not in OUTER_OPTIMIZERS:
            raise ValueError(f"outer must be one of {OUTER_OPTIMIZERS}, got {self.outer!r}")
        if self.task_source not in TASK_SOURCES:
            raise ValueError(f"task_source must be one of {TASK_SOURCES}, got {self.task_source!r}")
        if self.task_source == "pool" and self.tasks_per_batch > self.pool_size:
            raise ValueError(
                f"tasks_per_batch={self.tasks_per_batch} exceeds pool_size={self.pool_size}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.save_params not in SAVE_PARAMS:
            raise ValueError(f"save_params must be one of {SAVE_PARAMS}, got {self.save_params!r}")
        if not (self.divergence_level > 0):
            raise ValueError(f"divergence_level must be > 0, got {self.divergence_level!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if not is_device_spec(self.device):
            raise ValueError(f"device must be {DEVICE_SPELLINGS}, got {self.device!r}")
        assert self.variant in VARIANTS

    # -- derived ---------------------------------------------------------------------------

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(n_alpha, n_beta) of the log-spaced grid (the alpha = 0 row not included)."""
        return (len(self.alphas), len(self.betas))

    @property
    def record_iters(self) -> np.ndarray:
        """Iterations at which trajectories are recorded (0, every ``record_every``, the end)."""
        its = list(range(0, self.iters, self.record_every))
        return np.asarray([*its, self.iters], dtype=np.int64)

    def replace(self, **changes: Any) -> SweepConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """The fields that decide the numbers (device and chunking excluded): what a resumed
        sweep must match."""
        d = self.to_dict()
        for key in ("device", "chunk_size"):
            d.pop(key)
        return d

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["alphas"] = list(self.alphas)
        d["betas"] = list(self.betas)
        d["problem_options"] = dict(self.problem_options)
        return d

    def to_json(self, **kwargs: Any) -> str:
        """JSON text; floats are written with repr precision, so ``from_json`` is exact."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SweepConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SweepConfig fields: {sorted(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_json(cls, text: str) -> SweepConfig:
        return cls.from_dict(json.loads(text))
