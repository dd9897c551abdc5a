"""Sinusoid regression (Finn et al. 2017, Section 5.1; Takagi et al. 2019, Section 4.1).

Each task regresses y = A sin(x - phi) with amplitude A ~ U[0.1, 5.0], phase phi ~ U[0, pi]
and inputs x ~ U[-5, 5] (paper Section 4.1), from K support and K query points. The model is
Finn et al.'s MLP 1-40-40-1 with ReLU, written as a pure function of a parameter dict, and the
loss is the mean squared error over the task's points (Finn et al.).

Parameters are ``w1 (1, 40), b1 (40,), w2 (40, 40), b2 (40,), w3 (40, 1), b3 (1,)`` with
``z = x @ w + b`` (weights stored input-major, so ``x @ w`` needs no transpose).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mamlconv.experiments.config import PAPER_SINUSOID_ALPHAS, PAPER_SINUSOID_BETAS, SweepConfig
from mamlconv.numerics.tasks import Params, TaskBatch

PRESETS: tuple[str, ...] = ("paper", "smoke")
"""The sweep presets of sinusoid regression (:func:`sinusoid_preset`)."""

PARAM_NAMES: tuple[str, ...] = ("w1", "b1", "w2", "b2", "w3", "b3")
INITS: tuple[str, ...] = ("torch_default", "finn")


def mlp_forward(params: Params, x: Tensor) -> Tensor:
    """f(x) = relu(relu(x w1 + b1) w2 + b2) w3 + b3 for x of shape (..., n, 1)."""
    h = torch.relu(x @ params["w1"] + params["b1"])
    h = torch.relu(h @ params["w2"] + params["b2"])
    return h @ params["w3"] + params["b3"]


def mse_loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
    """L = mean_n (f(x_n) - y_n)^2 for ONE task: x, y of shape (n, 1)."""
    return ((mlp_forward(params, x) - y) ** 2).mean()


@dataclass(frozen=True)
class SinusoidProblem:
    """The sinusoid task family with the 1-40-40-1 ReLU MLP (implements ``Problem``).

    ``init``: the paper is silent. ``torch_default`` (the default) draws every weight and bias
    from U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which is what ``torch.nn.Linear`` does and so what
    PyTorch MAML code (learn2learn, higher, torchmeta) trains from; ``finn`` is Finn et al.'s
    TensorFlow code (weights from a normal with std 0.01 truncated at 2 std, biases zero).
    """

    k_support: int = 10
    k_query: int = 10
    amplitude: tuple[float, float] = (0.1, 5.0)
    phase: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    hidden: tuple[int, int] = (40, 40)
    init: str = "torch_default"
    name: str = "sinusoid"

    def __post_init__(self) -> None:
        if self.k_support < 1 or self.k_query < 1:
            raise ValueError(
                f"k_support and k_query must be >= 1, got {self.k_support}, {self.k_query}"
            )
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        for name in ("amplitude", "phase", "x_range", "hidden"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def widths(self) -> tuple[int, ...]:
        return (1, *self.hidden, 1)

    def n_params(self) -> int:
        w = self.widths
        return sum(w[i] * w[i + 1] + w[i + 1] for i in range(len(w) - 1))

    def init_params(
        self, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
    ) -> Params:
        """Initial parameters drawn on the CPU from ``generator`` (device-independent)."""
        params: Params = {}
        w = self.widths
        for i in range(3):
            fan_in, fan_out = w[i], w[i + 1]
            if self.init == "torch_default":
                bound = 1.0 / math.sqrt(fan_in)
                weight = (
                    torch.rand(fan_in, fan_out, generator=generator, dtype=torch.float64) * 2 - 1
                ) * bound
                bias = (
                    torch.rand(fan_out, generator=generator, dtype=torch.float64) * 2 - 1
                ) * bound
            else:
                weight = torch.nn.init.trunc_normal_(
                    torch.empty(fan_in, fan_out, dtype=torch.float64),
                    std=0.01,
                    a=-0.02,
                    b=0.02,
                    generator=generator,
                )
                bias = torch.zeros(fan_out, dtype=torch.float64)
            params[f"w{i + 1}"] = weight.to(device=device, dtype=dtype)
            params[f"b{i + 1}"] = bias.to(device=device, dtype=dtype)
        return params

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return mse_loss(params, x, y)

    def sample_task_parameters(
        self, generator: torch.Generator, n_tasks: int
    ) -> tuple[Tensor, Tensor]:
        """Amplitudes and phases (float64, CPU), each of shape (n_tasks,)."""
        a = _uniform(generator, (n_tasks,), *self.amplitude)
        phi = _uniform(generator, (n_tasks,), *self.phase)
        return a, phi

    def sample_tasks(
        self,
        generator: torch.Generator,
        n_tasks: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> TaskBatch:
        """``n_tasks`` tasks: x of shape (tasks, K, 1), y = A sin(x - phi) likewise.

        Drawn in float64 on the CPU from ``generator`` and then cast and moved, so the same
        seed gives the same tasks on every device and in every precision.
        """
        a, phi = self.sample_task_parameters(generator, n_tasks)
        xs = _uniform(generator, (n_tasks, self.k_support, 1), *self.x_range)
        xq = _uniform(generator, (n_tasks, self.k_query, 1), *self.x_range)
        ys = a[:, None, None] * torch.sin(xs - phi[:, None, None])
        yq = a[:, None, None] * torch.sin(xq - phi[:, None, None])
        return TaskBatch(xs, ys, xq, yq).to(device, dtype)


def _uniform(generator: torch.Generator, shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=torch.float64)


def sinusoid_preset(preset: str) -> SweepConfig:
    """Section 4.1 settings (``paper``) or a seconds-long run of the same code (``smoke``)."""
    paper = SweepConfig(
        problem="sinusoid",
        variant="exact",
        alphas=PAPER_SINUSOID_ALPHAS,  # Sec. 4.1 range, 20 log-spaced (grid size ours)
        betas=PAPER_SINUSOID_BETAS,  # Sec. 4.1 range, 20 log-spaced (grid size ours)
        alpha_zero_row=True,  # Fig. 4's dashed alpha = 0 line
        iters=500,  # Sec. 4.1
        tasks_per_batch=100,  # Sec. 4.1 "the number of tasks was 100"
        steps=1,  # Sec. 4.1
        outer="sgd",  # Sec. 4.1 "trained with SGD"
        divergence_level=1e3,  # paper silent; see SweepConfig.divergence_level
        task_source="pool",  # paper ambiguous; see SweepConfig.task_source
        pool_size=100,
        record_every=10,
        seed=0,
        dtype="float32",
        problem_options={
            "k_support": 10,  # Sec. 4.1 "the batch size of data was 10"
            "k_query": 10,  # paper silent on query size; Finn et al. use K for both
            "init": "torch_default",  # paper silent; see SinusoidProblem
        },
    )
    if preset == "paper":
        return paper
    if preset == "smoke":
        return paper.replace(
            alphas=tuple(np.geomspace(1e-3, 0.5, 3)),
            betas=tuple(np.geomspace(1e-2, 9.0, 4)),
            iters=20,
            tasks_per_batch=8,
            pool_size=8,
            record_every=5,
        )
    raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
