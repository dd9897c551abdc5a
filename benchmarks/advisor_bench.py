"""Benchmark: measured advice against the committed reading runs, and against LR range tests.

For each sinusoid case of the reading matrix with a fixed task pool (init torch_default and
finn, variant exact and first_order, seeds 0-2: the committed files
``experiments/results/readings/sinusoid_<init>_pool_<variant>_seed<S>.json``) it runs
:func:`mamlconv.experiments.analysis.measured_advice.measure` at the reading's configuration
(500 iterations, 100 tasks, float32) with the package's divergence level 1e3, which is the
reading's ``absolute`` criterion, on the reading grid's inner rates as the alpha ladder. The
reference edges are the reading's bisected brackets (0.05 decades wide) at alpha = 0 and at
alpha* (its grid bracket where the bisection did not apply); for alpha = 0 the committed
20 x 20 grid of the same variant and seed (``sinusoid_<variant>_paper[_seed1].npz``, torch
init) is shown as a second reference where one exists. Error: the distance in decades from
a measured edge (the geometric midpoint of its bracket) to the reference bracket, 0 inside it.

Beside it, the learning-rate range test of torch-lr-finder (D. Tran, pytorch-lr-finder,
``torch_lr_finder/lr_finder.py``, ``LRFinder.range_test`` and ``LRFinder.plot``, version
0.2.2), its documented rule reimplemented here (no code taken) on the same MAML outer step (the
engine's step function, one cell): the meta rate grows exponentially from ``START`` to ``END``
over ``num_iter`` iterations (lr_i = start (end/start)^(i/(num_iter - 1))), the loss of each
iteration is smoothed as s_i = 0.05 loss_i + 0.95 s_(i-1), the test stops once s_i exceeds 5
times the best s (and, a deviation, at a non-finite loss, which the library would not notice).
Its rules: ``steepest`` (the lr at the most negative np.gradient of s after trimming 10 points
at the start and 5 at the end), ``min/10`` (the lr at the smallest s divided by 10, fastai's
original rule) and ``stop`` (the lr at which the test stopped: the range test's own reading of
the divergence point). Each runs at the torch-lr-finder default of 100 iterations and at the
advisor's cost (its cell-iterations split over the two edges).

Two further cases are measured against a full grid of their own, made with the package's own
``mamlconv sweep`` (real training, committed as ``experiments/results/advisor_ref_<case>.npz``
with its JSON sidecar; the commands in ``GRID_CASES``): the own-model CNN of
``examples/own_model.py`` (spec ``examples/own_model.py:make_problem``, the advisor's own-model
protocol: 100 iterations on a pool of 16 tasks, float32, level 1e3) and Omniglot at the smoke
preset's size (5-way 1-shot, 8 filters, 2 query examples, 2 inner steps, fresh tasks) at a
horizon of 50 iterations with 4 tasks and the preset's level 100. The advisor runs on the
grid's recorded configuration (same problem, horizon, tasks, seed, level), with the grid's
inner rates as its alpha ladder. The reference edge at an alpha is that grid row's bracket
[largest stable grid beta, next grid beta] (``SweepMap.boundary``): the grid's own bracket,
its width in decades the reference's error bar. The reference alpha* is the largest grid alpha
stable at the grid's smallest beta (the advisor scans at or below it). Cost: the advisor's
cell-iterations as a fraction of the grid's nominal cost (cells x iterations, alpha = 0 row
included) and of what the grid actually spent (diverged cells stop early). The range test's
ramp there runs from a decade below the grid's smallest beta to a decade above its largest.

    nice python benchmarks/advisor_bench.py [--out experiments/results/advisor_bench.json]

Writes the JSON after every case (a rerun skips the cases already there) and prints the table.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mamlconv.experiments.analysis.measured_advice import measure
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.loop import make_step
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems.registry import get_problem
from mamlconv.util.files import atomic_write_text, dumps, read_json, restore_nonfinite

ROOT = Path(__file__).resolve().parents[1]
READINGS = ROOT / "experiments" / "results" / "readings"
RESULTS = ROOT / "experiments" / "results"
LEVEL = 1e3  # the package's sweep level = the readings' "absolute" criterion
START, END = 1e-3, 10.0  # the range test's ramp: a decade below the paper's beta range to END
SMOOTH, DIVERGE, SKIP_START, SKIP_END, DEFAULT_ITERS = 0.05, 5.0, 10, 5, 100
TOLERANCE = 0.1  # decades: the done-when criterion


def cases() -> list[tuple[str, str, int]]:
    return [
        (init, variant, seed)
        for init in ("torch_default", "finn")
        for variant in ("exact", "first_order")
        for seed in (0, 1, 2)
    ]


def reading_config(reading: dict) -> SweepConfig:
    cfg = restore_nonfinite(dict(reading["config"]))
    cfg["divergence_level"] = LEVEL
    return SweepConfig.from_dict(cfg).replace(device="cpu")


def _row_bracket(reading: dict, alpha: float) -> tuple[float | None, float, str]:
    """The reference bracket at ``alpha``: the reading's bisection (absolute criterion) where it
    ran, else the grid bracket of that row under the same criterion."""
    for row in reading["bisections"]["absolute"]["rows"]:
        if row["alpha"] == alpha:
            if row.get("bisect_inside"):
                return row["bisect_lo"], row["bisect_hi"], "bisected"
            hi = row["grid_hi"] if row.get("grid_hi") is not None else math.inf
            return row["grid_lo"], hi, "grid"
    grid = reading["grid"]
    i = grid["alphas"].index(alpha)
    max_loss = np.array(grid["max_loss"][i], dtype=float)
    stable = np.isfinite(max_loss) & (max_loss <= LEVEL)
    betas = grid["betas"]
    if not stable.any():
        return None, betas[0], "grid"
    top = int(np.flatnonzero(stable).max())
    return betas[top], (betas[top + 1] if top + 1 < len(betas) else math.inf), "grid"


def error_decades(edge: float, lo: float | None, hi: float) -> float:
    """Distance in decades from ``edge`` to the bracket [lo, hi] (0 inside)."""
    if not (edge > 0 and math.isfinite(edge)):
        return math.inf
    low = math.log10(lo) if lo else -math.inf
    high = math.log10(hi) if math.isfinite(hi) else math.inf
    x = math.log10(edge)
    return max(0.0, low - x, x - high)


def range_test(
    problem, config: SweepConfig, alpha: float, num_iter: int, start=START, end=END
) -> dict:
    """torch-lr-finder's range test on the MAML outer step (see the module docstring)."""
    step = make_step(problem, variant=config.variant, steps=config.steps)
    params, stream = initial_state(problem, config, dtype=torch.float32, device="cpu")
    params = {n: p.unsqueeze(0) for n, p in params.items()}
    alpha_t = torch.tensor([alpha], dtype=torch.float32)
    lrs, smooth, best = [], [], math.inf
    for i in range(num_iter):
        lr = start * (end / start) ** (i / (num_iter - 1))
        out = step(params, alpha_t, stream.next(), need_direction=True, need_stats=False)
        loss = float(out.loss_post[0])
        s = loss if i == 0 else SMOOTH * loss + (1 - SMOOTH) * smooth[-1]
        lrs.append(lr)
        smooth.append(s)
        best = min(best, s)
        if not math.isfinite(s) or s > DIVERGE * best:
            break
        params = {n: p - lr * out.direction[n] for n, p in params.items()}
    cut = smooth[SKIP_START : len(smooth) - SKIP_END]
    out_rules = {"stop": lrs[-1], "iterations": len(lrs)}
    if len(cut) >= 2:
        out_rules["steepest"] = lrs[SKIP_START + int(np.argmin(np.gradient(np.array(cut))))]
    else:
        out_rules["steepest"] = math.nan
    finite = [(s, lr) for s, lr in zip(smooth, lrs, strict=True) if math.isfinite(s)]
    out_rules["min/10"] = min(finite)[1] / 10 if finite else math.nan
    return out_rules


def run_case(init: str, variant: str, seed: int) -> dict:
    reading = read_json(READINGS / f"sinusoid_{init}_pool_{variant}_seed{seed}.json")
    config = reading_config(reading)
    problem = get_problem("sinusoid", **config.problem_options)
    ladder = [a for a in reading["grid"]["alphas"] if a > 0]
    t0 = time.perf_counter()
    advice = measure(problem, config, alphas=ladder, tol=1e-4)
    wall = time.perf_counter() - t0
    decide = reading["bisections"]["absolute"]["decide"]
    ref_star = reading["grid"]["alphas"][decide["last_stable"]]
    row = {
        "case": f"{init}/{variant}/seed{seed}",
        "advisor": advice.as_dict(),
        "wall_s": round(wall, 1),
        "alpha_star": advice.alpha_star,
        "reference_alpha_star": ref_star,
        "edges": [],
    }
    per_edge = max(2, advice.cell_iterations // 2)
    for edge in advice.edges:
        lo, hi, how = _row_bracket(reading, edge.alpha)
        entry = {
            "alpha": edge.alpha,
            "measured": [edge.lo, edge.hi],
            "reference": [lo, hi],
            "reference_kind": how,
            "error_decades": error_decades(edge.midpoint, lo, hi),
            "non_monotone": edge.non_monotone,
            "range_test": {},
        }
        for label, n in (("default", DEFAULT_ITERS), ("equal_cost", per_edge)):
            rt = range_test(problem, config, edge.alpha, n)
            rt["errors"] = {
                rule: error_decades(rt[rule], lo, hi) for rule in ("stop", "steepest", "min/10")
            }
            entry["range_test"][label] = rt
        grid = _grid_reference(variant, seed, init) if edge.alpha == 0 else None
        if grid is not None:
            entry["grid20"] = grid
            entry["grid20"]["error_decades"] = error_decades(edge.midpoint, *grid["bracket"])
        row["edges"].append(entry)
    return row


OWN_MODEL = "examples/own_model.py:make_problem"
GRID_CASES: dict[str, dict] = {
    "own_model/exact/seed0": {
        "file": "advisor_ref_toycnn.npz",
        "problem": OWN_MODEL,
        # mamlconv.sweep, since the CLI's sweep has no --pool-size and gives a user's problem
        # the sinusoid pool of 100; advise --measure --problem trains on a pool of 16
        "sweep": {
            "alphas": np.geomspace(0.03, 9.0, 10).tolist(),
            "betas": np.geomspace(0.003, 12.0, 13).tolist(),
            "iters": 100,
            "tasks_per_batch": 16,
            "task_source": "pool",
            "pool_size": 16,
            "divergence_level": LEVEL,
            "seed": 0,
            "dtype": "float32",
            "device": "cpu",
        },
        "command": "nice python benchmarks/advisor_bench.py --make-grid own_model/exact/seed0",
        # a second reference at twice the beta resolution (the coarse betas are every other
        # one of it), where the machine had the time: its bracket is half as wide
        "fine": {
            "file": "advisor_ref_toycnn_fine.npz",
            "betas": np.geomspace(0.003, 12.0, 25).tolist(),
            "command": "nice python benchmarks/advisor_bench.py --make-grid "
            "own_model/exact/seed0 --fine",
        },
    },
    "omniglot_smoke/exact/seed0": {
        "file": "advisor_ref_omniglot_smoke.npz",
        "problem": "omniglot",
        "command": "nice mamlconv sweep omniglot --preset smoke --alphas 0.01:10:10 "
        "--betas 0.01:100:13 --iters 50 --tasks 4 --seed 0 --device cpu --threads 1 "
        "--resume --out experiments/results/advisor_ref_omniglot_smoke.npz",
        "fine": {
            "file": "advisor_ref_omniglot_smoke_fine.npz",
            "command": "nice mamlconv sweep omniglot --preset smoke --alphas 0.01:10:10 "
            "--betas 0.01:100:25 --iters 50 --tasks 4 --seed 0 --device cpu --threads 1 "
            "--resume --out experiments/results/advisor_ref_omniglot_smoke_fine.npz",
        },
    },
}
"""The cases with a reference grid of their own: the result file under experiments/results/,
the problem the benchmark names (a spec is trusted because this file names it, and must equal
the grid's), and the command that made the grid."""


def make_grid(name: str, fine: bool = False) -> Path:
    """The reference grid of a ``GRID_CASES`` entry with a ``sweep`` spec (``fine``: its finer
    second grid), by the package's own ``mamlconv.sweep`` (resumable: an interrupted run
    continues from its chunks)."""
    import mamlconv

    case = GRID_CASES[name]
    options = dict(case["sweep"])
    if fine:
        options["betas"] = case["fine"]["betas"]
    out = RESULTS / (case["fine"]["file"] if fine else case["file"])
    mamlconv.sweep(case["problem"], out=out, resume=True, progress=True, **options)
    return out


def _decades(lo: float | None, hi: float) -> float:
    if lo is None or not (lo > 0) or not math.isfinite(hi):
        return math.inf
    return math.log10(hi / lo)


def run_grid_case(name: str) -> dict:
    """The advisor on the recorded configuration of a committed reference grid, its edges
    against that grid's brackets, and the range tests beside it."""
    import mamlconv
    from mamlconv.experiments.problems.registry import normalize_spec, trust_spec

    case = GRID_CASES[name]
    ref = mamlconv.load(RESULTS / case["file"])
    config = ref.config.replace(device="cpu")
    is_spec = ":" in case["problem"]
    expected = normalize_spec(case["problem"]) if is_spec else case["problem"]
    # committed grids record the repository-relative spec (no machine's path in the repository);
    # both sides are normalised from the repository root, where this benchmark runs
    recorded = normalize_spec(config.problem) if is_spec else config.problem
    if recorded != expected:  # the grid must be the problem this file names
        raise SystemExit(f"{case['file']} holds problem {config.problem!r}, not {expected!r}")
    if is_spec:  # named here, by this file, so it may run
        trust_spec(case["problem"])
    problem = get_problem(config.problem, **config.problem_options)
    alphas, betas = [float(a) for a in ref.alphas], [float(b) for b in ref.betas]
    stable = ~ref.diverged
    edges_ref = {float(r["alpha"]): r for r in ref.boundary().as_records()}
    t0 = time.perf_counter()
    advice = measure(problem, config, alphas=alphas, tol=1e-4)
    wall = time.perf_counter() - t0
    stable_low = [a for a, ok in zip(alphas, stable[:, 0], strict=True) if ok]
    n_cells = stable.size + (len(betas) if ref.alpha0_final_loss is not None else 0)
    nominal = n_cells * config.iters
    spent = ref.result.run_info.get("cell_iterations")
    cost = advice.cell_iterations
    row = {
        "case": name,
        "reference_grid": {
            "file": case["file"],
            "command": case["command"],
            "shape": [len(alphas), len(betas)],
            "alpha_zero_row": ref.alpha0_final_loss is not None,
            "alphas": alphas,
            "betas": betas,
            "beta_step_decades": math.log10(betas[1] / betas[0]),
            "cell_iterations_nominal": nominal,
            "cell_iterations_spent": spent,
            "wall_s": ref.result.run_info.get("wall_s"),
        },
        "advisor": advice.as_dict(),
        "wall_s": round(wall, 1),
        "alpha_star": advice.alpha_star,
        "reference_alpha_star": max(stable_low) if stable_low else 0.0,
        "cost_fraction_of_grid": cost / nominal,
        "cost_fraction_of_grid_spent": cost / spent if spent else None,
        "edges": [],
    }
    ramp = (betas[0] / 10, betas[-1] * 10)
    per_edge = max(2, cost // 2)
    for edge in advice.edges:
        rec = edges_ref.get(float(edge.alpha))
        if rec is None:  # alpha* is a grid alpha (the ladder is the grid's): never expected
            raise SystemExit(f"{name}: no grid row at alpha {edge.alpha}")
        lo = rec["beta_lo"] if rec["beta_lo"] is not None and rec["beta_lo"] > 0 else None
        hi = rec["beta_hi"] if rec["beta_hi"] is not None else math.inf
        entry = {
            "alpha": edge.alpha,
            "measured": [edge.lo, edge.hi],
            "reference": [lo, hi],
            "reference_kind": "grid",
            "reference_width_decades": _decades(lo, hi),
            "reference_monotone": rec.get("monotone"),
            "error_decades": error_decades(edge.midpoint, lo, hi),
            "non_monotone": edge.non_monotone,
            "range_test": {},
        }
        for label, n in (("default", DEFAULT_ITERS), ("equal_cost", per_edge)):
            rt = range_test(problem, config, edge.alpha, n, *ramp)
            rt["errors"] = {
                rule: error_decades(rt[rule], lo, hi) for rule in ("stop", "steepest", "min/10")
            }
            entry["range_test"][label] = rt
        row["edges"].append(entry)
    return row


def _rate(x: float | None) -> float:
    return math.nan if x is None else x  # a NaN rule reads back from JSON as null


def add_fine_reference(row: dict) -> bool:
    """Score a finished grid case against its case's finer grid as well, once that grid exists
    (no training: the advisor's brackets and the range tests' rates are in the row)."""
    import mamlconv

    fine = GRID_CASES[row["case"]].get("fine")
    if fine is None or not (RESULTS / fine["file"]).exists():
        return False
    if all("fine_grid" in e for e in row["edges"]):
        return False
    fine_map = mamlconv.load(RESULTS / fine["file"])
    records = {float(r["alpha"]): r for r in fine_map.boundary().as_records()}
    coarse = mamlconv.load(RESULTS / GRID_CASES[row["case"]]["file"])
    shared = np.isclose(coarse.betas[:, None], fine_map.betas[None, :], rtol=1e-9).argmax(axis=1)
    if np.allclose(fine_map.betas[shared], coarse.betas, rtol=1e-9) and np.allclose(
        fine_map.alphas, coarse.alphas
    ):  # the cells both grids trained: the same run twice, so the same verdicts
        row["fine_grid_consistency"] = {
            "shared_cells": int(coarse.diverged.size),
            "stability_disagreements": int((coarse.diverged != fine_map.diverged[:, shared]).sum()),
            "max_final_loss_difference": float(
                np.nanmax(np.abs(coarse.final_loss - fine_map.final_loss[:, shared]))
            ),
        }
    for e in row["edges"]:
        rec = records[float(e["alpha"])]
        lo = rec["beta_lo"] if rec["beta_lo"] is not None and rec["beta_lo"] > 0 else None
        hi = rec["beta_hi"] if rec["beta_hi"] is not None else math.inf
        m_lo, m_hi = e["measured"]  # as Edge.midpoint; a null in a reloaded list is inf here
        m_hi = math.inf if m_hi is None else m_hi
        mid = (
            m_hi if m_lo is None else (m_lo if not math.isfinite(m_hi) else math.sqrt(m_lo * m_hi))
        )
        e["fine_grid"] = {
            "file": fine["file"],
            "command": fine["command"],
            "bracket": [lo, hi],
            "width_decades": _decades(lo, hi),
            "monotone": rec.get("monotone"),
            "error_decades": error_decades(mid, lo, hi),
            "range_test_errors": {
                label: {
                    r: error_decades(_rate(e["range_test"][label][r]), lo, hi)
                    for r in ("stop", "steepest", "min/10")
                }
                for label in ("default", "equal_cost")
            },
        }
    return True


def _grid_reference(variant: str, seed: int, init: str) -> dict | None:
    if init != "torch_default" or seed > 1:
        return None
    import mamlconv

    name = f"sinusoid_{variant}_paper{'_seed1' if seed else ''}.npz"
    rec = mamlconv.load(RESULTS / name).boundary().as_records()[0]
    return {"file": name, "bracket": [rec["beta_lo"], rec["beta_hi"]]}


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


RULES = ("stop", "steepest", "min/10")
"""The range-test suggestions (torch-lr-finder's stop point, steepest slope, minimum / 10)."""


def _empty_errors() -> dict[str, list]:
    return {"advisor": [], **{f"{k}:{r}": [] for k in ("default", "equal_cost") for r in RULES}}


def _header(width: int, tail: str) -> str:
    return (
        f"{'case':{width}} {'alpha':>6} {'advisor':>7} "
        + " ".join(f"{'rt100 ' + r:>13}" for r in RULES)
        + " "
        + " ".join(f"{'rt= ' + r:>11}" for r in RULES)
        + tail
    )


def _add_edge(errors: dict[str, list], e: dict) -> str:
    """Adds one edge's errors (advisor, range tests at 100 iterations and at equal cost) and
    returns its range-test columns."""
    rt_d, rt_e = e["range_test"]["default"], e["range_test"]["equal_cost"]
    errors["advisor"].append(e["error_decades"])
    for r in RULES:
        errors[f"default:{r}"].append(rt_d["errors"][r])
        errors[f"equal_cost:{r}"].append(rt_e["errors"][r])
    return (
        " ".join(f"{_fmt(rt_d['errors'][r]):>13}" for r in RULES)
        + " "
        + " ".join(f"{_fmt(rt_e['errors'][r]):>11}" for r in RULES)
    )


def report(rows: list[dict]) -> dict:
    print(_header(32, f" {'cost':>6} {'grid%':>6}"))
    errors = _empty_errors()
    misses = []
    for row in rows:
        cost = row["advisor"]["cost"]
        for e in row["edges"]:
            columns = _add_edge(errors, e)
            if not e["error_decades"] <= TOLERANCE:
                misses.append(f"{row['case']} alpha {e['alpha']:g}: {e['error_decades']:.3f}")
            print(
                f"{row['case']:32} {e['alpha']:6.3g} {_fmt(e['error_decades']):>7} "
                + columns
                + f" {cost['cell_iterations']:6d} {100 * cost['grid_fraction']:6.2f}"
            )
    n = len(errors["advisor"])
    within = sum(x <= TOLERANCE for x in errors["advisor"])
    medians = {k: float(np.median(v)) for k, v in errors.items()}
    costs = [r["advisor"]["cost"]["cell_iterations"] for r in rows]
    summary = {
        "edges": n,
        "within_tolerance": within,
        "fraction_within": within / n if n else math.nan,
        "tolerance_decades": TOLERANCE,
        "median_error_decades": medians,
        "cost_cell_iterations": {"max": max(costs), "median": float(np.median(costs))},
        "grid_fraction_max": max(r["advisor"]["cost"]["grid_fraction"] for r in rows),
        "alpha_star_agrees": sum(r["alpha_star"] == r["reference_alpha_star"] for r in rows),
        "cases_both_within": sum(
            all(e["error_decades"] <= TOLERANCE for e in r["edges"]) for r in rows
        ),
        "grid20_alpha0_errors": {
            r["case"]: e["grid20"]["error_decades"]
            for r in rows
            for e in r["edges"]
            if "grid20" in e
        },
        "misses": misses,
        "load_average": os.getloadavg(),
    }
    print(f"within {TOLERANCE} decades: {within}/{n}; misses: {misses or 'none'}")
    print("median error (decades): " + ", ".join(f"{k} {v:.3f}" for k, v in medians.items()))
    print(
        f"advisor cost: max {max(costs)} cell-iterations "
        f"({100 * summary['grid_fraction_max']:.2f}% of 20 x 20 x 500); alpha* equal to the "
        f"reading's in {summary['alpha_star_agrees']}/{len(rows)} cases; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return summary


def report_grid(rows: list[dict]) -> dict:
    """The cases with a reference grid of their own: per edge the advisor's and the range
    tests' errors, the grid's bracket width (its error bar) and the cost against the grid."""
    print(
        _header(28, f" {'cost':>6} {'% grid':>7} {'% spent':>7}").replace(
            f"{'advisor':>7} ", f"{'advisor':>7} {'ref width':>9} ", 1
        )
    )
    errors = _empty_errors()
    for row in rows:
        cost = row["advisor"]["cost"]["cell_iterations"]
        spent = row["cost_fraction_of_grid_spent"]
        for e in row["edges"]:
            columns = _add_edge(errors, e)
            print(
                f"{row['case']:28} {e['alpha']:6.3g} {_fmt(e['error_decades']):>7} "
                f"{_fmt(e['reference_width_decades']):>9} "
                + columns
                + f" {cost:6d} {100 * row['cost_fraction_of_grid']:7.2f} "
                f"{'-' if spent is None else f'{100 * spent:.2f}':>7}"
            )
    fine = _empty_errors()
    for row in rows:
        for e in row["edges"]:
            if "fine_grid" not in e:
                continue
            f = e["fine_grid"]
            fine["advisor"].append(f["error_decades"])
            for k in ("default", "equal_cost"):
                for r in RULES:
                    fine[f"{k}:{r}"].append(f["range_test_errors"][k][r])
            print(
                f"{row['case']:28} {e['alpha']:6.3g} fine grid {f['file']}: bracket "
                f"{f['bracket']}, width {_fmt(f['width_decades'])} decades, advisor error "
                f"{_fmt(f['error_decades'])}"
            )
    summary = {
        "cases": [r["case"] for r in rows],
        "edges": len(errors["advisor"]),
        "within_grid_bracket": sum(x == 0 for x in errors["advisor"]),
        "within_tolerance": sum(x <= TOLERANCE for x in errors["advisor"]),
        "median_error_decades": {k: float(np.median(v)) for k, v in errors.items()},
        "alpha_star_agrees": sum(r["alpha_star"] == r["reference_alpha_star"] for r in rows),
        "load_average": os.getloadavg(),
    }
    if fine["advisor"]:
        summary["fine_grid"] = {
            "edges": len(fine["advisor"]),
            "within_grid_bracket": sum(x == 0 for x in fine["advisor"]),
            "within_tolerance": sum(x <= TOLERANCE for x in fine["advisor"]),
            "median_error_decades": {k: float(np.median(v)) for k, v in fine.items()},
        }
    print(
        f"grid cases: {summary['within_grid_bracket']}/{summary['edges']} advisor edges inside "
        f"the grid's bracket, alpha* equal to the grid's in {summary['alpha_star_agrees']}/"
        f"{len(rows)}; median error (decades): "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary["median_error_decades"].items())
    )
    return summary


def markdown(record: dict) -> str:
    """The committed note: the table and the summary the run printed, as Markdown."""
    sm = record["summary"]
    lines = [
        "# Measured advice against reference runs and LR range tests",
        "",
        "## Sinusoid: against the committed reading runs",
        "",
        "Written by `nice python benchmarks/advisor_bench.py` (the data: `advisor_bench.json`;",
        "the method and the range-test rule with its source: the benchmark's docstring). Error:",
        "decades from the measured edge (its bracket's geometric midpoint) to the reference",
        "bracket of the committed reading run (0 inside it). Range tests: `rt100` at",
        "torch-lr-finder's default 100 iterations, `rt=` at the advisor's cost per edge.",
        "",
        "| case | alpha | measured | reference | advisor | "
        + " | ".join(f"rt100 {r}" for r in RULES)
        + " | "
        + " | ".join(f"rt= {r}" for r in RULES)
        + " | cell-iterations | % of 20x20x500 |",
        "|" + " --- |" * 13,
    ]

    def br(pair: list) -> str:
        lo, hi = pair
        return f"[{'-' if lo is None else f'{lo:.4g}'}, {'inf' if hi is None else f'{hi:.4g}'}]"

    for row in (r for r in record["cases"] if "reference_grid" not in r):
        cost = row["advisor"]["cost"]
        for e in row["edges"]:
            rt_d, rt_e = (
                e["range_test"]["default"]["errors"],
                e["range_test"]["equal_cost"]["errors"],
            )
            lines.append(
                f"| {row['case']} | {e['alpha']:g} | {br(e['measured'])} | {br(e['reference'])} "
                f"| {_fmt(e['error_decades'])} | "
                + " | ".join(_fmt(rt_d[r]) for r in RULES)
                + " | "
                + " | ".join(_fmt(rt_e[r]) for r in RULES)
                + f" | {cost['cell_iterations']} | {100 * cost['grid_fraction']:.2f} |"
            )
    med = sm["median_error_decades"]
    n_sin = sum("reference_grid" not in r for r in record["cases"])
    lines += [
        "",
        f"- Within {sm['tolerance_decades']} decades: {sm['within_tolerance']} of {sm['edges']} "
        f"edges ({100 * sm['fraction_within']:.0f} %); misses: "
        f"{', '.join(sm['misses']) or 'none'}.",
        f"- Advisor cost: at most {sm['cost_cell_iterations']['max']} cell-iterations "
        f"({100 * sm['grid_fraction_max']:.2f} % of a 20 x 20 x 500 grid), median "
        f"{sm['cost_cell_iterations']['median']:.0f}.",
        f"- Cases with both edges within: {sm['cases_both_within']} of {n_sin}.",
        f"- alpha* equal to the reading's last stable grid alpha in {sm['alpha_star_agrees']} "
        f"of {n_sin} cases.",
        "- Against the committed 20 x 20 grids' alpha = 0 bracket (second reference): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sm["grid20_alpha0_errors"].items())
        + " decades.",
        "- Median error (decades): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()) + ".",
        f"- Load average when the summary was written: "
        f"{', '.join(f'{x:.2f}' for x in sm['load_average'])} (2 cores shared by 5 sessions).",
        "",
    ]
    if "summary_grid_cases" in record:
        lines += grid_markdown(record, br)
    return "\n".join(lines)


def _check_text(advice: dict) -> str:
    """What the advisor's own check run at (alpha*, beta*) did, in words."""
    check = advice.get("check")
    if not check:
        return "no check run"
    rec = advice["recommendation"]
    learned = advice.get("check_learned")
    return (
        f"its check at (alpha* {rec['alpha']:.4g}, beta* {rec['beta']:.4g}) "
        + ("trained the horizon without divergence" if check["stable"] else "diverged")
        + f", final loss {check['final_loss']:.3g} against a learned reference of "
        f"{advice.get('learned_reference', math.nan):.3g}"
        + ("" if learned is None else (" (learned)" if learned else " (did not learn)"))
    )


def grid_markdown(record: dict, br) -> list[str]:
    """The section on the cases with a reference grid of their own."""
    sm = record["summary_grid_cases"]
    lines = [
        "## Own-model CNN and Omniglot (smoke size): against a full grid of the same problem",
        "",
        "Reference: a full alpha x beta grid of the same problem, horizon, tasks, seed and",
        "divergence level (made by the command below each case, committed beside this file).",
        "The reference bracket at an alpha is the grid row's [largest stable beta, next beta]:",
        "the grid's own bracket, whose width (`ref width`, decades) is the reference's error",
        "bar; an error of 0 means the advisor's midpoint lies inside it, and only says the",
        "advisor is as good as the grid can tell. Cost: the advisor's cell-iterations as a",
        "percentage of the grid's nominal cost (cells x iterations, alpha = 0 row included) and",
        "of what the grid spent (diverged cells stop early).",
        "",
        "| case | alpha | measured | grid bracket | ref width | advisor | "
        + " | ".join(f"rt100 {r}" for r in RULES)
        + " | "
        + " | ".join(f"rt= {r}" for r in RULES)
        + " | cell-iterations | % of grid | % of grid spent |",
        "|" + " --- |" * 15,
    ]
    for row in (r for r in record["cases"] if "reference_grid" in r):
        cost = row["advisor"]["cost"]["cell_iterations"]
        spent = row["cost_fraction_of_grid_spent"]
        for e in row["edges"]:
            rt_d = e["range_test"]["default"]["errors"]
            rt_e = e["range_test"]["equal_cost"]["errors"]
            lines.append(
                f"| {row['case']} | {e['alpha']:.4g} | {br(e['measured'])} | "
                f"{br(e['reference'])} | {_fmt(e['reference_width_decades'])} | "
                f"{_fmt(e['error_decades'])} | "
                + " | ".join(_fmt(rt_d[r]) for r in RULES)
                + " | "
                + " | ".join(_fmt(rt_e[r]) for r in RULES)
                + f" | {cost} | {100 * row['cost_fraction_of_grid']:.2f} | "
                f"{'-' if spent is None else f'{100 * spent:.2f}'} |"
            )
    lines.append("")
    for row in (r for r in record["cases"] if "reference_grid" in r):
        g = row["reference_grid"]
        lines += [
            f"- {row['case']}: grid `{g['file']}`, {g['shape'][0]} alphas x {g['shape'][1]} "
            f"betas{' + the alpha = 0 row' if g['alpha_zero_row'] else ''}, beta step "
            f"{g['beta_step_decades']:.2f} decades, {g['cell_iterations_nominal']} cell-iterations "
            f"nominal, {g['cell_iterations_spent']} spent, {g['wall_s']} s wall; alpha* "
            f"{row['alpha_star']:.4g} (grid: {row['reference_alpha_star']:.4g}"
            + (
                "; the grid's largest alpha, so the ladder, which is the grid's, bounds it"
                if row["alpha_star"] == max(g["alphas"])
                else ""
            )
            + f"); advisor {row['wall_s']} s wall; {_check_text(row['advisor'])}. Made by "
            f"`{g['command']}`.",
        ]
    fine_rows = [
        (row, e)
        for row in record["cases"]
        if "reference_grid" in row
        for e in row["edges"]
        if "fine_grid" in e
    ]
    if fine_rows:
        lines += [
            "",
            "Second reference, where the machine had the time: a grid of the same alphas at",
            "twice the beta resolution (the first grid's betas are every other one of it).",
            "",
            "| case | alpha | measured | fine grid bracket | ref width | advisor | "
            + " | ".join(f"rt100 {r}" for r in RULES)
            + " | "
            + " | ".join(f"rt= {r}" for r in RULES)
            + " |",
            "|" + " --- |" * 12,
        ]
        for row, e in fine_rows:
            f = e["fine_grid"]
            lines.append(
                f"| {row['case']} | {e['alpha']:.4g} | {br(e['measured'])} | "
                f"{br(f['bracket'])} | {_fmt(f['width_decades'])} | {_fmt(f['error_decades'])} | "
                + " | ".join(_fmt(f["range_test_errors"]["default"][r]) for r in RULES)
                + " | "
                + " | ".join(_fmt(f["range_test_errors"]["equal_cost"][r]) for r in RULES)
                + " |"
            )
        lines.append("")
        for row in (r for r in record["cases"] if "fine_grid_consistency" in r):
            c = row["fine_grid_consistency"]
            lines.append(
                f"- {row['case']}: fine grid made by `{row['edges'][0]['fine_grid']['command']}`; "
                f"on the {c['shared_cells']} cells both grids trained (alpha = 0 row aside), "
                f"{c['stability_disagreements']} stability verdicts differ and the final losses "
                f"differ by at most {c['max_final_loss_difference']:.3g}."
            )
    med = sm["median_error_decades"]
    lines += [
        f"- Advisor edges inside the grid's bracket: {sm['within_grid_bracket']} of "
        f"{sm['edges']}; within {TOLERANCE} decades of it: {sm['within_tolerance']}.",
        "- Median error (decades): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()) + ".",
    ]
    if "fine_grid" in sm:
        fg = sm["fine_grid"]
        lines += [
            f"- Against the fine grid: {fg['within_grid_bracket']} of {fg['edges']} edges inside "
            f"its bracket, {fg['within_tolerance']} within {TOLERANCE} decades; median error "
            "(decades): "
            + ", ".join(f"{k} {v:.3f}" for k, v in fg["median_error_decades"].items())
            + ".",
        ]
    lines += [
        f"- Load average when the summary was written: "
        f"{', '.join(f'{x:.2f}' for x in sm['load_average'])}.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "advisor_bench.json")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    ap.add_argument(
        "--make-grid", default=None, choices=[k for k, v in GRID_CASES.items() if "sweep" in v]
    )
    ap.add_argument("--fine", action="store_true", help="with --make-grid: the finer grid")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.make_grid:
        print(make_grid(args.make_grid, fine=args.fine))
        return 0
    record = read_json(args.out) if args.out.exists() else {"cases": []}
    done = {r["case"] for r in record["cases"]}
    for init, variant, seed in cases():
        name = f"{init}/{variant}/seed{seed}"
        if name in done or (args.only and args.only not in name):
            continue
        load = os.getloadavg()
        row = run_case(init, variant, seed)
        row["load_average_at_start"] = load
        record["cases"].append(row)
        print(f"{name}: {row['wall_s']} s (load {load[0]:.2f})", file=sys.stderr, flush=True)
        atomic_write_text(args.out, dumps(record))
    for name, case in GRID_CASES.items():
        if name in done or (args.only and args.only not in name):
            continue
        if not (RESULTS / case["file"]).exists():
            print(
                f"{name}: no reference grid {case['file']} yet ({case['command']})", file=sys.stderr
            )
            continue
        load = os.getloadavg()
        row = run_grid_case(name)
        row["load_average_at_start"] = load
        record["cases"].append(row)
        print(f"{name}: {row['wall_s']} s (load {load[0]:.2f})", file=sys.stderr, flush=True)
        atomic_write_text(args.out, dumps(record))
    for row in record["cases"]:
        if "reference_grid" in row and add_fine_reference(row):
            atomic_write_text(args.out, dumps(record))
    sinusoid = [r for r in record["cases"] if "reference_grid" not in r]
    record["summary"] = report(sinusoid)
    grid_rows = [r for r in record["cases"] if "reference_grid" in r]
    if grid_rows:
        record["summary_grid_cases"] = report_grid(grid_rows)
    atomic_write_text(args.out, dumps(record))
    atomic_write_text(args.out.with_suffix(".md"), markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
