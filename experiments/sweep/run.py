"""Running a sweep: the local executor (a pool of worker processes over chunks), the
choice between it and the Ray executor, the merge of finished chunks into one result, and the
guarantee that workers die with their parent (Linux PR_SET_PDEATHSIG, else a watcher thread).

``run_sweep(config, out)`` trains every cell of ``config`` (plus the alpha = 0 row when asked),
a chunk of cells at a time (:mod:`.chunks`). Each finished chunk is written atomically to
``<out>.chunks/chunk_NNNN.npz`` together with the configuration's identity, so an interrupted
sweep keeps every finished chunk and ``resume=True`` trains only the cells that no finished chunk
holds. When all cells are done the chunks are merged into one result file (:mod:`.results`) and
the chunk folder is removed. The guards around the files (suffix, no silent overwrite, the lock,
the layout record) live in :mod:`.storage`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import ResumeMismatch
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.sweep import storage
from mamlconv.experiments.sweep.chunks import (
    default_chunk_size,
    grid_rows,
    load_finished_chunks,
    plan_chunks,
    run_chunk,
    sweep_cells,
)
from mamlconv.experiments.sweep.ray_backend import (
    RayOptions,
    run_chunks_ray,
)
from mamlconv.experiments.sweep.results import (
    TRAJECTORIES,
    SweepResult,
    best_beta_index,
    save_result,
)
from mamlconv.experiments.sweep.storage import chunk_dir
from mamlconv.util.progress import ChunkProgress

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""


POLL_S = 1.0


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent is gone: nobody will read what this process makes
        time.sleep(POLL_S)


def die_with_parent(parent_pid: int) -> None:
    """End this process (exit status 1, or SIGTERM) when ``parent_pid``, its parent, dies."""
    _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="lifeline", daemon=True).start()


def start_worker(parent_pid: int, init: str, init_args: tuple[object, ...]) -> None:
    """A ``multiprocessing`` initializer: :func:`die_with_parent` first, then ``init``
    ("module:function", imported only now: a worker still importing torch when its parent is
    killed must already be on the lifeline) called with ``init_args``."""
    die_with_parent(parent_pid)
    import importlib

    module, _, name = init.partition(":")
    getattr(importlib.import_module(module), name)(*init_args)


def _run_chunks(
    config: SweepConfig,
    plan: list[tuple[int, np.ndarray, Path]],
    *,
    backend: str,
    workers: int,
    threads: int | None,
    progress: ChunkProgress | None,
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
    # start_worker puts each worker on a lifeline first: a killed parent leaves no worker behind
    init = (os.getpid(), "mamlconv.experiments.sweep.chunks:_worker_init", (q, threads or 1))
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
    progress: bool | ChunkProgress = True,
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
    instead (:mod:`.ray_backend`, docs/cluster.md). ``progress=True`` reports cells finished
    and the time left through :class:`~mamlconv.util.progress.ChunkProgress` (quiet unless
    :func:`~mamlconv.util.progress.show_on_stderr` was called, as the command line does); pass a
    ``ChunkProgress`` to report elsewhere, ``False`` for none.
    """
    out = Path(out)
    storage.check_suffix(out, bisect=False)
    done_meta = storage.finished_or_refuse(config, out, resume=resume, force=force)
    if done_meta is not None:
        from mamlconv.experiments.sweep.results import load_result

        return load_result(out)
    with storage.SweepLock(out):
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


def check_start(problem: Any, config: SweepConfig) -> None:
    """A user's problem at the sweep's start point (its seed, dtype, on the CPU): every task of
    the first batch holds finite data and a finite loss at the initial parameters, else
    :class:`~mamlconv.errors.ProblemError` naming the task and the tensor (a NaN there would
    be reported as every cell diverging)."""
    import torch

    from mamlconv.errors import ProblemError
    from mamlconv.experiments.engine.state import initial_state

    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    params, stream = initial_state(problem, config, dtype=dtype, device="cpu")
    tasks = stream.pool if stream.pool is not None else stream.next()
    fields = ("x_support", "y_support", "x_query", "y_query")
    for name, values in zip(fields, tasks, strict=True):
        if values.is_floating_point() and not torch.isfinite(values).all():
            task = int(torch.nonzero(~torch.isfinite(values))[0, 0])
            raise ProblemError(
                f"problem {config.problem}: task {task}'s {name} holds NaN or inf (seed "
                f"{config.seed}); task data must be finite (it would read as a divergence)"
            )
    for task in range(tasks.x_support.shape[0]):
        for part, x, y in (
            ("support", tasks.x_support[task], tasks.y_support[task]),
            ("query", tasks.x_query[task], tasks.y_query[task]),
        ):
            loss = problem.loss(params, x, y)
            if not torch.isfinite(loss).all():
                raise ProblemError(
                    f"problem {config.problem}: the loss at the initial parameters is "
                    f"{float(loss)} on task {task}'s {part} set (seed {config.seed}), before any "
                    "training; check the initial weights, the data and the loss"
                )


def resume_chunk_size(config: SweepConfig, out: str | Path) -> SweepConfig:
    """``config`` with the chunk size of ``out``'s chunk folder when ``config`` leaves it open
    (a resume then splits the cells as the interrupted run did)."""
    if config.chunk_size is not None:
        return config
    layout = storage.read_layout(chunk_dir(out))
    if layout is None or not storage.finished_chunk_files(chunk_dir(out)):
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
    progress: bool | ChunkProgress,
    ray: RayOptions | None = None,
) -> SweepResult:
    import torch

    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.experiments.problems.registry import get_problem
    from mamlconv.util.provenance import describe

    device = resolve_device(config.device)
    storage.check_extremes(config)
    problem = get_problem(config.problem, **config.problem_options)  # fails before any file
    if config.problem not in ("sinusoid", "omniglot", "miniimagenet"):
        check_start(problem, config)
    directory = chunk_dir(out)
    storage.clear_if_empty(directory)
    if directory.exists() and not resume:
        n_old = len(storage.finished_chunk_files(directory))
        raise FileExistsError(
            f"{directory} holds {n_old} finished chunks of an earlier run; pass resume "
            "(--resume) to continue it, or delete the folder"
        )
    if resume:
        config = resume_chunk_size(config, out)
    chunk_size = default_chunk_size(config, backend)
    layout = storage.layout_record(config, chunk_size=chunk_size, device=device, backend=backend)
    recorded = storage.read_layout(directory) if directory.exists() else None
    if recorded is not None:
        storage.check_layout(directory, recorded, layout)
    storage.remove_stale_temporaries(directory)
    chunks, _ = load_finished_chunks(directory, config)
    alphas_all, _ = sweep_cells(config)
    # Chunk k always holds the same cells (plan_chunks of the whole grid), so a resumed sweep
    # trains every cell in the batch an uninterrupted one would have used.
    full_plan = plan_chunks(np.arange(alphas_all.size), chunk_size)
    finished: set[int] = set()
    for ch, path in zip(chunks, storage.finished_chunk_files(directory), strict=True):
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
    storage.write_layout(directory, config, layout)
    bar = progress if isinstance(progress, ChunkProgress) else None
    if progress is True:
        bar = ChunkProgress(
            f"sweep {config.problem}/{config.variant}",
            total_cells=alphas_all.size,
            done_cells=int(done.sum()),
            iters=config.iters,
            chunk_cells={k: cells.size for k, cells, _ in plan},
        )
    t0 = time.perf_counter()
    try:
        summaries = _run_chunks(
            config, plan, backend=backend, workers=workers, threads=threads, progress=bar, ray=ray
        )
    except BaseException:
        if bar is not None:
            bar.finish(note="stopped")
        storage.clear_if_empty(directory)  # nothing finished: leave nothing behind
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
