"""``mamlconv figure``: redraw the paper's figures (PNG and PDF, with a JSON of the numbers).

fig2 and fig3 come from ``mamlconv.numerics.figures`` (theory curves; linear-regression grids);
fig1 and fig5 from ``mamlconv.experiments.figures`` (sinusoid training); fig4 from
``mamlconv.experiments.figures.figure4`` (any sweep result), imported only when asked. Fig. 4
reads a result file and draws it without importing torch (tests/test_figures_exp.py checks).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from mamlconv.cli._args import (
    UsageError,
    add_device_argument,
    nonnegative_int,
    positive_int,
)

FIGURES = ("fig1", "fig2", "fig3", "fig4", "fig5")
_HELP = {
    "fig1": "gradient norm during training, joint training vs MAML (sinusoid; experiments layer)",
    "fig2": "beta_c(alpha) per eigenvalue, surrogate and exact MAML (theory)",
    "fig3": "linear-regression alpha x beta maps for the three MAML objects (App. C)",
    "fig4": "final training loss over the alpha x beta grid of a sweep RESULT (any problem)",
    "fig5": "eigenvalues and Frobenius norms of Tg, H^2, Tg + H^2 (App. B; experiments layer)",
}


def figure_name(text: str) -> str:
    """``4``, ``fig4``, ``Fig. 4``, ``fig.4``, ``FIG4`` -> ``fig4``; one line naming the choices
    otherwise."""
    m = re.fullmatch(r"\s*(?:fig(?:ure)?\.?\s*)?(\d+)\s*", text, flags=re.IGNORECASE)
    name = f"fig{m.group(1)}" if m else None
    if name not in FIGURES:
        raise argparse.ArgumentTypeError(
            f"unknown figure {text!r}; choose one of 1, 2, 3, 4, 5 (also written fig4 or 'Fig. 4')"
        )
    return name


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "figure",
        help="redraw a figure of the paper (PNG and PDF)",
        description="Redraw a figure of the paper as PNG and PDF, with its numbers as JSON. "
        + "; ".join(f"{k}: {v}" for k, v in _HELP.items())
        + ". Names may be written 4, fig4 or 'Fig. 4'. Fig. 4 puts alpha on the horizontal "
        "axis and beta on the vertical one (log-log, as Fig. 2), colours cells by final "
        "training loss on a log scale, leaves unstable cells blank and dashes the alpha = 0 "
        "edge (docs/experiments.md, 'Fig. 4').",
    )
    p.add_argument("name", type=figure_name, metavar="NAME", help="which figure: 1, 2, 3, 4 or 5")
    p.add_argument(
        "result",
        type=Path,
        nargs="?",
        default=None,
        metavar="RESULT",
        help="fig4 only: the sweep result file (.npz) of `mamlconv sweep`",
    )
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default ./figures)"
    )
    p.add_argument(
        "--iters",
        type=positive_int,
        default=None,
        help="fig1, fig3, fig5: training iterations (default: fig3 the paper's 500; fig1 and "
        "fig5 5000, a tenth of the paper's 50000)",
    )
    add_device_argument(p, what="fig1, fig5: where to train")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--criterion",
        default=None,
        metavar="NAME",
        help="fig4: which cells are stable (default 'diverged': the result's own divergence "
        "record; 'learned' for classification results: below 0.9 ln(ways))",
    )
    p.add_argument(
        "--overlay",
        type=Path,
        default=None,
        metavar="PREDICTIONS.json",
        help="fig4: draw predicted beta_c(alpha) curves from this file (a `mamlconv compare` "
        "JSON, or {'predictions': [{'label', 'alpha', 'beta_c'}]})",
    )
    p.add_argument(
        "--no-edge", action="store_true", help="fig4: do not mark the measured edge per alpha"
    )
    p.add_argument("--stem", default=None, help="fig4: output file name (default RESULT_fig4)")
    p.set_defaults(func=run)


def _fig4(args: argparse.Namespace) -> list[Path]:
    if args.result is None:
        raise UsageError("fig4 needs a sweep result: mamlconv figure fig4 RESULT.npz")
    if not args.result.is_file():
        raise UsageError(f"no such result file: {args.result}")
    if args.overlay is not None and not args.overlay.is_file():
        raise UsageError(f"no such prediction file: {args.overlay}")
    from mamlconv.experiments.figures import figure4 as fig4
    from mamlconv.experiments.sweep.results import load_result

    try:
        result = load_result(args.result)
    except (ValueError, OSError, KeyError) as exc:
        raise UsageError(f"cannot read {args.result}: {exc}") from None
    try:
        fig4.get_criterion(result, args.criterion)
        if args.overlay is not None:
            fig4.predictions_from_json(args.overlay)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return fig4.fig4(
        args.result,
        args.out,
        criterion=args.criterion,
        overlay=args.overlay,
        edge=not args.no_edge,
        stem=args.stem,
    )


def run(args: argparse.Namespace) -> int:
    from mamlconv.cli._args import check_output_dir

    check_output_dir(args.out)  # before minutes of training
    name = args.name
    fig4_only = [
        opt
        for opt, given in (
            ("RESULT", args.result is not None),
            ("--criterion", args.criterion is not None),
            ("--overlay", args.overlay is not None),
            ("--no-edge", args.no_edge),
            ("--stem", args.stem is not None),
        )
        if given
    ]
    if name != "fig4" and fig4_only:
        raise UsageError(f"{', '.join(fig4_only)}: only for fig4, not {name}")
    from mamlconv.util.progress import show_on_stderr

    show_on_stderr()  # progress with ETA on stderr, for runs longer than ~10 s
    if name == "fig4":
        paths = _fig4(args)
    elif name in ("fig2", "fig3"):
        from mamlconv.numerics import figures

        if name == "fig2":
            paths = figures.fig2(args.out)
        else:
            paths = figures.fig3(args.out, seed=args.seed, iters=args.iters)
    else:
        from mamlconv.experiments import figures
        from mamlconv.experiments.engine.state import resolve_device

        func = {"fig1": figures.fig1, "fig5": figures.fig5}[name]
        kwargs: dict[str, Any] = {"device": resolve_device(args.device), "seed": args.seed}
        if args.iters is not None:
            kwargs["iters"] = args.iters
        paths = func(args.out, **kwargs)
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0
