"""One Fig. 4-style heat map per run reading of the sinusoid reading matrix, in one figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mamlconv.experiments.criteria import diverged
from mamlconv.experiments.readings.run import load_runs


def plot_reading_maps(directory: Path, out: Path, *, criterion: str = "absolute") -> Path:
    """Final loss of seed 0 per (alpha, beta) cell for every run reading (diverged cells under
    ``criterion`` left white, as Fig. 4's "no colour"); the bisected edges of every seed at the
    deciding alphas drawn as bars from beta_lo to beta_hi (seed 0 black, others grey)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [rec for _, rec in load_runs(directory)]
    names = sorted({",".join(f"{k}={v}" for k, v in r["reading"].items()) for r in runs})
    if not names:
        raise ValueError(f"no reading runs under {directory}")
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        recs = sorted(
            (r for r in runs if ",".join(f"{k}={v}" for k, v in r["reading"].items()) == name),
            key=lambda r: r["seed"],
        )
        g = recs[0]["grid"]
        bad = diverged(criterion, max_loss=g["max_loss"], initial_loss=g["initial_loss"])
        loss = np.where(bad, np.nan, np.log10(np.clip(g["final_loss"], 1e-6, None)))
        alphas, betas = g["alphas"], g["betas"]
        ax.imshow(loss, origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(betas.size)[::2], [f"{b:.2g}" for b in betas[::2]], fontsize=6)
        ax.set_yticks(range(alphas.size), [f"{a:.2g}" for a in alphas], fontsize=6)
        for rec in recs:
            for row in rec["bisections"][criterion]["rows"]:
                if not row.get("bisect_inside"):
                    continue
                pos = np.interp(
                    np.log10([row["bisect_lo"], row["bisect_hi"]]),
                    np.log10(betas),
                    np.arange(betas.size),
                )
                colour = "black" if rec["seed"] == recs[0]["seed"] else "0.6"
                ax.plot(pos, [row["row"]] * 2, color=colour, lw=3)
        ax.set_title(name.replace(",", "\n", 1), fontsize=7)
        ax.set_xlabel("beta", fontsize=7)
        ax.set_ylabel("alpha", fontsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"log10 final loss (seed 0); white: diverged ({criterion}); bars: bisected edges")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
