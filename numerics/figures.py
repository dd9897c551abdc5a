"""The paper's Fig. 2 (beta_c(alpha) per eigenvalue) and Fig. 3 (linear-regression alpha x beta
maps) redrawn from the package's own theory and dynamics. matplotlib is imported inside the
functions (Agg backend), so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.numerics.boundary import PAPER_LOSS_THRESHOLD
from mamlconv.numerics.linreg import LinRegStudy
from mamlconv.util.plotting import log_cell_edges, pyplot

FIG2_EIGS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Five eigenvalues lambda_0 < ... < lambda_4 as in Fig. 2; the paper gives no values, these are
spaced by factors of 2 so that lambda_3 binds the surrogate's beta_c near alpha_c = 1/lambda_4."""

MODEL_TITLES = {
    "surrogate": "surrogate (simplified MAML)",
    "first_order": "first-order MAML",
    "exact": "exact (second-order) MAML",
}


def _save(fig: Any, out_dir: Path | str, stem: str) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    pyplot().close(fig)
    return paths


def fig2(
    out_dir: Path | str,
    *,
    eigs: Sequence[float] = FIG2_EIGS,
    n_alpha: int = 600,
    alpha_max: float | None = None,
    stem: str = "fig2",
) -> list[Path]:
    """Fig. 2 redrawn: beta_c(alpha) = 2 / lambda~_i(alpha) per eigenvalue, the admissible region
    (beta below every curve, and alpha < alpha_c for the surrogate) shaded, the alpha = 0 level
    2/lambda_max dashed; left the surrogate (curvature lambda(1 - alpha lambda), paper Eq. 15),
    right exact MAML (lambda(1 - alpha lambda)^2, docs/MATH.md section 4). Returns [png, pdf]."""
    from mamlconv.theory.thresholds import alpha_c, beta_c

    plt = pyplot()
    lam = np.sort(np.asarray(eigs, dtype=float))
    if lam.size == 0 or np.any(lam <= 0):
        raise ValueError(f"eigs must be positive, got {list(eigs)}")
    a_c = alpha_c(lam, model="surrogate")
    a_max = 2.2 * a_c if alpha_max is None else float(alpha_max)
    alpha = np.linspace(0.0, a_max, n_alpha)
    beta0 = 2.0 / lam.max()
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, lam.size))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), sharey=True)
    for ax, model in zip(axes, ("surrogate", "exact"), strict=True):
        for i, (li, col) in enumerate(zip(lam, colors, strict=True)):
            b = np.asarray(beta_c([li], alpha, model=model), dtype=float)
            b = np.where(b > 0, b, np.nan)  # past alpha = 1/lambda_i the surrogate's mode is lost
            ax.plot(alpha, b, color=col, lw=1.6, label=rf"$\beta_c:\lambda_{i}={li:g}$")
        whole = np.asarray(beta_c(lam, alpha, model=model), dtype=float)
        admissible = np.isfinite(whole) & (whole > 0)
        if model == "surrogate":
            admissible &= alpha < a_c
        ax.fill_between(
            alpha,
            1e-9,
            np.where(admissible, whole, np.nan),
            color="tab:orange",
            alpha=0.3,
            lw=0,
            label="admissible $(\\alpha,\\beta)$",
        )
        ax.axhline(
            beta0, color="k", ls="--", lw=1.2, label=rf"$\alpha=0$: $2/\lambda_{{max}}={beta0:.3g}$"
        )
        if model == "surrogate":
            ax.axvline(a_c, color="k", ls=":", lw=1.0, label=r"$\alpha_c=1/\lambda_{max}$")
        ax.set_yscale("log")
        ax.set_ylim(beta0 / 4, beta0 * 40)
        ax.set_xlim(0, a_max)
        ax.set_xlabel(r"inner learning rate $\alpha$")
        ax.set_title(MODEL_TITLES[model])
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axes[0].set_ylabel(r"meta learning rate $\beta$")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(
        r"Fig. 2 redrawn: $\beta_c(\alpha)$ per Hessian eigenvalue "
        f"(eigenvalues {', '.join(f'{x:g}' for x in lam)})",
        fontsize=11,
        y=1.02,
    )
    return _save(fig, out_dir, stem)


def plot_linreg_maps(
    study: LinRegStudy, path: Path | str | None = None, *, threshold: float | None = None
) -> Any:
    """Fig. 3 layout for a :class:`numerics.linreg.LinRegStudy`: one alpha x beta panel per model,
    black = final MAML training loss below the threshold, grey = above it, white = diverged
    (non-finite); theory beta_c for each eigenvalue (thin lines), beta_c of the whole spectrum
    (thick dashed) and alpha_c (vertical dashed) on top. Saves to ``path`` when given (format
    from the suffix) and returns the figure."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from mamlconv.theory.thresholds import beta_c

    plt = pyplot()
    thr = study.config.get("threshold", PAPER_LOSS_THRESHOLD) if threshold is None else threshold
    models = list(study.results)
    fig, axes = plt.subplots(
        1, len(models), figsize=(5.0 * len(models), 4.4), squeeze=False, sharey=True
    )
    a_edges, b_edges = log_cell_edges(study.alphas), log_cell_edges(study.betas)
    a_fine = np.geomspace(a_edges[0], a_edges[-1], 800)
    cmap = ListedColormap(["white", "0.62", "black"])
    lam = study.hessian_eigs
    for ax, model in zip(axes[0], models, strict=True):
        res = study.results[model]
        loss = res.run.final_loss_post
        with np.errstate(invalid="ignore"):
            state = np.where(~np.isfinite(loss), 0, np.where(loss < thr, 2, 1))
        ax.pcolormesh(a_edges, b_edges, state.T, cmap=cmap, vmin=0, vmax=2, shading="flat")
        for i, li in enumerate(lam):
            b = np.asarray(beta_c([li], a_fine, model=model, steps=res.run.steps), dtype=float)
            b = np.where(b > 0, b, np.nan)
            ax.plot(
                a_fine,
                b,
                color=f"C{i + 1}",
                lw=1.4,
                label=rf"$\beta_c:\lambda_{i + 1}$"
                f" = {li:.3g}",
            )
        whole = np.asarray(beta_c(lam, a_fine, model=model, steps=res.run.steps), dtype=float)
        ax.plot(
            a_fine,
            np.where(whole > 0, whole, np.nan),
            color="C3",
            lw=2.2,
            ls="--",
            label=r"$\beta_c(\alpha)$, all eigenvalues",
        )
        if np.isfinite(res.alpha_c):
            ax.axvline(res.alpha_c, color="C0", ls="--", lw=1.6, label=r"$\alpha_c$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(a_edges[0], a_edges[-1])
        ax.set_ylim(b_edges[0], b_edges[-1])
        ax.set_xlabel(r"inner learning rate $\alpha$")
        err = res.max_log10_error
        ax.set_title(
            f"{MODEL_TITLES.get(model, model)}\nmax boundary error {err:.2f} decades", fontsize=10
        )
    axes[0][0].set_ylabel(r"meta learning rate $\beta$")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [Patch(color="black"), Patch(color="0.62"), Patch(facecolor="white", edgecolor="k")]
    labels += [f"loss < {thr:g}", f"loss >= {thr:g}", "diverged"]
    axes[0][0].legend(handles, labels, fontsize=7, loc="lower left", framealpha=0.9)
    cfg = study.config
    fig.suptitle(
        f"Fig. 3 redrawn: linear regression, {cfg.get('iters')} iterations, loss "
        f"{cfg.get('loss')}, final MAML training loss L(θ − α∇L(θ))",
        fontsize=11,
        y=1.03,
    )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def fig3(
    out_dir: Path | str,
    *,
    seed: int = 0,
    n_points: int | None = None,
    iters: int | None = None,
    alphas: np.ndarray | None = None,
    betas: np.ndarray | None = None,
    convention: str = "mse",
    threshold: float = PAPER_LOSS_THRESHOLD,
    stem: str = "fig3",
) -> list[Path]:
    """Fig. 3 redrawn: Appendix C linear regression (data from ``seed``), final MAML training
    loss over the paper's alpha x beta range for surrogate, first-order and exact MAML side by
    side, with theory alpha_c and beta_c(alpha) overlaid. Returns [png, pdf]."""
    from mamlconv.numerics.linreg import PAPER_ITERS, linreg_study, torch_generator
    from mamlconv.numerics.losses import LINREG_DEFAULT_POINTS, sample_linreg

    data = sample_linreg(
        torch_generator(seed), n_points=LINREG_DEFAULT_POINTS if n_points is None else n_points
    )
    study = linreg_study(
        data,
        alphas=alphas,
        betas=betas,
        iters=PAPER_ITERS if iters is None else iters,
        threshold=threshold,
        convention=convention,  # type: ignore[arg-type]
    )
    fig = plot_linreg_maps(study)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    pyplot().close(fig)
    return paths
