"""The reading matrix: every assignment of the settings the paper leaves open, in one object.

A *reading* of an empirical claim is one value on each axis below (paper Sections 4.1-4.2 are
silent on all of them); each value names its source. The run axes (initialisation, task source,
MAML variant) decide what is trained; the divergence criterion is applied *after* training,
from each cell's loss at iteration 0, its running maximum and its final value
(:attr:`mamlconv.experiments.engine.CellRun.max_loss`), so one run (trained with non-finite-only
freezing) serves every criterion and changing a criterion never needs a rerun.

For each run reading and seed, :func:`run_reading` trains a coarse alpha x beta grid (alpha = 0
included), then, per criterion, measures the beta edge by bisection on log(beta)
(:func:`mamlconv.numerics.boundary.bisect_boundary`) to ``EDGE_RESOLUTION_DECADES`` at the
alphas that decide the claims: alpha = 0 and every stable alpha within one decade below the
divergence alpha. Every trained cell records whether it *learned* (final loss below
``LEARNED_FRACTION`` of its loss at iteration 0) and its *dead fraction* (hidden ReLU units
inactive on every input of the task data at the end of training).

:func:`judge_edges` and :func:`judge_guideline` turn a set of result files into per-reading
verdicts over seeds (HOLDS / FAILS / INCONCLUSIVE) and :func:`claim_verdict` into one verdict per
claim (HOLDS / FAILS / HOLDS-FOR / INCONCLUSIVE); docs/readings.md states every rule.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------
# the axes
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """One value of an axis: its name, the settings it stands for, and where it comes from."""

    name: str
    settings: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class Axis:
    """One setting the paper leaves open; ``post_hoc`` axes are applied to results, not runs."""

    name: str
    values: tuple[Value, ...]
    post_hoc: bool = False

    def value(self, name: str) -> Value:
        for v in self.values:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.values)
        raise ValueError(f"axis {self.name!r} has no value {name!r} (known: {known})")


ABSOLUTE_LEVEL = 1e3
"""The absolute divergence level: the package's sweep default (SweepConfig.divergence_level),
about 250 times the sinusoid loss at initialisation."""
RELATIVE_FACTOR = 10.0
"""The relative divergence criterion: the running maximum exceeds this many times the loss at
iteration 0 (a blow-up relative to the start, whatever the loss's scale)."""
LEARNED_FRACTION = 0.9
"""A non-diverged cell *learned* when its final loss is below this fraction of the run's
reference loss, the plain loss at the initial parameters (:func:`reference_loss`). A network
that collapsed to a constant-like output keeps about that loss (final / initial 1.0-1.05 at the
edge of the committed 20 x 20 sinusoid sweep), while joint training's floor on the sinusoid
family is about 0.78 of it (no single function fits tasks of random phase), so 0.9 separates
the two without calling alpha = 0 a failure to learn. Applied when results are read
(:func:`load_run`), so changing it never needs a rerun."""
EDGE_RESOLUTION_DECADES = 0.05
"""Bisection target: every bisected bracket is at most this wide in log10(beta)."""

INIT = Axis(
    "init",
    (
        Value(
            "torch_default",
            {"init": "torch_default"},
            "PyTorch nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and "
            "biases: what PyTorch MAML code (learn2learn, higher, torchmeta) trains from",
        ),
        Value(
            "finn",
            {"init": "finn"},
            "Finn et al.'s reference code (cbfinn/maml, maml.py construct_fc_weights): weights "
            "from a normal with std 0.01 truncated at 2 std, biases zero",
        ),
    ),
)
TASK_SOURCE = Axis(
    "tasks",
    (
        Value(
            "pool",
            {"task_source": "pool", "pool_size": 100, "tasks_per_batch": 100},
            'paper Sec. 4.1 "the number of tasks was 100" read as a fixed pool of 100 tasks '
            "(full-batch gradient descent on one MAML objective, the setting of the theory)",
        ),
        Value(
            "fresh",
            {"task_source": "fresh", "tasks_per_batch": 100},
            "the same sentence read as 100 tasks per meta-batch, drawn fresh every iteration "
            "(Finn et al.'s sinusoid training)",
        ),
    ),
)
VARIANT = Axis(
    "variant",
    (
        Value("exact", {"variant": "exact"}, "second-order MAML (Finn et al., Eq. 1)"),
        Value(
            "first_order",
            {"variant": "first_order"},
            "first-order MAML (Finn et al. Sec. 5.2); the paper does not say which it trained",
        ),
    ),
)
CRITERION = Axis(
    "criterion",
    (
        Value(
            "nonfinite",
            {},
            'the loss became NaN or inf: the most literal "diverged" (paper Fig. 4: "the area '
            'with no color represents the diverged losses")',
        ),
        Value(
            "absolute",
            {"level": ABSOLUTE_LEVEL},
            "the running maximum of the loss exceeded 1e3 (the package's sweep level)",
        ),
        Value(
            "relative",
            {"factor": RELATIVE_FACTOR},
            "the running maximum exceeded 10 times the loss at iteration 0",
        ),
    ),
    post_hoc=True,
)


@dataclass(frozen=True)
class ReadingMatrix:
    """The axes of one family of claims, and the grid every run reading trains."""

    family: str
    claims: tuple[str, ...]
    axes: tuple[Axis, ...]
    base: Mapping[str, Any]
    """SweepConfig fields shared by every reading (the paper's stated settings)."""
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def run_axes(self) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if not a.post_hoc)

    @property
    def criteria(self) -> tuple[str, ...]:
        return tuple(v.name for a in self.axes if a.post_hoc for v in a.values)

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise ValueError(f"{self.family} has no axis {name!r}")

    def run_readings(self) -> list[dict[str, str]]:
        """Every assignment of the run axes, as {axis: value name}."""
        names = [a.name for a in self.run_axes]
        combos = itertools.product(*[[v.name for v in a.values] for a in self.run_axes])
        return [dict(zip(names, c, strict=True)) for c in combos]

    def config(self, reading: Mapping[str, str], seed: int, *, device: str = "cpu"):
        """The SweepConfig of one run reading and seed."""
        from mamlconv.experiments.config import SweepConfig

        fields: dict[str, Any] = dict(self.base)
        options: dict[str, Any] = {}
        for axis in self.run_axes:
            settings = dict(axis.value(reading[axis.name]).settings)
            if "init" in settings:
                options["init"] = settings.pop("init")
            fields.update(settings)
        alphas = tuple(a for a in self.alphas if a > 0)
        return SweepConfig(
            **fields,
            alphas=alphas,
            betas=self.betas,
            alpha_zero_row=0.0 in self.alphas,
            seed=seed,
            device=device,
            save_params="none",
            problem_options=options,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the axes with every value's settings and source, the grid, the seeds."""
        return {
            "family": self.family,
            "claims": list(self.claims),
            "axes": [
                {
                    "name": a.name,
                    "post_hoc": a.post_hoc,
                    "values": [
                        {"name": v.name, "settings": dict(v.settings), "source": v.source}
                        for v in a.values
                    ],
                }
                for a in self.axes
            ],
            "base": dict(self.base),
            "alphas": list(self.alphas),
            "betas": list(self.betas),
            "seeds": list(self.seeds),
            "learned_fraction": LEARNED_FRACTION,
            "edge_resolution_decades": EDGE_RESOLUTION_DECADES,
        }


def reading_name(reading: Mapping[str, str]) -> str:
    """``init=finn,tasks=pool,variant=exact`` (the order of the dict)."""
    return ",".join(f"{k}={v}" for k, v in reading.items())


def parse_reading(matrix: ReadingMatrix, text: str) -> dict[str, str]:
    """The inverse of :func:`reading_name`; every run axis must be given."""
    reading: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        matrix.axis(key).value(value)
        reading[key] = value
    missing = [a.name for a in matrix.run_axes if a.name not in reading]
    if missing:
        raise ValueError(f"reading {text!r} lacks axes {missing}")
    return {a.name: reading[a.name] for a in matrix.run_axes}


SINUSOID = ReadingMatrix(
    family="sinusoid",
    claims=("S4-1", "S5-1"),
    axes=(INIT, TASK_SOURCE, VARIANT, CRITERION),
    base={
        "problem": "sinusoid",
        "iters": 500,  # paper Sec. 4.1
        "steps": 1,  # paper Sec. 4.1
        "outer": "sgd",  # paper Sec. 4.1
        "dtype": "float32",
        "divergence_level": math.inf,  # non-finite only: criteria are applied post hoc
        "record_every": 50,
    },
    # Coarse on purpose (the edges come from bisection): alpha = 0, two small alphas where the
    # edge is alpha = 0's (experiments/results/sinusoid_NOTES.md), then denser towards the paper's
    # divergence alpha lies (0.35-0.9 in the committed 20 x 20 sweeps); 9 betas log-spaced over
    # the paper's [1e-2, 9] (0.37 decades a step).
    alphas=(0.0, 1e-3, 1e-2, 0.03, 0.1, 0.2, 0.35, 0.6, 0.9),
    betas=tuple(float(b) for b in np.geomspace(1e-2, 9.0, 9)),
    seeds=(0, 1, 2),
)

MATRICES: dict[str, ReadingMatrix] = {"sinusoid": SINUSOID}
"""Run matrices by family. The few-shot family (S4-2, S4-3) is judged on the committed sweeps
(:func:`judge_committed_edge`); its axes are :data:`FEWSHOT_AXES`."""

FEWSHOT_AXES: tuple[Axis, ...] = (
    Axis(
        "init",
        (
            Value(
                "glorot",
                {"init": "glorot"},
                "Glorot-uniform convolutions and head, zero biases (the package's default)",
            ),
            Value(
                "finn",
                {"init": "finn"},
                "Finn et al.'s reference code (cbfinn/maml, maml.py construct_conv_weights): "
                "xavier convolutions, zero biases; the head Glorot on MiniImagenet, standard "
                "normal on Omniglot",
            ),
            Value(
                "torch_default",
                {"init": "torch_default"},
                "PyTorch's nn.Conv2d / nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in))",
            ),
        ),
    ),
    VARIANT,
    CRITERION,
)


# ------------------------------------------------------------------------------------------
# criteria and mechanism
# ------------------------------------------------------------------------------------------


def diverged(criterion: str, *, max_loss, initial_loss) -> np.ndarray:
    """Post-hoc divergence from the running maximum and the loss at iteration 0.

    ``nonfinite``: max is NaN/inf; ``absolute``: or max > ABSOLUTE_LEVEL; ``relative``: or
    max > RELATIVE_FACTOR * initial loss.
    """
    m = np.asarray(max_loss, dtype=float)
    init = np.asarray(initial_loss, dtype=float)
    bad = ~np.isfinite(m)
    with np.errstate(invalid="ignore"):
        if criterion == "nonfinite":
            return bad
        if criterion == "absolute":
            return bad | (m > ABSOLUTE_LEVEL)
        if criterion == "relative":
            return bad | ~np.isfinite(init) | (m > RELATIVE_FACTOR * init)
    raise ValueError(f"unknown criterion {criterion!r} (known: nonfinite, absolute, relative)")


def reference_loss(alphas: np.ndarray, initial_loss: np.ndarray) -> float:
    """The collapse reference of a run: the plain loss at the initial parameters, i.e. the
    alpha = 0 row's loss at iteration 0 (every cell starts from the same parameters and first
    task batch). The initial networks output nearly a constant, so a cell that ends near this
    loss has not learned; a MAML cell's own loss at iteration 0 is no reference (at large
    alpha one inner step from the initial point can multiply it)."""
    rows = np.asarray(alphas) == 0
    base = np.asarray(initial_loss, dtype=float)[rows] if rows.any() else np.asarray(initial_loss)
    return float(np.nanmedian(base))


def learned(*, final_loss, initial_loss) -> np.ndarray:
    """final loss < LEARNED_FRACTION * reference (both finite); ``initial_loss`` is the
    reference, :func:`reference_loss` for reading runs."""
    f = np.asarray(final_loss, dtype=float)
    i = np.asarray(initial_loss, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(f) & np.isfinite(i) & (f < LEARNED_FRACTION * i)


def dead_fraction_mlp(params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Per cell: the fraction of hidden ReLU units whose pre-activation is <= 0 on every input.

    ``params``: cell-stacked MLP weights (``w1 (C, 1, h)``, ``b1 (C, h)``, ...); ``x``: the
    inputs (N, 1) of the task data. A dead unit passes no signal and gets no gradient on that
    data; a network with every last-layer unit dead outputs a constant. NaN for a cell with
    non-finite parameters.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    n_layers = sum(1 for k in params if k.startswith("w"))
    cells = params["w1"].shape[0]
    dead_total = np.zeros(cells)
    units = 0
    a = np.broadcast_to(x, (cells, *x.shape))
    for layer in range(1, n_layers):
        w, b = params[f"w{layer}"], params[f"b{layer}"]
        with np.errstate(all="ignore"):
            z = np.einsum("cni,cio->cno", a, w) + b[:, None, :]
        dead_total += (z <= 0).all(axis=1).sum(axis=1)
        units += z.shape[2]
        a = np.maximum(z, 0.0)
    finite = np.all(
        [np.isfinite(p.reshape(cells, -1)).all(axis=1) for p in params.values()], axis=0
    )
    return np.where(finite, dead_total / units, np.nan)


# ------------------------------------------------------------------------------------------
# running one reading
# ------------------------------------------------------------------------------------------


def _train(problem, config, alphas: np.ndarray, betas: np.ndarray, x_eval: np.ndarray):
    """Train cells one chunk at a time; return per-cell records (no parameters kept)."""
    from mamlconv.experiments.engine import train_cells
    from mamlconv.experiments.sweep import default_chunk_size, plan_chunks

    n = alphas.size
    out = {
        k: np.full(n, np.nan) for k in ("initial_loss", "final_loss", "max_loss", "dead_fraction")
    }
    out["diverged_at"] = np.full(n, -1, dtype=np.int64)
    for cells in plan_chunks(np.arange(n), default_chunk_size(config)):
        run = train_cells(problem, config, alphas[cells], betas[cells], save_params=True)
        out["initial_loss"][cells] = run.loss[:, 0]
        out["final_loss"][cells] = run.final_loss
        out["max_loss"][cells] = run.max_loss
        out["diverged_at"][cells] = run.diverged_at
        assert run.final_params is not None
        out["dead_fraction"][cells] = dead_fraction_mlp(run.final_params, x_eval)
    out["learned"] = learned(final_loss=out["final_loss"], initial_loss=out["initial_loss"])
    return out


def eval_inputs(config) -> np.ndarray:
    """The task data the dead fraction is measured on: the pool's support and query inputs,
    or (fresh tasks) 100 tasks drawn from a generator seeded with ``seed + 10**6``."""
    import torch

    from mamlconv.experiments.engine import initial_state
    from mamlconv.experiments.problems import get_problem

    problem = get_problem(config.problem, **config.problem_options)
    _, stream = initial_state(problem, config, dtype=torch.float64, device="cpu")
    tasks = stream.pool
    if tasks is None:
        gen = torch.Generator().manual_seed(config.seed + 10**6)
        tasks = problem.sample_tasks(gen, config.tasks_per_batch, dtype=torch.float64, device="cpu")
    return torch.cat([tasks.x_support.reshape(-1), tasks.x_query.reshape(-1)]).numpy()[:, None]


def deciding_alphas(alphas: np.ndarray, stable: np.ndarray) -> dict[str, Any]:
    """alpha = 0 (row 0) and the stable alphas within one decade below the divergence alpha.

    ``alphas`` ascending with alphas[0] == 0; ``stable`` (n_alpha, n_beta). The divergence
    alpha is the first grid alpha above the last row with a stable cell (None when the last
    grid alpha still has one; the decade is then counted below the last stable alpha).
    """
    has = stable.any(axis=1)
    rows = np.flatnonzero(has[1:]) + 1
    if rows.size == 0:
        return {"alpha_div": None, "last_stable": None, "near": [], "rows": [0]}
    last = int(rows.max())
    alpha_div = float(alphas[last + 1]) if last + 1 < alphas.size else None
    top = alpha_div if alpha_div is not None else float(alphas[last])
    near = [int(i) for i in rows if alphas[i] > top / 10 and alphas[i] < top or i == last]
    return {
        "alpha_div": alpha_div,
        "last_stable": last,
        "near": sorted(set(near)),
        "rows": [0, *sorted(set(near))],
    }


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
) -> dict[str, Any]:
    """Train one run reading with one seed: the grid, then the bisections per criterion."""
    from mamlconv.experiments.problems import get_problem
    from mamlconv.numerics.boundary import bisect_boundary
    from mamlconv.provenance import describe

    config = matrix.config(reading, seed, device=device)
    problem = get_problem(config.problem, **config.problem_options)
    x_eval = eval_inputs(config)
    alphas = np.asarray(matrix.alphas)
    betas = np.asarray(matrix.betas)
    aa, bb = np.meshgrid(alphas, betas, indexing="ij")
    t0 = time.time()
    grid = _train(problem, config, aa.ravel(), bb.ravel(), x_eval)
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
                rec = _train(problem, config, a[new], b[new], x_eval)
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
    from mamlconv.files import atomic_write_text, jsonable

    return atomic_write_text(path, json.dumps(jsonable(record), indent=1))


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    return float(v)


def load_run(path: Path) -> dict[str, Any]:
    """A result file of :func:`run_reading`, with the grid as float arrays."""
    from mamlconv.files import read_json

    rec = read_json(path)
    if rec.get("schema") != "mamlconv-reading-run/1":
        raise ValueError(f"{path}: not a reading run (schema {rec.get('schema')!r})")
    g = rec["grid"]
    for k in ("alphas", "betas", "initial_loss", "final_loss", "max_loss", "dead_fraction"):
        g[k] = np.vectorize(_num, otypes=[float])(np.asarray(g[k], dtype=object))
    g["diverged_at"] = np.asarray(g["diverged_at"], dtype=np.int64)
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
    from mamlconv.files import jsonable, read_json, restore_nonfinite

    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return False
    want = restore_nonfinite(jsonable(matrix.config(reading, seed).identity()))
    got = dict(rec.get("config", {}))
    got.pop("device", None)
    got.pop("chunk_size", None)
    return got == want and rec.get("matrix", {}).get("alphas") == list(matrix.alphas)


# ------------------------------------------------------------------------------------------
# verdicts
# ------------------------------------------------------------------------------------------

PER_READING = ("HOLDS", "FAILS", "INCONCLUSIVE")


def _bracket(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """(lo, hi, width in decades) of a row's edge: the bisected bracket when it ran inside its
    range, else the grid bracket."""
    if row.get("bisect_inside"):
        lo, hi = row["bisect_lo"], row["bisect_hi"]
    else:
        lo = _num(row.get("grid_lo"))
        hi = _num(row.get("grid_hi"))
    with np.errstate(divide="ignore", invalid="ignore"):
        width = float(np.log10(hi / lo)) if lo > 0 else math.inf
    return lo, hi, width


def _learned_bracket(
    row: Mapping[str, Any], grid: Mapping[str, Any], criterion: str
) -> tuple[float, float, float]:
    """The edge of the cells that are stable AND learned: the measured edge when its edge cell
    learned, else the grid bracket of the largest stable learned beta (NaN when none)."""
    if row.get("edge_learned"):
        return _bracket(row)
    i = row["row"]
    betas = np.asarray(grid["betas"])
    ok = ~diverged(
        criterion, max_loss=grid["max_loss"][i], initial_loss=grid["initial_loss"][i]
    ) & np.asarray(grid["learned"][i], dtype=bool)
    lo, hi = grid_bracket(betas, ok)
    if lo is None:
        return math.nan, math.nan, math.inf
    return lo, hi, float(np.log10(hi / lo)) if math.isfinite(hi) else math.inf


def compare_brackets(a: tuple[float, float, float], b: tuple[float, float, float]) -> str:
    """'above' when bracket a lies wholly above b, 'below' when wholly below, else 'tie'
    (overlapping: not resolved); 'undecided' when either is missing."""
    (alo, ahi, _), (blo, bhi, _) = a, b
    if any(math.isnan(v) for v in (alo, blo)):
        return "undecided"
    if alo >= bhi:
        return "above"
    if ahi <= blo:
        return "below"
    return "tie"


MIN_SEEDS = 3
"""A reading's verdict needs this many seeds; with fewer it is INCONCLUSIVE (the seeds' outcomes
are still reported, and ``provisional`` gives what they alone would say)."""


def seeded_verdict(outcomes: Sequence[str]) -> dict[str, Any]:
    """:func:`per_reading_verdict` with the MIN_SEEDS rule: {verdict, provisional, why}."""
    provisional = per_reading_verdict(outcomes)
    if len(outcomes) < MIN_SEEDS:
        return {
            "verdict": "INCONCLUSIVE",
            "provisional": provisional,
            "why": f"{len(outcomes)} of {MIN_SEEDS} seeds",
        }
    return {"verdict": provisional, "provisional": provisional, "why": None}


def per_reading_verdict(outcomes: Sequence[str]) -> str:
    """Over seeds: HOLDS when every seed is 'above' (or a loss comparison 'yes'), FAILS when
    every seed is 'below' ('no'), else INCONCLUSIVE (seeds disagree, or a seed's difference is
    within the measurement's resolution)."""
    if outcomes and all(o in ("above", "yes") for o in outcomes):
        return "HOLDS"
    if outcomes and all(o in ("below", "no") for o in outcomes):
        return "FAILS"
    return "INCONCLUSIVE"


def claim_verdict(per_reading: Mapping[str, str]) -> tuple[str, list[str]]:
    """One verdict for a claim from its per-reading verdicts.

    HOLDS: under every reading. HOLDS-FOR: under some (returned, by name). FAILS: under none,
    and at least one reading decides against it. INCONCLUSIVE: no reading decides.
    """
    holds = [r for r, v in per_reading.items() if v == "HOLDS"]
    if per_reading and len(holds) == len(per_reading):
        return "HOLDS", holds
    if holds:
        return "HOLDS-FOR", holds
    if any(v == "FAILS" for v in per_reading.values()):
        return "FAILS", []
    return "INCONCLUSIVE", []


@dataclass
class Judged:
    """Per-reading results of one claim: rows of a reading x criterion table over seeds."""

    claim: str
    table: list[dict[str, Any]] = field(default_factory=list)

    def verdicts(self, population: str = "all") -> dict[str, str]:
        return {r["reading"]: r[f"verdict_{population}"] for r in self.table}


def _by_reading(runs: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for rec in runs:
        out.setdefault(reading_name(rec["reading"]), []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: r["seed"])
    return out


def judge_edges(runs: Iterable[dict[str, Any]], criteria: Sequence[str]) -> Judged:
    """S4-1 per reading x criterion: is the edge near the divergence alpha above alpha = 0's?

    Per seed, the near edge is the highest bisected bracket among the stable alphas within a
    decade below alpha_div; it is compared with alpha = 0's bracket (above / below / tie).
    Evaluated on all non-diverged cells and on cells that learned.
    """
    judged = Judged("S4-1")
    for name, recs in _by_reading(runs).items():
        for criterion in criteria:
            seeds, out_all, out_learned = [], [], []
            for rec in recs:
                b = rec["bisections"][criterion]
                rows = {r["row"]: r for r in b["rows"]}
                near_rows = [rows[i] for i in b["decide"]["near"] if i in rows]
                entry: dict[str, Any] = {"seed": rec["seed"], "alpha_div": b["decide"]["alpha_div"]}
                for pop, fn, outs in (
                    ("all", _bracket, out_all),
                    (
                        "learned",
                        lambda r, rec=rec, c=criterion: _learned_bracket(r, rec["grid"], c),
                        out_learned,
                    ),
                ):
                    ref = fn(rows[0]) if 0 in rows else (math.nan, math.nan, math.inf)
                    near = [(fn(r), r) for r in near_rows]
                    near = [(br, r) for br, r in near if not math.isnan(br[0])]
                    if not near:
                        outcome, best = "undecided", None
                    else:
                        best = max(near, key=lambda t: t[0][0])
                        outcome = compare_brackets(best[0], ref)
                    outs.append(outcome)
                    entry[pop] = {
                        "outcome": outcome,
                        "edge_alpha0": list(ref[:2]),
                        "edge_near": None if best is None else list(best[0][:2]),
                        "alpha_near": None if best is None else best[1]["alpha"],
                        "resolution_decades": None if best is None else max(ref[2], best[0][2]),
                        "log10_ratio": None
                        if best is None
                        else float(
                            np.log10(np.sqrt(best[0][0] * best[0][1]) / np.sqrt(ref[0] * ref[1]))
                        )
                        if math.isfinite(best[0][1]) and math.isfinite(ref[1])
                        else None,
                        "edge_cell_learned": None if best is None else best[1].get("edge_learned"),
                        "edge_cell_dead_fraction": None
                        if best is None
                        else best[1].get("edge_dead_fraction"),
                        "alpha0_cell_learned": rows[0].get("edge_learned") if 0 in rows else None,
                        "alpha0_cell_dead_fraction": rows[0].get("edge_dead_fraction")
                        if 0 in rows
                        else None,
                    }
                seeds.append(entry)
            judged.table.append(
                {
                    "reading": f"{name},criterion={criterion}",
                    "run_reading": name,
                    "criterion": criterion,
                    "n_seeds": len(recs),
                    "seeds": seeds,
                    "edge_alpha0_median_range": _median_range(
                        [_geo(s["all"]["edge_alpha0"]) for s in seeds]
                    ),
                    "edge_near_median_range": _median_range(
                        [_geo(s["all"]["edge_near"]) for s in seeds]
                    ),
                    "log10_ratio_median_range": _median_range(
                        [s["all"]["log10_ratio"] for s in seeds]
                    ),
                    "verdict_all": seeded_verdict(out_all)["verdict"],
                    "verdict_learned": seeded_verdict(out_learned)["verdict"],
                    "provisional_all": seeded_verdict(out_all)["provisional"],
                    "provisional_learned": seeded_verdict(out_learned)["provisional"],
                }
            )
    return judged


def _geo(br: Sequence[float] | None) -> float:
    if br is None:
        return math.nan
    lo, hi = (_num(v) for v in br)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return math.nan
    return math.sqrt(lo * hi)


def _median_range(values: Sequence[float | None]) -> list[float] | None:
    v = np.array([_num(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return [float(np.median(v)), float(v.min()), float(v.max())]


def judge_guideline(runs: Iterable[dict[str, Any]], criteria: Sequence[str]) -> dict[str, Judged]:
    """S5-1, both readings, per reading x criterion over seeds.

    (a) rationale: the bisected edge at the guideline's alpha* (the largest alpha with a stable
    cell) is above alpha = 0's (above / below / tie as S4-1). (b) outcome: the lowest final loss
    over the stable grid betas at alpha* is no worse than at alpha = 0 (yes / no); its distance
    from the best stable cell of the whole grid is reported as a ratio.
    """
    ja, jb = Judged("S5-1a"), Judged("S5-1b")
    for name, recs in _by_reading(runs).items():
        for criterion in criteria:
            sa, sb, oa, ob = [], [], [], []
            for rec in recs:
                g = rec["grid"]
                b = rec["bisections"][criterion]
                rows = {r["row"]: r for r in b["rows"]}
                star = b["decide"]["last_stable"]
                stable = ~diverged(
                    criterion, max_loss=g["max_loss"], initial_loss=g["initial_loss"]
                )
                loss = np.where(stable, g["final_loss"], np.nan)
                if star is None or 0 not in rows or not stable[0].any():
                    oa.append("undecided")
                    ob.append("undecided")
                    sa.append({"seed": rec["seed"], "outcome": "undecided"})
                    sb.append({"seed": rec["seed"], "outcome": "undecided"})
                    continue
                ref, at = _bracket(rows[0]), _bracket(rows[star])
                outcome = compare_brackets(at, ref)
                oa.append(outcome)
                sa.append(
                    {
                        "seed": rec["seed"],
                        "alpha_star": float(g["alphas"][star]),
                        "edge_alpha_star": list(at[:2]),
                        "edge_alpha0": list(ref[:2]),
                        "outcome": outcome,
                        "edge_cell_learned": rows[star].get("edge_learned"),
                    }
                )
                l_star, l_0 = float(np.nanmin(loss[star])), float(np.nanmin(loss[0]))
                best = float(np.nanmin(loss))
                yes = "yes" if l_star <= l_0 else "no"
                ob.append(yes)
                sb.append(
                    {
                        "seed": rec["seed"],
                        "alpha_star": float(g["alphas"][star]),
                        "best_loss_alpha_star": l_star,
                        "best_loss_alpha0": l_0,
                        "best_loss_grid": best,
                        "ratio_to_grid_best": l_star / best if best > 0 else None,
                        "learned_at_alpha_star": bool(
                            g["learned"][star][int(np.nanargmin(loss[star]))]
                        ),
                        "outcome": yes,
                    }
                )
            for j, seeds, outs in ((ja, sa, oa), (jb, sb, ob)):
                j.table.append(
                    {
                        "reading": f"{name},criterion={criterion}",
                        "run_reading": name,
                        "criterion": criterion,
                        "n_seeds": len(recs),
                        "seeds": seeds,
                        "verdict_all": seeded_verdict(outs)["verdict"],
                        "provisional_all": seeded_verdict(outs)["provisional"],
                    }
                )
    return {"a": ja, "b": jb}


def load_runs(directory: Path, family: str = "sinusoid") -> list[tuple[Path, dict[str, Any]]]:
    """Every reading-run file of ``family`` under ``directory`` (sorted by name)."""
    out = []
    for path in sorted(Path(directory).glob(f"{family}_*_seed*.json")):
        out.append((path, load_run(path)))
    return out


def summarize(directory: Path, matrix: ReadingMatrix) -> dict[str, Any]:
    """Per-reading and per-claim verdicts of S4-1 and S5-1 from the result files, with a text
    table (what ``mamlconv readings judge`` prints and the audit reports)."""
    loaded = load_runs(directory, matrix.family)
    runs = [rec for _, rec in loaded]
    criteria = matrix.criteria
    edges = judge_edges(runs, criteria)
    guide = judge_guideline(runs, criteria)
    present = {reading_name(r["reading"]) for r in runs}
    missing = [reading_name(r) for r in matrix.run_readings() if reading_name(r) not in present]
    for judged in (edges, guide["a"], guide["b"]):
        for name in missing:  # a reading without runs cannot be judged: INCONCLUSIVE
            for criterion in criteria:
                judged.table.append(
                    {
                        "reading": f"{name},criterion={criterion}",
                        "run_reading": name,
                        "criterion": criterion,
                        "n_seeds": 0,
                        "seeds": [],
                        "verdict_all": "INCONCLUSIVE",
                        "provisional_all": "INCONCLUSIVE",
                        **({"verdict_learned": "INCONCLUSIVE"} if judged is edges else {}),
                    }
                )
    claims: dict[str, Any] = {}
    for claim, judged, pops in (
        ("S4-1", edges, ("all", "learned")),
        ("S5-1a", guide["a"], ("all",)),
        ("S5-1b", guide["b"], ("all",)),
    ):
        entry: dict[str, Any] = {"table": judged.table}
        for pop in pops:
            verdict, holds = claim_verdict(judged.verdicts(pop))
            entry[pop] = {"verdict": verdict, "holds_for": holds}
        claims[claim] = entry
    lines = [f"{len(runs)} runs in {directory}"]
    for claim, entry in claims.items():
        head = ", ".join(
            f"{pop}: {entry[pop]['verdict']}" for pop in ("all", "learned") if pop in entry
        )
        lines.append(f"{claim}: {head}")
        for row in entry["table"]:
            seeds = [s["seed"] for s in row["seeds"]]
            extra = f" learned: {row['verdict_learned']}" if "verdict_learned" in row else ""
            ratio = row.get("log10_ratio_median_range")
            r = (
                ""
                if ratio is None
                else f" log10(near/0) median {ratio[0]:+.2f} [{ratio[1]:+.2f}, {ratio[2]:+.2f}]"
            )
            prov = f" [provisional {row['provisional_all']}]" if len(seeds) < MIN_SEEDS else ""
            lines.append(
                f"  {row['reading']}: {row['verdict_all']}{prov}{extra} (seeds {seeds}){r}"
            )
    runs_done = len(runs)
    runs_planned = len(matrix.run_readings()) * len(matrix.seeds)
    lines.insert(0, f"runs: {runs_done} of {runs_planned} (readings without runs: {len(missing)})")
    return {
        "runs_done": runs_done,
        "runs_planned": runs_planned,
        "readings_without_runs": missing,
        "files": [str(p) for p, _ in loaded],
        "matrix": matrix.describe(),
        "claims": claims,
        "text": "\n".join(lines),
    }


# ------------------------------------------------------------------------------------------
# Fig. 1 (S2-7): the gradient norm and inner products during training, over seeds
# ------------------------------------------------------------------------------------------

TAIL_FRACTION = 0.1
"""S2-7's end-of-training statistic: the median over the last 10 % of the records (Adam's curves
are noisy; the last record alone can say the opposite of the trend)."""


def _tail(curve: np.ndarray) -> tuple[float, float]:
    """(median, interquartile range) of the last TAIL_FRACTION of a recorded curve."""
    n = max(1, int(round(curve.size * TAIL_FRACTION)))
    tail = curve[-n:]
    tail = tail[np.isfinite(tail)]
    if tail.size == 0:
        return math.nan, math.nan
    q1, med, q3 = np.percentile(tail, [25, 50, 75])
    return float(med), float(q3 - q1)


def _sign(diff: float, resolution: float) -> str:
    """'yes' above +resolution, 'no' below -resolution, 'tie' within it."""
    if not math.isfinite(diff):
        return "undecided"
    if diff > resolution:
        return "yes"
    if diff < -resolution:
        return "no"
    return "tie"


def _both(a: str, b: str) -> str:
    """A statement that needs both parts: 'no' when either is 'no', 'yes' when both are."""
    if "no" in (a, b):
        return "no"
    if a == b == "yes":
        return "yes"
    return "tie" if "tie" in (a, b) else "undecided"


def judge_fig1(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """S2-7 per reading over seeds, from Fig. 1 records (cells: 0 joint, alpha = 0; 1 MAML).

    Per seed and quantity (gradient norm, inner product of different tasks' gradients), with
    ``end`` the median over the last 10 % of the records and ``iqr`` its interquartile range:
    (a) literal, "grows during MAML training": end_MAML - start > iqr_MAML ('yes'), < -iqr
    ('no'), else 'tie'; (b) contrast, "grows more than in joint training" (both start from the
    same parameters): end_MAML - end_joint against max(iqr_MAML, iqr_joint). A reading's
    statement needs both quantities; over seeds :func:`per_reading_verdict`.
    """
    seeds = []
    outcomes: dict[str, list[str]] = {"a_literal": [], "b_contrast": []}
    parts: dict[str, list[str]] = {}
    for rec in records:
        alphas = list(rec.get("alphas", [0.0, 1e-2]))
        if alphas[:2] != [0.0, 1e-2]:
            raise ValueError(f"a Fig. 1 record has cells joint, MAML; got alphas {alphas}")
        entry: dict[str, Any] = {
            "seed": (rec.get("config") or {}).get("seed"),
            "iters": rec.get("iters"),
            "commit": (rec.get("provenance") or {}).get("git_commit"),
        }
        per: dict[str, str] = {}
        for q in ("grad_norm", "grad_inner"):
            curve = np.asarray(rec[q], dtype=float)
            start = float(curve[1, 0])
            end_m, iqr_m = _tail(curve[1])
            end_j, iqr_j = _tail(curve[0])
            lit = _sign(end_m - start, iqr_m)
            con = _sign(end_m - end_j, max(iqr_m, iqr_j))
            per[f"a_literal/{q}"], per[f"b_contrast/{q}"] = lit, con
            entry[q] = {
                "start": start,
                "end_maml_median": end_m,
                "end_maml_iqr": iqr_m,
                "end_joint_median": end_j,
                "end_joint_iqr": iqr_j,
                "last_maml": float(curve[1, -1]),
                "last_joint": float(curve[0, -1]),
                "a_literal": lit,
                "b_contrast": con,
            }
        for k, v in per.items():
            parts.setdefault(k, []).append(v)
        for reading in outcomes:
            both = _both(per[f"{reading}/grad_norm"], per[f"{reading}/grad_inner"])
            outcomes[reading].append(both)
            entry[reading] = both
        seeds.append(entry)
    per_reading = {r: per_reading_verdict(o) for r, o in outcomes.items()}
    per_part = {k: per_reading_verdict(v) for k, v in parts.items()}
    verdict, holds = claim_verdict(per_reading)
    return {
        "statistic": f"median over the last {TAIL_FRACTION:.0%} of the records; resolution: "
        "its interquartile range",
        "seeds": seeds,
        "per_reading": per_reading,
        "per_part": per_part,
        "verdict": verdict,
        "holds_for": holds,
    }


# ------------------------------------------------------------------------------------------
# committed alpha x beta sweeps (one seed, one reading): S4-1..3 at the grid's resolution
# ------------------------------------------------------------------------------------------

TIE_CELLS = 1
"""A committed sweep's edge is a grid bracket, and a float32 edge is fuzzy by about one grid
cell (docs/engine.md; the committed notes see it move a step between alpha = 0 and 3e-3): a
margin of at most this many cells is within the resolution."""


MIN_GRID = 3
"""A committed sweep with fewer alphas or betas than this is a smoke test, not evidence."""


def _row_edges(stable: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Index of the largest stable beta per row (-1 when none)."""
    top = np.full(stable.shape[0], -1)
    for i, row in enumerate(stable):
        if row.any():
            top[i] = int(np.flatnonzero(row).max())
    return top


def judge_committed_edge(result: Any) -> dict[str, Any]:
    """Fig. 4's claim on one committed sweep, on all non-diverged cells and on learned cells.

    Edge per alpha row: the index of the largest stable beta. Reference: the alpha = 0 row (or
    the smallest alpha). Near: the stable rows within one decade below alpha_div. The margin is
    counted in grid cells; 'above' when > TIE_CELLS, 'below' when < -TIE_CELLS, else 'tie'.
    A cell *learned* when its final loss is below LEARNED_FRACTION of the reference row's
    loss at iteration 0 (:func:`reference_loss`; needs the sweep's loss trajectories).
    """
    betas = np.asarray(result.betas, dtype=float)
    alphas = np.asarray(result.alphas, dtype=float)
    stable = ~np.asarray(result.diverged)
    final = np.asarray(result.final_loss, dtype=float)
    init = np.asarray(result.trajectories["loss"], dtype=float)[..., 0]
    if result.alpha0 is not None:
        ref_stable = np.asarray(result.alpha0["diverged_at"]) < 0
        ref_final = np.asarray(result.alpha0["final_loss"], dtype=float)
        ref_init = np.asarray(result.alpha0["loss"], dtype=float)[..., 0]
        ref_label = "alpha = 0"
    else:
        ref_stable, ref_final, ref_init = stable[0], final[0], init[0]
        ref_label = f"alpha = {alphas[0]:.3g} (no alpha = 0 row)"
    step = float(np.log10(betas[1] / betas[0])) if betas.size > 1 else math.nan
    out: dict[str, Any] = {
        "reference": ref_label,
        "grid": f"{alphas.size} x {betas.size}",
        "grid_step_decades": step,
        "resolution": f"+-{TIE_CELLS} grid cell ({TIE_CELLS * step:.2f} decades)",
    }
    if min(alphas.size, betas.size) < MIN_GRID:
        for pop in ("all", "learned"):
            out[pop] = {"outcome": "undecided", "why": f"a {out['grid']} grid is a smoke test"}
        return out
    for pop in ("all", "learned"):
        ok = stable.copy()
        ok0 = ref_stable.copy()
        if pop == "learned":
            ref = float(np.nanmedian(np.asarray(ref_init, dtype=float)))
            ok &= learned(final_loss=final, initial_loss=ref)
            ok0 &= learned(final_loss=ref_final, initial_loss=ref)
        top = _row_edges(ok, betas)
        top0 = _row_edges(ok0[None, :], betas)[0]
        rows = np.flatnonzero(~np.asarray(result.diverged).all(axis=1))
        entry: dict[str, Any] = {
            "edge_per_alpha": {
                f"{a:.4g}": (None if t < 0 else float(betas[t]))
                for a, t in zip(alphas, top, strict=True)
            },
            "edge_reference": None if top0 < 0 else float(betas[top0]),
        }
        if rows.size == 0 or top0 < 0 or top0 == betas.size - 1:
            entry.update(outcome="undecided", why="no reference edge inside the grid")
            out[pop] = entry
            continue
        last = int(rows.max())
        alpha_div = float(alphas[last + 1]) if last + 1 < alphas.size else math.inf
        limit = alpha_div if math.isfinite(alpha_div) else float(alphas[last])
        near = [i for i in range(alphas.size) if alphas[i] >= limit / 10 and i <= last]
        near = [i for i in near if top[i] >= 0]
        if not near:
            entry.update(outcome="undecided", why="no such cell near the divergence alpha")
            out[pop] = entry
            continue
        best = max(near, key=lambda i: top[i])
        margin = int(top[best] - top0)
        outcome = "above" if margin > TIE_CELLS else "below" if margin < -TIE_CELLS else "tie"
        entry.update(
            alpha_div=alpha_div,
            alpha_near=float(alphas[best]),
            edge_near=float(betas[top[best]]),
            margin_cells=margin,
            margin_decades=margin * step,
            outcome=outcome,
        )
        out[pop] = entry
    return out


def truncate_fig1(record: Mapping[str, Any], iters: int) -> dict[str, Any]:
    """A Fig. 1 record cut to its first ``iters`` iterations (the records at iterations <=
    iters). Adam with a fixed beta has no schedule, so this is the record a run of ``iters``
    iterations with the same seed makes."""
    its = np.asarray(record["record_iters"])
    keep = its <= iters
    if its[keep][-1] != iters:
        raise ValueError(f"the record has no entry at iteration {iters}")
    out = dict(record)
    for q in ("grad_norm", "grad_inner", "loss", "loss_pre"):
        if q in record:
            out[q] = [list(np.asarray(row, dtype=float)[keep]) for row in record[q]]
    out["record_iters"] = list(its[keep])
    out["iters"] = iters
    return out


def fig1_records(directory: Path) -> dict[int, list[dict[str, Any]]]:
    """Fig. 1 records under ``directory`` (``fig1_<iters>it_seed<S>.json``) grouped by length:
    every record also counts, truncated, at each shorter length present."""
    recs = [json.loads(p.read_text()) for p in sorted(Path(directory).glob("fig1_*it_seed*.json"))]
    lengths = sorted({int(r["iters"]) for r in recs})
    out: dict[int, list[dict[str, Any]]] = {}
    for n in lengths:
        out[n] = [
            r if int(r["iters"]) == n else truncate_fig1(r, n) for r in recs if int(r["iters"]) >= n
        ]
    return out
