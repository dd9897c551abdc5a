"""``mamlconv compare``: a sweep's measured beta edge against three predictions of beta_c.

Library: :mod:`mamlconv.experiments.analysis.comparison`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mamlconv.cli._args import (
    UsageError,
    add_device_argument,
    add_problem_argument,
    positive_int,
    resolve_problem,
)


def _points(text: str) -> tuple[str, ...]:
    if text.strip() == "none":
        return ()
    parts = tuple(p.strip() for p in text.split(","))
    bad = [p for p in parts if p not in ("init", "trained")]
    if bad or not parts:
        raise argparse.ArgumentTypeError(
            f"expected init, trained, init,trained or none; got {text!r}"
        )
    return parts


def _tol(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (0 < value < 1):
        raise argparse.ArgumentTypeError(f"need 0 < TOL < 1, got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare a sweep's boundary with the paper formula and two Hessian spectra",
        description=(
            "For a result of `mamlconv sweep`, compute at the initial parameters and at each "
            "alpha's trained point (i) the paper's beta_c formula on the task-mean Hessian, "
            "(ii) 2/lambda_max of the surrogate Hessian E[H - alpha(Tg + H^2)] and (iii) "
            "2/lambda_max of the exact meta-Hessian, and write a table per alpha (Markdown and "
            "JSON) and a Fig. 4-style heatmap with the predictions drawn over it."
        ),
    )
    p.add_argument("result", type=Path, help="sweep result file (.npz)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--points",
        type=_points,
        default=("init", "trained"),
        help="where to take spectra: init, trained, init,trained (default) or none "
        "(no predictions; with --recheck: only the re-checked edge)",
    )
    p.add_argument(
        "--k",
        type=positive_int,
        default=30,
        help="top eigenvalues of H for the formula (default 30)",
    )
    p.add_argument("--tol", type=_tol, default=1e-4, help="Lanczos tolerance (default 1e-4)")
    p.add_argument(
        "--stem", default=None, help="output file names (default: the result's name + '_compare')"
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads (default 1, or MAMLCONV_THREADS: the products act on many tiny "
        "per-task tensors, where threads gain little and, on a busy machine, cost up to 30x "
        "in contention)",
    )
    add_device_argument(p, what="where to compute the spectra")
    p.add_argument(
        "--recheck",
        choices=("float64", "float32"),
        default=None,
        help="also re-run the cells around each alpha's edge in this precision "
        "(float32 edges are chaotic, docs/engine.md) and show the re-checked edge",
    )
    p.add_argument(
        "--recheck-seed", type=int, default=None, help="seed of the re-check (default: the sweep's)"
    )
    add_problem_argument(p, dest="spec", note=" (default: the one the result file records)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mamlconv.cli._args import check_output_dir
    from mamlconv.errors import ResultFileError
    from mamlconv.experiments.analysis.comparison import compare
    from mamlconv.experiments.figures.comparison import write_comparison
    from mamlconv.experiments.sweep.results import load_result

    check_output_dir(args.out)  # before minutes of spectra
    if not args.result.is_file():
        raise UsageError(f"no such result file: {args.result}")
    try:
        result = load_result(args.result)
    except ResultFileError:
        raise
    except (ValueError, OSError, KeyError) as exc:
        raise UsageError(f"cannot read {args.result}: {exc}") from None
    if args.spec is not None:
        import dataclasses

        from mamlconv.experiments.problems.registry import normalize_spec

        name = normalize_spec(args.spec)
        config = result.config.replace(problem=name, problem_options={})
        result = dataclasses.replace(result, config=config)
    resolve_problem(result.config.problem, result.config.problem_options)
    if "trained" in args.points and result.params is None:
        raise UsageError(
            f"{args.result} holds no trained parameters (swept with --save-params none); "
            "use --points init"
        )
    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.util.threads import set_threads

    set_threads(args.threads)  # the package's one thread rule (mamlconv.util.threads)
    device = resolve_device(args.device)
    if not args.quiet:
        from mamlconv.util.progress import show_on_stderr

        show_on_stderr()
    cmp = compare(
        result,
        points=args.points,
        k=args.k,
        tol=args.tol,
        device=device,
        progress=not args.quiet,
    )
    recheck = None
    if args.recheck is not None:
        from mamlconv.experiments.sweep.bisection import recheck_boundary

        if not args.quiet:
            sys.stderr.write(f"compare: re-checking the edge cells in {args.recheck}\n")
        recheck = recheck_boundary(result, dtype=args.recheck, seed=args.recheck_seed)
    stem = args.stem or f"{args.result.stem}_compare"
    paths = write_comparison(
        cmp, result, args.out, source=str(args.result), stem=stem, recheck=recheck
    )
    for path in paths.values():
        sys.stdout.write(f"{path}\n")
    return 0
