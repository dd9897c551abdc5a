"""Small helpers shared by the claim tests: set-ups through the package's own functions,
flattening, and log-log slopes. Nothing here computes a claim; it only prepares inputs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.paper_checks.verdicts import ClaimAudit


def sinusoid_setup(
    audit: ClaimAudit, *, seed: int, n_tasks: int = 3, hidden: tuple[int, int] = (40, 40)
) -> tuple[Any, dict, Any]:
    """The package's sinusoid problem (MLP 1-h-h-1, ReLU) in float64 with tasks from ``seed``.

    Returns ``(problem, params, tasks)``; ``tasks`` has a leading task axis.
    """
    import torch

    sinusoid = audit.require("mamlconv.experiments.sinusoid", "SinusoidProblem")
    problem = sinusoid.SinusoidProblem(hidden=hidden)
    gen = torch.Generator().manual_seed(seed)
    params = problem.init_params(gen, dtype=torch.float64, device="cpu")
    tasks = problem.sample_tasks(gen, n_tasks, dtype=torch.float64, device="cpu")
    return problem, params, tasks


def one_task(tasks: Any, i: int) -> Any:
    """Task ``i`` of a batch WITHOUT the task axis (what ``task_meta_gradient`` takes)."""
    return type(tasks)(*(t[i] for t in tasks))


def flat(tree: dict) -> Any:
    """A parameter dict as one vector (insertion order)."""
    import torch

    return torch.cat([t.reshape(-1) for t in tree.values()])


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: the order p of y = O(x^p)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    return float(np.polyfit(lx, ly, 1)[0])


def identities_hold(
    builders: Sequence[Callable[[int], Any]], ns: Sequence[int] = (2, 3)
) -> dict[str, bool]:
    """``{'<label> (n=<n>)': holds}`` for theory Identity builders (exact SymPy simplification)."""
    out = {}
    for build in builders:
        for n in ns:
            ident = build(n)
            out[f"{ident.label} (n={n})"] = bool(ident.holds())
    return out


# --------------------------------------------------------------------------- committed results
def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@lru_cache(maxsize=8)
def _sweeps_in(root: str, signature: tuple) -> tuple[tuple[Path, Any], ...]:
    from mamlconv.experiments.results import load_result

    found = []
    for path in sorted(Path(root).rglob("*.npz")):
        if any(part.endswith(".chunks") for part in path.parts):
            continue  # the chunk files of an unfinished sweep
        try:
            found.append((path, load_result(path)))
        except (ValueError, KeyError, OSError):
            continue  # another kind of .npz
    return tuple(found)


def find_sweeps(
    audit: ClaimAudit, *, problem: str, variant: str, required: bool = True
) -> list[tuple[Path, Any]]:
    """Committed sweep result files (``experiments.results`` format) for problem / variant,
    found anywhere under the results folder; when none, NOT-RUN naming the missing file
    (``required``) or an empty list."""
    audit.require("mamlconv.experiments.results", "load_result")
    root = audit.results_dir
    paths = sorted(root.rglob("*.npz")) if root.is_dir() else []
    signature = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
    sweeps = [
        (p, r)
        for p, r in _sweeps_in(str(root), signature)
        if r.config.problem == problem and r.config.variant == variant
    ]
    if not sweeps and required:
        audit.not_run(
            f"result file missing: no {problem} / {variant} sweep under experiments/results/ "
            f"(make one with `mamlconv sweep {problem} --variant {variant} --preset paper "
            f"--out experiments/results/{problem}-{variant}.npz`, or run the audit with --gpu)"
        )
    return sweeps


def find_json_records(audit: ClaimAudit, *, key: str, value: str) -> list[tuple[Path, dict]]:
    """JSON files under the results folder whose top-level ``key`` equals ``value``."""
    import json

    root = audit.results_dir
    found = []
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get(key) == value:
            found.append((path, record))
    return found


def committed_figure_record(audit: ClaimAudit, name: str, *, caption: str) -> dict:
    """The committed ``<name>.json`` of ``mamlconv figure <name>``, cited with its settings and
    commit, its PNG attached; NOT-RUN when no such file is committed."""
    records = find_json_records(audit, key="figure", value=name)
    if not records:
        audit.not_run(
            f"result file missing: experiments/results/**/{name}.json (make it with `mamlconv "
            f"figure {name}`; the audit's --slow tier reruns 5000 iterations)"
        )
    path, record = records[-1]
    audit.cite(
        path,
        iters=record.get("iters"),
        config=record.get("config"),
        commit=record.get("provenance", {}).get("git_commit"),
    )
    png = path.with_suffix(".png")
    if png.is_file():
        audit.attach(png, caption)
    return record


def cite_sweep(audit: ClaimAudit, path: Path, result: Any) -> None:
    """Cite a sweep file with its configuration and the commit that produced it."""
    cfg = result.config
    audit.cite(
        _relative(path, audit.results_dir.parent.parent),
        problem=cfg.problem,
        variant=cfg.variant,
        grid=f"{len(cfg.alphas)} alphas [{cfg.alphas[0]:.3g}, {cfg.alphas[-1]:.3g}] x "
        f"{len(cfg.betas)} betas [{cfg.betas[0]:.3g}, {cfg.betas[-1]:.3g}]",
        iters=cfg.iters,
        tasks_per_batch=cfg.tasks_per_batch,
        task_source=cfg.task_source,
        outer=cfg.outer,
        dtype=cfg.dtype,
        seed=cfg.seed,
        divergence_level=cfg.divergence_level,
        commit=result.provenance.get("git_commit"),
        device=result.provenance.get("device"),
    )


def edge_near_divergence(result: Any) -> dict[str, Any]:
    """Fig. 4's claim recomputed from a sweep's raw numbers (its diverged cells).

    The measured edge per alpha is the package's ``SweepResult.boundary()`` (the upper edge of
    the non-diverged betas). The reference is the alpha = 0 row when the sweep ran it (Fig. 4's
    dashed line), else the smallest alpha. "Near the divergence alpha": the stable rows within
    one decade below alpha_div, the smallest alpha above which every row diverged (the last
    stable row when the grid is coarser than a decade there). The claim holds
    when the largest stable beta there is at or above the first diverged beta of the
    reference, i.e. larger beyond the grid's resolution; ``margin_cells`` counts by how many
    grid cells (a float32 edge is fuzzy by about one cell, docs/engine.md);
    ``holds_at_last_stable`` reads "close to" strictly, at the last row before alpha_div.
    """
    b = result.boundary()
    alphas = np.asarray(b.alphas, dtype=float)
    ref = result.alpha0_boundary()
    ref_label = "alpha = 0 row"
    if ref is None:
        ref, ref_label = b, f"smallest alpha {alphas[0]:.3g}"
        ref_lo, ref_hi = float(b.beta_lo[0]), float(b.beta_hi[0])
    else:
        ref_lo, ref_hi = float(ref.beta_lo[0]), float(ref.beta_hi[0])
    stable_rows = ~np.isnan(b.beta_lo)
    out: dict[str, Any] = {
        "reference": ref_label,
        "reference_bracket": [ref_lo, ref_hi],
        "edge_per_alpha": {
            f"{a:.4g}": [float(f"{lo:.4g}"), float(f"{hi:.4g}")]
            for a, lo, hi in zip(alphas, b.beta_lo, b.beta_hi, strict=True)
        },
    }
    if not stable_rows.any():
        out.update(decidable=False, why="every row of the grid diverged")
        return out
    last_stable = int(np.flatnonzero(stable_rows).max())
    alpha_div = float(alphas[last_stable + 1]) if last_stable + 1 < alphas.size else math.inf
    top = alpha_div if math.isfinite(alpha_div) else float(alphas[-1])
    near = stable_rows & (alphas >= top / 10)
    if not near.any():  # a grid coarser than a decade: the last stable row is the nearest
        near = np.arange(alphas.size) == last_stable
    best = int(np.flatnonzero(near)[np.argmax(b.beta_lo[near])])
    out.update(
        alpha_div=alpha_div,
        alpha_div_inside_grid=math.isfinite(alpha_div),
        alpha_near=float(alphas[best]),
        beta_max_near=float(b.beta_lo[best]),
        beta_max_ratio_to_reference=float(b.beta_lo[best] / ref_lo) if ref_lo > 0 else math.inf,
        alpha_last_stable=float(alphas[last_stable]),
        beta_max_last_stable=float(b.beta_lo[last_stable]),
        profile_near={
            f"{a:.4g}": float(v) for a, v in zip(alphas[near], b.beta_lo[near], strict=True)
        },
    )
    if np.isnan(ref_lo) or math.isinf(ref_hi):
        out.update(decidable=False, why=f"the {ref_label} edge is outside the beta grid")
        return out
    betas = np.asarray(result.betas, dtype=float)
    margin = int(np.searchsorted(betas, b.beta_lo[best]) - np.searchsorted(betas, ref_lo))
    out.update(
        decidable=True,
        holds=bool(b.beta_lo[best] >= ref_hi),
        holds_at_last_stable=bool(b.beta_lo[last_stable] >= ref_hi),
        margin_cells=margin,
        grid_step_decades=float(np.log10(betas[1] / betas[0])) if betas.size > 1 else math.nan,
    )
    return out


@lru_cache(maxsize=2)
def linreg_study_paper(seed: int = 0) -> Any:
    """The App. C study at the paper's settings (shared by S3-8 and X-5 within a session)."""
    from mamlconv.numerics.linreg import linreg_study, torch_generator
    from mamlconv.numerics.losses import sample_linreg

    return linreg_study(sample_linreg(torch_generator(seed), n_points=100))
