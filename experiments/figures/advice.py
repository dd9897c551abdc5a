"""The figure of ``mamlconv advise --measure``: every trained cell of the search over the
predictions of beta_c, on log alpha (alpha = 0 drawn at the left edge, half a decade below
the smallest alpha tried) and log beta.

Stable cells are filled circles, diverged cells crosses; each measured edge is a bracket (a
vertical bar from its largest stable beta to its smallest diverged beta); the four
predictions of :mod:`mamlconv.experiments.analysis.advisor` at each edge's alpha are open
markers; the recommendation (alpha*, beta*) is a star, alpha_div a dashed vertical line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mamlconv.util.plotting import pyplot, save_figure

MARKERS = {"formula": "v", "formula_variant": "^", "surrogate": "s", "meta": "D"}


def _x(alpha: float, zero_at: float) -> float:
    return zero_at if alpha == 0 else alpha


def advice_figure(record: dict[str, Any]) -> Any:
    """The Figure of one measured-advice record (``MeasuredAdvice.as_dict()``)."""
    plt = pyplot()
    trials = record["trials"]
    positive = [t["alpha"] for t in trials if t["alpha"] > 0] or [1e-3]
    zero_at = min(positive) / 10**0.5
    fig, ax = plt.subplots(figsize=(6.4, 4.6), layout="constrained")
    for stable, style in ((True, {"marker": "o", "color": "tab:blue"}), (False, {})):
        pts = [t for t in trials if t["stable"] == stable]
        if not pts:
            continue
        xs = [_x(t["alpha"], zero_at) for t in pts]
        ys = [t["beta"] for t in pts]
        if stable:
            ax.scatter(xs, ys, s=22, label="trained the horizon", zorder=3, **style)
        else:
            ax.scatter(xs, ys, s=30, marker="x", color="tab:red", label="diverged", zorder=3)
    for i, edge in enumerate(record["measured_edges"]):
        x = _x(edge["alpha"], zero_at)
        hi = edge["hi"] if edge["hi"] is not None else max(t["beta"] for t in trials)
        lo = edge["lo"] if edge["lo"] is not None else min(t["beta"] for t in trials)
        ax.plot(
            [x / 1.15, x / 1.15],
            [lo, hi],
            color="black",
            lw=2.5,
            marker="_",
            markersize=10,
            zorder=2,
            label="measured edge [stable, diverged]" if i == 0 else None,
        )
        if edge["non_monotone"]:
            ax.annotate(
                "non-monotone", (x, hi), textcoords="offset points", xytext=(6, 6), fontsize=8
            )
    shown: set[str] = set()
    for cand in record["predictions"]:
        if cand is None:
            continue
        x = _x(cand["alpha"], zero_at)
        for name, marker in MARKERS.items():
            value = cand["beta_c"].get(name)
            if value is None or not (0 < value < math.inf):
                continue
            ax.scatter(
                [x * 1.12],
                [value],
                marker=marker,
                facecolors="none",
                edgecolors="tab:green",
                s=40,
                zorder=4,
                label=f"predicted ({name})" if name not in shown else None,
            )
            shown.add(name)
    rec = record["recommendation"]
    if rec.get("beta") is not None:
        ax.scatter(
            [_x(rec["alpha"], zero_at)],
            [rec["beta"]],
            marker="*",
            s=160,
            color="gold",
            edgecolors="black",
            zorder=5,
            label="advice (alpha*, beta*)",
        )
    div = record["alpha_scan"].get("alpha_div")
    if div is not None:
        ax.axvline(div, color="grey", ls="--", lw=1, label="alpha_div")
    ax.set_xscale("log")
    ax.set_yscale("log")
    right = max(positive + [div or 0]) * 2
    lo_exp, hi_exp = math.ceil(math.log10(zero_at * 2)), math.floor(math.log10(right))
    ticks = [10.0**e for e in range(lo_exp, hi_exp + 1)]
    ax.set_xticks([zero_at, *ticks], ["0", *[f"$10^{{{e}}}$" for e in range(lo_exp, hi_exp + 1)]])
    ax.set_xticks([], minor=True)
    ax.set_xlim(zero_at / 2, right)
    ax.set_xlabel("inner rate alpha (alpha = 0 at the left)")
    ax.set_ylabel("meta rate beta")
    cost = record["cost"]
    ax.set_title(
        f"{record['problem']} ({record['variant']}, {record['outer']}): measured edges, "
        f"{cost['cell_iterations']} cell-iterations = {100 * cost['grid_fraction']:.1f}% of a "
        "20 x 20 grid",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="best")
    return fig


def draw_measured_advice(record: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``measured_advice.png``, ``.pdf`` and ``.json`` (the record) into ``out_dir``."""
    fig = advice_figure(record)
    try:
        return save_figure(fig, Path(out_dir), "measured_advice", record)
    finally:
        pyplot().close(fig)


__all__ = ["MARKERS", "advice_figure", "draw_measured_advice"]
