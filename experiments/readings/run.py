"""Running one reading: for a run reading and seed, train a coarse alpha x beta grid
(alpha = 0 included), then, per criterion, bisect the beta edge on log(beta) to
``EDGE_RESOLUTION_DECADES`` at the alphas that decide the claims (alpha = 0 and every stable
alpha within one decade below the divergence alpha). Every trained cell records whether it
learned and its dead fraction. Results are JSON files, one per reading and seed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.criteria import dead_fraction_mlp, diverged, learned, reference_loss
from mamlconv.experiments.readings.matrix import (
    EDGE_RESOLUTION_DECADES,
    ReadingMatrix,
    reading_name,
)

FIELDS = ("initial_loss", "final_loss", "max_loss", "dead_fraction", "diverged_at")
"""What a trained cell records (``learned`` is derived from them)."""
PARTIAL_SCHEMA = "mamlconv-reading-partial/1"


class CellStore:
    """Every cell trained so far by (alpha, beta), written to ``progress`` (a JSON file beside
    the result, ``.<result stem>.partial.json``) after each chunk, so a killed run resumes where it
    stopped. A progress file of another configuration is ignored and replaced; a damaged one
    too (its cells are trained again)."""

    def __init__(self, identity: dict[str, Any], progress: Path | None = None) -> None:
        self.identity = identity
        self.progress = None if progress is None else Path(progress)
        self.cells: dict[tuple[float, float], dict[str, Any]] = {}
        self.resumed = 0
        if self.progress is not None and self.progress.is_file():
            self._load()

    def _load(self) -> None:
        from mamlconv.util.files import read_json

        try:
            rec = read_json(self.progress)
            if rec.get("schema") != PARTIAL_SCHEMA or not same_identity(
                rec.get("identity"), self.identity
            ):
                return
            for c in rec["cells"]:
                key = (float(c["alpha"]), float(c["beta"]))
                cell = {k: _num(c[k]) for k in FIELDS if k != "diverged_at"}
                cell["diverged_at"] = int(c["diverged_at"])
                self.cells[key] = cell
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.cells.clear()  # damaged: start again
        self.resumed = len(self.cells)

    def _save(self) -> None:
        if self.progress is None:
            return
        from mamlconv.util.files import atomic_write_text, jsonable

        cells = [{"alpha": a, "beta": b, **rec} for (a, b), rec in self.cells.items()]
        record = {"schema": PARTIAL_SCHEMA, "identity": self.identity, "cells": cells}
        atomic_write_text(self.progress, json.dumps(jsonable(record)))

    def train(self, problem, config, alphas: np.ndarray, betas: np.ndarray, x_eval):
        """Per-cell records of the cells (alphas[i], betas[i]): stored ones read back, the
        others trained one chunk at a time (the chunks an uninterrupted run trains)."""
        from mamlconv.experiments.engine.loop import train_cells
        from mamlconv.experiments.sweep.chunks import default_chunk_size, plan_chunks

        keys = [(float(a), float(b)) for a, b in zip(alphas, betas, strict=True)]
        for cells in plan_chunks(np.arange(len(keys)), default_chunk_size(config)):
            if all(keys[i] in self.cells for i in cells):
                continue
            run = train_cells(problem, config, alphas[cells], betas[cells], save_params=True)
            assert run.final_params is not None
            dead = dead_fraction_mlp(run.final_params, x_eval)
            for j, i in enumerate(cells):
                self.cells[keys[i]] = {
                    "initial_loss": float(run.loss[j, 0]),
                    "final_loss": float(run.final_loss[j]),
                    "max_loss": float(run.max_loss[j]),
                    "dead_fraction": float(dead[j]),
                    "diverged_at": int(run.diverged_at[j]),
                }
            self._save()
        out = {k: np.array([self.cells[key][k] for key in keys], dtype=float) for k in FIELDS}
        out["diverged_at"] = out["diverged_at"].astype(np.int64)
        out["learned"] = learned(final_loss=out["final_loss"], initial_loss=out["initial_loss"])
        return out

    def discard(self) -> None:
        if self.progress is not None:
            self.progress.unlink(missing_ok=True)


def progress_path(path: Path) -> Path:
    """Where a reading run writes its cells as it goes: ``.<result stem>.partial.json`` beside
    it (hidden, so no reader's ``sinusoid_*_seed*.json`` pattern finds a run in progress)."""
    path = Path(path)
    return path.with_name(f".{path.name.removesuffix('.json')}.partial.json")


def eval_inputs(config) -> np.ndarray:
    """The task data the dead fraction is measured on: the pool's support and query inputs,
    or (fresh tasks) 100 tasks drawn from a generator seeded with ``seed + 10**6``."""
    import torch

    from mamlconv.experiments.engine.state import initial_state
    from mamlconv.experiments.problems.registry import get_problem

    problem = get_problem(config.problem, **config.problem_options)
    _, stream = initial_state(problem, config, dtype=torch.float64, device="cpu")
    tasks = stream.pool
    if tasks is None:
        gen = torch.Generator().manual_seed(config.seed + 10**6)
        tasks = problem.sample_tasks(gen, config.tasks_per_batch, dtype=torch.float64, device="cpu")
    return torch.cat([tasks.x_support.reshape(-1), tasks.x_query.reshape(-1)]).numpy()[:, None]


def deciding_alphas(alphas: np.ndarray, stable: np.ndarray) -> dict[str, Any]:
    """The rows a run bisects: alpha = 0 (row 0) and the near-divergence rows of
    :func:`mamlconv.numerics.boundary.near_divergence_rows` (``alpha_div``, ``last_stable``,
    ``near``; ``rows`` = [0, *near]).

    ``alphas`` ascending with alphas[0] == 0; ``stable`` (n_alpha, n_beta).
    """
    from mamlconv.numerics.boundary import near_divergence_rows

    rule = near_divergence_rows(alphas, stable)
    return {**rule, "rows": [0, *rule["near"]]}


def grid_bracket(betas: np.ndarray, row: np.ndarray) -> tuple[float | None, float]:
    """[largest stable beta, next grid beta] of one row (None, betas[0] when none is stable;
    hi = inf when the largest grid beta is stable)."""
    if not row.any():
        return None, float(betas[0])
    top = int(np.flatnonzero(row).max())
    hi = float(betas[top + 1]) if top + 1 < betas.size else math.inf
    return float(betas[top]), hi


def run_reading(
    matrix: ReadingMatrix,
    reading: Mapping[str, str],
    seed: int,
    *,
    device: str = "cpu",
    log: Callable[[str], None] = lambda s: None,
    progress: Path | None = None,
) -> dict[str, Any]:
    """Train one run reading with one seed: the grid, then the bisections per criterion.

    ``progress``: a file the trained cells are written to as they finish (see
    :class:`CellStore`); a rerun with the same file trains only the cells not in it."""
    from mamlconv.experiments.problems.registry import get_problem
    from mamlconv.numerics.boundary import bisect_boundary
    from mamlconv.util.provenance import describe

    config = matrix.config(reading, seed, device=device)
    problem = get_problem(config.problem, **config.problem_options)
    x_eval = eval_inputs(config)
    alphas = np.asarray(matrix.alphas)
    betas = np.asarray(matrix.betas)
    aa, bb = np.meshgrid(alphas, betas, indexing="ij")
    t0 = time.time()
    store = CellStore(jsonable_identity(config), progress)
    if store.resumed:
        log(f"{reading_name(reading)} seed {seed}: resuming, {store.resumed} cells from {progress}")
    grid = store.train(problem, config, aa.ravel(), bb.ravel(), x_eval)
    log(f"{reading_name(reading)} seed {seed}: grid of {aa.size} cells in {time.time() - t0:.0f}s")
    shape = aa.shape
    bisections: dict[str, Any] = {}
    rtol = 10**EDGE_RESOLUTION_DECADES - 1
    # Every trained cell by (alpha, beta): a cell trains alone (one per chunk on a CPU) and
    # deterministically, so a bisection that asks again (a grid end, or the same beta under
    # another criterion) reuses it; criteria differ only in how a record is read.
    cache: dict[tuple[float, float], dict[str, Any]] = {}
    for i, (a, b) in enumerate(zip(aa.ravel(), bb.ravel(), strict=True)):
        cache[(float(a), float(b))] = {k: v[i] for k, v in grid.items()}
    for criterion in matrix.criteria:
        stable = ~diverged(
            criterion, max_loss=grid["max_loss"], initial_loss=grid["initial_loss"]
        ).reshape(shape)
        decide = deciding_alphas(alphas, stable)
        cells: list[dict[str, Any]] = []

        def is_stable(a: np.ndarray, b: np.ndarray, cells=cells, criterion=criterion) -> np.ndarray:
            keys = [(float(x), float(y)) for x, y in zip(a, b, strict=True)]
            new = [i for i, k in enumerate(keys) if k not in cache]
            if new:
                rec = store.train(problem, config, a[new], b[new], x_eval)
                for j, i in enumerate(new):
                    cache[keys[i]] = {k: v[j] for k, v in rec.items()}
            recs = [cache[k] for k in keys]
            ok = ~diverged(
                criterion,
                max_loss=np.array([r["max_loss"] for r in recs]),
                initial_loss=np.array([r["initial_loss"] for r in recs]),
            )
            for i, r in enumerate(recs):
                cells.append({"alpha": keys[i][0], "beta": keys[i][1], "stable": bool(ok[i])} | r)
            return ok

        rows = []
        for i in decide["rows"]:
            lo, hi = grid_bracket(betas, stable[i])
            rows.append({"row": i, "alpha": float(alphas[i]), "grid_lo": lo, "grid_hi": hi})
        todo = [r for r in rows if r["grid_lo"] is not None and math.isfinite(r["grid_hi"])]
        if todo:  # every deciding alpha at once, each from its own grid bracket
            res = bisect_boundary(
                is_stable,
                np.array([r["alpha"] for r in todo]),
                beta_min=np.array([r["grid_lo"] for r in todo]),
                beta_max=np.array([r["grid_hi"] for r in todo]),
                rtol=rtol,
            )
            for k, r in enumerate(todo):
                r.update(
                    bisect_lo=float(res.beta_lo[k]),
                    bisect_hi=float(res.beta_hi[k]),
                    bisect_inside=bool(res.inside_range[k]),
                    bisect_rounds=int(res.n_rounds),
                )
        for r in rows:
            r.update(_edge_cell(r, cells, grid, shape, betas))
        bisections[criterion] = {"decide": decide, "rows": rows, "cells": cells}
        log(
            f"{reading_name(reading)} seed {seed} [{criterion}]: alpha_div "
            f"{decide['alpha_div']}, {len(cells)} bisection cells, {len(cache)} trained in all"
        )
    return {
        "schema": "mamlconv-reading-run/1",
        "family": matrix.family,
        "reading": dict(reading),
        "seed": seed,
        "config": config.to_dict(),
        "matrix": matrix.describe(),
        "provenance": describe(device),
        "wall_seconds": round(time.time() - t0, 1),
        "grid": {
            "alphas": alphas,
            "betas": betas,
            **{k: v.reshape(shape) for k, v in grid.items()},
        },
        "bisections": bisections,
    }


def _edge_cell(
    row: dict[str, Any], cells: list[dict[str, Any]], grid: dict, shape, betas
) -> dict[str, Any]:
    """The mechanism of the cell that carries a row's edge: the largest stable beta found
    (bisection when it ran, else the grid)."""
    lo = row.get("bisect_lo") if row.get("bisect_inside") else row.get("grid_lo")
    if lo is None:
        return {"edge_learned": None, "edge_dead_fraction": None, "edge_final_loss": None}
    match = [c for c in cells if c["alpha"] == row["alpha"] and c["beta"] == lo and c["stable"]]
    if match:
        c = match[-1]
        return {
            "edge_learned": bool(c["learned"]),
            "edge_dead_fraction": float(c["dead_fraction"]),
            "edge_final_loss": float(c["final_loss"]),
        }
    j = int(np.argmin(np.abs(np.log(betas / lo))))
    i = row["row"]
    return {
        "edge_learned": bool(grid["learned"].reshape(shape)[i, j]),
        "edge_dead_fraction": float(grid["dead_fraction"].reshape(shape)[i, j]),
        "edge_final_loss": float(grid["final_loss"].reshape(shape)[i, j]),
    }


def result_path(
    out_dir: Path, matrix: ReadingMatrix, reading: Mapping[str, str], seed: int
) -> Path:
    tag = "_".join(reading[a.name] for a in matrix.run_axes)
    return Path(out_dir) / f"{matrix.family}_{tag}_seed{seed}.json"


def save_run(record: dict[str, Any], path: Path) -> Path:
    from mamlconv.util.files import atomic_write_text, jsonable

    return atomic_write_text(path, json.dumps(jsonable(record), indent=1))


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    return float(v)


def load_run(path: Path) -> dict[str, Any]:
    """A result file of :func:`run_reading`, with the grid as float arrays."""
    from mamlconv.util.files import read_json

    rec = read_json(path)
    if rec.get("schema") != "mamlconv-reading-run/1":
        raise ValueError(f"{path}: not a reading run (schema {rec.get('schema')!r})")
    g = rec["grid"]
    for k in ("alphas", "betas", "initial_loss", "final_loss", "max_loss", "dead_fraction"):
        g[k] = np.vectorize(_num, otypes=[float])(np.asarray(g[k], dtype=object))
    g["diverged_at"] = np.asarray(g["diverged_at"], dtype=np.int64)
    grid_shape = (g["alphas"].size, g["betas"].size)
    for k in ("initial_loss", "final_loss", "max_loss", "dead_fraction", "diverged_at"):
        if g[k].shape != grid_shape or g["alphas"].ndim != 1 or g["betas"].ndim != 1:
            raise ValueError(
                f"{path}: grid array {k} has shape {g[k].shape}, its alphas and betas say "
                f"{grid_shape}; the file is damaged or was edited"
            )
    if not isinstance(rec.get("bisections"), dict):
        raise ValueError(f"{path}: no bisections record; not a complete reading run")
    # learned and the edge cells' mechanism are re-derived from the stored losses, so the
    # current LEARNED_FRACTION applies to old files too
    ref = reference_loss(g["alphas"], g["initial_loss"])
    g["reference_loss"] = ref
    g["learned"] = learned(final_loss=g["final_loss"], initial_loss=ref)
    shape = g["final_loss"].shape
    flat = {k: np.asarray(v).reshape(-1) for k, v in g.items() if k not in ("alphas", "betas")}
    for b in rec["bisections"].values():
        for c in b["cells"]:
            c["learned"] = bool(learned(final_loss=_num(c["final_loss"]), initial_loss=ref))
        for row in b["rows"]:
            row.update(_edge_cell(row, b["cells"], flat, shape, g["betas"]))
    return rec


def is_done(path: Path, matrix: ReadingMatrix, reading: Mapping[str, str], seed: int) -> bool:
    """True when ``path`` holds this reading and seed made with the same configuration."""
    if not path.is_file():
        return False
    from mamlconv.util.files import jsonable, read_json, restore_nonfinite

    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return False
    if not isinstance(rec, dict) or not isinstance(rec.get("config"), dict):
        return False
    want = restore_nonfinite(jsonable(matrix.config(reading, seed).identity()))
    got = dict(rec["config"])
    got.pop("device", None)
    got.pop("chunk_size", None)
    described = rec.get("matrix")
    alphas = described.get("alphas") if isinstance(described, dict) else None
    return (
        rec.get("schema") == "mamlconv-reading-run/1"
        and rec.get("reading") == dict(reading)
        and rec.get("seed") == seed
        and same_identity(got, want)
        and same_identity(alphas, list(matrix.alphas))
    )


def jsonable_identity(config) -> dict[str, Any]:
    """A configuration's identity as a JSON file holds it (inf restored)."""
    from mamlconv.util.files import jsonable, restore_nonfinite

    return restore_nonfinite(jsonable(config.identity()))


def same_identity(a: Any, b: Any) -> bool:
    """Equal configurations (or parts); numbers that differ by float rounding only (a
    geomspace computed by another numpy) are the same number."""
    from mamlconv.util.files import same_values

    return same_values(a, b, rel_tol=1e-12)


def scan_runs(
    directory: Path, family: str = "sinusoid"
) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """(the runs of ``family`` under ``directory`` that ``readings list`` counts as done,
    every other matching file with the reason it is not one): a run is the file named for its
    reading and seed (:func:`result_path`) holding that reading and seed made with the
    matrix's current configuration (:func:`is_done`). A copied or renamed file, a run of a
    stale configuration and a file that is not a reading run are left out, so no run counts
    twice and none of another configuration is judged."""
    from mamlconv.experiments.readings.matrix import MATRICES

    matrix = MATRICES[family]
    runs: list[tuple[Path, dict[str, Any]]] = []
    left_out: list[tuple[Path, str]] = []
    for path in sorted(Path(directory).glob(f"{family}_*_seed*.json")):
        if path.name.endswith(".partial.json"):
            continue  # a run in progress
        try:
            rec = load_run(path)
            reading, seed = rec["reading"], rec["seed"]
            canonical = result_path(Path(directory), matrix, reading, seed)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            left_out.append((path, f"not a readable reading run ({reason})"))
            continue
        if path.name != canonical.name:
            left_out.append(
                (
                    path,
                    f"holds {reading_name(reading)} seed {seed}, which is "
                    f"{canonical.name}: a copy or a renamed file",
                )
            )
        elif not is_done(path, matrix, reading, seed):
            left_out.append(
                (
                    path,
                    "made with another configuration than the matrix's (stale); "
                    "rerun it with `mamlconv readings run`",
                )
            )
        else:
            runs.append((path, rec))
    return runs, left_out


def load_runs(directory: Path, family: str = "sinusoid") -> list[tuple[Path, dict[str, Any]]]:
    """The runs of ``family`` under ``directory`` that ``readings list`` counts as done (sorted
    by name; see :func:`scan_runs` for what is left out)."""
    return scan_runs(directory, family)[0]
