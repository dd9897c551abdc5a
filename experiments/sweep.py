"""alpha x beta sweeps: chunked, resumable, optionally spread over worker processes.

``run_sweep(config, out)`` trains every cell of ``config`` (plus the alpha = 0 row when asked)
with :func:`mamlconv.experiments.engine.train_cells`, a chunk of cells at a time. Each finished
chunk is written atomically to ``<out>.chunks/chunk_NNNN.npz`` together with the
configuration's identity, so an interrupted sweep (Ctrl-C, a killed job) keeps every finished
chunk and ``resume=True`` trains only the cells that no finished chunk holds. When all cells
are done the chunks are merged into one result file (:mod:`.results`) and the chunk folder is
removed.

Chunks take every ``n_chunks``-th cell of the flattened grid (not a block of rows), so each
chunk holds a mix of quickly diverging and long-running cells and worker processes finish at
about the same time. Chunk k of a grid always holds the same cells, and a resume must use the
chunk size, device and backend recorded in the chunk folder, so a resumed sweep's numbers are
those of an uninterrupted one. The guards around the files (suffix, no silent overwrite, the
lock, the layout record) live in :mod:`.sweep_files`; workers die with their parent
(:mod:`.lifeline`).

``bisect_sweep`` finds the stability edge beta_c(alpha) for all alphas at once by bisection
on log(beta) (:func:`mamlconv.numerics.boundary.bisect_boundary`), stable meaning "not
diverged within ``iters``", the criterion of the grid.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import signal
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mamlconv.errors import ResultFileError, ResumeMismatch
from mamlconv.experiments import sweep_files
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.ray_backend import (
    RayOptions,
    ray_session,
    run_chunks_ray,
    stable_by_column,
)
from mamlconv.experiments.results import (
    TRAJECTORIES,
    SweepResult,
    atomic_savez,
    best_beta_index,
    save_result,
)
from mamlconv.experiments.sweep_files import chunk_dir
from mamlconv.numerics.boundary import BisectionResult, bisect_boundary

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
"""Few-shot CNNs on a CPU: one cell at a time. benchmarks/omniglot_bench.py measured batching 4
cells at 0.29x the speed of one at a time there (vmapped convolutions lose their fast kernels)."""
FEWSHOT_PROBLEMS = ("omniglot", "miniimagenet")


# --------------------------------------------------------------------------------------------
# cells and chunks
# --------------------------------------------------------------------------------------------


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
    from mamlconv.experiments.engine import resolve_device

    on_cuda = resolve_device(config.device).type == "cuda"
    if config.problem in FEWSHOT_PROBLEMS:
        if on_cuda:  # as many cells as the device's free memory holds (measured per config)
            from mamlconv.experiments.memory import cuda_chunk_size

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
    for path in sweep_files.finished_chunk_files(directory):
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


# --------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------


class Progress:
    """A one-line text progress bar on stderr: cells finished and each running chunk's
    iteration. Redrawn in place on a terminal, a line every ``interval`` seconds otherwise."""

    def __init__(
        self,
        *,
        total_cells: int,
        done_cells: int,
        iters: int,
        label: str,
        stream: TextIO | None = None,
        interval: float | None = None,
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (0.25 if self.tty else 10.0)
        self.total, self.done, self.iters, self.label = total_cells, done_cells, iters, label
        self.diverged = 0
        self.running: dict[int, tuple[int, int]] = {}
        self.start = time.perf_counter()
        self.last = -math.inf

    def update(self, chunk: int, iteration: int, n_active: int) -> None:
        self.running[chunk] = (iteration, n_active)
        self._draw()

    def chunk_done(self, chunk: int, n_cells: int, n_diverged: int) -> None:
        self.running.pop(chunk, None)
        self.done += n_cells
        self.diverged += n_diverged
        self._draw(force=True)

    def close(self) -> None:
        self._draw(force=True)
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        width = 20
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        runs = ", ".join(
            f"it {it}/{self.iters} ({act} active)" for it, act in self.running.values()
        )
        line = (
            f"{self.label} [{bar}] cells {self.done}/{self.total} "
            f"({self.diverged} diverged) {runs} {now - self.start:.0f}s"
        )
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(120))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------
# one chunk (in this process or a worker)
# --------------------------------------------------------------------------------------------

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
    from mamlconv.experiments.engine import train_cells
    from mamlconv.experiments.problems import get_problem

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


# --------------------------------------------------------------------------------------------
# the sweep
# --------------------------------------------------------------------------------------------


def _run_chunks(
    config: SweepConfig,
    plan: list[tuple[int, np.ndarray, Path]],
    *,
    backend: str,
    workers: int,
    threads: int | None,
    progress: Progress | None,
    ray: RayOptions | None = None,
) -> list[dict[str, Any]]:
    """Run the planned chunks here (workers=1), in ``workers`` spawned processes, or as Ray
    tasks (``ray``, :mod:`.ray_backend`)."""
    config_json = config.to_json()
    if ray is not None:
        return run_chunks_ray(config_json, plan, backend=backend, options=ray, progress=progress)
    summaries: list[dict[str, Any]] = []
    if workers <= 1 or len(plan) <= 1:
        report = progress.update if progress is not None else None
        for chunk_id, cells, path in plan:
            s = run_chunk(config_json, chunk_id, cells, str(path), backend, report)
            summaries.append(s)
            if progress is not None:
                progress.chunk_done(chunk_id, s["n_cells"], s["n_diverged"])
        return summaries

    ctx = mp.get_context("spawn")  # fork after torch's thread pools started is unsafe
    q = ctx.Queue()
    workers = min(workers, len(plan))  # never more workers than chunks
    from mamlconv.experiments.lifeline import start_worker

    # start_worker puts each worker on a lifeline first: a killed parent leaves no worker behind
    init = (os.getpid(), f"{__name__}:_worker_init", (q, threads or 1))
    pool = ctx.Pool(workers, initializer=start_worker, initargs=init)
    try:
        pending = [
            pool.apply_async(run_chunk, (config_json, cid, cells, str(path), backend))
            for cid, cells, path in plan
        ]
        while pending:
            try:
                chunk, t, n_active = q.get(timeout=0.2)
                if progress is not None:
                    progress.update(chunk, t, n_active)
            except queue_mod.Empty:
                pass
            still = []
            for res in pending:
                if res.ready():
                    s = res.get()  # re-raises a worker's exception here
                    summaries.append(s)
                    if progress is not None:
                        progress.chunk_done(s["chunk"], s["n_cells"], s["n_diverged"])
                else:
                    still.append(res)
            pending = still
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C or a failed chunk: finished chunk files stay on disk
        raise
    finally:
        pool.join()
    return summaries


def _merge(config: SweepConfig, chunks: list[dict[str, np.ndarray]]) -> SweepResult:
    """Assemble the chunk files into grid-shaped arrays."""
    alphas_all, _ = sweep_cells(config)
    n_cells = alphas_all.size
    n_rows = grid_rows(config).size
    n_b = len(config.betas)
    n_rec = config.record_iters.size
    final = np.full(n_cells, np.nan)
    div = np.full(n_cells, -1, dtype=np.int64)
    traj = {name: np.full((n_cells, n_rec), np.nan) for name in TRAJECTORIES}
    param_names = sorted(k[len("params/") :] for k in chunks[0] if k.startswith("params/"))
    params = {
        n: np.full((n_cells, *chunks[0][f"params/{n}"].shape[1:]), np.nan) for n in param_names
    }
    seen = np.zeros(n_cells, dtype=bool)
    for ch in chunks:
        cells = ch["cells"]
        seen[cells] = True
        final[cells] = ch["final_loss"]
        div[cells] = ch["diverged_at"]
        for name in TRAJECTORIES:
            traj[name][cells] = ch[name]
        for n in param_names:
            params[n][cells] = ch[f"params/{n}"]
    if not seen.all():
        raise RuntimeError(f"{int((~seen).sum())} cells missing after all chunks ran")

    z = 1 if config.alpha_zero_row else 0

    def grid(a: np.ndarray) -> np.ndarray:  # (cells, ...) -> (rows, nB, ...)
        return a.reshape(n_rows, n_b, *a.shape[1:])

    final_g, div_g = grid(final), grid(div)
    traj_g = {name: grid(v) for name, v in traj.items()}
    alpha0 = None
    if z:
        alpha0 = {"final_loss": final_g[0], "diverged_at": div_g[0]}
        alpha0.update({name: v[0] for name, v in traj_g.items()})
    best = best_beta_index(final_g[z:], div_g[z:] >= 0)
    saved = None
    if config.save_params == "all":
        saved = {n: grid(p)[z:].astype(config.dtype) for n, p in params.items()}
    elif config.save_params == "best":
        rows = np.arange(best.size)
        saved = {
            n: np.where(
                (best >= 0).reshape(-1, *([1] * (p.ndim - 1))),
                grid(p)[z:][rows, np.maximum(best, 0)],
                np.nan,
            ).astype(config.dtype)
            for n, p in params.items()
        }
    return SweepResult(
        config=config,
        alphas=np.asarray(config.alphas, dtype=float),
        betas=np.asarray(config.betas, dtype=float),
        record_iters=config.record_iters,
        final_loss=final_g[z:],
        diverged_at=div_g[z:],
        trajectories={name: v[z:] for name, v in traj_g.items()},
        alpha0=alpha0,
        params=saved,
        best_beta_index=best,
    )


def run_sweep(
    config: SweepConfig,
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    workers: int = 1,
    threads: int | None = None,
    backend: str = "auto",
    progress: bool | Progress = True,
    ray: RayOptions | None = None,
) -> SweepResult:
    """Train every cell of ``config`` and write the result file ``out`` (see module doc).

    ``out`` must end in ``.npz``. A finished result at ``out`` is replaced only with
    ``force=True``; with ``resume=True`` and the same configuration it is returned as it is
    (nothing to do). ``resume=False`` refuses to start over a chunk folder left by an
    interrupted run (pass ``resume=True`` to continue it, or delete it); a resume must use the
    chunk size, device and backend the chunks were made with (the chunk size is taken from
    the folder when ``config`` leaves it open). ``<out>.lock`` keeps a second process off the
    same ``out``. ``workers`` > 1 runs chunks in that many spawned processes (at most one per
    chunk) with ``threads`` torch threads each (default 1); ``ray`` runs them as Ray tasks
    instead (:mod:`.ray_backend`, docs/cluster.md).
    """
    out = Path(out)
    sweep_files.check_suffix(out, bisect=False)
    done_meta = sweep_files.finished_or_refuse(config, out, resume=resume, force=force)
    if done_meta is not None:
        from mamlconv.experiments.results import load_result

        return load_result(out)
    with sweep_files.SweepLock(out):
        return _run_sweep_locked(
            config,
            out,
            resume=resume,
            workers=workers,
            threads=threads,
            backend=backend,
            progress=progress,
            ray=ray,
        )


def resume_chunk_size(config: SweepConfig, out: str | Path) -> SweepConfig:
    """``config`` with the chunk size of ``out``'s chunk folder when ``config`` leaves it open
    (a resume then splits the cells as the interrupted run did)."""
    if config.chunk_size is not None:
        return config
    layout = sweep_files.read_layout(chunk_dir(out))
    if layout is None or not sweep_files.finished_chunk_files(chunk_dir(out)):
        return config
    return config.replace(chunk_size=int(layout["chunk_size"]))


def _run_sweep_locked(
    config: SweepConfig,
    out: Path,
    *,
    resume: bool,
    workers: int,
    threads: int | None,
    backend: str,
    progress: bool | Progress,
    ray: RayOptions | None = None,
) -> SweepResult:
    import torch

    from mamlconv.experiments.engine import resolve_device
    from mamlconv.experiments.problems import get_problem
    from mamlconv.provenance import describe

    device = str(resolve_device(config.device))
    get_problem(config.problem, **config.problem_options)  # a bad problem fails before any file
    directory = chunk_dir(out)
    sweep_files.clear_if_empty(directory)
    if directory.exists() and not resume:
        n_old = len(sweep_files.finished_chunk_files(directory))
        raise FileExistsError(
            f"{directory} holds {n_old} finished chunks of an earlier run; pass resume "
            "(--resume) to continue it, or delete the folder"
        )
    if resume:
        config = resume_chunk_size(config, out)
    chunk_size = default_chunk_size(config, backend)
    layout = sweep_files.layout_record(
        config, chunk_size=chunk_size, device=device, backend=backend
    )
    recorded = sweep_files.read_layout(directory) if directory.exists() else None
    if recorded is not None:
        sweep_files.check_layout(directory, recorded, layout)
    sweep_files.remove_stale_temporaries(directory)
    chunks, _ = load_finished_chunks(directory, config)
    alphas_all, _ = sweep_cells(config)
    # Chunk k always holds the same cells (plan_chunks of the whole grid), so a resumed sweep
    # trains every cell in the batch an uninterrupted one would have used.
    full_plan = plan_chunks(np.arange(alphas_all.size), chunk_size)
    finished: set[int] = set()
    for ch, path in zip(chunks, sweep_files.finished_chunk_files(directory), strict=True):
        k = int(path.stem.split("_")[1])
        if k >= len(full_plan) or not np.array_equal(ch["cells"], full_plan[k]):
            raise ResumeMismatch(
                f"{path} holds other cells than chunk {k} of this sweep (made by an older "
                f"mamlconv or another chunk size); remove {directory} to start again"
            )
        finished.add(k)
    done = np.zeros(alphas_all.size, dtype=bool)
    for k in finished:
        done[full_plan[k]] = True
    plan = [
        (k, cells, directory / f"chunk_{k:04d}.npz")
        for k, cells in enumerate(full_plan)
        if k not in finished
    ]
    workers = max(1, min(workers, len(plan)))
    directory.mkdir(parents=True, exist_ok=True)
    sweep_files.write_layout(directory, config, layout)
    bar = progress if isinstance(progress, Progress) else None
    if progress is True:
        bar = Progress(
            total_cells=alphas_all.size,
            done_cells=int(done.sum()),
            iters=config.iters,
            label=f"sweep {config.problem}/{config.variant}",
        )
    t0 = time.perf_counter()
    try:
        summaries = _run_chunks(
            config, plan, backend=backend, workers=workers, threads=threads, progress=bar, ray=ray
        )
    except BaseException:
        sweep_files.clear_if_empty(directory)  # nothing finished: leave nothing behind
        raise
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    chunks, _ = load_finished_chunks(directory, config)
    result = _merge(config, chunks)
    result.provenance = describe(device)
    result.run_info = {
        "wall_s": round(wall, 3),
        "backend": backend,
        "chunk_size": chunk_size,
        "workers": workers,
        "executor": "local" if ray is None else "ray",
        "threads_per_worker": threads if workers > 1 else torch.get_num_threads(),
        "resumed_cells": int(done.sum()),
        "cell_iterations": int(sum(s["cell_iters"] for s in summaries)),
        "chunks": summaries,
    }
    save_result(result, out)
    shutil.rmtree(directory)
    return result


@dataclass(frozen=True)
class BisectSweep:
    """A bisection's brackets plus where each alpha's edge lies when it is not bracketed."""

    result: BisectionResult
    beta_min: float
    beta_max: float
    stable_at_beta_min: np.ndarray
    """False: every beta of the range diverges (the edge lies below ``beta_min``)."""
    stable_at_beta_max: np.ndarray
    """True: the whole range is stable (the edge lies above ``beta_max``)."""

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready row per alpha: the bracket [beta_lo, beta_hi]; an edge below the
        range reads [None, beta_min], one above it [beta_max, inf]."""
        rows = self.result.as_boundary().as_records()
        for row, lo_ok, hi_ok in zip(
            rows, self.stable_at_beta_min, self.stable_at_beta_max, strict=True
        ):
            row["edge_below_range"] = bool(not lo_ok)
            row["edge_above_range"] = bool(hi_ok)
            if not lo_ok:
                row["beta_lo"], row["beta_hi"] = None, self.beta_min
            elif hi_ok:
                row["beta_lo"], row["beta_hi"] = self.beta_max, math.inf
        return rows


def bisect_sweep(
    config: SweepConfig,
    *,
    beta_min: float | None = None,
    beta_max: float | None = None,
    rtol: float = 0.05,
    backend: str = "auto",
    progress: bool = True,
    ray: RayOptions | None = None,
) -> BisectSweep:
    """beta_c(alpha) for every alpha of ``config`` by bisection on log(beta), all at once.

    Each round trains one cell per unresolved alpha (in one batch), stable meaning not
    diverged within ``config.iters``. Defaults: the config's beta range. ``ray``: each round
    runs one Ray task per alpha column (:mod:`.ray_backend`).
    """
    from mamlconv.experiments.engine import train_cells
    from mamlconv.experiments.problems import get_problem

    problem = get_problem(config.problem, **config.problem_options) if ray is None else None
    config_json = config.to_json()
    beta_min = config.betas[0] if beta_min is None else beta_min
    beta_max = config.betas[-1] if beta_max is None else beta_max
    chunk_size = default_chunk_size(config, backend)
    calls: list[np.ndarray] = []

    def is_stable(alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
        stable = np.zeros(alphas.size, dtype=bool)
        if ray is not None:  # one Ray task per alpha column; the data are read on the workers
            stable = stable_by_column(config_json, alphas, betas, backend=backend, options=ray)
        else:
            for cells in plan_chunks(np.arange(alphas.size), chunk_size):
                run = train_cells(problem, config, alphas[cells], betas[cells], backend=backend)
                stable[cells] = run.diverged_at < 0
        calls.append(stable)
        if progress:
            what = "range ends" if len(calls) == 1 else f"round {len(calls) - 1}"
            log.info(
                f"bisect {config.problem}/{config.variant}: {what}, {alphas.size} runs, "
                f"{int(stable.sum())} stable"
            )
        return stable

    with contextlib.nullcontext() if ray is None else ray_session(ray):
        res = bisect_boundary(
            is_stable, np.asarray(config.alphas), beta_min=beta_min, beta_max=beta_max, rtol=rtol
        )
    n = len(config.alphas)
    return BisectSweep(res, beta_min, beta_max, calls[0][:n].copy(), calls[0][n:].copy())


def recheck_boundary(
    result: SweepResult,
    *,
    dtype: str = "float64",
    width: int = 1,
    seed: int | None = None,
    backend: str = "auto",
) -> dict[str, Any]:
    """Re-run the cells around each alpha's measured edge in another precision (or seed).

    float32 trajectories near the stability edge are chaotic (docs/engine.md), so a float32
    edge is fuzzy by about a grid cell. For every alpha row, the cells from ``width`` below the
    largest stable beta to ``width`` above the first diverged one are trained again with
    ``dtype`` (and ``seed``, default the sweep's); the rest of the row keeps its first
    classification. Returns a JSON-ready record with, per alpha, the new bracket and whether it
    moved.
    """
    from mamlconv.experiments.engine import train_cells
    from mamlconv.experiments.problems import get_problem
    from mamlconv.numerics.boundary import extract_boundary

    config = result.config.replace(dtype=dtype, seed=result.config.seed if seed is None else seed)
    problem = get_problem(config.problem, **config.problem_options)
    stable = result.stable.copy()
    n_b = result.betas.size
    cells: list[tuple[int, int]] = []
    for i in range(result.alphas.size):
        row = stable[i]
        top = int(np.flatnonzero(row).max()) if row.any() else -1
        lo, hi = max(top - width, 0), min(top + 1 + width, n_b - 1)
        cells += [(i, j) for j in range(lo, hi + 1)]
    idx = np.array(cells, dtype=np.int64).reshape(-1, 2)
    chunk_size = default_chunk_size(config, backend)
    for part in plan_chunks(np.arange(len(idx)), chunk_size):
        run = train_cells(
            problem,
            config,
            result.alphas[idx[part, 0]],
            result.betas[idx[part, 1]],
            backend=backend,
        )
        stable[idx[part, 0], idx[part, 1]] = run.diverged_at < 0
    before = result.boundary()
    after = extract_boundary(result.alphas, result.betas, stable)
    rows = after.as_records()
    for r, lo0, hi0 in zip(rows, before.beta_lo, before.beta_hi, strict=True):
        r["beta_lo_first"] = None if np.isnan(lo0) else float(lo0)
        r["beta_hi_first"] = float(hi0)
        r["moved"] = (r["beta_lo"] != r["beta_lo_first"]) or (r["beta_hi"] != r["beta_hi_first"])
    return {
        "recheck": {
            "dtype": dtype,
            "seed": config.seed,
            "width": width,
            "cells_rerun": int(len(idx)),
            "cells_changed": int((stable != result.stable).sum()),
        },
        "config": result.config.to_dict(),
        "boundary": rows,
    }
