"""The stability edge beta_c(alpha) by bisection on log(beta) for all alphas at once
(:func:`mamlconv.numerics.boundary.bisect_boundary`), stable meaning "not diverged within
``iters``", the criterion of the grid; and the recheck of a grid's boundary cells.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.sweep.chunks import default_chunk_size, plan_chunks
from mamlconv.experiments.sweep.ray_backend import (
    RayOptions,
    ray_session,
    stable_by_column,
)
from mamlconv.experiments.sweep.results import (
    SweepResult,
)
from mamlconv.numerics.boundary import BisectionResult, bisect_boundary

log = logging.getLogger(__name__)


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
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.problems.registry import get_problem

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
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.problems.registry import get_problem
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
