"""Problem registry and sweep presets: the one place a problem name becomes code.

``get_problem(name, **options)`` returns an object with the ``Problem`` protocol of
:mod:`mamlconv.numerics.tasks`; ``get_preset(problem, preset)`` returns the
:class:`~mamlconv.experiments.config.SweepConfig` of a named preset.

Contract with :mod:`mamlconv.experiments.fewshot` (Omniglot and MiniImagenet, written
separately and imported lazily here, so the sinusoid path never imports it):

- ``omniglot_problem(**options) -> Problem`` and ``miniimagenet_problem(**options) -> Problem``
  build the 5-way classification problems with Finn et al.'s CNN;
- ``FEWSHOT_PRESETS: dict[tuple[str, str], SweepConfig]`` maps ``(name, preset)``, e.g.
  ``("omniglot", "paper")``, to the preset's configuration (its ``problem`` field equal to
  ``name``).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from mamlconv.experiments.config import PAPER_SINUSOID_ALPHAS, PAPER_SINUSOID_BETAS, SweepConfig
from mamlconv.numerics.tasks import Problem

PROBLEMS: tuple[str, ...] = ("sinusoid", "omniglot", "miniimagenet")
PRESETS: tuple[str, ...] = ("paper", "smoke")
_FEWSHOT = {"omniglot": "omniglot_problem", "miniimagenet": "miniimagenet_problem"}


def get_problem(name: str, **options: Any) -> Problem:
    """The problem called ``name`` built with ``options`` (ValueError naming a bad name)."""
    if name == "sinusoid":
        from mamlconv.experiments.sinusoid import SinusoidProblem

        try:
            return SinusoidProblem(**options)
        except TypeError as exc:  # an unknown option
            raise ValueError(f"bad sinusoid option: {exc}") from None
    if name in _FEWSHOT:
        fewshot = importlib.import_module("mamlconv.experiments.fewshot")
        return getattr(fewshot, _FEWSHOT[name])(**options)
    raise ValueError(f"unknown problem {name!r}; choose one of {PROBLEMS}")


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


def get_preset(problem: str, preset: str) -> SweepConfig:
    """The ``preset`` configuration of ``problem`` (ValueError naming a bad name)."""
    if problem == "sinusoid":
        return sinusoid_preset(preset)
    if problem in _FEWSHOT:
        fewshot = importlib.import_module("mamlconv.experiments.fewshot")
        try:
            return fewshot.FEWSHOT_PRESETS[(problem, preset)]
        except KeyError:
            known = sorted(p for (n, p) in fewshot.FEWSHOT_PRESETS if n == problem)
            raise ValueError(
                f"unknown preset {preset!r} for {problem}; choose one of {known}"
            ) from None
    raise ValueError(f"unknown problem {problem!r}; choose one of {PROBLEMS}")
