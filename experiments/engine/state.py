"""What a training run starts from: the device and dtype, the initial parameters and the
task stream (a fixed pool or fresh tasks per iteration, drawn from one seeded generator).
"""

from __future__ import annotations

from typing import Any

import torch

from mamlconv.errors import UsageError
from mamlconv.experiments.config import SweepConfig
from mamlconv.numerics.tasks import Params, Problem, TaskBatch
from mamlconv.util.devices import DEVICE_SPELLINGS, is_device_spec


def resolve_device(spec: str) -> str:
    """The torch device a device setting (``--device``, ``SweepConfig.device``) means here:
    ``auto`` -> ``cuda`` when CUDA is available, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` as they are. :class:`~mamlconv.errors.UsageError` (one line; exit 2 on the command
    line) for another spelling, or when CUDA or device N is not present."""
    spec = str(spec)
    if spec == "cpu":
        return spec
    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not is_device_spec(spec):
        raise UsageError(f"--device {spec}: expected {DEVICE_SPELLINGS}")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: no CUDA device is available (use auto or cpu)")
    index = int(spec[5:]) if ":" in spec else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise UsageError(
            f"--device {spec}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        )
    return spec


def resolve_dtype(dtype: str) -> torch.dtype:
    """``float32`` or ``float64`` (``SweepConfig.dtype``) as a torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


class TaskStream:
    """The task batches of a run, one per outer iteration, replayable from the seed.

    ``task_source='pool'``: ``pool_size`` tasks drawn once; an iteration uses all of them (when
    ``tasks_per_batch == pool_size``) or a random subset drawn without replacement.
    ``task_source='fresh'``: ``tasks_per_batch`` new tasks per iteration.
    """

    def __init__(
        self,
        problem: Problem,
        config: SweepConfig,
        *,
        generator: torch.Generator,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.problem, self.config, self.generator = problem, config, generator
        self.dtype, self.device = dtype, device
        self.pool: TaskBatch | None = None
        if config.task_source == "pool":
            self.pool = problem.sample_tasks(
                generator, config.pool_size, dtype=dtype, device=device
            )

    def next(self) -> TaskBatch:
        cfg = self.config
        if self.pool is None:
            return self.problem.sample_tasks(
                self.generator, cfg.tasks_per_batch, dtype=self.dtype, device=self.device
            )
        if cfg.tasks_per_batch == cfg.pool_size:
            return self.pool
        idx = torch.randperm(cfg.pool_size, generator=self.generator)[: cfg.tasks_per_batch]
        idx = idx.to(self.pool.x_support.device)
        return TaskBatch(*(t[idx] for t in self.pool))


def _check_signature(method: Any, name: str, *args: Any, **kwargs: Any) -> None:
    """A user problem's method must take the arguments the engine passes (ProblemError)."""
    import inspect

    from mamlconv.errors import ProblemError

    try:
        inspect.signature(method).bind(*args, **kwargs)
    except TypeError as exc:
        owner = type(getattr(method, "__self__", method)).__name__
        raise ProblemError(
            f"{owner}.{name} cannot be called as the engine calls it ({exc}); give it the "
            "arguments of the Problem protocol, e.g. init_params(generator, *, dtype, device) "
            "(docs/api.md)"
        ) from None
    except ValueError:
        return  # no signature to inspect (a builtin): let the call itself decide


def initial_state(
    problem: Problem, config: SweepConfig, *, dtype: torch.dtype, device: torch.device | str
) -> tuple[Params, TaskStream]:
    """Initial parameters and the task stream of a run: one CPU generator seeded with
    ``config.seed`` draws the parameters first, then the tasks."""
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    _check_signature(problem.init_params, "init_params", generator, dtype=dtype, device=device)
    _check_signature(problem.sample_tasks, "sample_tasks", generator, 1, dtype=dtype, device=device)
    params = problem.init_params(generator, dtype=dtype, device=device)
    stream = TaskStream(problem, config, generator=generator, dtype=dtype, device=device)
    return params, stream
