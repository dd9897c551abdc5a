"""The paper's trained-model figures on sinusoid regression: Fig. 1 and Fig. 5 (Appendix B).

Fig. 1 (Section 2.2): the per-task gradient norm (norm per task, then the task average) and the
mean inner product of different tasks' gradients during training, joint training (alpha = 0)
against MAML (alpha = 1e-2), beta = 1e-3, Adam, "other settings ... as in Section 4.1"
(MLP 1-40-40-1, K = 10, 100 tasks, one inner step); the paper trains 50000 iterations.

Fig. 5 (Appendix B): the largest and second-largest eigenvalues of Tg, H^2 and Tg + H^2 and the
Frobenius norms of Tg and H^2 of a sinusoid model trained with alpha = beta = 1e-3 (Section 4.1's
SGD) for 50000 iterations. The paper shows the trained model only; here they are measured at
checkpoints along training (including the end), from :func:`mamlconv.numerics.curvature.spectrum`
and :func:`~mamlconv.numerics.curvature.frobenius_norms` in float64 on the training task pool
(each task's support and query points pooled, the paper's same-data setting).

Both functions write ``<name>.png``, ``<name>.pdf`` and ``<name>.json`` (the plotted numbers,
the configuration, how many iterations actually ran against the paper's, and provenance) and
return the paths. The training itself is :mod:`mamlconv.experiments.engine`'s.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.files import atomic_write_text, jsonable
from mamlconv.plotting import log_cell_edges, pyplot

PAPER_ITERS = 50_000
"""Fig. 1 and Fig. 5 (App. B): "The total number of iterations is 50000"."""
FIG1_DEFAULT_ITERS = 5_000
"""Default for a CPU run: a tenth of the paper's, about a minute on one core."""
FIG5_DEFAULT_ITERS = 5_000
"""Default for a CPU run; the curvature measurements dominate the cost."""
FIG1_ALPHAS = (0.0, 1e-2)  # Fig. 1: joint training and MAML
FIG1_BETA = 1e-3  # Fig. 1 caption
FIG5_ALPHA = FIG5_BETA = 1e-3  # App. B: "alpha and beta are both 1e-3"


def _sinusoid_config(**changes: Any):
    from mamlconv.experiments.problems import get_preset

    return get_preset("sinusoid", "paper").replace(**changes)


def _save(fig: Any, out_dir: Path, name: str, record: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf", out_dir / f"{name}.json"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    # A fixed creation date keeps the PDF bytes reproducible.
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    atomic_write_text(paths[2], json.dumps(jsonable(record), indent=1) + "\n")
    return paths


def _pool(tasks: int | None) -> dict[str, int]:
    """Config changes for a task pool of ``tasks`` (None: Section 4.1's 100), full batch."""
    if tasks is None:
        return {}
    return {"pool_size": tasks, "tasks_per_batch": tasks}


def _ran_note(iters: int) -> str:
    if iters == PAPER_ITERS:
        return f"{iters} iterations, as the paper"
    return f"{iters} iterations (the paper: {PAPER_ITERS}; shortened for time)"


# ------------------------------------------------------------------------------------- Fig. 1


def fig1_data(
    *,
    iters: int,
    device: str = "auto",
    seed: int = 0,
    record_every: int | None = None,
    tasks: int | None = None,
):
    """Train joint (alpha = 0) and MAML (alpha = 1e-2) cells together; return the CellRun.

    Both cells start from the same initial parameters and see the same tasks (the engine's
    guarantee); Adam with beta = 1e-3 as the caption. The gradient statistics are the
    engine's ``grad_norm`` (task mean of ||grad L_tau(theta)|| on the support data) and
    ``grad_inner`` (mean over task pairs tau != tau' of <grad L_tau, grad L_tau'>).
    """
    from mamlconv.experiments.engine import train_cells
    from mamlconv.experiments.problems import get_problem
    from mamlconv.progress import Eta

    if record_every is None:
        record_every = max(1, iters // 250)
    config = _sinusoid_config(
        **_pool(tasks),
        alphas=FIG1_ALPHAS,
        betas=(FIG1_BETA,),
        alpha_zero_row=False,  # alpha = 0 is already one of the two cells
        outer="adam",  # Fig. 1 caption
        iters=iters,
        record_every=record_every,
        seed=seed,
        device=device,
        save_params="none",
    )
    problem = get_problem("sinusoid", **config.problem_options)
    eta = Eta("figure fig1", iters, unit="iterations")
    run = train_cells(
        problem,
        config,
        np.asarray(FIG1_ALPHAS),
        np.full(2, FIG1_BETA),
        progress=lambda t, _active: eta.advance(t - eta.done),
    )
    eta.finish()
    return config, run


def fig1(
    out_dir: str | os.PathLike[str],
    *,
    iters: int = FIG1_DEFAULT_ITERS,
    device: str = "auto",
    seed: int = 0,
    tasks: int | None = None,
) -> list[Path]:
    """Paper Fig. 1: gradient norm and gradient inner products, joint training vs MAML.

    ``tasks`` shrinks the task pool (None: the paper's 100; smaller only for quick tests).
    """
    from mamlconv.experiments.engine import resolve_device
    from mamlconv.provenance import describe

    start = time.perf_counter()
    config, run = fig1_data(iters=iters, device=device, seed=seed, tasks=tasks)
    wall = time.perf_counter() - start
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    its = run.record_iters
    labels = {0: "joint training (α = 0)", 1: "MAML (α = 1e-2)"}
    panels = [
        ("grad_norm", "mean per-task gradient norm", "log"),
        ("grad_inner", "mean gradient inner product\n(different tasks)", "symlog"),
        ("loss", "training loss (query, after adaptation)", "log"),
    ]
    for ax, (field, title, scale) in zip(axes, panels, strict=True):
        values = getattr(run, field)
        for c in (0, 1):
            ax.plot(its, values[c], label=labels[c], lw=1.2)
        ax.set_yscale(scale)
        ax.set_xlabel("iteration")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Fig. 1 (sinusoid, β = {FIG1_BETA:g}, Adam, seed {seed}): {_ran_note(iters)}",
        fontsize=10,
    )
    fig.tight_layout()
    summary = {
        labels[c]: {
            "grad_norm_first": float(run.grad_norm[c, 0]),
            "grad_norm_last": float(run.grad_norm[c, -1]),
            "grad_norm_max": float(np.nanmax(run.grad_norm[c])),
            "grad_inner_first": float(run.grad_inner[c, 0]),
            "grad_inner_last": float(run.grad_inner[c, -1]),
            "loss_last": float(run.loss[c, -1]),
        }
        for c in (0, 1)
    }
    record = {
        "figure": "fig1",
        "paper": "Takagi et al. 2019, Fig. 1 (Section 2.2)",
        "what_ran": _ran_note(iters),
        "iters": iters,
        "paper_iters": PAPER_ITERS,
        "wall_seconds": wall,
        "alphas": list(FIG1_ALPHAS),
        "beta": FIG1_BETA,
        "record_iters": its,
        "grad_norm": run.grad_norm,
        "grad_inner": run.grad_inner,
        "loss": run.loss,
        "loss_pre": run.loss_pre,
        "diverged_at": run.diverged_at,
        "summary": summary,
        "config": config.to_dict(),
        "provenance": describe(str(resolve_device(config.device))),
    }
    paths = _save(fig, Path(out_dir), "fig1", record)
    plt.close(fig)
    return paths


# ------------------------------------------------------------------------------------- Fig. 5


def checkpoints(iters: int, *, n: int = 8) -> list[int]:
    """0, about ``n`` log-spaced iterations, and ``iters`` (sorted, distinct)."""
    pts = {0, iters}
    if iters > 1:
        pts |= {int(round(v)) for v in np.geomspace(1, iters, n)}
    return sorted(p for p in pts if 0 <= p <= iters)


def curvature_at(
    problem: Any,
    params: dict[str, Any],
    tasks: Any,
    *,
    k: int = 2,
    n_probes: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Top-``k`` eigenvalues of Tg, H^2, Tg + H^2 and Frobenius norms of Tg, H^2 (float64).

    ``tasks`` is the training pool; the operators are task means on pooled data (curvature.py).
    """
    import torch

    from mamlconv.numerics import curvature

    p64 = {n: v.detach().to(torch.float64) for n, v in params.items()}
    t64 = tasks.to(p64[next(iter(p64))].device, torch.float64)
    out: dict[str, Any] = {}
    for op in ("tg", "h2", "tg_plus_h2"):
        res = curvature.spectrum(problem.loss, p64, t64, operator=op, k=k, which="LA", seed=seed)
        order = np.argsort(res.eigenvalues)[::-1]
        out[op] = {
            "eigenvalues": res.eigenvalues[order],
            "residuals": res.residuals[order],
            "n_matvecs": res.n_matvecs,
        }
    out["frobenius"] = curvature.frobenius_norms(
        problem.loss, p64, t64, n_probes=n_probes, seed=seed
    )
    return out


def fig5_data(
    *,
    iters: int,
    device: str = "auto",
    seed: int = 0,
    n_checkpoints: int = 8,
    n_probes: int = 100,
    tasks: int | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Train one sinusoid cell (alpha = beta = 1e-3, SGD, exact MAML; Section 4.1 otherwise)
    and measure :func:`curvature_at` at the :func:`checkpoints`; returns (config, records).

    ``n_probes``: Hutchinson probes of the Frobenius norms; ``tasks`` shrinks the pool (tests).
    """
    import torch

    from mamlconv.experiments.engine import initial_state, make_step, resolve_device, resolve_dtype
    from mamlconv.experiments.problems import get_problem
    from mamlconv.progress import Eta

    config = _sinusoid_config(
        **_pool(tasks),
        alphas=(FIG5_ALPHA,),
        betas=(FIG5_BETA,),
        alpha_zero_row=False,
        iters=iters,
        seed=seed,
        device=device,
    )
    dev, dtype = resolve_device(config.device), resolve_dtype(config.dtype)
    problem = get_problem("sinusoid", **config.problem_options)
    init, stream = initial_state(problem, config, dtype=dtype, device=dev)
    if stream.pool is None or config.tasks_per_batch != config.pool_size:
        raise AssertionError("fig5 measures on the full fixed task pool of Section 4.1")
    step = make_step(problem, variant=config.variant, steps=config.steps)
    params = {n: p.unsqueeze(0) for n, p in init.items()}  # one cell
    alpha = torch.tensor([FIG5_ALPHA], dtype=dtype, device=dev)
    marks = set(checkpoints(iters, n=n_checkpoints))
    records: list[dict[str, Any]] = []
    eta = Eta("figure fig5", iters + 1, unit="iterations (with curvature checkpoints)")
    for t in range(iters + 1):
        batch = stream.next()
        need = t < iters
        out = step(params, alpha, batch, need_direction=need, need_stats=False)
        loss = float(out.loss_post[0])
        if t in marks:
            single = {n: p[0] for n, p in params.items()}
            measured = curvature_at(problem, single, stream.pool, n_probes=n_probes, seed=seed)
            records.append({"iteration": t, "maml_loss": loss, **measured})
        if not math.isfinite(loss):
            raise RuntimeError(f"fig5 training diverged at iteration {t} (loss {loss})")
        if need:
            assert out.direction is not None
            params = {n: p - FIG5_BETA * out.direction[n] for n, p in params.items()}
        eta.advance(note=f"checkpoint {len(records)}/{len(marks)}")
    eta.finish()
    return config, records


def fig5(
    out_dir: str | os.PathLike[str],
    *,
    iters: int = FIG5_DEFAULT_ITERS,
    device: str = "auto",
    seed: int = 0,
    n_checkpoints: int = 8,
    n_probes: int = 100,
    tasks: int | None = None,
) -> list[Path]:
    """Paper Fig. 5: top-2 eigenvalues of Tg, H^2, Tg + H^2 and Frobenius norms along training.

    Options as :func:`fig5_data`; the defaults are the paper's setting.
    """
    from mamlconv.experiments.engine import resolve_device
    from mamlconv.provenance import describe

    start = time.perf_counter()
    config, records = fig5_data(
        iters=iters,
        device=device,
        seed=seed,
        n_checkpoints=n_checkpoints,
        n_probes=n_probes,
        tasks=tasks,
    )
    wall = time.perf_counter() - start
    its = np.array([r["iteration"] for r in records])
    x = its + 1  # a log axis that shows iteration 0
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    names = {"tg": "Tg", "h2": "H²", "tg_plus_h2": "Tg + H²"}
    styles = {"tg": "-o", "h2": "-s", "tg_plus_h2": "--^"}
    for panel, rank in ((0, 0), (1, 1)):
        ax = axes[panel]
        for op, label in names.items():
            vals = [r[op]["eigenvalues"][rank] for r in records]
            ax.plot(x, vals, styles[op], label=label, ms=4, lw=1.2)
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_title(("(a) largest" if rank == 0 else "(b) second-largest") + " eigenvalue")
    ax = axes[2]
    for op in ("tg", "h2"):
        est = np.array([r["frobenius"][op]["estimate"] for r in records])
        err = np.array([r["frobenius"][op]["stderr"] for r in records])
        ax.errorbar(x, est, yerr=err, fmt=styles[op], label=names[op], ms=4, lw=1.2, capsize=2)
    ax.set_yscale("log")
    ax.set_title("(c) Frobenius norm")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("iteration + 1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Fig. 5 (sinusoid, α = β = {FIG5_ALPHA:g}, SGD, seed {seed}): {_ran_note(iters)}",
        fontsize=10,
    )
    fig.tight_layout()
    last = records[-1]
    summary = {
        "iteration": int(last["iteration"]),
        "lambda_max": {op: float(last[op]["eigenvalues"][0]) for op in names},
        "lambda_2": {op: float(last[op]["eigenvalues"][1]) for op in names},
        "frobenius": {op: float(last["frobenius"][op]["estimate"]) for op in ("tg", "h2")},
        "ratio_lambda_max_tg_over_h2": float(
            last["tg"]["eigenvalues"][0] / last["h2"]["eigenvalues"][0]
        ),
        "ratio_frobenius_tg_over_h2": float(
            last["frobenius"]["tg"]["estimate"] / last["frobenius"]["h2"]["estimate"]
        ),
        "relative_gap_lambda_max_tg_plus_h2_vs_h2": float(
            (last["tg_plus_h2"]["eigenvalues"][0] - last["h2"]["eigenvalues"][0])
            / last["h2"]["eigenvalues"][0]
        ),
    }
    record = {
        "figure": "fig5",
        "paper": "Takagi et al. 2019, Fig. 5 (Appendix B)",
        "what_ran": _ran_note(iters) + "; curvature measured at checkpoints along training",
        "iters": iters,
        "paper_iters": PAPER_ITERS,
        "wall_seconds": wall,
        "alpha": FIG5_ALPHA,
        "beta": FIG5_BETA,
        "checkpoints": records,
        "summary": summary,
        "config": config.to_dict(),
        "provenance": describe(str(resolve_device(config.device))),
    }
    paths = _save(fig, Path(out_dir), "fig5", record)
    plt.close(fig)
    return paths


# ------------------------------------------------------------------------------ Fig. 4b / 4c


def boundary_summary(result: Any) -> dict[str, Any]:
    """The Fig. 4 claim in numbers: per alpha the largest stable beta, against alpha = 0.

    ``result`` is a :class:`mamlconv.experiments.results.SweepResult`. "Stable" is Fig. 4's
    coloured cell (not diverged within the run). The paper's claim (Sec. 4, Fig. 4): the maximum
    stable beta near the largest usable alpha (alpha_c, estimated as the largest grid alpha
    with a stable cell) exceeds the one at alpha = 0.
    """
    b = result.boundary()
    b0 = result.alpha0_boundary()
    rows = [
        {
            "alpha": float(a),
            "beta_stable_max": jsonable(lo),
            "beta_next": jsonable(hi),
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
        # (final loss below 0.9 ln(ways)) beside Fig. 4's not-diverged edge.
        chance = math.log(ways)
        learned = result.stable & (result.final_loss < 0.9 * chance)
        for row, mask in zip(rows, learned, strict=True):
            row["beta_learned_max"] = float(result.betas[mask].max()) if mask.any() else None
        stuck = result.stable & ~learned
        summary_chance = {"chance_loss": chance, "n_stable_at_chance": int(stuck.sum())}
    usable = np.flatnonzero(np.isfinite(b.beta_lo))
    out: dict[str, Any] = {"per_alpha": rows}
    if ways:
        out.update(summary_chance)
    beta0 = float(b0.beta_lo[0]) if b0 is not None else math.nan
    out["alpha0_beta_stable_max"] = jsonable(beta0)
    out["alpha0_beta_next"] = jsonable(float(b0.beta_hi[0])) if b0 is not None else None
    if usable.size:
        i_c = int(usable[-1])
        # "near alpha_c": the stable alphas within one decade below the estimate
        near = usable[b.alphas[usable] >= b.alphas[i_c] / 10]
        i_best = int(near[np.argmax(b.beta_lo[near])])
        out["alpha_c_estimate"] = float(b.alphas[i_c])
        out["beta_stable_max_at_alpha_c"] = float(b.beta_lo[i_c])
        out["best_alpha_near_alpha_c"] = float(b.alphas[i_best])
        out["beta_stable_max_near_alpha_c"] = float(b.beta_lo[i_best])
        best = float(b.beta_lo[i_best])
        if math.isfinite(beta0):
            out["ratio_near_alpha_c_vs_alpha0"] = best / beta0
            alpha0_open = b0 is not None and not bool(b0.inside_grid[0])
            if best > beta0:
                out["claim_holds"] = True
                verdict = "holds: the max stable beta near alpha_c exceeds the alpha = 0 one"
            elif alpha0_open:
                out["claim_holds"] = None
                verdict = "undecided: alpha = 0 is stable up to the largest grid beta"
            else:
                out["claim_holds"] = False
                verdict = "fails: no alpha near alpha_c allows a larger stable beta than 0"
            out["claim"] = (
                f"{verdict} ({best:.3g} at alpha {b.alphas[i_best]:.3g} vs {beta0:.3g} at 0)"
            )
    return out


def fig4_fewshot(
    result_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    stem: str | None = None,
) -> list[Path]:
    """Fig. 4b/4c-style map of a few-shot sweep: final training loss per (alpha, beta),
    diverged cells uncoloured, the alpha = 0 edge dashed, each alpha's edge marked; and a JSON
    of :func:`boundary_summary`. Needs no spectra (``mamlconv compare`` adds predictions)."""
    from mamlconv.experiments.results import load_result

    result = load_result(result_path)
    summary = boundary_summary(result)
    cfg = result.config
    plt = pyplot()
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(6.4, 5.0))
    loss = np.where(result.diverged, np.nan, result.final_loss)  # (n_alpha, n_beta)
    a, b = result.alphas, result.betas
    a_edges, b_edges = log_cell_edges(a), log_cell_edges(b)
    finite = loss[np.isfinite(loss)]
    norm = LogNorm(vmin=max(finite.min(), 1e-3), vmax=finite.max()) if finite.size else None
    mesh = ax.pcolormesh(b_edges, a_edges, loss, norm=norm, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label=f"training loss after {cfg.iters} iterations")
    bnd = result.boundary()
    ok = np.isfinite(bnd.beta_lo)
    ax.plot(bnd.beta_lo[ok], a[ok], "w^", ms=5, mec="k", label="largest stable β per α")
    beta0 = summary.get("alpha0_beta_stable_max")
    if beta0 is not None:
        ax.axvline(beta0, color="k", ls="--", lw=1.2, label="largest stable β at α = 0")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("β (meta learning rate)")
    ax.set_ylabel("α (inner learning rate)")
    ax.legend(fontsize=7, loc="lower left")
    opts = cfg.problem_options
    episode = f"{opts['ways']}-way {opts['shots']}-shot, " if "ways" in opts else ""
    ax.set_title(
        f"{cfg.problem}: {episode}"
        f"{cfg.tasks_per_batch} tasks, {cfg.steps} steps, {cfg.variant}, {cfg.iters} it.\n"
        "uncoloured: diverged (non-finite or loss > "
        f"{cfg.divergence_level:g})",
        fontsize=9,
    )
    fig.tight_layout()
    stem = stem or f"{Path(result_path).stem}_fig4"
    record = {
        "figure": "fig4 (few-shot)",
        "paper": "Takagi et al. 2019, Fig. 4b/4c (Section 4.2)",
        "source": str(result_path),
        "config": cfg.to_dict(),
        "run_info": result.run_info,
        "summary": summary,
    }
    paths = _save(fig, Path(out_dir), stem, record)
    plt.close(fig)
    return paths
