"""One Fig. 4-style heat map per run reading of the sinusoid reading matrix, in one figure.

Each panel is one reading (initialisation, task source, MAML variant) in Fig. 4's orientation:
alpha (inner rate) across, beta (meta rate) up, the cells coloured by seed 0's final training
loss on one logarithmic scale shared by every panel (one colour bar), cells that diverged under
the chosen criterion left white, and the bisected beta edge of every seed at the deciding alphas
drawn as a vertical bar from beta_lo to beta_hi (seed 0 black, the other seeds grey).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.criteria import diverged
from mamlconv.experiments.readings.run import load_runs
from mamlconv.util.plotting import pyplot

_SHORT = {"variant": "", "tasks": "tasks ", "init": "init "}


def _panel_title(reading: dict[str, Any]) -> str:
    """A panel title: the variant on one line, the other settings of the reading below."""
    variant = str(reading.get("variant", "")).replace("_", "-")
    rest = ", ".join(f"{_SHORT.get(k, k + ' ')}{v}" for k, v in reading.items() if k != "variant")
    return f"{variant} MAML\n{rest}" if variant else rest


def _index_position(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Where ``targets`` fall on an axis of cells at 0, 1, 2, ... (log-interpolated)."""
    return np.interp(np.log10(targets), np.log10(values), np.arange(values.size))


def plot_reading_maps(directory: Path, out: Path, *, criterion: str = "absolute") -> Path:
    """Draw the reading maps of the runs under ``directory`` into ``out`` (PNG); returns it."""
    fig = reading_maps_figure(directory, criterion=criterion)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    pyplot().close(fig)
    return out


def reading_maps_figure(directory: Path, *, criterion: str = "absolute") -> Any:
    """The reading maps of the runs under ``directory`` as a matplotlib Figure."""
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    runs = [rec for _, rec in load_runs(directory)]
    names = sorted({",".join(f"{k}={v}" for k, v in r["reading"].items()) for r in runs})
    if not names:
        raise ValueError(f"no reading runs under {directory}")
    groups = []
    for name in names:
        recs = sorted(
            (r for r in runs if ",".join(f"{k}={v}" for k, v in r["reading"].items()) == name),
            key=lambda r: r["seed"],
        )
        g = recs[0]["grid"]
        bad = diverged(criterion, max_loss=g["max_loss"], initial_loss=g["initial_loss"])
        loss = np.where(bad, np.nan, np.asarray(g["final_loss"], dtype=float))
        groups.append((recs, np.asarray(g["alphas"]), np.asarray(g["betas"]), loss))
    finite = np.concatenate([lo[np.isfinite(lo) & (lo > 0)] for *_, lo in groups])
    # One scale for every panel; its top at the 99th percentile so that a single outlier does
    # not flatten the rest (cells above it take the top colour; the bar's arrow says so).
    top = float(np.percentile(finite, 99)) if finite.size else 1.0
    norm = LogNorm(vmin=float(finite.min()), vmax=top) if finite.size else None
    extend = "max" if finite.size and float(finite.max()) > top else "neither"
    cols = min(4, len(groups))
    rows = int(np.ceil(len(groups) / cols))
    plt = pyplot()
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.3 * cols + 1.2, 3.2 * rows + 0.9), squeeze=False,
        constrained_layout=True,
    )  # fmt: skip
    mesh = None
    for ax, (recs, alphas, betas, loss) in zip(axes.ravel(), groups, strict=False):
        mesh = ax.imshow(
            loss.T, origin="lower", aspect="auto", cmap="viridis", norm=norm,
            interpolation="nearest",
        )  # fmt: skip
        ax.set_xticks(range(alphas.size), [f"{a:.2g}" for a in alphas], fontsize=7, rotation=60)
        ax.set_yticks(range(betas.size)[::2], [f"{b:.2g}" for b in betas[::2]], fontsize=7)
        for rec in recs:
            for row in rec["bisections"][criterion]["rows"]:
                if not row.get("bisect_inside"):
                    continue
                ys = _index_position(betas, np.array([row["bisect_lo"], row["bisect_hi"]]))
                colour = "black" if rec["seed"] == recs[0]["seed"] else "0.55"
                shift = 0.0 if colour == "black" else 0.18
                ax.plot([row["row"] + shift] * 2, ys, color=colour, lw=4, solid_capstyle="butt")
        ax.set_title(_panel_title(recs[0]["reading"]), fontsize=8)
        ax.set_xlabel("α (inner learning rate)", fontsize=8)
        ax.set_ylabel("β (meta learning rate)", fontsize=8)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    if mesh is not None and norm is not None:
        bar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.85, pad=0.01, extend=extend)
        bar.set_label(f"final training loss, seed 0 (log scale)\nwhite: diverged ({criterion})")
    seeds = sorted({r["seed"] for recs, *_ in groups for r in recs})
    fig.legend(
        handles=[
            Line2D([], [], color="black", lw=3, label=f"bisected β edge, seed {seeds[0]}"),
            Line2D([], [], color="0.55", lw=3, label="other seeds"),
        ],
        loc="outside lower center", ncol=2, fontsize=8, frameon=False,
    )  # fmt: skip
    fig.suptitle(
        f"Sinusoid reading matrix: {len(groups)} readings, final loss per (α, β) cell", fontsize=10
    )
    return fig
