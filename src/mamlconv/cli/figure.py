"""``mamlconv figure``: redraw the paper's figures (PNG and PDF).

fig2 and fig3 come from ``mamlconv.numerics.figures`` (theory curves; linear-regression grids);
fig1 and fig5 from ``mamlconv.experiments.figures`` (sinusoid training), imported only when asked.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from mamlconv.cli._args import UsageError, nonnegative_int, positive_int

FIGURES = ("fig1", "fig2", "fig3", "fig5")
_HELP = {
    "fig1": "gradient norm during training, joint training vs MAML (sinusoid; experiments layer)",
    "fig2": "beta_c(alpha) per eigenvalue, surrogate and exact MAML (theory)",
    "fig3": "linear-regression alpha x beta maps for the three MAML objects (App. C)",
    "fig5": "eigenvalues and Frobenius norms of Tg, H^2, Tg + H^2 (App. B; experiments layer)",
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "figure",
        help="redraw a figure of the paper (PNG and PDF)",
        description="Redraw a figure of the paper as PNG and PDF. "
        + "; ".join(f"{k}: {v}" for k, v in _HELP.items()),
    )
    p.add_argument("name", choices=FIGURES, help="which figure")
    p.add_argument(
        "--out", type=Path, default=Path("figures"), help="output folder (default ./figures)"
    )
    p.add_argument(
        "--iters",
        type=positive_int,
        default=None,
        help="training iterations (default: the figure's paper setting)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="device for trained figures (fig1, fig5); auto = cuda when available",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def _device(choice: str) -> str:
    import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return choice


def run(args: argparse.Namespace) -> int:
    from mamlconv.cli._outputs import check_output_dir

    check_output_dir(args.out)  # before minutes of training
    name = args.name
    from mamlconv.progress import show_on_stderr

    show_on_stderr()  # progress with ETA on stderr, for runs longer than ~10 s
    if name in ("fig2", "fig3"):
        from mamlconv.numerics import figures

        if name == "fig2":
            paths = figures.fig2(args.out)
        else:
            paths = figures.fig3(args.out, seed=args.seed, iters=args.iters)
    else:
        try:
            module = importlib.import_module("mamlconv.experiments.figures")
        except ModuleNotFoundError as exc:
            if exc.name in ("mamlconv.experiments.figures", "mamlconv.experiments"):
                raise UsageError(
                    f"{name} needs mamlconv.experiments.figures, which is not available yet"
                ) from None
            raise
        func = getattr(module, name, None)
        if func is None:
            raise UsageError(f"{name}: mamlconv.experiments.figures has no function {name}()")
        kwargs: dict[str, Any] = {"device": _device(args.device), "seed": args.seed}
        if args.iters is not None:
            kwargs["iters"] = args.iters
        paths = func(args.out, **kwargs)
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0
