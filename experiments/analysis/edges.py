"""Stability edges read from a sweep result: per alpha, the largest stable beta, and the
comparison of the edge near the divergence alpha with the alpha = 0 edge.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mamlconv.experiments.criteria import chance_loss, learned


def boundary_summary(
    result: Any, *, stable: np.ndarray | None = None, stable0: np.ndarray | None = None
) -> dict[str, Any]:
    """The Fig. 4 claim in numbers: per alpha the largest stable beta, against alpha = 0.

    ``result`` is a :class:`mamlconv.experiments.sweep.results.SweepResult`. "Stable" is Fig. 4's
    coloured cell: by default not diverged within the run; ``stable`` (n_alpha, n_beta) and
    ``stable0`` (n_beta,) replace it (another criterion, see
    :func:`mamlconv.experiments.criteria.criteria`).
    The paper's claim (Sec. 4, Fig. 4): the maximum stable beta near the divergence alpha
    exceeds the one at alpha = 0, judged by
    :func:`mamlconv.numerics.boundary.near_edge_vs_reference` (more than TIE_CELLS grid cells
    above: ``claim_holds`` True, below: False, within: None). ``alpha_c_estimate`` is the
    largest grid alpha with a stable cell.
    """
    from mamlconv.numerics.boundary import (
        TIE_CELLS,
        extract_boundary,
        near_divergence_rows,
        near_edge_vs_reference,
    )

    if stable is None:
        b = result.boundary()
        b0 = result.alpha0_boundary()
    else:
        b = extract_boundary(result.alphas, result.betas, stable)
        b0 = (
            None
            if stable0 is None
            else extract_boundary(np.array([0.0]), result.betas, np.asarray(stable0)[None, :])
        )
    rows = [
        {
            "alpha": float(a),
            "beta_stable_max": _number(lo),
            "beta_next": _number(hi),
            "inside_grid": bool(ins),
            "monotone": bool(mono),
        }
        for a, lo, hi, ins, mono in zip(
            b.alphas, b.beta_lo, b.beta_hi, b.inside_grid, b.monotone, strict=True
        )
    ]
    ways = result.config.problem_options.get("ways")
    if ways:
        # Classification: a cell that did not diverge may still sit at chance level (loss
        # ln(ways), e.g. a network whose units died); report the largest beta that LEARNED
        # (criteria.learned against the chance-level loss) beside Fig. 4's not-diverged edge.
        chance = chance_loss(ways)
        learned_cells = result.stable & learned(final_loss=result.final_loss, initial_loss=chance)
        for row, mask in zip(rows, learned_cells, strict=True):
            row["beta_learned_max"] = float(result.betas[mask].max()) if mask.any() else None
        stuck = result.stable & ~learned_cells
        summary_chance = {"chance_loss": chance, "n_stable_at_chance": int(stuck.sum())}
    out: dict[str, Any] = {"per_alpha": rows}
    if ways:
        out.update(summary_chance)
    beta0 = float(b0.beta_lo[0]) if b0 is not None else math.nan
    out["alpha0_beta_stable_max"] = _number(beta0)
    out["alpha0_beta_next"] = _number(b0.beta_hi[0]) if b0 is not None else None
    mask = ~result.diverged if stable is None else np.asarray(stable, dtype=bool)
    last = near_divergence_rows(result.alphas, mask)["last_stable"]
    if last is None:
        return out
    out["alpha_c_estimate"] = float(b.alphas[last])
    out["beta_stable_max_at_alpha_c"] = float(b.beta_lo[last])
    if b0 is None:
        return out
    mask0 = np.asarray(result.alpha0["diverged_at"]) < 0 if stable is None else stable0
    near = near_edge_vs_reference(result.alphas, result.betas, mask, mask0)
    out["alpha_div"] = near["alpha_div"]
    if "edge_near" not in near:
        return out
    best, alpha_best = near["edge_near"], near["alpha_near"]
    out["best_alpha_near_alpha_c"] = alpha_best
    out["beta_stable_max_near_alpha_c"] = best
    if near["outcome"] == "undecided":
        if math.isfinite(beta0):
            out["claim_holds"] = None
            out["claim"] = f"undecided: {near['why']} ({best:.3g} at alpha {alpha_best:.3g})"
        return out
    out["ratio_near_alpha_c_vs_alpha0"] = best / beta0
    out["margin_cells"] = near["margin_cells"]
    out["claim_holds"] = {"above": True, "below": False, "tie": None}[near["outcome"]]
    verdict = {
        "above": "holds: the max stable beta near the divergence alpha exceeds the alpha = 0 one",
        "below": "fails: the max stable beta near the divergence alpha is below the alpha = 0 one",
        "tie": f"undecided: within {TIE_CELLS} grid cell of the alpha = 0 one",
    }[near["outcome"]]
    out["claim"] = (
        f"{verdict} ({best:.3g} at alpha {alpha_best:.3g} vs {beta0:.3g} at 0, "
        f"{near['margin_cells']:+d} cell(s))"
    )
    return out


def _number(x: float) -> float | None:
    """A float for a summary (inf kept: JSON writes it as null with a status), None for NaN."""
    x = float(x)
    return None if math.isnan(x) else x
