"""The problems a sweep trains, each an object with the ``Problem`` protocol of
:mod:`mamlconv.numerics.tasks` (sample tasks, a model, a loss), and the registry where a
problem name or a ``MODULE:FACTORY`` spec becomes one. The engine, the curvature code and the
figures treat every problem alike. Only the registry is re-exported here; the problems are
imported from their modules (the registry imports the few-shot ones lazily, so the sinusoid
path never imports them).

Modules, in data-flow order:

- :mod:`.sinusoid`: sinusoid regression (paper Section 4.1): the 1-40-40-1 ReLU MLP as a pure
  function and the task sampler.
- :mod:`.cnn`: the 4-block CNN of Vinyals et al. / Finn et al. as a pure function of a
  parameter dict, with per-task batch norm.
- :mod:`.fewshot`: N-way K-shot Omniglot and MiniImagenet episodes on that CNN (Section 4.2,
  Fig. 4b/4c) and their presets.
- :mod:`.module_problem`: a user's ``nn.Module``, loss and task sampler as a ``Problem``
  (:func:`~mamlconv.experiments.problems.module_problem.problem_from_module`).
- :mod:`.registry`: the one place a problem name becomes code: ``get_problem``, specs, and the
  named sweep presets (``get_preset``).
"""

from __future__ import annotations

from mamlconv.experiments.problems.registry import (
    MEMORY_PREFIX,
    PROBLEMS,
    ProblemSpecError,
    get_preset,
    get_problem,
    is_spec,
    load_spec,
    normalize_spec,
    register_problem,
)
from mamlconv.experiments.problems.sinusoid import PRESETS, sinusoid_preset

__all__ = [
    # the registry: names and specs to problems
    "PROBLEMS",
    "MEMORY_PREFIX",
    "ProblemSpecError",
    "is_spec",
    "normalize_spec",
    "load_spec",
    "register_problem",
    "get_problem",
    # the sweep presets of a problem
    "PRESETS",
    "sinusoid_preset",
    "get_preset",
]
