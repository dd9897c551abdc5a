"""The figure and table of ``mamlconv local``: beta_c(alpha) predicted and measured at
theta*(alpha), with the Fig. 4 edge of a sweep of the same problem drawn beside it
(:mod:`mamlconv.experiments.analysis.local`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.analysis.local import LOCAL_LABELS, LOCAL_PREDICTIONS
from mamlconv.util.plotting import pyplot

STYLE = {
    "formula": ("tab:blue", "-"),
    "surrogate": ("tab:orange", "--"),
    "h_minus_alpha_h2": ("tab:olive", ":"),
    "meta": ("tab:green", "-."),
    "jacobian": ("tab:purple", "-"),
    "closed_form": ("black", ":"),
}


def _fmt(x: Any, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return format(x, spec)


def markdown(
    record: dict[str, Any], *, fig4: dict[float, tuple[float, float]] | None = None
) -> str:
    """The table of one local study (its JSON record), Fig. 4 edges beside where given."""
    names = [n for n in LOCAL_PREDICTIONS if n in record["rows"][0]["predictions"]]
    head = ["alpha", "certified", "||F|| / start", "lambda_min (flat)", "measured [lo, hi]"]
    if fig4 is not None:
        head.append("Fig. 4 edge")
    head += [f"{LOCAL_LABELS[n]}" for n in names]
    lines = [
        f"# {record['problem']} / {record['variant']} / seed {record['seed']}: the local edge at "
        "theta*(alpha)",
        "",
        "Each prediction is beta_c with, in brackets, its distance in decades from the centre of "
        f"the measured bracket; governing: {LOCAL_LABELS[record['rows'][0]['governing']]}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in record["rows"]:
        m = r["measured"]
        meas = "none stable" if m is None else f"[{_fmt(m['lo'], '.4g')}, {_fmt(m['hi'], '.4g')}]"
        if r.get("measured_status", "measured") != "measured":
            meas = "not measured (not stationary)"
        cells = [
            f"{r['alpha']:.3g}",
            "yes" if r["certified"] else "NO",
            _fmt(r["relative_grad_norm"], ".2e"),
            f"{_fmt(r['lambda_min'])} ({r['n_flat']})",
            meas,
        ]
        if fig4 is not None:
            e = fig4.get(r["alpha"])
            cells.append("–" if e is None else f"[{_fmt(e[0])}, {_fmt(e[1])}]")
        for n in names:
            cells.append(f"{_fmt(r['predictions'][n], '.4g')} ({_fmt(r['log10_error'].get(n))})")
        lines.append("| " + " | ".join(cells) + " |")
    s = record["summary"]
    lines += [
        "",
        f"Certified: {s['n_certified']}/{s['n_alphas']} alphas; "
        f"{_fmt(s['seconds_per_alpha'], '.0f')} s per alpha.",
        "",
    ]
    for n, e in s["log10_error_certified"].items():
        lines.append(
            f"- {LOCAL_LABELS.get(n, n)}: median {_fmt(e['median'])}, max {_fmt(e['max'])} "
            f"decades over {e['n']} certified alphas"
        )
    return "\n".join(lines) + "\n"


def fig4_edges(path: Any, alphas: Any) -> list[dict[str, Any]]:
    """The Fig. 4 edge of a sweep result (its grid brackets, the alpha = 0 row included) as
    records ``{alpha, beta_lo, beta_hi, inside_grid}``."""
    from mamlconv.experiments.sweep.results import load_result

    result = load_result(path)
    rows = result.boundary().as_records()
    b0 = result.alpha0_boundary()
    if b0 is not None:
        rows = b0.as_records() + rows
    del alphas
    return rows


def fig4_lookup(record: dict[str, Any]) -> dict[float, tuple[float, float]] | None:
    """Per local alpha, the Fig. 4 bracket at the nearest swept alpha within 0.1 decades (alpha
    = 0 only to the alpha = 0 row); None without a ``fig4`` entry."""
    fig4 = record.get("fig4")
    if not fig4:
        return None
    out: dict[float, tuple[float, float]] = {}
    edges = fig4["edges"]
    for r in record["rows"]:
        a = r["alpha"]
        best = None
        for e in edges:
            if (a == 0) != (e["alpha"] == 0):
                continue
            gap = 0.0 if a == 0 else abs(math.log10(e["alpha"] / a))
            if gap <= 0.1 and (best is None or gap < best[0]):
                hi = e["beta_hi"] if e["beta_hi"] is not None else math.inf
                lo = e["beta_lo"] if e["beta_lo"] is not None else math.nan
                best = (gap, (lo, hi))
        if best is not None:
            out[a] = best[1]
    return out


def draw_local(
    records: list[dict[str, Any]], path: str | Path, *, title: str | None = None
) -> Path:
    """One panel per record: measured local brackets (black bars), every prediction (lines),
    uncertified alphas hollow, and the record's Fig. 4 edge (grey band) where it has one. alpha
    = 0 is drawn at a tenth of the smallest positive alpha (marked on the axis)."""
    plt = pyplot()
    n = len(records)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    for ax, rec in zip(axes[0], records, strict=True):
        rows = rec["rows"]
        alphas = np.array([r["alpha"] for r in rows], dtype=float)
        positive = alphas[alphas > 0]
        zero_at = (positive.min() if positive.size else 1e-3) / 10
        x = np.where(alphas > 0, alphas, zero_at)
        names = [k for k in LOCAL_PREDICTIONS if k in rows[0]["predictions"]]
        for name in names:
            y = np.array(
                [
                    math.nan if r["predictions"][name] is None else r["predictions"][name]
                    for r in rows
                ],
                dtype=float,
            )
            y = np.where(y > 0, y, np.nan)
            color, ls = STYLE[name]
            gov = name == rows[0]["governing"]
            ax.plot(
                x,
                y,
                ls,
                color=color,
                lw=2.2 if gov else 1.3,
                label=LOCAL_LABELS[name] + (" (governing)" if gov else ""),
                marker=".",
            )
        for xi, r in zip(x, rows, strict=True):
            m = r["measured"]
            if m is None:  # nothing stable: drawn as nothing
                continue
            hi = m["hi"] if m["hi"] is not None else m["lo"] * 10
            face = "black" if r["certified"] else "white"
            ax.plot([xi, xi], [m["lo"], hi], "k-", lw=3)
            ax.plot([xi], [math.sqrt(m["lo"] * hi)], "o", mfc=face, mec="black", ms=6)
        lookup = fig4_lookup(rec)
        if lookup:
            fx = [xi for xi, r in zip(x, rows, strict=True) if r["alpha"] in lookup]
            lo = [lookup[r["alpha"]][0] for r in rows if r["alpha"] in lookup]
            hi = [lookup[r["alpha"]][1] for r in rows if r["alpha"] in lookup]
            hi = [h if math.isfinite(h) else np.nan for h in hi]
            ax.fill_between(
                fx,
                lo,
                hi,
                color="0.6",
                alpha=0.5,
                step=None,
                label="Fig. 4 edge (500 its from init)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [zero_at, *[t for t in ax.get_xticks() if t > zero_at * 5]]
        ax.set_xticks(ticks)
        ax.set_xticklabels(["0"] + [f"{t:g}" for t in ticks[1:]])
        ax.set_xlim(zero_at / 2, x.max() * 2)
        ax.set_xlabel("alpha (inner rate)")
        ax.set_ylabel("beta edge at theta*(alpha)")
        label = f"{rec['problem']} / {rec['variant']} / seed {rec['seed']}"
        ax.set_title(title or label, fontsize=10)
        ax.legend(fontsize=7, loc="best")
        ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
