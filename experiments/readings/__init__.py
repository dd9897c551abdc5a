"""The readings of the empirical claims: the paper's Sections 4.1-4.2 leave settings open
(initialisation, task source, MAML variant, the divergence criterion), and a *reading* is one
value on each. The matrix names them all with their sources; a run trains the grid of one
reading and seed and locates its edges, so every claim is judged under every reading
(``mamlconv readings``; the judging itself is in :mod:`mamlconv.paper_checks`). See
docs/readings.md.

Modules, in data-flow order:

- :mod:`.matrix`: the reading matrix: its axes and values with their sources, reading names and
  their parsing, the sinusoid matrix.
- :mod:`.run`: one reading and seed: a coarse grid with alpha = 0, the bisected edges
  per criterion at the deciding alphas, one JSON file per run.
- :mod:`.fewshot`: the few-shot evidence of Fig. 4b/4c (claims S4-2, S4-3): Omniglot and
  MiniImagenet readings in one resumable, time-boxed run.
"""

from __future__ import annotations

from mamlconv.experiments.readings.matrix import (
    CRITERION,
    EDGE_RESOLUTION_DECADES,
    INIT,
    MATRICES,
    SINUSOID,
    TASK_SOURCE,
    VARIANT,
    Axis,
    ReadingMatrix,
    Value,
    parse_reading,
    reading_name,
)
from mamlconv.experiments.readings.run import (
    deciding_alphas,
    eval_inputs,
    grid_bracket,
    is_done,
    load_run,
    load_runs,
    result_path,
    run_reading,
    save_run,
)

__all__ = [
    # matrix: the axes, their values and the matrices
    "Value",
    "Axis",
    "INIT",
    "TASK_SOURCE",
    "VARIANT",
    "CRITERION",
    "EDGE_RESOLUTION_DECADES",
    "ReadingMatrix",
    "SINUSOID",
    "MATRICES",
    "reading_name",
    "parse_reading",
    # run: one reading and seed, trained and its edges located
    "eval_inputs",
    "deciding_alphas",
    "grid_bracket",
    "run_reading",
    # run: the result files of the runs
    "result_path",
    "save_run",
    "load_run",
    "is_done",
    "load_runs",
]
