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


def range_test(problem, config: SweepConfig, alpha: float, num_iter: int) -> dict:
    """torch-lr-finder's range test on the MAML outer step (see the module docstring)."""
    step = make_step(problem, variant=config.variant, steps=config.steps)
    params, stream = initial_state(problem, config, dtype=torch.float32, device="cpu")
    params = {n: p.unsqueeze(0) for n, p in params.items()}
    alpha_t = torch.tensor([alpha], dtype=torch.float32)
    lrs, smooth, best = [], [], math.inf
    for i in range(num_iter):
        lr = START * (END / START) ** (i / (num_iter - 1))
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


def _grid_reference(variant: str, seed: int, init: str) -> dict | None:
    if init != "torch_default" or seed > 1:
        return None
    import mamlconv

    name = f"sinusoid_{variant}_paper{'_seed1' if seed else ''}.npz"
    rec = mamlconv.load(RESULTS / name).boundary().as_records()[0]
    return {"file": name, "bracket": [rec["beta_lo"], rec["beta_hi"]]}


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def report(rows: list[dict]) -> dict:
    rules = ("stop", "steepest", "min/10")
    print(
        f"{'case':32} {'alpha':>6} {'advisor':>7} "
        + " ".join(f"{'rt100 ' + r:>13}" for r in rules)
        + " "
        + " ".join(f"{'rt= ' + r:>11}" for r in rules)
        + f" {'cost':>6} {'grid%':>6}"
    )
    errors = {"advisor": [], **{f"{k}:{r}": [] for k in ("default", "equal_cost") for r in rules}}
    misses = []
    for row in rows:
        cost = row["advisor"]["cost"]
        for e in row["edges"]:
            rt_d, rt_e = e["range_test"]["default"], e["range_test"]["equal_cost"]
            errors["advisor"].append(e["error_decades"])
            for r in rules:
                errors[f"default:{r}"].append(rt_d["errors"][r])
                errors[f"equal_cost:{r}"].append(rt_e["errors"][r])
            if not e["error_decades"] <= TOLERANCE:
                misses.append(f"{row['case']} alpha {e['alpha']:g}: {e['error_decades']:.3f}")
            print(
                f"{row['case']:32} {e['alpha']:6.3g} {_fmt(e['error_decades']):>7} "
                + " ".join(f"{_fmt(rt_d['errors'][r]):>13}" for r in rules)
                + " "
                + " ".join(f"{_fmt(rt_e['errors'][r]):>11}" for r in rules)
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


def markdown(record: dict) -> str:
    """The committed note: the table and the summary the run printed, as Markdown."""
    rules = ("stop", "steepest", "min/10")
    sm = record["summary"]
    lines = [
        "# Measured advice against the reading runs and LR range tests (sinusoid)",
        "",
        "Written by `nice python benchmarks/advisor_bench.py` (the data: `advisor_bench.json`;",
        "the method and the range-test rule with its source: the benchmark's docstring). Error:",
        "decades from the measured edge (its bracket's geometric midpoint) to the reference",
        "bracket of the committed reading run (0 inside it). Range tests: `rt100` at",
        "torch-lr-finder's default 100 iterations, `rt=` at the advisor's cost per edge.",
        "",
        "| case | alpha | measured | reference | advisor | "
        + " | ".join(f"rt100 {r}" for r in rules)
        + " | "
        + " | ".join(f"rt= {r}" for r in rules)
        + " | cell-iterations | % of 20x20x500 |",
        "|" + " --- |" * 13,
    ]

    def br(pair: list) -> str:
        lo, hi = pair
        return f"[{'-' if lo is None else f'{lo:.4g}'}, {'inf' if hi is None else f'{hi:.4g}'}]"

    for row in record["cases"]:
        cost = row["advisor"]["cost"]
        for e in row["edges"]:
            rt_d, rt_e = (
                e["range_test"]["default"]["errors"],
                e["range_test"]["equal_cost"]["errors"],
            )
            lines.append(
                f"| {row['case']} | {e['alpha']:g} | {br(e['measured'])} | {br(e['reference'])} "
                f"| {_fmt(e['error_decades'])} | "
                + " | ".join(_fmt(rt_d[r]) for r in rules)
                + " | "
                + " | ".join(_fmt(rt_e[r]) for r in rules)
                + f" | {cost['cell_iterations']} | {100 * cost['grid_fraction']:.2f} |"
            )
    med = sm["median_error_decades"]
    lines += [
        "",
        f"- Within {sm['tolerance_decades']} decades: {sm['within_tolerance']} of {sm['edges']} "
        f"edges ({100 * sm['fraction_within']:.0f} %); misses: "
        f"{', '.join(sm['misses']) or 'none'}.",
        f"- Advisor cost: at most {sm['cost_cell_iterations']['max']} cell-iterations "
        f"({100 * sm['grid_fraction_max']:.2f} % of a 20 x 20 x 500 grid), median "
        f"{sm['cost_cell_iterations']['median']:.0f}.",
        f"- Cases with both edges within: {sm['cases_both_within']} of {len(record['cases'])}.",
        f"- alpha* equal to the reading's last stable grid alpha in {sm['alpha_star_agrees']} "
        f"of {len(record['cases'])} cases.",
        "- Against the committed 20 x 20 grids' alpha = 0 bracket (second reference): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sm["grid20_alpha0_errors"].items())
        + " decades.",
        "- Median error (decades): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()) + ".",
        f"- Load average when the summary was written: "
        f"{', '.join(f'{x:.2f}' for x in sm['load_average'])} (2 cores shared by 5 sessions).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS / "advisor_bench.json")
    ap.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
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
    record["summary"] = report(record["cases"])
    atomic_write_text(args.out, dumps(record))
    atomic_write_text(args.out.with_suffix(".md"), markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
