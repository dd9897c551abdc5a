"""The comparison figure and files of ``mamlconv compare``: the Fig. 4 panel of a sweep with
the predicted beta_c(alpha) curves over it, and the Markdown/JSON/PNG writer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.analysis.comparison import (
    LABELS,
    Comparison,
    _json,
    comparison_record,
    markdown_table,
)
from mamlconv.experiments.criteria import get_criterion
from mamlconv.experiments.figures.figure4 import colorbar, describe_run, draw_panel, loss_norm
from mamlconv.experiments.sweep.results import SweepResult
from mamlconv.util.files import atomic_write_text, dumps
from mamlconv.util.plotting import pyplot


def prediction_curves(cmp: Comparison) -> list[Any]:
    """The comparison's predictions as Fig. 4 overlay curves, one per (point, prediction)."""
    from mamlconv.experiments.analysis.comparison import Prediction

    return [
        Prediction(f"{LABELS[name]} ({p})", cmp.alphas, values, p, name)
        for p, preds in cmp.predictions.items()
        for name, values in preds.items()
    ]


def heatmap(
    cmp: Comparison, result: SweepResult, path: Path, recheck: dict[str, Any] | None = None
) -> Path:
    """Fig. 4 of the sweep (:func:`mamlconv.experiments.figures.figure4.draw_panel`) with the
    predictions
    drawn over it: one panel per point (init, trained), each with the three predictions and the
    measured edge; the re-checked edge, when given, as crosses."""
    return draw_comparison(prediction_curves(cmp), result, path, recheck)


def draw_comparison(
    curves: list[Any], result: SweepResult, path: Path, recheck: dict[str, Any] | None = None
) -> Path:
    """Write the comparison figure of :func:`comparison_figure` to ``path`` (PNG)."""
    plt = pyplot()
    fig = comparison_figure(curves, result, recheck)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def comparison_figure(
    curves: list[Any], result: SweepResult, recheck: dict[str, Any] | None = None
) -> Any:
    """The comparison figure from prediction curves (from a :class:`Comparison`, or read back
    from a comparison JSON with
    :func:`mamlconv.experiments.analysis.comparison.predictions_from_json`): one
    Fig. 4 panel per point, one colour scale."""
    crit = get_criterion(result, None)
    points = list(dict.fromkeys(c.point for c in curves)) or [None]
    plt = pyplot()
    fig, axes = plt.subplots(
        1, len(points), figsize=(6.4 * len(points), 6.2), constrained_layout=True, squeeze=False
    )
    norm = loss_norm((result, crit.stable))
    extra = None
    if recheck is not None:
        rows = recheck["boundary"]
        mid = np.array(
            [math.sqrt(r["beta_lo"] * r["beta_hi"]) if r["inside_grid"] else math.nan for r in rows]
        )
        extra = (f"edge re-checked in {recheck['recheck']['dtype']}", mid)
    mesh = None
    for ax, point in zip(axes[0], points, strict=True):
        mine = [c for c in curves if c.point == point]
        mesh = draw_panel(
            ax, result, criterion=crit, norm=norm, edge=True, predictions=mine, extra_edge=extra
        )
        where = {
            None: "measured edge only",
            "init": "predictions at the initial parameters",
            "trained": "predictions at each α's trained point",
        }.get(point, f"predictions at {point}")
        ax.set_title(where, fontsize=10)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    colorbar(fig, mesh, axes[0].tolist(), iters=result.config.iters, blank=crit.description)
    what = "with predictions of β_c" if curves else "and its measured edge"
    fig.suptitle(f"Fig. 4 {what} — {describe_run(result)}", fontsize=10)
    return fig


def write_comparison(
    cmp: Comparison,
    result: SweepResult,
    out_dir: str | Path,
    *,
    source: str,
    stem: str,
    recheck: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.json`` and ``<stem>.png`` into ``out_dir``."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{stem}.md", "json": out / f"{stem}.json", "png": out / f"{stem}.png"}
    atomic_write_text(paths["md"], markdown_table(cmp, result, recheck))
    record = comparison_record(cmp, result, source)
    if recheck is not None:
        record["recheck"] = _json(recheck)
    atomic_write_text(paths["json"], dumps(record))
    heatmap(cmp, result, paths["png"], recheck)
    return paths
