"""``mamlconv compare``: a sweep's measured beta edge against three predictions of beta_c; and
``mamlconv local``: the paper's conditions at a stationary point theta*(alpha), predicted and
measured (registered from here: the cli folder is at its module limit).

Library: :mod:`mamlconv.experiments.analysis.comparison` and
:mod:`mamlconv.experiments.analysis.local`.
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
    p.add_argument(
        "--mechanism",
        action="store_true",
        help="also the mechanism of the edge: catapult ratio per alpha and the edge-of-stability "
        "product of the stable cells above the init prediction (retrained; claim X-8)",
    )
    p.add_argument(
        "--reuse",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="take the spectra, table and figure of this earlier `compare` of the same sweep "
        "instead of recomputing them, and add the mechanism (implies --mechanism)",
    )
    p.add_argument(
        "--local",
        type=Path,
        action="append",
        default=[],
        metavar="FILE.json",
        help="a `mamlconv local` result of the same problem and variant whose local edge is put "
        "beside the Fig. 4 edge (repeatable: one per seed)",
    )
    p.add_argument(
        "--cells-per-alpha",
        type=positive_int,
        default=3,
        help="stable cells above the init prediction retrained per alpha (default 3)",
    )
    p.add_argument(
        "--along", type=int, default=4, help="alphas whose product is followed along training"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=run)
    add_local_parser(subparsers)


def run(args: argparse.Namespace) -> int:
    from mamlconv.cli._args import check_output_dir
    from mamlconv.errors import ResultFileError
    from mamlconv.experiments.analysis.comparison import compare
    from mamlconv.experiments.figures.comparison import write_comparison
    from mamlconv.experiments.sweep.results import load_result

    check_output_dir(args.out)  # before minutes of spectra
    if not args.result.is_file():
        raise UsageError(f"no such result file: {args.result}")
    if args.reuse is not None:
        return _run_reuse(args)
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
    if args.mechanism:
        from mamlconv.util.files import read_json

        _add_mechanism(args, result, read_json(paths["json"]), paths["json"], paths["md"])
    for path in paths.values():
        sys.stdout.write(f"{path}\n")
    return 0


def _add_mechanism(
    args: argparse.Namespace,
    result: Any,
    record: dict,
    json_path: Path,
    md_path: Path,
    old_md: str | None = None,
) -> None:
    from mamlconv.experiments.analysis.mechanism import mechanism, mechanism_markdown
    from mamlconv.util.files import atomic_write_text, dumps, jsonable, read_json
    from mamlconv.util.provenance import describe

    local_records = []
    for path in args.local:
        if not path.is_file():
            raise UsageError(f"--local: no such file: {path}")
        rec = read_json(path)
        if not isinstance(rec, dict) or "rows" not in rec:
            raise UsageError(f"--local: {path} is not a `mamlconv local` result")
        if rec.get("variant") != result.config.variant:
            raise UsageError(
                f"--local: {path} is {rec.get('variant')} MAML, the sweep {result.config.variant}"
            )
        local_records.append(rec)
    log = None if args.quiet else (lambda line: sys.stderr.write(f"compare: {line}\n"))
    mech = mechanism(
        result,
        record,
        cells_per_alpha=args.cells_per_alpha,
        along=args.along,
        local_records=tuple(local_records),
        log=log,
    )
    record["mechanism"] = jsonable(mech)
    record["mechanism_provenance"] = describe("cpu")
    record["mechanism_local_files"] = [str(p) for p in args.local]
    atomic_write_text(json_path, dumps(record))
    text = md_path.read_text(encoding="utf-8") if old_md is None else old_md
    cut = text.find("\n## Mechanism of the Fig. 4 edge")
    text = text if cut < 0 else text[:cut] + "\n"
    atomic_write_text(md_path, text.rstrip("\n") + "\n" + mechanism_markdown(record["mechanism"]))


def _run_reuse(args: argparse.Namespace) -> int:
    from mamlconv.experiments.sweep.results import load_result
    from mamlconv.util.files import read_json

    if not args.reuse.is_file():
        raise UsageError(f"--reuse: no such file: {args.reuse}")
    try:
        result = load_result(args.result)
        record = read_json(args.reuse)
    except (ValueError, OSError, KeyError) as exc:
        raise UsageError(f"cannot read {args.result} / {args.reuse}: {exc}") from None
    if not isinstance(record, dict) or "rows" not in record or "spectra" not in record:
        raise UsageError(f"--reuse: {args.reuse} is not a `mamlconv compare` result")
    if record.get("config") != result.config.to_dict():
        raise UsageError(f"--reuse: {args.reuse} was made from another sweep than {args.result}")
    from mamlconv.util.threads import set_threads

    set_threads(args.threads)
    stem = args.stem or f"{args.result.stem}_compare"
    json_path, md_path = args.out / f"{stem}.json", args.out / f"{stem}.md"
    old_md_path = args.reuse.with_suffix(".md")
    old_md = old_md_path.read_text(encoding="utf-8") if old_md_path.is_file() else ""
    _add_mechanism(args, result, record, json_path, md_path, old_md)
    for path in (json_path, md_path):
        sys.stdout.write(f"{path}\n")
    return 0


# ---------------------------------------------------------------------------------------------
# mamlconv local: the paper's conditions in their own (local) regime
# ---------------------------------------------------------------------------------------------


def _alphas(text: str) -> list[float]:
    from mamlconv.cli._args import float_list

    values = float_list(text)
    bad = [a for a in values if a < 0]
    if bad:
        raise argparse.ArgumentTypeError(f"alphas must be >= 0, got {bad[0]!r}")
    return values


def _local_problem(text: str) -> str:
    """A built-in name as it is; a MODULE:FACTORY spec named here is the user's word that its
    code may run (as ``--problem``)."""
    if ":" in text:
        from mamlconv.cli._args import problem_spec

        return problem_spec(text)
    return text


def _resolution(text: str) -> float:
    value = _tol(text)
    return value


def add_local_parser(subparsers: Any) -> None:
    from mamlconv.cli._args import nonnegative_int

    p = subparsers.add_parser(
        "local",
        help="the paper's conditions at a minimum: predicted and measured local beta edge",
        description=(
            "For each alpha, find a stationary point theta*(alpha) of the variant's outer update "
            "in float64 (an optimiser, then Newton steps), certify it (||F||, the smallest "
            "eigenvalue of its Jacobian, flat directions counted), predict the local beta edge "
            "from every operator (paper formula on H, H - alpha(Tg + H^2), H - alpha H^2, the "
            "exact meta-Hessian, the update's own Jacobian) and measure it by running the real "
            "outer update from a perturbed theta* and bisecting beta. PROBLEM: linreg (the data "
            "options of `mamlconv linreg`), sinusoid, omniglot, miniimagenet or MODULE:FACTORY."
        ),
    )
    p.add_argument(
        "problem",
        type=_local_problem,
        help="linreg, sinusoid, omniglot, miniimagenet or MODULE:FACTORY",
    )
    p.add_argument(
        "--alphas", type=_alphas, required=True, metavar="A,B,...", help="inner rates (>= 0)"
    )
    p.add_argument("--variant", choices=("exact", "first_order"), default="exact")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.json", help="result file")
    p.add_argument(
        "--preset",
        default=None,
        help="preset whose problem options and task pool are used (default: paper for "
        "sinusoid and MODULE:FACTORY, smoke for omniglot / miniimagenet)",
    )
    p.add_argument(
        "--tasks", type=positive_int, default=None, help="tasks in the fixed pool (default: preset)"
    )
    p.add_argument(
        "--optimiser-iters",
        type=nonnegative_int,
        default=3000,
        help="Adam steps before Newton (default 3000; 0 for linreg)",
    )
    p.add_argument("--newton-iters", type=positive_int, default=300, help="(default 300)")
    p.add_argument(
        "--newton-start",
        type=_tol,
        default=None,
        metavar="RTOL",
        help="start Newton only once the optimiser has brought ||F|| below RTOL times its start "
        "value (default 1e-3: on a ReLU network a longer Newton step crosses activation kinks)",
    )
    p.add_argument(
        "--horizon", type=positive_int, default=1000, help="outer steps per stability run"
    )
    p.add_argument(
        "--resolution",
        type=_resolution,
        default=0.005,
        help="width of the bisected bracket in decades (default 0.005)",
    )
    p.add_argument(
        "--fig4",
        type=Path,
        default=None,
        metavar="RESULT.npz",
        help="a sweep of the "
        "same problem whose Fig. 4 edge is drawn and tabulated beside the local one",
    )
    p.add_argument("--figure", type=Path, default=None, metavar="FILE.png", help="draw it here")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads (default 1, or MAMLCONV_THREADS)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    _add_linreg_data_arguments(p)
    p.set_defaults(func=run_local)


def _add_linreg_data_arguments(p: Any) -> None:
    """The data options of ``mamlconv linreg`` (same names, defaults and file reader)."""
    from mamlconv.cli._args import finite_float

    def theta0(text: str) -> tuple[float, float]:
        parts = text.split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected W,C (two numbers), got {text!r}")
        return finite_float(parts[0]), finite_float(parts[1])

    g = p.add_argument_group("linreg data (as `mamlconv linreg`)")
    g.add_argument(
        "--data",
        metavar="FILE",
        type=Path,
        default=None,
        help="JSON object with lists 'x' and 'y', or a two-column CSV (x,y)",
    )
    g.add_argument(
        "--n-points", type=positive_int, default=100, help="generated points (default 100)"
    )
    g.add_argument("--loss", choices=("mse", "half_mse"), default="mse", help="(default mse)")
    g.add_argument("--theta0", type=theta0, default=(0.0, 0.0), metavar="W,C", help="start")


def _linreg_data(args: argparse.Namespace) -> Any:
    import torch

    from mamlconv.cli.linreg import read_data
    from mamlconv.numerics.losses import linreg_from_arrays, sample_linreg

    if args.data is not None:
        x, y = read_data(args.data)
        try:
            return linreg_from_arrays(x, y)
        except ValueError as exc:
            raise UsageError(f"--data: {exc}") from None
    if args.n_points < 2:
        raise UsageError(f"--n-points must be >= 2, got {args.n_points}")
    return sample_linreg(torch.Generator().manual_seed(args.seed), n_points=args.n_points)


def run_local(args: argparse.Namespace) -> int:
    import json

    from mamlconv.cli._args import check_output_file
    from mamlconv.experiments.analysis import local as local_analysis
    from mamlconv.util.files import atomic_write_text, dumps
    from mamlconv.util.provenance import describe

    check_output_file(args.out, flag="--out", suffixes=(".json",))
    if args.figure is not None:
        check_output_file(args.figure, flag="--figure", suffixes=(".png", ".pdf", ".svg"))
    if args.fig4 is not None and not args.fig4.is_file():
        raise UsageError(f"--fig4: no such result file: {args.fig4}")
    from mamlconv.util.threads import set_threads

    set_threads(args.threads)
    log = None if args.quiet else (lambda line: sys.stderr.write(f"local: {line}\n"))
    if args.problem == "linreg":
        data = _linreg_data(args)
        problem, init, tasks, closed_form, lam = local_analysis.linreg_setup(
            data, convention=args.loss, theta0=args.theta0, variant=args.variant
        )
        name, steps, extra = "linreg", 1, {"hessian_eigs": [float(x) for x in lam]}
        extra["data"] = str(args.data) if args.data is not None else "generated"
    else:
        try:
            problem, init, tasks, cfg = local_analysis.problem_setup(
                args.problem, preset=args.preset, seed=args.seed, n_tasks=args.tasks
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        name, steps, closed_form, extra = cfg.problem, cfg.steps, None, {"preset": cfg.to_dict()}
    study = local_analysis.local_stability(
        problem,
        args.alphas,
        tasks=tasks,
        init=init,
        variant=args.variant,
        steps=steps,
        seed=args.seed,
        name=name,
        optimiser_iters=args.optimiser_iters,
        newton_iters=args.newton_iters,
        horizon=args.horizon,
        resolution=args.resolution,
        closed_form=closed_form,
        newton_start_rtol=args.newton_start,
        log=log,
    )
    record = study.record()
    record["config"].update(extra)
    record["provenance"] = describe("cpu")
    from mamlconv.experiments.figures import local as local_figure

    if args.fig4 is not None:
        try:
            edges = local_figure.fig4_edges(args.fig4, args.alphas)
        except (ValueError, OSError, KeyError) as exc:
            raise UsageError(f"--fig4: cannot read {args.fig4}: {exc}") from None
        record["fig4"] = {"result": str(args.fig4), "edges": edges}
    atomic_write_text(args.out, dumps(record))
    table = local_figure.markdown(record, fig4=local_figure.fig4_lookup(record))
    atomic_write_text(args.out.with_suffix(".md"), table)
    if args.figure is not None:
        local_figure.draw_local([record], args.figure)
    sys.stdout.write(json.dumps({"out": str(args.out), **record["summary"]}, default=str) + "\n")
    return 0
