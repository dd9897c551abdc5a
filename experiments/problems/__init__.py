"""The problems a sweep trains: a registry from name or spec to a Problem, and the problems
themselves.

Modules:

- :mod:`.cnn`: The 4-block CNN of Vinyals et al. (2016) / Finn et al. (2017), as a pure function of
  a dict.
- :mod:`.fewshot`: N-way K-shot classification on Omniglot and MiniImagenet (paper Section 4.2, Fig.
  4b/4c).
- :mod:`.module_problem`: A user's ``nn.Module``, loss and task sampler as a
  :class:`~mamlconv.numerics.tasks.Problem`.
- :mod:`.registry`: Problem registry and sweep presets: the one place a problem name becomes code.
- :mod:`.sinusoid`: Sinusoid regression (Finn et al. 2017, Section 5.1; Takagi et al. 2019, Section
  4.1).
"""

from __future__ import annotations

from mamlconv.experiments.problems.registry import (
    MEMORY_PREFIX,
    PRESETS,
    PROBLEMS,
    ProblemSpecError,
    get_preset,
    get_problem,
    is_spec,
    load_spec,
    normalize_spec,
    register_problem,
    sinusoid_preset,
)

__all__ = [
    # registry
    "PROBLEMS",
    "PRESETS",
    "MEMORY_PREFIX",
    "ProblemSpecError",
    "is_spec",
    "normalize_spec",
    "load_spec",
    "register_problem",
    "get_problem",
    "sinusoid_preset",
    "get_preset",
]
