"""Fig. 4 for any sweep result: final training loss over the alpha x beta grid, one style.

The paper's Fig. 4 (Section 4, panels a-c) colours each (alpha, beta) cell by the training loss
after the run and leaves diverged cells blank; a dashed line marks the beta above which joint
training (alpha = 0) diverges. Every Fig. 4 of this package -- ``mamlconv figure fig4`` for the
sinusoid, Omniglot and MiniImagenet sweeps, and the panels of ``mamlconv compare`` -- is drawn by
:func:`draw_panel`, in one orientation and on one colour scale:

- alpha (inner rate) on the horizontal axis, beta (meta rate) on the vertical axis, both
  logarithmic (the orientation of the paper's Fig. 2, whose curves beta_c(alpha) it tests);
- colour: the final training loss of each cell on a logarithmic scale (stated on the colour bar);
  cells that fail the stability criterion are blank;
- a dashed horizontal line at the alpha = 0 edge: the cell boundary between the largest stable
  and the smallest unstable beta of the alpha = 0 row;
- optional overlays: the measured edge of each alpha column (a red step on the cell boundary),
  and predicted beta_c(alpha) curves. A prediction of 0 ("nothing converges") is not a value on
  a log axis: it is drawn as a separate symbol (a red cross) on the horizontal axis, with its own
  legend entry; a prediction of infinity ("every beta converges") as a caret on the top axis.

The stability criterion defaults to the result's own divergence record (a cell is stable when its
loss stayed finite and below the sweep's ``divergence_level``); :func:`criteria` lists the others
a result supports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.analysis.comparison import Prediction, predictions_from_json
from mamlconv.experiments.criteria import Criterion, get_criterion
from mamlconv.util.plotting import log_cell_edges, pyplot

_STYLES = {
    "formula": ("m", "o"),
    "surrogate": ("C1", "s"),
    "meta": ("C0", "^"),
}


def loss_norm(*results_and_masks: tuple[Any, np.ndarray]) -> Any:
    """One logarithmic colour scale over the final losses of the stable cells of every panel."""
    from matplotlib.colors import LogNorm

    values = [r.final_loss[m] for r, m in results_and_masks]
    finite = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in values]) if values else []
    if len(finite) == 0:
        return LogNorm(vmin=1e-2, vmax=1.0)
    lo, hi = float(np.min(finite)), float(np.max(finite))
    if hi <= lo:
        hi = lo * 10
    return LogNorm(vmin=lo, vmax=hi)


def _alpha0_edge(betas: np.ndarray, stable0: np.ndarray) -> tuple[float, str]:
    """Where the dashed line goes (a cell boundary of the beta axis) and its legend text."""
    edges = log_cell_edges(betas)
    ok = np.flatnonzero(stable0)
    if ok.size == 0:
        return float(edges[0]), "α = 0: no β stable"
    j = int(ok[-1])
    if j == betas.size - 1:
        return float(edges[-1]), "α = 0: stable up to the largest β"
    return float(edges[j + 1]), f"α = 0 edge: β ∈ [{betas[j]:.3g}, {betas[j + 1]:.3g}]"


def draw_panel(
    ax: Any,
    result: Any,
    *,
    criterion: Criterion,
    norm: Any,
    edge: bool = False,
    predictions: list[Prediction] | tuple[Prediction, ...] = (),
    extra_edge: tuple[str, np.ndarray] | None = None,
) -> Any:
    """Draw one Fig. 4 panel of ``result`` on ``ax``; returns the colour mesh (for a bar).

    ``extra_edge``: (label, beta per alpha) of another measured edge (e.g. a float64 re-check),
    drawn as black crosses at the given betas (NaN: none)."""
    alphas = np.asarray(result.alphas, dtype=float)
    betas = np.asarray(result.betas, dtype=float)
    a_edges, b_edges = log_cell_edges(alphas), log_cell_edges(betas)
    loss = np.where(criterion.stable, result.final_loss, np.nan)  # (n_alpha, n_beta)
    mesh = ax.pcolormesh(a_edges, b_edges, loss.T, norm=norm, cmap="viridis", shading="flat")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(a_edges[0], a_edges[-1])
    ax.set_ylim(b_edges[0], b_edges[-1])
    if criterion.stable0 is not None:
        y0, text = _alpha0_edge(betas, criterion.stable0)
        ax.axhline(y0, color="k", ls="--", lw=1.4, label=text)
    if edge:
        first = True
        for i in range(alphas.size):
            ok = np.flatnonzero(criterion.stable[i])
            if ok.size == 0 or ok[-1] == betas.size - 1:
                continue  # no edge inside the grid in this column
            y = b_edges[ok[-1] + 1]
            ax.plot(
                a_edges[i : i + 2],
                [y, y],
                color="tab:red",
                lw=1.8,
                solid_capstyle="butt",
                label="measured edge per α" if first else None,
            )
            first = False
    if extra_edge is not None:
        label, beta = extra_edge
        ax.plot(alphas, beta, linestyle="none", marker="x", color="k", ms=7, label=label)
    _draw_predictions(ax, predictions)
    ax.set_xlabel("α (inner learning rate)")
    ax.set_ylabel("β (meta learning rate)")
    return mesh


def _draw_predictions(ax: Any, predictions: list[Prediction] | tuple[Prediction, ...]) -> None:
    from matplotlib.transforms import blended_transform_factory

    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    n_zero, inf_labelled = 0, False
    for i, pred in enumerate(predictions):
        color, marker = _STYLES.get(pred.kind or "", (f"C{(i + 4) % 10}", "D"))
        beta = np.asarray(pred.beta_c, dtype=float)
        positive = np.where((beta > 0) & np.isfinite(beta), beta, np.nan)
        if pred.point == "init":
            ax.plot(pred.alphas, positive, "-", color=color, lw=1.8, label=pred.label)
        else:
            ax.plot(
                pred.alphas,
                positive,
                linestyle="none",
                marker=marker,
                ms=6,
                markerfacecolor="none",
                mew=1.5,
                color=color,
                label=pred.label,
            )
        zero = pred.alphas[beta == 0]
        if zero.size:
            # Not a value: a cross in the curve's colour sitting on the alpha axis (curves that
            # share an alpha are stacked upwards), with one legend entry for all of them.
            ax.plot(
                zero,
                np.full(zero.shape, 0.03 * n_zero),
                linestyle="none",
                marker="X",
                color=color,
                mec="k",
                mew=0.6,
                ms=8,
                transform=bottom,
                clip_on=False,
                zorder=5,
                label=None if n_zero else "× on the α axis: predicts β_c = 0 (nothing converges)",
            )
            n_zero += 1
        inf = pred.alphas[np.isposinf(beta)]
        if inf.size:
            ax.plot(
                inf,
                np.ones_like(inf),
                linestyle="none",
                marker="^",
                color=color,
                ms=7,
                transform=bottom,
                clip_on=False,
                zorder=5,
                label=None if inf_labelled else "predicts β_c = ∞ (every β converges)",
            )
            inf_labelled = True


def colorbar(fig: Any, mesh: Any, ax: Any, *, iters: int, blank: str) -> Any:
    """The one colour bar of Fig. 4: final training loss, logarithmic scale, what blank means."""
    return fig.colorbar(
        mesh, ax=ax, label=f"training loss after {iters} iterations (log scale)\n{blank}"
    )


def describe_run(result: Any) -> str:
    """One line naming the problem and the settings that shape the map."""
    cfg = result.config
    opts = cfg.problem_options
    episode = f"{opts['ways']}-way {opts.get('shots', 1)}-shot, " if "ways" in opts else ""
    return (
        f"{cfg.problem}: {episode}{cfg.variant} MAML, {cfg.tasks_per_batch} tasks, "
        f"{cfg.steps} step{'s' if cfg.steps != 1 else ''}, {cfg.iters} it., {cfg.dtype}, "
        f"seed {cfg.seed}"
    )


def panel_figure(
    result: Any,
    *,
    ax: Any = None,
    criterion: str | None = None,
    predictions: list[Prediction] | tuple[Prediction, ...] = (),
    edge: bool = True,
) -> Any:
    """Fig. 4 of one in-memory sweep result as a matplotlib Figure, nothing written: the
    panel, its colour bar, title and legend. ``ax``: draw into this Axes (its figure is
    returned; the colour bar is added beside it)."""
    crit = get_criterion(result, criterion)
    if ax is None:
        fig, ax = pyplot().subplots(figsize=(6.6, 5.6), constrained_layout=True)
    else:
        fig = ax.figure
    norm = loss_norm((result, crit.stable))
    mesh = draw_panel(ax, result, criterion=crit, norm=norm, edge=edge, predictions=predictions)
    colorbar(fig, mesh, ax, iters=result.config.iters, blank=crit.description)
    ax.set_title(f"Fig. 4 — {describe_run(result)}", fontsize=9)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2,
                  frameon=False)  # fmt: skip
    return fig


def fig4(
    result_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    criterion: str | None = None,
    overlay: str | os.PathLike[str] | None = None,
    edge: bool = True,
    stem: str | None = None,
) -> list[Path]:
    """Paper Fig. 4 of one sweep result: ``<stem>.png``, ``.pdf`` and ``.json`` in ``out_dir``.

    ``criterion``: a name from :func:`criteria` (default ``diverged``, the sweep's own record);
    ``overlay``: a prediction file for :func:`predictions_from_json`; ``edge``: draw the measured
    edge of each alpha column. The JSON holds the configuration, the criterion and
    :func:`mamlconv.experiments.analysis.edges.boundary_summary` under that criterion.
    """
    from mamlconv.experiments.analysis.edges import boundary_summary
    from mamlconv.experiments.sweep.results import load_result
    from mamlconv.util.plotting import save_figure

    result = load_result(result_path)
    crit = get_criterion(result, criterion)
    preds = predictions_from_json(overlay) if overlay is not None else []
    fig = panel_figure(result, criterion=criterion, predictions=preds, edge=edge)
    summary = boundary_summary(result, stable=crit.stable, stable0=crit.stable0)
    record = {
        "figure": "fig4",
        "paper": "Takagi et al. 2019, Fig. 4 (Section 4)",
        "source": Path(result_path).name,
        "criterion": {"name": crit.name, "blank": crit.description},
        "overlay": None if overlay is None else str(overlay),
        "colour": "final training loss, logarithmic scale",
        "config": result.config.to_dict(),
        "run_info": result.run_info,
        "summary": summary,
    }
    stem = stem or f"{Path(result_path).stem}_fig4"
    paths = save_figure(fig, Path(out_dir), stem, record)
    pyplot().close(fig)
    return paths
