"""Fig. 5 (Appendix B): the largest and second-largest eigenvalues of Tg, H^2 and Tg + H^2 and
the Frobenius norms of Tg and H^2 of a sinusoid model trained with alpha = beta = 1e-3 (Section
4.1's SGD) for 50000 iterations. The paper shows the trained model only; here they are measured
at checkpoints along training (including the end), from
:func:`mamlconv.numerics.curvature.spectrum` and
:func:`~mamlconv.numerics.curvature.frobenius_norms` in float64 on the training task pool.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.figures.figure1 import PAPER_ITERS, _pool, _ran_note, _sinusoid_config
from mamlconv.util.plotting import pyplot, save_figure

FIG5_DEFAULT_ITERS = 5_000
"""Default for a CPU run; the curvature measurements dominate the cost."""


FIG5_ALPHA = FIG5_BETA = 1e-3  # App. B: "alpha and beta are both 1e-3"


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

    from mamlconv.experiments.engine.loop import make_step
    from mamlconv.experiments.engine.state import initial_state, resolve_device, resolve_dtype
    from mamlconv.experiments.problems.registry import get_problem
    from mamlconv.util.progress import Eta

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


def frobenius_panel(
    ax: Any,
    x: np.ndarray,
    records: list[dict[str, Any]],
    *,
    n_probes: int,
    styles: dict[str, str],
    names: dict[str, str],
) -> None:
    """Fig. 5 (c): the Frobenius norms of Tg and H^2 with +-1 standard-error bars.

    The legend shows each series' line and marker; the error bars are drawn apart and
    unlabelled, so the legend never shows an error-bar glyph for bars too small to see, and the
    title states how large the largest bar is."""
    rel_err = 0.0
    for i, op in enumerate(("tg", "h2")):
        est = np.array([r["frobenius"][op]["estimate"] for r in records], dtype=float)
        err = np.array([r["frobenius"][op]["stderr"] for r in records], dtype=float)
        ax.plot(x, est, styles[op], label=names[op], ms=4, lw=1.2, color=f"C{i}")
        ax.errorbar(x, est, yerr=err, fmt="none", ecolor=f"C{i}", capsize=2, lw=1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_err = max(rel_err, float(np.nanmax(np.abs(err / est))))
    ax.set_yscale("log")
    ax.set_ylabel("‖·‖_F (estimate)", fontsize=8)
    ax.set_title(
        f"(c) Frobenius norm (Hutchinson, {n_probes} probes;\n"
        f"±1 s.e. bars, at most {100 * rel_err:.2g}% of the value)",
        fontsize=10,
    )


def fig5_figure(records: list[dict[str, Any]], *, iters: int, seed: int, n_probes: int) -> Any:
    """The Fig. 5 figure (three panels) from the checkpoint records of :func:`fig5_data`, as
    stored under ``checkpoints`` in ``fig5.json`` (so a committed record can be redrawn)."""
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
        ax.set_ylabel(f"λ{rank + 1} of each matrix (symlog)", fontsize=8)
    frobenius_panel(axes[2], x, records, n_probes=n_probes, styles=styles, names=names)
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
    return fig


def redraw_fig5(record_path: str | os.PathLike[str]) -> list[Path]:
    """Redraw ``fig5.png`` and ``fig5.pdf`` beside a ``fig5.json`` from its stored checkpoints
    (no training; the JSON is left as it is)."""
    from mamlconv.util.files import read_json

    path = Path(record_path)
    record = read_json(path)
    records = record["checkpoints"]
    n_probes = int(records[-1]["frobenius"]["tg"]["n_probes"])
    plt = pyplot()
    fig = fig5_figure(
        records, iters=int(record["iters"]), seed=int(record["config"]["seed"]), n_probes=n_probes
    )
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return paths


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
    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.util.provenance import describe

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
    plt = pyplot()
    fig = fig5_figure(records, iters=iters, seed=seed, n_probes=n_probes)
    names = ("tg", "h2", "tg_plus_h2")
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
        "provenance": describe(resolve_device(config.device)),
    }
    paths = save_figure(fig, Path(out_dir), "fig5", record)
    plt.close(fig)
    return paths
