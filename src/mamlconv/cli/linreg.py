"""``mamlconv linreg``: the paper's Appendix C / Fig. 3 linear-regression check.

Runs MAML (surrogate, first-order, exact) on one linear-regression task over a log-spaced
alpha x beta grid, classifies each cell by its final MAML training loss, and compares the measured
boundary per alpha with the theoretical beta_c(alpha). Library: ``mamlconv.numerics.linreg``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.cli._args import (
    UsageError,
    finite_float,
    log_grid,
    nonnegative_int,
    positive_float,
    positive_int,
)

MODEL_CHOICES = ("exact", "first_order", "surrogate", "all")
ALL_MODELS = ("surrogate", "first_order", "exact")


def _theta0(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected W,C (two numbers), got {text!r}")
    return finite_float(parts[0]), finite_float(parts[1])


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "linreg",
        help="Appendix C / Fig. 3: MAML on linear regression over an alpha x beta grid",
        description=(
            "Train MAML on one linear-regression task (y = a x + b, a, b ~ U[0,5], "
            "x ~ U[-5,5], model w x + c; same data inside and outside, as in the paper's "
            "Appendix C) over a log-spaced alpha x beta grid, and compare the measured "
            "stability boundary with the theory's alpha_c and beta_c(alpha). Defaults "
            "reproduce Appendix C."
        ),
    )
    p.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="all",
        help="MAML object to run (default: all three)",
    )
    p.add_argument(
        "--data",
        metavar="FILE",
        type=Path,
        default=None,
        help="JSON object with lists 'x' and 'y', or a two-column CSV (x,y), "
        "instead of generated data",
    )
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the generated data (default 0)"
    )
    p.add_argument(
        "--n-points",
        type=positive_int,
        default=100,
        help="number of generated data points (default 100; the paper does not say)",
    )
    p.add_argument(
        "--theta0",
        type=_theta0,
        default=(0.0, 0.0),
        metavar="W,C",
        help="initial (w, c) (default 0,0)",
    )
    p.add_argument(
        "--alphas",
        type=log_grid,
        default=None,
        metavar="LO:HI:N",
        help="inner learning rates, numpy.geomspace(LO, HI, N) (default 1e-5:9e-2:30)",
    )
    p.add_argument(
        "--betas",
        type=log_grid,
        default=None,
        metavar="LO:HI:N",
        help="meta learning rates (default 5e-3:9:30)",
    )
    p.add_argument(
        "--iters", type=nonnegative_int, default=500, help="outer iterations (default 500)"
    )
    p.add_argument(
        "--threshold",
        type=positive_float,
        default=1e-2,
        help="a cell converged when its final MAML training loss is below this "
        "(default 1e-2, as Fig. 3)",
    )
    p.add_argument(
        "--loss",
        choices=("mse", "half_mse"),
        default="mse",
        help="mse = mean of squared errors (torch MSELoss, default); half_mse halves "
        "the loss and doubles every alpha_c and beta_c",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--yes",
        action="store_true",
        help="start even when the estimated time or memory is above the limits "
        "(4 h, 80%% of the free memory)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        default=None,
        help="also draw the Fig. 3 maps to FILE (format from the suffix)",
    )
    p.set_defaults(func=run)


def read_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """x and y from a JSON object {'x': [...], 'y': [...]} or a two-column CSV (a header line
    that is not numeric is skipped). Raises UsageError naming what is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"--data: cannot read {str(path)!r}: {exc.strerror}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--data: {str(path)!r} is not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
            raise UsageError(f"--data: {str(path)!r} must be a JSON object with lists 'x', 'y'")
        try:
            x = np.asarray(obj["x"], dtype=float)
            y = np.asarray(obj["y"], dtype=float)
        except (TypeError, ValueError):
            raise UsageError(f"--data: 'x' and 'y' in {str(path)!r} must be numbers") from None
        if x.ndim != 1 or y.ndim != 1:
            raise UsageError(f"--data: 'x' and 'y' in {str(path)!r} must be flat lists")
        return x, y
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in line.replace(";", ",").split(",")]
        if len(cells) == 1:
            cells = line.split()
        try:
            if len(cells) != 2:
                raise ValueError
            rows.append((float(cells[0]), float(cells[1])))
        except ValueError:
            if not rows and lineno == 1:
                continue  # header line
            raise UsageError(
                f"--data: line {lineno} of {str(path)!r} is not two numbers: {line.strip()!r}"
            ) from None
    if not rows:
        raise UsageError(f"--data: no data rows in {str(path)!r}")
    arr = np.asarray(rows)
    return arr[:, 0], arr[:, 1]


PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff")
"""File formats --plot writes (matplotlib's, chosen by the suffix)."""


def _check_scale(data: Any, convention: str) -> None:
    """The loss Hessian must have finite eigenvalues in float64: huge x overflows x^2."""
    from mamlconv.numerics.linreg import linreg_hessian

    eigs = np.linalg.eigvalsh(linreg_hessian(data.x, convention=convention).numpy())
    if not np.all(np.isfinite(eigs)):
        raise UsageError(
            "--data: the loss Hessian overflows float64 (its entries are mean x^2 and mean x; "
            f"max |x| = {float(data.x.abs().max()):.3g}); rescale x and y"
        )


def _estimate(args: argparse.Namespace, data: Any, models: Any, alphas: Any, betas: Any) -> None:
    """Print the grid's size and estimated cost (stderr); refuse above the limits."""
    from mamlconv.experiments.sweep.estimate import estimate_grid, refuse_unless_confirmed
    from mamlconv.numerics.linreg import linreg_study

    def probe(a: np.ndarray, b: np.ndarray, iters: int) -> None:
        linreg_study(
            data,
            models=models,
            alphas=a,
            betas=b,
            iters=iters,
            threshold=args.threshold,
            convention=args.loss,
            theta0=args.theta0,
        )

    label = f"linreg {'+'.join(models)}"
    est = estimate_grid(probe, np.asarray(alphas), np.asarray(betas), label=label, iters=args.iters)
    sys.stderr.write(est.line() + "\n")
    refuse_unless_confirmed(est, yes=args.yes)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    return format(x, spec)


def run(args: argparse.Namespace) -> int:
    import torch

    from mamlconv.numerics.linreg import linreg_study, paper_alphas, paper_betas, study_to_json
    from mamlconv.numerics.losses import linreg_from_arrays, sample_linreg
    from mamlconv.util.provenance import describe

    if args.plot is not None:
        from mamlconv.cli._args import check_output_file

        check_output_file(args.plot, flag="--plot", suffixes=PLOT_SUFFIXES)
    # The grid is thousands of tiny ops: one thread is as fast and leaves the other core free.
    from mamlconv.util.threads import set_threads

    set_threads()
    from mamlconv.util.progress import show_on_stderr

    show_on_stderr()  # progress with ETA on stderr, for runs longer than ~10 s
    if args.data is not None:
        x, y = read_data(args.data)
        try:
            data = linreg_from_arrays(x, y)
        except ValueError as exc:
            raise UsageError(f"--data: {exc}") from None
    else:
        if args.n_points < 2:
            raise UsageError(f"--n-points must be >= 2, got {args.n_points}")
        data = sample_linreg(torch.Generator().manual_seed(args.seed), n_points=args.n_points)
    _check_scale(data, args.loss)
    models = ALL_MODELS if args.model == "all" else (args.model,)
    alphas = paper_alphas() if args.alphas is None else args.alphas
    betas = paper_betas() if args.betas is None else args.betas
    _estimate(args, data, models, alphas, betas)
    study = linreg_study(
        data,
        models=models,
        alphas=alphas,
        betas=betas,
        iters=args.iters,
        threshold=args.threshold,
        convention=args.loss,
        theta0=args.theta0,
    )
    study.config.update(
        data=str(args.data) if args.data is not None else "generated",
        seed=None if args.data is not None else args.seed,
    )
    if args.plot is not None:
        from mamlconv.numerics.figures import plot_linreg_maps

        try:
            plot_linreg_maps(study, args.plot)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--plot: cannot write {str(args.plot)!r}: {exc}") from None
    obj = study_to_json(study)
    obj["provenance"] = describe("cpu")
    if args.json:
        sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
        return 0
    out = sys.stdout
    eigs = ", ".join(f"{e:.4g}" for e in obj["hessian_eigs"])
    out.write(
        f"linear regression ({obj['config']['n_points']} points, {args.loss}, "
        f"{args.iters} iterations, threshold {args.threshold:g})\n"
    )
    out.write(
        f"Hessian eigenvalues: {eigs}\nalpha_c (Eq. 15, 1/lambda_max): "
        f"{_fmt(obj['alpha_c'], '.4g')}\n"
    )
    for name, m in obj["models"].items():
        out.write(
            f"\n[{name}] alpha_c = {_fmt(m['alpha_c'], '.4g')}  converged cells "
            f"{m['n_converged']}/{len(alphas) * len(betas)}  max log10 error "
            f"{_fmt(m['max_log10_error'], '.3f')} decades\n"
        )
        if m["alphas_theory_unstable_but_converged"]:
            listed = ", ".join(f"{a:.3g}" for a in m["alphas_theory_unstable_but_converged"])
            out.write(
                f"  theory: no beta converges at alpha = {listed} (beyond alpha_c), yet cells "
                f"met the loss criterion in {args.iters} iterations (infinite error)\n"
            )
        out.write(f"{'alpha':>10} {'beta_lo':>10} {'beta_hi':>10} {'beta_c':>10} {'err':>7}\n")
        for row in m["boundary"]:
            hi = row["beta_hi"] if row["inside_grid"] else None
            out.write(
                f"{row['alpha']:>10.3g} {_fmt(row['beta_lo']):>10} {_fmt(hi):>10} "
                f"{_fmt(row['beta_c_theory']):>10} {_fmt(row['log10_error'], '.3f'):>7}\n"
            )
    if args.plot is not None:
        out.write(f"\nplot written to {args.plot}\n")
    return 0
