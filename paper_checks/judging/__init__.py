"""The judging of the empirical claims: per reading and seed, per reading over seeds, per
claim over readings, from the measurements of :mod:`mamlconv.experiments.readings`, the Fig. 1
records and the committed sweeps. Every rule is stated in docs/readings.md and docs/CLAIMS.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.criteria import diverged
from mamlconv.experiments.readings.matrix import ReadingMatrix, reading_name
from mamlconv.experiments.readings.run import _num, grid_bracket, load_runs
from mamlconv.numerics.boundary import near_divergence_rows

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


READING_TABLE: dict[tuple[bool, bool, bool], str] = {
    # (holds under some reading, fails under some, undecided under some): the claim's verdict
    (True, False, False): "HOLDS",
    (True, True, False): "HOLDS-FOR",
    (True, False, True): "HOLDS-FOR",
    (True, True, True): "HOLDS-FOR",
    (False, True, False): "FAILS",
    (False, True, True): "INCONCLUSIVE",
    (False, False, True): "INCONCLUSIVE",
    (False, False, False): "INCONCLUSIVE",
}
"""How a claim's readings combine into its verdict (docs/CLAIMS.md, "How readings combine",
holds the same table; tests/test_readings.py compares the two). A claim FAILS only when every
reading fails; failing under some readings and undecided under the rest is INCONCLUSIVE, with
the failing readings named. A reading that is itself HOLDS-FOR (it holds for some of its
settings only) counts as holding under some and failing under others."""


def combine_readings(per_reading: Mapping[str, str]) -> dict[str, Any]:
    """The claim verdict of :data:`READING_TABLE` from per-reading verdicts (HOLDS, HOLDS-FOR,
    FAILS, INCONCLUSIVE), with the readings that hold, fail and are undecided, in the order
    given (callers give the literal reading of the paper's sentence first), and ``text``
    naming them in that order."""
    holds = [r for r, v in per_reading.items() if v in ("HOLDS", "HOLDS-FOR")]
    fails = [r for r, v in per_reading.items() if v == "FAILS"]
    undecided = [r for r, v in per_reading.items() if v == "INCONCLUSIVE"]
    partial = any(v == "HOLDS-FOR" for v in per_reading.values())
    verdict = READING_TABLE[(bool(holds), bool(fails) or partial, bool(undecided))]
    names = {
        r: ("holds" if r in holds else "fails" if r in fails else "undecided") for r in per_reading
    }
    return {
        "verdict": verdict,
        "holds_for": holds,
        "fails_for": fails,
        "undecided": undecided,
        "text": "; ".join(f"{r}: {v}" for r, v in names.items()),
    }


def claim_verdict(per_reading: Mapping[str, str]) -> tuple[str, list[str]]:
    """(verdict, readings that hold) of :func:`combine_readings`."""
    combined = combine_readings(per_reading)
    return combined["verdict"], combined["holds_for"]


def verdict_per_variant(table: Sequence[Mapping[str, Any]], column: str) -> dict[str, str]:
    """The claim verdict (:func:`claim_verdict`) of each MAML variant's readings alone, from a
    judged table's ``column`` (e.g. ``verdict_all``)."""
    out = {}
    for variant in ("exact", "first_order"):
        rows = {r["reading"]: r[column] for r in table if f"variant={variant}," in r["reading"]}
        if rows:
            out[variant] = claim_verdict(rows)[0]
    return out


def provisional_tally(table: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many readings of a judged table have some but fewer than MIN_SEEDS seeds, and how
    many of them would alone say HOLDS and FAILS (reported beside a verdict, never counted)."""
    few = [r for r in table if 0 < r["n_seeds"] < MIN_SEEDS]
    return {
        "readings": len(few),
        **{v: sum(r["provisional_all"] == v for r in few) for v in ("HOLDS", "FAILS")},
    }


def why_inconclusive(
    outcomes: Sequence[str],
    *,
    disagree: str = "within the seed spread: the seeds disagree",
    tie: str = "within the measurement's resolution for some seed",
    none: str = "no seed decides",
) -> str:
    """Which cause of INCONCLUSIVE applies to a reading's per-seed (or per-sweep) outcomes:
    ``disagree`` when some are for and some against, else ``tie`` when one is within the
    resolution, else ``none`` (the texts name the unit: seeds by default)."""
    pos = {"yes", "above"} & set(outcomes)
    neg = {"no", "below"} & set(outcomes)
    if pos and neg:
        return disagree
    if "tie" in outcomes:
        return tie
    return none


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


def _near_rule(grid: Mapping[str, Any], criterion: str) -> dict[str, Any]:
    """:func:`near_divergence_rows` of a reading run's coarse grid under ``criterion`` (the
    rows its bisections were run at, :func:`mamlconv.experiments.readings.run.deciding_alphas`)."""
    stable = ~diverged(criterion, max_loss=grid["max_loss"], initial_loss=grid["initial_loss"])
    return near_divergence_rows(np.asarray(grid["alphas"]), stable)


def judge_edges(runs: Iterable[dict[str, Any]], criteria: Sequence[str]) -> Judged:
    """S4-1 per reading x criterion: is the edge near the divergence alpha above alpha = 0's?

    Per seed, the near edge is the highest bisected bracket among the near-divergence rows
    (:func:`mamlconv.numerics.boundary.near_divergence_rows`); it is compared with alpha = 0's
    bracket (above / below / tie).
    Evaluated on all non-diverged cells and on cells that learned.
    """
    judged = Judged("S4-1")
    for name, recs in _by_reading(runs).items():
        for criterion in criteria:
            seeds, out_all, out_learned = [], [], []
            for rec in recs:
                b = rec["bisections"][criterion]
                rows = {r["row"]: r for r in b["rows"]}
                rule = _near_rule(rec["grid"], criterion)
                near_rows = [rows[i] for i in rule["near"] if i in rows]
                entry: dict[str, Any] = {"seed": rec["seed"], "alpha_div": rule["alpha_div"]}
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
            v_all, v_learned = seeded_verdict(out_all), seeded_verdict(out_learned)
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
                    "verdict_all": v_all["verdict"],
                    "verdict_learned": v_learned["verdict"],
                    "provisional_all": v_all["provisional"],
                    "provisional_learned": v_learned["provisional"],
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
                star = _near_rule(g, criterion)["last_stable"]
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
                v = seeded_verdict(outs)
                j.table.append(
                    {
                        "reading": f"{name},criterion={criterion}",
                        "run_reading": name,
                        "criterion": criterion,
                        "n_seeds": len(recs),
                        "seeds": seeds,
                        "verdict_all": v["verdict"],
                        "provisional_all": v["provisional"],
                    }
                )
    return {"a": ja, "b": jb}


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
    combined = combine_readings(per_reading)
    return {
        "statistic": f"median over the last {TAIL_FRACTION:.0%} of the records; resolution: "
        "its interquartile range",
        "seeds": seeds,
        "per_reading": per_reading,
        "per_part": per_part,
        "verdict": combined["verdict"],
        "holds_for": combined["holds_for"],
        "fails_for": combined["fails_for"],
        "readings_text": combined["text"],
    }
