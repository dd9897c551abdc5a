"""A tour of mamlconv in five steps, each ending in a figure: a claim of the paper, its
derivation, the thresholds it predicts, a sweep of real MAML training that tests it, and the
comparison of the measured edge with three predictions. Open this file first.

    python examples/tour.py                  # about two minutes on a 2-core CPU
    python examples/tour.py --small          # under a minute (what the tests run)

Every step writes ``tour-out/stepN_*.png`` (``--out`` to change it) and prints what it shows.
The cells below are plain Python; paste them into a notebook unchanged (``plot()`` returns a
matplotlib Figure there, which the notebook shows).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tour-out"), help="figure folder")
    parser.add_argument("--small", action="store_true", help="a smaller sweep (the tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import mamlconv

    out: Path = args.out
    saved = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        saved.append(path)
        print(f"  -> {path}")

    # --- 1. the claim -------------------------------------------------------------------
    from mamlconv.paper_checks.claims import BY_ID

    claim = BY_ID["S4-1"]
    print(f"1. The paper's claim {claim.id} ({claim.where}): {claim.statement}")
    committed = _committed("sinusoid_exact_paper.npz")
    paper_size = mamlconv.load(committed)
    print(f"   measured at the paper's size (committed): {paper_size._display_title()}")
    save(paper_size.plot(), "step1_claim_fig4_paper_size.png")

    # --- 2. the derivation --------------------------------------------------------------
    import sympy as sp

    from mamlconv.theory.quadratic import mode_curvature

    curv = {m: mode_curvature(m) for m in ("surrogate", "first_order", "exact")}
    for model, expr in curv.items():
        print(f"2. per-mode curvature of {model} MAML (derived with SymPy): {sp.factor(expr)}")
    a = np.linspace(0.0, 2.0, 201)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    for model, expr in curv.items():
        sym = {str(x): x for x in expr.free_symbols}  # lambda and alpha, as the theory made them
        f = sp.lambdify(sym["alpha"], expr.subs(sym["lambda"], 1.0), "numpy")
        style = "--" if model == "first_order" else "-"  # equal to the surrogate's for k = 1
        ax.plot(a, np.broadcast_to(f(a), a.shape), style, label=f"{model}: ${sp.latex(expr)}$")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(1.0, color="0.5", ls=":", label="α = 1/λ")
    ax.set_xlabel("α λ (inner rate times eigenvalue)")
    ax.set_ylabel("effective curvature / λ")
    ax.set_title("Step 2: one eigen-mode of H, three MAML objects", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, "step2_derivation_curvatures.png")

    # --- 3. the thresholds --------------------------------------------------------------
    eigs = [4.0, 1.0, 0.25]
    alphas = np.linspace(0.0, 0.6, 121)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    for model in ("surrogate", "exact"):
        t = mamlconv.thresholds(eigs, alphas, model=model)
        print(f"3. {model}: alpha_c = {t.alpha_c:.3g}, beta_c(0) = {t.beta_c[0]:.3g}")
        ax.plot(t.alphas, np.where(t.beta_c > 0, t.beta_c, np.nan), label=f"{model} β_c(α)")
    ax.axhline(2 / max(eigs), color="k", ls="--", lw=1, label="gradient descent: 2/λ_max")
    ax.set_yscale("log")
    ax.set_xlabel("α (inner learning rate)")
    ax.set_ylabel("β_c (largest stable meta rate)")
    ax.set_title(f"Step 3: thresholds on the spectrum {eigs} (paper Eq. 11, 14)", fontsize=9)
    ax.legend(fontsize=7)
    save(fig, "step3_thresholds.png")

    # --- 4. the sweep -------------------------------------------------------------------
    n_a, n_b, iters = (4, 5, 60) if args.small else (6, 8, 150)
    result = mamlconv.sweep(
        "sinusoid",
        np.geomspace(1e-3, 0.6, n_a),
        np.geomspace(0.03, 10.0, n_b),
        iters=iters,
        tasks_per_batch=8,
        device="cpu",
        out=out / "sweep.npz",
    )
    print(f"4. {result._display_title()}: {int(result.diverged.sum())} cells diverged")
    for a_, lo in zip(result.boundary().alphas, result.boundary().beta_lo, strict=True):
        print(f"   alpha {a_:.3g}: largest stable beta " + (f"{lo:.3g}" if lo == lo else "none"))
    save(result.plot(), "step4_sweep_fig4.png")

    # --- 5. the comparison --------------------------------------------------------------
    cmp = mamlconv.compare(result, points=("init",), k=4, tol=1e-3, out=out / "compare")
    for name, beta_c in cmp.predictions["init"].items():
        print(f"5. predicted beta_c ({name}) per alpha: {np.array2string(beta_c, precision=3)}")
    png = next(p for p in cmp.files.values() if Path(p).suffix == ".png")
    target = out / "step5_comparison.png"
    target.write_bytes(Path(png).read_bytes())
    saved.append(target)
    print(f"  -> {target}")
    print(f"{len(saved)} figures in {out}")
    return 0


def _committed(name: str) -> Path:
    from mamlconv.paper_checks import results_dir

    return results_dir() / name


if __name__ == "__main__":
    sys.exit(main())
