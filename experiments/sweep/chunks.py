"""Cells and chunks of an alpha x beta sweep: the grid's cells, the chunk plan, the chunk size
per device and problem, and :func:`run_chunk`, which trains one chunk (in this process or a
worker) and writes it atomically with the configuration's identity.

Chunks take every ``n_chunks``-th cell of the flattened grid (not a block of rows), so each
chunk holds a mix of quickly diverging and long-running cells and workers finish at about the
same time. Chunk k of a grid always holds the same cells, and a resume must use the chunk size,
device and backend recorded in the chunk folder, so a resumed sweep's numbers are those of an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import ResultFileError, ResumeMismatch
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.sweep import storage
from mamlconv.experiments.sweep.results import (
    TRAJECTORIES,
    atomic_savez,
)

log = logging.getLogger(__name__)


CHUNK_TASK_BUDGET = 128
"""CPU, hand-batched MLP backend: cells per batch = CHUNK_TASK_BUDGET // tasks_per_batch (at
least 1, at most 64). The step is bound by memory traffic, and its working set grows with
cells x tasks, so small batches that stay in cache are fastest per cell: with 100 tasks, one
thread, this 2-core machine lightly loaded, 1.15 ms per cell-iteration at 1 cell per batch,
1.30 at 4, 1.57 at 8, 1.70 at 16, 2.03 at 32 (the same trend as in docs/engine.md, "Speed")."""


DEFAULT_CHUNK_GENERIC = 16
"""Cells per batch for the generic vmap backend (it materialises per-task gradients)."""


DEFAULT_CHUNK_CUDA = 1024
"""Cells per batch on a GPU: the whole paper grid in one batch."""


CNN_CHUNK_CPU = 1
"""Few-shot CNNs on a CPU: one cell at a time. The CPU's backend, ``grouped``
(experiments/engine/grouped.py), never mixes cells in one call, so a wider chunk gains nothing
there; for the vmapped ``generic`` backend, benchmarks/omniglot_bench.py measured batching 4 cells
at 0.29x the speed of one at a time (vmapped convolutions lose their fast kernels)."""


FEWSHOT_PROBLEMS = ("omniglot", "miniimagenet")


def grid_rows(config: SweepConfig) -> np.ndarray:
    """The alphas of the rows actually trained: 0 first when ``alpha_zero_row``."""
    rows = ((0.0,) if config.alpha_zero_row else ()) + tuple(config.alphas)
    return np.asarray(rows, dtype=float)


def sweep_cells(config: SweepConfig) -> tuple[np.ndarray, np.ndarray]:
    """Flat (alpha, beta) of every cell, row-major over ``grid_rows`` x betas."""
    a, b = np.meshgrid(grid_rows(config), np.asarray(config.betas), indexing="ij")
    return a.ravel(), b.ravel()


def plan_chunks(cells: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Split cell indices into ceil(n / chunk_size) strided chunks of nearly equal size."""
    cells = np.asarray(cells, dtype=np.int64)
    if cells.size == 0:
        return []
    n_chunks = math.ceil(cells.size / chunk_size)
    return [cells[k::n_chunks] for k in range(n_chunks)]


def default_chunk_size(config: SweepConfig, backend: str = "auto") -> int:
    """The config's chunk size, else: on CUDA every cell at once (up to ``DEFAULT_CHUNK_CUDA``;
    a GPU wants large batches), on a CPU see ``CHUNK_TASK_BUDGET`` / ``DEFAULT_CHUNK_GENERIC``."""
    if config.chunk_size is not None:
        return config.chunk_size
    from mamlconv.experiments.engine.state import resolve_device

    on_cuda = resolve_device(config.device).startswith("cuda")
    if config.problem in FEWSHOT_PROBLEMS:
        if on_cuda:  # as many cells as the device's free memory holds (measured per config)
            from mamlconv.experiments.engine.memory import cuda_chunk_size

            return cuda_chunk_size(config)
        return CNN_CHUNK_CPU
    if on_cuda:
        return DEFAULT_CHUNK_CUDA
    mlp = backend == "mlp" or (
        backend == "auto" and config.problem == "sinusoid" and config.steps == 1
    )
    if not mlp:
        return DEFAULT_CHUNK_GENERIC
    return int(min(64, max(1, CHUNK_TASK_BUDGET // config.tasks_per_batch)))


def _identity_json(config: SweepConfig) -> str:
    return json.dumps(config.identity(), sort_keys=True)


def load_finished_chunks(
    directory: Path, config: SweepConfig
) -> tuple[list[dict[str, np.ndarray]], int]:
    """Finished chunks of this configuration in ``directory`` and the next free chunk id.

    A chunk made with another configuration is a :class:`ResumeMismatch` (never mixed in
    silently); a truncated or foreign chunk file a :class:`ResultFileError` naming it."""
    chunks = []
    next_id = 0
    want = _identity_json(config)
    for path in storage.finished_chunk_files(directory):
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            identity = str(data.pop("identity_json"))
            cells = np.asarray(data["cells"], dtype=np.int64)
        except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as exc:
            raise ResultFileError(
                f"chunk file {path} is unreadable ({type(exc).__name__}: {exc}); delete it "
                "and rerun with --resume to train its cells again"
            ) from None
        if identity != want:
            raise ResumeMismatch(
                f"{path} was made with another configuration; remove {directory} or use "
                "the configuration it was made with"
            )
        data["cells"] = cells
        chunks.append(data)
        next_id = max(next_id, int(path.stem.split("_")[1]) + 1)
    return chunks, next_id


_WORKER_QUEUE: Any = None


def _worker_init(q: Any, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = q
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    import torch

    torch.set_num_threads(threads)


def run_chunk(
    config_json: str,
    chunk_id: int,
    cells: np.ndarray,
    path: str,
    backend: str,
    report: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Train the cells of one chunk and write the chunk file atomically."""
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.problems.registry import get_problem

    config = SweepConfig.from_json(config_json)
    problem = get_problem(config.problem, **config.problem_options)
    alphas, betas = sweep_cells(config)
    cell_iters = [0]
    q = _WORKER_QUEUE
    last = [0.0]

    def progress(t: int, n_active: int) -> None:
        cell_iters[0] += n_active
        if report is not None:
            report(chunk_id, t, n_active)
        elif q is not None and (time.perf_counter() - last[0] > 0.5 or n_active == 0):
            last[0] = time.perf_counter()
            q.put((chunk_id, t, n_active))

    t0 = time.perf_counter()
    run = train_cells(
        problem,
        config,
        alphas[cells],
        betas[cells],
        backend=backend,
        save_params=config.save_params != "none",
        progress=progress,
    )
    wall = time.perf_counter() - t0
    arrays: dict[str, np.ndarray] = {
        "cells": np.asarray(cells, dtype=np.int64),
        "final_loss": run.final_loss,
        "diverged_at": run.diverged_at,
        "identity_json": np.array(_identity_json(config)),
    }
    for name in TRAJECTORIES:
        arrays[name] = getattr(run, name)
    if run.final_params is not None:
        for name, p in run.final_params.items():
            arrays[f"params/{name}"] = p.astype(config.dtype)
    atomic_savez(Path(path), arrays)
    return {
        "chunk": chunk_id,
        "n_cells": int(len(cells)),
        "n_diverged": int((run.diverged_at >= 0).sum()),
        "wall_s": wall,
        "cell_iters": int(cell_iters[0]),
    }
