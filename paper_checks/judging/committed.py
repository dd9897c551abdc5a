"""The judging of committed sweeps (one seed, one reading each) at their grid's resolution:
Fig. 4's claim (S4-1 reruns, S4-2, S4-3) and the guideline (S5-1 few-shot), with the one
evidence-sufficiency rule they share.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mamlconv.experiments.criteria import learned, learned_reference
from mamlconv.experiments.problems.registry import get_preset
from mamlconv.numerics.boundary import (
    TIE_CELLS,
    edge_outcome,
    largest_stable,
    near_divergence_rows,
    near_edge_vs_reference,
)
from mamlconv.paper_checks.judging import per_reading_verdict, why_inconclusive

MIN_GRID = 3
"""A committed sweep with fewer alphas or betas than this is a smoke test, not evidence."""


def why_sweep_cannot_decide(result: Any) -> str | None:
    """Why a sweep result cannot decide an edge claim (S4-1..S4-3, S5-1), or None when it can.

    The one evidence-sufficiency rule, the same for every claim that reads the sweep: a grid
    with fewer than MIN_GRID alphas or betas is a smoke test; a run trained shorter, or on
    smaller task batches, than the paper's protocol (the problem's ``paper`` preset) is
    reduced: where a cell diverges depends on how long and on what it trained, so its edges
    are not the paper's. A coarser grid at the paper's protocol still decides, at its
    resolution (a margin within TIE_CELLS is a tie).
    """
    cfg = result.config
    n_alpha, n_beta = np.asarray(result.diverged).shape
    if min(n_alpha, n_beta) < MIN_GRID:
        return f"a {n_alpha} x {n_beta} grid is a smoke test"
    paper = get_preset(cfg.problem, "paper")
    short = []
    if cfg.iters < paper.iters:
        short.append(f"{cfg.iters} of the paper's {paper.iters} iterations")
    if cfg.tasks_per_batch < paper.tasks_per_batch:
        short.append(f"task batch {cfg.tasks_per_batch} of the paper's {paper.tasks_per_batch}")
    if short:
        return f"a reduced run ({', '.join(short)}): its edges are not the paper's"
    return None


def judge_committed_edge(result: Any) -> dict[str, Any]:
    """Fig. 4's claim on one committed sweep, on all non-diverged cells and on learned cells.

    The rule is :func:`mamlconv.numerics.boundary.near_edge_vs_reference`: the largest stable
    beta of the near-divergence rows against the reference's, 'above' / 'below' by more than
    TIE_CELLS grid cells, else 'tie'. Reference: the alpha = 0 row (or the smallest alpha).
    A cell *learned* by :func:`mamlconv.experiments.criteria.learned` against
    :func:`~mamlconv.experiments.criteria.learned_reference`: chance level for classification
    (the same mask as the Fig. 4 panels' ``learned`` criterion), else the reference row's loss
    at iteration 0 (needs the sweep's loss trajectories).
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
    why = why_sweep_cannot_decide(result)
    if why is not None:
        for pop in ("all", "learned"):
            out[pop] = {"outcome": "undecided", "why": why}
        return out
    for pop in ("all", "learned"):
        ok = stable.copy()
        ok0 = ref_stable.copy()
        if pop == "learned":
            ref = learned_reference(result.config.problem_options, ref_init)
            ok &= learned(final_loss=final, initial_loss=ref)
            ok0 &= learned(final_loss=ref_final, initial_loss=ref)
        entry = near_edge_vs_reference(alphas, betas, ok, ok0, divergence=stable)
        if "margin_cells" in entry:
            entry["margin_decades"] = entry["margin_cells"] * step
        out[pop] = entry
    return out


def combine_sweeps(
    per_file: dict[str, dict[str, Any]], parts: tuple[str, ...] = ("all", "learned")
) -> dict[str, dict[str, Any]]:
    """A claim over committed sweeps, one seed and reading each, per part (``all`` and
    ``learned`` cells of :func:`judge_committed_edge`; the readings ``a`` and ``b`` of the
    guideline), each file's part an ``outcome`` (and ``why`` when 'undecided'): ``verdict`` over
    the sweeps that decide
    (:func:`~mamlconv.paper_checks.judging.per_reading_verdict`), INCONCLUSIVE when none does;
    ``decided`` (some sweep decides) and ``why`` (None unless INCONCLUSIVE: the sweeps' own
    reasons when none decides, else :func:`~mamlconv.paper_checks.judging.why_inconclusive`)."""
    out = {}
    for pop in parts:
        entries = [e[pop] for e in per_file.values()]
        decided = [e["outcome"] for e in entries if e["outcome"] != "undecided"]
        if decided:
            verdict = per_reading_verdict(decided)
            why = (
                why_inconclusive(
                    decided,
                    disagree="the sweeps disagree",
                    tie="within the grid's resolution (a margin of at most "
                    f"{TIE_CELLS} cell; a float32 edge is fuzzy by about one cell)",
                )
                if verdict == "INCONCLUSIVE"
                else None
            )
        else:
            verdict = "INCONCLUSIVE"
            why = "; ".join(sorted({e["why"] for e in entries})) or "no committed sweep"
        out[pop] = {"verdict": verdict, "decided": bool(decided), "why": why}
    return out


def judge_committed_guideline(result: Any) -> dict[str, Any]:
    """S5-1 on one committed sweep (one seed, one reading) at its grid's resolution.

    alpha* is the last grid row with a stable cell (``last_stable`` of
    :func:`mamlconv.numerics.boundary.near_divergence_rows`). (a) its edge against alpha = 0's in
    grid cells, :func:`mamlconv.numerics.boundary.edge_outcome`; (b) 'yes' when the lowest
    stable final loss at alpha* is no worse than at alpha = 0, else 'no'. Both 'undecided', with
    ``why``, when the sweep cannot decide (:func:`why_sweep_cannot_decide`), has no alpha = 0
    row, or no stable cell there or at any alpha > 0.
    """
    why = why_sweep_cannot_decide(result)
    if why is not None:
        return {"a_outcome": "undecided", "b_outcome": "undecided", "why": why}
    stable = ~np.asarray(result.diverged)
    betas = np.asarray(result.betas, dtype=float)
    star = near_divergence_rows(result.alphas, stable)["last_stable"]
    st0 = None if result.alpha0 is None else np.asarray(result.alpha0["diverged_at"]) < 0
    if st0 is None or star is None or not st0.any():
        why = "no stable cell at both alpha = 0 and some alpha > 0"
        return {"a_outcome": "undecided", "b_outcome": "undecided", "why": why}
    top0 = int(largest_stable(st0[None, :])[0])
    top = int(largest_stable(stable[star][None, :])[0])
    loss_star = float(np.nanmin(np.where(stable[star], result.final_loss[star], np.nan)))
    loss0 = float(np.nanmin(np.where(st0, result.alpha0["final_loss"], np.nan)))
    return {
        "variant": result.config.variant,
        "alpha_star": float(result.alphas[star]),
        "beta_max_alpha_star": float(betas[top]),
        "beta_max_alpha0": float(betas[top0]),
        "margin_cells": top - top0,
        "grid_step_decades": float(np.log10(betas[1] / betas[0])),
        "a_outcome": edge_outcome(top - top0),
        "best_loss_alpha_star": loss_star,
        "best_loss_alpha0": loss0,
        "b_outcome": "yes" if loss_star <= loss0 else "no",
    }
