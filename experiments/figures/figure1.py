"""Fig. 1 (Section 2.2): the per-task gradient norm (norm per task, then the task average) and
the mean inner product of different tasks' gradients during training, joint training
(alpha = 0) against MAML (alpha = 1e-2), beta = 1e-3, Adam, "other settings ... as in Section
4.1" (MLP 1-40-40-1, K = 10, 100 tasks, one inner step); the paper trains 50000 iterations.

:func:`fig1` writes ``fig1.png``, ``.pdf`` and ``.json`` (the plotted numbers, the
configuration, how many iterations ran against the paper's, and provenance).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.util.plotting import pyplot, save_figure


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


PAPER_ITERS = 50_000
"""Fig. 1 and Fig. 5 (App. B): "The total number of iterations is 50000"."""


FIG1_DEFAULT_ITERS = 5_000
"""Default for a CPU run: a tenth of the paper's, about a minute on one core."""


FIG1_ALPHAS = (0.0, 1e-2)  # Fig. 1: joint training and MAML


FIG1_BETA = 1e-3  # Fig. 1 caption


def _sinusoid_config(**changes: Any):
    from mamlconv.experiments.problems.registry import get_preset

    return get_preset("sinusoid", "paper").replace(**changes)


def _pool(tasks: int | None) -> dict[str, int]:
    """Config changes for a task pool of ``tasks`` (None: Section 4.1's 100), full batch."""
    if tasks is None:
        return {}
    return {"pool_size": tasks, "tasks_per_batch": tasks}


def _ran_note(iters: int) -> str:
    if iters == PAPER_ITERS:
        return f"{iters} iterations, as the paper"
    return f"{iters} iterations (the paper: {PAPER_ITERS}; shortened for time)"


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
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.problems.registry import get_problem
    from mamlconv.util.progress import Eta

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
    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.util.provenance import describe

    start = time.perf_counter()
    config, run = fig1_data(iters=iters, device=device, seed=seed, tasks=tasks)
    wall = time.perf_counter() - start
    fig = fig1_figure(run.record_iters, run.grad_norm, run.grad_inner, run.loss, iters=iters,
                      seed=seed)  # fmt: skip
    its = run.record_iters
    labels = FIG1_LABELS
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
        "provenance": describe(resolve_device(config.device)),
    }
    paths = save_figure(fig, Path(out_dir), "fig1", record)
    pyplot().close(fig)
    return paths


FIG1_LABELS = {0: "joint training (α = 0)", 1: "MAML (α = 1e-2)"}
"""Legend of the two rows of Fig. 1 (row 0: alpha = 0, row 1: the paper's alpha)."""


def fig1_figure(
    record_iters: Any, grad_norm: Any, grad_inner: Any, loss: Any, *, iters: int, seed: int
) -> Any:
    """The Fig. 1 figure (three panels, joint training against MAML) from the curves that
    ``fig1.json`` stores, so a committed record can be redrawn without training."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    its = np.asarray(record_iters)
    panels = [
        (grad_norm, "mean per-task gradient norm", "log", "‖∇L_i(θ)‖, mean over tasks"),
        (grad_inner, "mean gradient inner product\n(different tasks)", "symlog",
         "∇L_i(θ)ᵀ∇L_j(θ), i ≠ j (symlog)"),
        (loss, "training loss (query, after adaptation)", "log", "loss"),
    ]  # fmt: skip
    for ax, (values, title, scale, ylabel) in zip(axes, panels, strict=True):
        values = np.asarray(values, dtype=float)
        for c in (0, 1):
            ax.plot(its, values[c], label=FIG1_LABELS[c], lw=1.2)
        ax.set_yscale(scale)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Fig. 1 (sinusoid, β = {FIG1_BETA:g}, Adam, seed {seed}): {_ran_note(iters)}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def redraw_fig1(record_path: str | os.PathLike[str]) -> list[Path]:
    """Redraw ``fig1.png`` and ``fig1.pdf`` beside a ``fig1.json`` from its stored curves (no
    training; the JSON is left as it is)."""
    from mamlconv.util.files import read_json

    path = Path(record_path)
    rec = read_json(path)
    fig = fig1_figure(rec["record_iters"], rec["grad_norm"], rec["grad_inner"], rec["loss"],
                      iters=int(rec["iters"]), seed=int(rec["config"]["seed"]))  # fmt: skip
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    pyplot().close(fig)
    return paths
