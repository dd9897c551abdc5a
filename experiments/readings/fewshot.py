"""The few-shot evidence of Fig. 4b/4c (claims S4-2, S4-3) in one resumable, time-boxed run.

For each problem (Omniglot, MiniImagenet), reading (variant x initialisation) and seed, one
*job* locates the divergence edge beta_c(alpha) at the paper's settings (5-way 1-shot, 15
queries, 2 inner steps, 32 / 4 tasks per meta-step, 100 iterations / one epoch, SGD, float32
without TF32; :func:`mamlconv.experiments.problems.registry.get_preset`):

1. **Ends** of a coarse alpha grid (0 and ``coarse_alphas``): every alpha at ``beta_min`` and
   ``beta_max``. alpha_div is bracketed by the last alpha stable at ``beta_min`` and the next
   grid alpha, where even ``beta_min`` diverges (no beta trains: the paper's alpha_c).
2. **Edges**: at alpha = 0 and at the last ``n_below`` stable grid alphas below alpha_div, a
   k-ary search on log(beta): each round trains ``points`` betas inside every open bracket,
   all in one batch, and keeps [largest stable, next diverged] until the bracket is at most
   ``tol_decades`` wide (0.1 by default). Stable = not diverged in ``iters`` iterations (the
   paper's "coloured" cells; non-finite or above the preset's divergence level = diverged).

Cells of a job share seed, variant and initialisation, so they run batched
(:func:`mamlconv.experiments.engine.loop.train_cells`, ``chunk`` cells per call: on CUDA the
memory model's :func:`mamlconv.experiments.engine.memory.cuda_chunk_size`); different jobs
cannot share a call (the engine draws one initialisation and one task stream per call).

Resuming: every finished chunk is stored at once in the job's state file
``<out>/<problem>/<reading>-seed<k>.json``; the search is deterministic, so a rerun asks for
the same cells again and takes them from the file. ``--deadline S`` stops before a chunk that
the measured rate says would end after S seconds, and aborts a chunk that runs past it (its
cells are not stored); the summary says what is left. ``<out>/summary.json`` holds every
job's brackets, alpha_div bracket, cells, cell-iterations, wall time, configuration and
provenance (commit: ``MAMLCONV_COMMIT`` where the tree has no ``.git``).

    mamlconv readings fewshot --preset paper --out DIR --deadline 510
    mamlconv readings fewshot --preset tiny --out DIR --device cpu
    mamlconv readings fewshot --preset paper --plan --rate 16.6
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import UsageError
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.problems.registry import get_preset
from mamlconv.util.files import atomic_write_text

PROBLEMS = ("omniglot", "miniimagenet")


@dataclass(frozen=True)
class Reading:
    """One way of reading the paper's unstated choices: MAML variant and initialisation."""

    variant: str
    init: str
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.variant}-{self.init}"


@dataclass(frozen=True)
class ProblemPlan:
    """Search settings of one problem: the base configuration and the grids."""

    config: SweepConfig
    coarse_alphas: tuple[float, ...]
    beta_min: float
    beta_max: float


@dataclass(frozen=True)
class MatrixPreset:
    problems: dict[str, ProblemPlan]
    readings: tuple[Reading, ...]
    tol_decades: float = 0.1
    points: int = 7
    n_below: int = 2
    chunk_cpu: int | None = None
    check_every: int = 10
    options: dict[str, Any] = field(default_factory=dict)


def _paper_preset() -> MatrixPreset:
    omni = get_preset("omniglot", "paper")
    mini = get_preset("miniimagenet", "paper")
    return MatrixPreset(
        problems={
            # Coarse grids: half-decade steps over the paper's alpha ranges (Sec. 4.2), ours.
            "omniglot": ProblemPlan(
                omni.replace(record_every=omni.iters),
                tuple(float(a) for a in np.geomspace(3e-3, 9.0, 8)),
                float(omni.betas[0]),
                float(omni.betas[-1]),
            ),
            "miniimagenet": ProblemPlan(
                mini.replace(record_every=mini.iters),
                tuple(float(a) for a in np.geomspace(3e-3, 0.9, 6)),
                float(mini.betas[0]),
                float(mini.betas[-1]),
            ),
        },
        readings=(
            Reading("exact", "torch_default", (0, 1, 2)),
            Reading("exact", "finn", (0,)),
            Reading("first_order", "torch_default", (0,)),
            Reading("first_order", "finn", (0,)),
        ),
    )


def _tiny_preset() -> MatrixPreset:
    """The same code at a size that runs in about a minute on one CPU core (tests, CI)."""

    def tiny(name: str, **opts: Any) -> SweepConfig:
        base = get_preset(name, "smoke")
        return base.replace(
            iters=2,
            tasks_per_batch=1,
            pool_size=1,
            record_every=2,
            problem_options={**base.problem_options, "query": 1, **opts},
        )

    return MatrixPreset(
        problems={
            "omniglot": ProblemPlan(tiny("omniglot", filters=2), (0.1, 10.0), 0.1, 1e3),
            "miniimagenet": ProblemPlan(tiny("miniimagenet", filters=2), (0.1, 10.0), 0.1, 1e3),
        },
        readings=(Reading("exact", "torch_default", (0, 1)), Reading("first_order", "finn", (0,))),
        tol_decades=1.0,
        points=3,
        n_below=1,
        chunk_cpu=64,
        check_every=2,
    )


PRESETS = {"paper": _paper_preset, "tiny": _tiny_preset}


# ------------------------------------------------------------------------------ one job


class OutOfTime(Exception):
    """The run's deadline passed inside a chunk; its cells are not stored."""


class Job:
    """One (problem, reading, seed): the search of the module docstring over a cell store."""

    def __init__(
        self,
        problem: str,
        reading: Reading,
        seed: int,
        plan: ProblemPlan,
        preset: MatrixPreset,
        out: Path,
    ) -> None:
        self.problem, self.reading, self.seed, self.plan, self.preset = (
            problem,
            reading,
            seed,
            plan,
            preset,
        )
        self.name = f"{problem}/{reading.name}-seed{seed}"
        self.path = out / problem / f"{reading.name}-seed{seed}.json"
        self.config = plan.config.replace(
            variant=reading.variant,
            seed=seed,
            problem_options={
                **plan.config.problem_options,
                "init": reading.init,
                **preset.options,
            },
        )
        self.cells: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            state = json.loads(self.path.read_text())
            if state.get("config") == self.config.identity():
                self.cells = state["cells"]

    @staticmethod
    def key(alpha: float, beta: float) -> str:
        return f"{alpha!r}|{beta!r}"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {"job": self.name, "config": self.config.identity(), "cells": self.cells}
        atomic_write_text(self.path, json.dumps(state, indent=0) + "\n")

    def missing(self, alphas: np.ndarray, betas: np.ndarray) -> list[int]:
        return [
            i
            for i, (a, b) in enumerate(zip(alphas, betas, strict=True))
            if self.key(float(a), float(b)) not in self.cells
        ]

    def stable(self, alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
        return np.array(
            [
                self.cells[self.key(float(a), float(b))]["diverged_at"] < 0
                for a, b in zip(alphas, betas, strict=True)
            ]
        )

    # The search, written as a generator of cell requests so that the runner can batch and
    # store them; `requests()` yields (alphas, betas) and expects them stored before resuming.
    def requests(self):
        plan, pre = self.plan, self.preset
        grid = np.array((0.0,) + plan.coarse_alphas)
        lo_b, hi_b = np.full(grid.size, plan.beta_min), np.full(grid.size, plan.beta_max)
        ends_a, ends_b = np.concatenate([grid, grid]), np.concatenate([lo_b, hi_b])
        yield ends_a, ends_b
        ok = self.stable(ends_a, ends_b)
        at_min, at_max = ok[: grid.size], ok[grid.size :]
        self.summary_ends = (grid, at_min, at_max)
        div = [i for i in range(1, grid.size) if not at_min[i]]
        first_div = div[0] if div else None
        below = [i for i in range(1, first_div or grid.size) if at_min[i]]
        targets = [0] + below[-pre.n_below :] if at_min[0] else below[-pre.n_below :]
        lo = {i: plan.beta_min for i in targets}
        hi = {i: plan.beta_max for i in targets}
        done = {i: bool(at_max[i]) for i in targets}  # edge above the range: nothing to search
        max_ratio = 10.0**pre.tol_decades
        while True:
            open_ = [i for i in targets if not done[i] and hi[i] / lo[i] > max_ratio * (1 + 1e-12)]
            if not open_:
                break
            pts = {i: np.geomspace(lo[i], hi[i], pre.points + 2)[1:-1].astype(float) for i in open_}
            alphas = np.concatenate([np.full(pre.points, grid[i]) for i in open_])
            betas = np.concatenate([pts[i] for i in open_])
            yield alphas, betas
            for i in open_:
                ok = self.stable(np.full(pre.points, grid[i]), pts[i])
                # keep the bracket at the first diverged point (the lowest edge seen)
                first_bad = int(np.argmin(ok)) if not ok.all() else pre.points
                if first_bad > 0:
                    lo[i] = float(pts[i][first_bad - 1])
                if first_bad < pre.points:
                    hi[i] = float(pts[i][first_bad])
        self.summary_edges = {int(i): (lo[i], hi[i], done[i]) for i in targets}
        self.first_div = first_div

    def summary(self) -> dict[str, Any]:
        grid, at_min, at_max = self.summary_ends
        fd = self.first_div
        edges = []
        for i, (lo, hi, above) in self.summary_edges.items():
            edges.append(
                {
                    "alpha": float(grid[i]),
                    "beta_lo": lo if not above else self.plan.beta_max,
                    "beta_hi": hi if not above else None,  # None: above the searched range
                    "decades": math.log10(hi / lo) if not above else None,
                    "edge_above_range": above,
                }
            )
        cells = list(self.cells.values())
        return {
            "job": self.name,
            "problem": self.problem,
            "reading": self.reading.name,
            "variant": self.reading.variant,
            "init": self.reading.init,
            "seed": self.seed,
            "complete": True,
            "coarse": [
                {"alpha": float(a), "stable_at_beta_min": bool(s0), "stable_at_beta_max": bool(s1)}
                for a, s0, s1 in zip(grid, at_min, at_max, strict=True)
            ],
            "alpha_div": {
                "last_stable": float(grid[fd - 1]) if fd else None,
                "first_diverged": float(grid[fd]) if fd else None,
                "note": None if fd else "every grid alpha trains at beta_min",
            },
            "edges": edges,
            "cells": len(cells),
            "commits": sorted({str(c.get("commit")) for c in cells}),
            "cell_iterations": int(
                sum(c["diverged_at"] if c["diverged_at"] >= 0 else c["iters"] for c in cells)
            ),
            "config": self.config.to_dict(),
        }


# ------------------------------------------------------------------------------ the runner


class Runner:
    """Trains requested cells in chunks, stores them, and keeps the deadline."""

    def __init__(self, *, device: str, deadline: float | None, chunk: int | None,
                 check_every: int, log=print) -> None:  # fmt: skip
        self.device, self.deadline, self.chunk, self.check_every = (
            device,
            deadline,
            chunk,
            check_every,
        )
        from mamlconv.util.provenance import git_commit

        self.t0 = time.perf_counter()
        self.rate: dict[str, float] = {}  # cell-iterations per second, per problem
        self.commit = git_commit()  # stored with every cell: a resumed job may span commits
        self.log = log

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def chunk_size(self, config: SweepConfig) -> int:
        from mamlconv.experiments.sweep.chunks import default_chunk_size

        return self.chunk or default_chunk_size(config)

    def fill(self, job: Job, alphas: np.ndarray, betas: np.ndarray) -> None:
        from mamlconv.experiments.engine.loop import train_cells
        from mamlconv.experiments.problems.registry import get_problem
        from mamlconv.experiments.sweep.chunks import plan_chunks

        todo = job.missing(alphas, betas)
        if not todo:
            return
        config = job.config.replace(device=self.device)
        problem = get_problem(config.problem, **config.problem_options)
        import torch

        parts = list(plan_chunks(np.array(todo), self.chunk_size(config)))
        while parts:
            part = parts.pop(0)
            a, b = alphas[part], betas[part]
            rate = self.rate.get(job.problem)
            if self.deadline is not None and rate is not None:
                expected = a.size * config.iters / rate
                if self.elapsed() + expected > self.deadline:
                    raise OutOfTime(f"next chunk needs about {expected:.0f} s")

            def progress(_t: int, _n: int) -> None:
                if self.deadline is not None and self.elapsed() > self.deadline:
                    raise OutOfTime("deadline passed inside a chunk")

            t0 = time.perf_counter()
            try:
                run = train_cells(
                    problem, config, a, b, progress=progress, check_every=self.check_every
                )
            except torch.cuda.OutOfMemoryError:
                if part.size == 1:
                    raise
                # the memory model measured 1 and 2 cells; a larger batch may pick kernels
                # with larger workspaces: halve this chunk and go on
                torch.cuda.empty_cache()
                self.log(f"{job.name}: out of memory at {part.size} cells; halving the chunk")
                parts[:0] = [part[: part.size // 2], part[part.size // 2 :]]
                continue
            wall = time.perf_counter() - t0
            work = 0
            for c in range(a.size):
                at = int(run.diverged_at[c])
                work += at if at >= 0 else config.iters
                job.cells[job.key(float(a[c]), float(b[c]))] = {
                    "alpha": float(a[c]),
                    "beta": float(b[c]),
                    "diverged_at": at,
                    "final_loss": float(run.final_loss[c]),
                    "iters": config.iters,
                    "commit": self.commit,
                    "device": self.device,
                }
            job.save()
            self.rate[job.problem] = max(work, 1) / max(wall, 1e-9)
            self.log(
                f"[{self.elapsed():6.1f} s] {job.name}: {a.size} cells, {work} cell-iterations "
                f"in {wall:.1f} s ({work / max(wall, 1e-9):.1f} cell-it/s)"
            )

    def run(self, job: Job) -> bool:
        """Run ``job`` to the end (True) or until the deadline (False)."""
        search = job.requests()
        try:
            request = next(search)
            while True:
                self.fill(job, *request)
                request = search.send(None)
        except StopIteration:
            return True
        except OutOfTime as why:
            self.log(f"[{self.elapsed():6.1f} s] {job.name}: stopped, {why}")
            return False


def jobs_in_order(preset: MatrixPreset, out: Path, problems: tuple[str, ...]) -> list[Job]:
    """Seed 0 of every reading first (both problems), then the extra seeds."""
    jobs = []
    depth = max(len(r.seeds) for r in preset.readings)
    for k in range(depth):
        for reading in preset.readings:
            if k < len(reading.seeds):
                for name in problems:
                    jobs.append(
                        Job(name, reading, reading.seeds[k], preset.problems[name], preset, out)
                    )
    return jobs


def plan_text(jobs: list[Job], rate: float) -> str:
    """Upper bound of the work: every cell of the ends and of every search round run to the
    last iteration (diverging cells stop early, so the real work is less)."""
    lines, total = [], 0.0
    for job in jobs:
        pre, plan = job.preset, job.plan
        n_grid = 1 + len(plan.coarse_alphas)
        decades = math.log10(plan.beta_max / plan.beta_min)
        rounds = math.ceil(math.log(decades / pre.tol_decades) / math.log(pre.points + 1))
        cells = 2 * n_grid + rounds * pre.points * (1 + pre.n_below)
        work = cells * job.config.iters
        total += work
        lines.append(f"{job.name}: <= {cells} cells, <= {work} cell-iterations")
    lines.append(
        f"total <= {total:.0f} cell-iterations: <= {total / rate:.0f} s at {rate} cell-it/s"
    )
    return "\n".join(lines)


def run_matrix(
    preset_name: str,
    out: Path,
    *,
    problems: tuple[str, ...] = PROBLEMS,
    device: str = "auto",
    deadline: float | None = None,
    chunk: int | None = None,
    check_every: int | None = None,
    channels_last: bool = False,
    points: int | None = None,
    plan_rate: float | None = None,
    log=print,
) -> dict[str, Any] | None:
    """Run (or resume) the matrix of preset ``preset_name`` into ``out`` and write
    ``out/summary.json``; return its record. With ``plan_rate`` (cell-iterations per second),
    log the work bound of :func:`plan_text` instead and return None. Bad settings raise
    :class:`mamlconv.errors.UsageError`."""
    if preset_name not in PRESETS:
        raise UsageError(f"--preset {preset_name!r} unknown; choose one of {sorted(PRESETS)}")
    if not problems or set(problems) - set(PROBLEMS):
        raise UsageError(f"--problems {','.join(problems)!r}: choose from {','.join(PROBLEMS)}")
    for flag, value in (("--chunk", chunk), ("--check-every", check_every), ("--points", points)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value} must be >= 1")
    if deadline is not None and deadline <= 0:
        raise UsageError(f"--deadline {deadline} must be > 0 seconds")
    if plan_rate is not None and plan_rate <= 0:
        raise UsageError(f"--rate {plan_rate} must be > 0")

    preset = PRESETS[preset_name]()
    if channels_last:
        preset = MatrixPreset(**{**vars(preset), "options": {"channels_last": True}})
    if points is not None:
        preset = MatrixPreset(**{**vars(preset), "points": points})
    jobs = jobs_in_order(preset, out, problems)
    if plan_rate is not None:
        log(plan_text(jobs, plan_rate))
        return None

    import torch

    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.util.provenance import describe

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32
    torch.backends.cudnn.allow_tf32 = False
    try:
        device = resolve_device(device)
    except ValueError as exc:
        raise UsageError(f"{exc} (use --device cpu)") from None
    chunk = chunk or (preset.chunk_cpu if not device.startswith("cuda") else None)
    runner = Runner(
        device=device,
        deadline=deadline,
        chunk=chunk,
        check_every=check_every or preset.check_every,
        log=log,
    )
    summaries, left = [], []
    for job in jobs:
        if left or not runner.run(job):
            left.append(job.name)
            continue
        summaries.append(job.summary())
    record = {
        "preset": preset_name,
        "device": device,
        "complete": not left,
        "jobs_left": left,
        "jobs": summaries,
        "wall_s": runner.elapsed(),
        "check_every": runner.check_every,
        "chunk": chunk,
        "provenance": describe(device),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps(record, indent=1) + "\n")
    log(
        f"{len(summaries)} of {len(jobs)} jobs complete in {runner.elapsed():.0f} s"
        + (f"; rerun to resume: {', '.join(left)}" if left else "")
    )
    return record
