"""alpha x beta sweeps: the grid of a :class:`~mamlconv.experiments.config.SweepConfig` trained by
the engine a chunk of cells at a time, in worker processes here or as Ray tasks on a cluster,
resumable from its finished chunks, merged into one self-describing result file; and the
stability edge beta_c(alpha) located by bisection instead of a full grid. What is read from a
result lives in :mod:`mamlconv.experiments.analysis`.

Modules, in data-flow order:

- :mod:`.chunks`: the grid's cells, the chunk plan (every n-th cell), the chunk size per device
  and problem, and ``run_chunk``, which trains and writes one chunk.
- :mod:`.run`: ``run_sweep``: the local executor (a pool of workers that die with their
  parent), the choice of the Ray executor, the merge of the chunks.
- :mod:`.ray_backend`: how a chunk (or a bisection column) reaches a Ray worker and its file
  comes back (``--backend ray``, docs/cluster.md).
- :mod:`.storage`: where a sweep keeps its files and the guards of a result: suffixes, no
  replacing a finished result, the chunk layout record, the ``--out`` lock.
- :mod:`.results`: the result file: one ``.npz`` with its metadata (``SweepResult``,
  ``save_result``, ``load_result``) and a readable JSON sidecar.
- :mod:`.bisection`: the edge beta_c(alpha) by bisection on log(beta) for all alphas at once,
  and the recheck of a grid's boundary cells.
- :mod:`.estimate`: how long and how much memory a long command will take, from a short
  measured probe, and the refusal above a limit without ``--yes``.
"""

from __future__ import annotations

from mamlconv.util.lazy import lazy_exports

_EXPORTS = {
    "BisectSweep": ".bisection",
    "bisect_sweep": ".bisection",
    "recheck_boundary": ".bisection",
    "CHUNK_TASK_BUDGET": ".chunks",
    "CNN_CHUNK_CPU": ".chunks",
    "DEFAULT_CHUNK_CUDA": ".chunks",
    "DEFAULT_CHUNK_GENERIC": ".chunks",
    "FEWSHOT_PROBLEMS": ".chunks",
    "default_chunk_size": ".chunks",
    "grid_rows": ".chunks",
    "load_finished_chunks": ".chunks",
    "plan_chunks": ".chunks",
    "run_chunk": ".chunks",
    "sweep_cells": ".chunks",
    "POLL_S": ".run",
    "PR_SET_PDEATHSIG": ".run",
    "die_with_parent": ".run",
    "resume_chunk_size": ".run",
    "run_sweep": ".run",
    "start_worker": ".run",
}
"""Where each public name lives; imported on first use (:mod:`mamlconv.util.lazy`), so that
importing this package imports none of its modules' dependencies (torch among them)."""
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)  # the public names are the lazy map's keys
