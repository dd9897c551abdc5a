"""How big a long command is, and how long and how much memory it will take, from a short
measured probe; refusal above a limit unless the user confirms (``--yes``).

The probe runs the real computation on a small piece (a few iterations of one chunk, at
most ``PROBE_TASKS`` tasks; for linear regression a few cells of the grid), times its
iterations and samples the process's resident memory while it runs. The estimate scales
these linearly: time with iterations x chunks x tasks / workers, memory with tasks (or
cells, for a grid computed in one batch). Cells that diverge stop early, so the time is an
upper bound.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mamlconv.errors import TooLarge
from mamlconv.util.progress import LOGGER_NAME, format_seconds

PROBE_ITERS = 3
"""Outer iterations of the sweep probe: the first one warms up, the others are timed."""
PROBE_TASKS = 64
"""Tasks per batch (and pool size) of the sweep probe; the time scales linearly above it."""
PROBE_CELLS = 256
"""Cells of the probe at most (of the first chunk): time and memory scale linearly above it, so
a chunk too large for the machine is refused by its estimate instead of allocated by it."""
LIMIT_SECONDS = 4 * 3600.0
"""Above this estimated wall time a command needs ``--yes``."""
LIMIT_MEMORY_FRACTION = 0.8
"""Above this fraction of the memory available now a command needs ``--yes``."""
LIMIT_FILES = 20_000
"""Above this many chunk files a sweep needs ``--yes`` (raise ``--chunk-size``)."""


@dataclass(frozen=True)
class Estimate:
    """The size of a command and its estimated cost."""

    what: str
    """e.g. 'sweep sinusoid/exact: 84 cells x 500 iterations in 7 chunks of 12 on cpu'."""
    seconds: float
    memory_bytes: float
    output_bytes: float
    probe: str
    """How the estimate was measured, e.g. 'a 3-iteration probe of 12 cells'."""
    files: int = 0
    limits: dict[str, float] = field(default_factory=dict)
    memory_kind: str = "memory"
    """What ``memory_bytes`` counts: host "memory" or "GPU memory"."""

    def line(self) -> str:
        out = f", output {format_bytes(self.output_bytes)}" if self.output_bytes else ""
        return (
            f"{self.what}; estimated from {self.probe}: up to {format_seconds(self.seconds)}, "
            f"{format_bytes(self.memory_bytes)} {self.memory_kind}{out}"
        )

    def reasons(self) -> list[str]:
        """Why this command is above its limits (empty: within them)."""
        out = []
        limit_s = self.limits.get("seconds", LIMIT_SECONDS)
        if self.seconds > limit_s:
            out.append(f"time {format_seconds(self.seconds)} > {format_seconds(limit_s)}")
        avail = self.limits.get("memory", LIMIT_MEMORY_FRACTION * available_memory())
        if self.memory_bytes > avail:
            have = format_bytes(self.memory_bytes)
            out.append(f"{self.memory_kind} {have} > {format_bytes(avail)}")
        limit_files = self.limits.get("files", LIMIT_FILES)
        if self.files > limit_files:
            out.append(f"{self.files} chunk files > {int(limit_files)} (raise --chunk-size)")
        return out


def refuse_unless_confirmed(estimate: Estimate, *, yes: bool) -> None:
    """:class:`TooLarge` naming what is over the limit, unless ``yes``."""
    reasons = estimate.reasons()
    if reasons and not yes:
        raise TooLarge(
            f"too large to start without confirmation ({'; '.join(reasons)}); make it smaller, "
            "or pass --yes to start it anyway"
        )


def format_bytes(b: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b:.0f} B"


def available_memory() -> float:
    """Bytes of memory available to a new allocation now (MemAvailable), else all of it."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return math.inf


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """No progress reports from the probe (they would read as the command's own progress)."""
    log = logging.getLogger(LOGGER_NAME)
    before = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = before


def _rss() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return float(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


class PeakMemory:
    """The largest resident-memory growth of this process inside a ``with`` block, sampled
    every millisecond by a thread (and from ``ru_maxrss`` when that rises)."""

    def __init__(self) -> None:
        self.start = 0.0
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = _rss()
        self._maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        if maxrss > self._maxrss0:
            self.peak = max(self.peak, maxrss)
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> float:
        return max(self.peak - self.start, 0.0)


# --------------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------------


def estimate_sweep(
    config: Any, *, backend: str = "auto", workers: int = 1, done_cells: int = 0
) -> Estimate:
    """Size, time and memory of ``run_sweep(config)`` from a ``PROBE_ITERS``-iteration probe
    of one chunk with at most ``PROBE_TASKS`` tasks (``config``: a ``SweepConfig``)."""
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.experiments.problems.registry import get_problem
    from mamlconv.experiments.sweep.chunks import default_chunk_size, plan_chunks, sweep_cells
    from mamlconv.experiments.sweep.results import TRAJECTORIES

    alphas, betas = sweep_cells(config)
    n_total = alphas.size
    n_cells = max(n_total - done_cells, 0)
    chunk = default_chunk_size(config, backend)
    n_chunks = math.ceil(n_cells / chunk)
    workers = max(1, min(workers, n_chunks))
    device = resolve_device(config.device)

    probe_pool = min(config.pool_size, PROBE_TASKS)
    probe_tasks = min(config.tasks_per_batch, PROBE_TASKS, probe_pool)
    if config.task_source != "pool":
        probe_pool = max(probe_tasks, 1)
    time_scale = config.tasks_per_batch / probe_tasks
    memory_scale = max(time_scale, config.pool_size / probe_pool)
    probe_cfg = config.replace(
        iters=PROBE_ITERS,
        tasks_per_batch=probe_tasks,
        pool_size=probe_pool,
        save_params="none",
    )
    cells = plan_chunks(np.arange(n_total), chunk)[0][:PROBE_CELLS] if n_total else np.arange(0)
    stamps: list[float] = []

    def tick(t: int, n_active: int) -> None:
        stamps.append(time.perf_counter())

    on_cuda = device.startswith("cuda")
    if on_cuda:
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(device))
    t0 = time.perf_counter()
    with PeakMemory() as mem, _quiet_progress():
        if cells.size:
            problem = get_problem(probe_cfg.problem, **probe_cfg.problem_options)
            t_setup = time.perf_counter()
            train_cells(
                problem, probe_cfg, alphas[cells], betas[cells], backend=backend, progress=tick
            )
        else:
            t_setup = time.perf_counter()
    gaps = np.diff([t_setup, *stamps])
    per_iter = float(np.median(gaps[1:])) if gaps.size > 1 else float(gaps.sum() or 0.0)
    overhead = (t_setup - t0) + (float(gaps[0]) - per_iter if gaps.size else 0.0)
    iter_s = per_iter * time_scale * chunk / max(cells.size, 1)
    seconds = overhead + math.ceil(n_chunks / workers) * config.iters * iter_s
    n_rec = config.record_iters.size
    result_bytes = float(n_total * (n_rec * len(TRAJECTORIES) * 4 + 16))
    chunk_memory = mem.growth * memory_scale * chunk / max(cells.size, 1)
    memory = mem.start + workers * chunk_memory + 3 * result_bytes
    rows = f"{len(config.alphas)} alphas" + (" + alpha = 0" if config.alpha_zero_row else "")
    what = (
        f"sweep {config.problem}/{config.variant}: {n_total} cells ({rows}, "
        f"{len(config.betas)} betas) x {config.iters} iterations"
        + (f", {n_cells} left" if done_cells else "")
        + f", {_plural(n_chunks, 'chunk')} of {chunk} on {device}, {_plural(workers, 'worker')}"
    )
    probe = f"a {PROBE_ITERS}-iteration probe of {cells.size} cells with {probe_tasks} tasks"
    limits: dict[str, float] = {}
    if on_cuda:  # the GPU's memory is what a chunk fills; each worker holds one chunk
        peak, total = _cuda_peak_and_total(device)
        memory = workers * peak * memory_scale * chunk / max(cells.size, 1)
        limits["memory"] = LIMIT_MEMORY_FRACTION * total
    kind = "GPU memory" if on_cuda else "memory"
    return Estimate(
        what, seconds, memory, result_bytes, probe, files=n_chunks, limits=limits, memory_kind=kind
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _cuda_peak_and_total(device: str) -> tuple[float, float]:
    """Peak bytes allocated by torch on ``device`` since the last reset, and its total memory."""
    import torch

    dev = torch.device(device)
    return float(torch.cuda.max_memory_allocated(dev)), float(
        torch.cuda.get_device_properties(dev).total_memory
    )


# --------------------------------------------------------------------------------------------
# linear-regression grids
# --------------------------------------------------------------------------------------------


def _corner(values: np.ndarray, other: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """A corner of the grid values x other with about ``cells`` cells."""
    side = max(int(math.isqrt(cells)), 1)
    na = min(values.size, side)
    nb = min(other.size, max(cells // na, 1))
    return values[:na], other[:nb]


def estimate_grid(
    run: Callable[[np.ndarray, np.ndarray, int], Any],
    alphas: np.ndarray,
    betas: np.ndarray,
    *,
    label: str,
    iters: int,
    probe_iters: int = 10,
    probe_cells: tuple[int, int] = (64, 1024),
) -> Estimate:
    """Size, time and memory of ``run(alphas, betas, iters)`` (a grid computed in one batch)
    from two probes on corners of the grid with ``probe_cells`` cells and ``probe_iters``
    iterations: time per iteration fitted as a + b x cells, memory scaled from the larger."""
    alphas, betas = np.asarray(alphas), np.asarray(betas)
    n = alphas.size * betas.size
    p_iters = max(min(iters, probe_iters), 1)
    points = []
    growth = 0.0
    start = 0.0
    with _quiet_progress():
        run(alphas[:1], betas[:1], 1)  # warm-up: first-call costs are not per-cell costs
    for cells in probe_cells:
        pa, pb = _corner(alphas, betas, min(cells, n))
        t0 = time.perf_counter()
        with PeakMemory() as mem, _quiet_progress():
            run(pa, pb, p_iters)
        points.append((pa.size * pb.size, (time.perf_counter() - t0) / p_iters))
        growth, start = mem.growth / max(pa.size * pb.size, 1), mem.start
    (n1, t1), (n2, t2) = points
    slope = max((t2 - t1) / (n2 - n1), 0.0) if n2 > n1 else t2 / max(n2, 1)
    base = max(t1 - slope * n1, 0.0)
    seconds = (base + slope * n) * iters
    what = f"{label}: {n} cells ({alphas.size} x {betas.size}) x {iters} iterations"
    probe = f"{p_iters}-iteration probes of {n1} and {n2} cells"
    return Estimate(what, seconds, start + growth * n, 0.0, probe)
