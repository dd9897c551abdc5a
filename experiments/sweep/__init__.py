"""alpha x beta sweeps: chunked, resumable, local or on Ray, with bisection of the edge.

Modules:

- :mod:`.bisection`: The stability edge beta_c(alpha) by bisection on log(beta) for all alphas at
  once
- :mod:`.chunks`: Cells and chunks of an alpha x beta sweep: the grid's cells, the chunk plan, the
  chunk size
- :mod:`.estimate`: How big a long command is, and how long and how much memory it will take, from a
  short
- :mod:`.ray_backend`: How a chunk reaches a Ray worker: one Ray task per sweep chunk (or bisection
  alpha column).
- :mod:`.results`: Sweep result files: one self-describing ``.npz`` per sweep (plus a readable JSON
  sidecar).
- :mod:`.run`: Running a sweep: the local executor (a pool of worker processes over chunks), the
- :mod:`.storage`: Where a sweep keeps its files, and the guards that keep a result from being lost:
  the
"""

from __future__ import annotations

from mamlconv.experiments.sweep.bisection import (
    BisectSweep,
    bisect_sweep,
    recheck_boundary,
)
from mamlconv.experiments.sweep.chunks import (
    CHUNK_TASK_BUDGET,
    CNN_CHUNK_CPU,
    DEFAULT_CHUNK_CUDA,
    DEFAULT_CHUNK_GENERIC,
    FEWSHOT_PROBLEMS,
    default_chunk_size,
    grid_rows,
    load_finished_chunks,
    plan_chunks,
    run_chunk,
    sweep_cells,
)
from mamlconv.experiments.sweep.run import (
    POLL_S,
    PR_SET_PDEATHSIG,
    Progress,
    die_with_parent,
    resume_chunk_size,
    run_sweep,
    start_worker,
)

__all__ = [
    # chunks
    "CHUNK_TASK_BUDGET",
    "DEFAULT_CHUNK_GENERIC",
    "DEFAULT_CHUNK_CUDA",
    "CNN_CHUNK_CPU",
    "FEWSHOT_PROBLEMS",
    "grid_rows",
    "sweep_cells",
    "plan_chunks",
    "default_chunk_size",
    "load_finished_chunks",
    "run_chunk",
    # run
    "PR_SET_PDEATHSIG",
    "POLL_S",
    "die_with_parent",
    "start_worker",
    "Progress",
    "run_sweep",
    "resume_chunk_size",
    # bisection
    "BisectSweep",
    "bisect_sweep",
    "recheck_boundary",
]
