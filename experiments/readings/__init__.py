"""The reading matrix and its runs.

Modules:

- :mod:`.fewshot`: The few-shot evidence of Fig. 4b/4c (claims S4-2, S4-3) in one resumable, time-
  boxed run.
- :mod:`.matrix`: The reading matrix: every assignment of the settings the paper leaves open, in one
  object.
- :mod:`.run`: Running one reading: for a run reading and seed, train a coarse alpha x beta grid
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
    # matrix
    "Value",
    "Axis",
    "EDGE_RESOLUTION_DECADES",
    "INIT",
    "TASK_SOURCE",
    "VARIANT",
    "CRITERION",
    "ReadingMatrix",
    "reading_name",
    "parse_reading",
    "SINUSOID",
    "MATRICES",
    # run
    "eval_inputs",
    "deciding_alphas",
    "grid_bracket",
    "run_reading",
    "result_path",
    "save_run",
    "load_run",
    "is_done",
    "load_runs",
]
