"""``mamlconv advise``: recommended (alpha, beta) for a problem at its initial point.

Library: :func:`mamlconv.experiments.analysis.advisor.advise`. The point and the tasks are those a
sweep
with the same seed starts from (:func:`mamlconv.experiments.engine.state.initial_state`, a fixed
pool
of ``--tasks`` tasks), in float64.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from mamlconv.cli._args import (
    PROBLEM_CHOICES,
    VARIANT_CHOICES,
    UsageError,
    add_device_argument,
    add_problem_argument,
    float_list,
    integer,
    nonnegative_int,
    positive_float,
    positive_int,
    resolve_problem,
)


def _safety(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (0 < value <= 1):
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "advise",
        help="recommend (alpha, beta) from curvature spectra at a point (beyond the paper)",
        description=(
            "Measure the task-mean Hessian, the surrogate Hessian and the exact meta-Hessian "
            "at the problem's initial point (Lanczos on Hessian-vector products, float64) and "
            "recommend an inner rate alpha* (the largest candidate, fractions of the paper's "
            "alpha_c = 1/lambda_max, below the divergence predicted by the spectrum governing "
            "the variant) and a meta rate beta* = SAFETY x beta_c(alpha*). Predictions are "
            "local (at that point) and first order in time; --verify-iters checks them by "
            "short training runs at (alpha*, beta*) and (alpha*, 2 beta_c)."
        ),
        epilog="example: mamlconv advise sinusoid --tasks 20 --verify-iters 100 --json",
    )
    p.add_argument(
        "problem",
        nargs="?",
        choices=PROBLEM_CHOICES,
        help="task family (or give --problem MODULE:FACTORY)",
    )
    add_problem_argument(p, dest="factory")
    p.add_argument(
        "--variant", choices=VARIANT_CHOICES, default="exact", help="MAML object (default exact)"
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        metavar="K",
        help="inner steps (default: the paper preset's, 1 for sinusoid, 2 for few-shot)",
    )
    p.add_argument(
        "--tasks",
        type=positive_int,
        default=None,
        metavar="N",
        help="tasks in the fixed pool (default: the paper preset's batch; 16 with --problem)",
    )
    p.add_argument(
        "--safety",
        type=_safety,
        default=0.5,
        help="beta* = SAFETY x beta_c(alpha*), in (0, 1] (default 0.5)",
    )
    p.add_argument(
        "--alphas",
        type=float_list,
        default=None,
        metavar="A1,A2,...",
        help="candidate inner rates (default: 0, 0.25, 0.5, 0.75, 0.9 x alpha_c; with --measure "
        "the alpha ladder, default 0.01, 0.03, ..., 10 x alpha_c)",
    )
    p.add_argument("--k", type=positive_int, default=5, help="Hessian eigenvalues (default 5)")
    p.add_argument("--seed", type=integer, default=0, help="seed of init, tasks and Lanczos")
    p.add_argument(
        "--verify-iters",
        type=nonnegative_int,
        default=0,
        metavar="N",
        help="check the advice by N training iterations (default 0: no check)",
    )
    m = p.add_argument_group(
        "measured advice (--measure)",
        "short real training runs: alpha scan + bisection, batched beta ladders at alpha = 0 "
        "and alpha*, within a budget of cell-iterations (docs/api.md, 'Measured advice')",
    )
    m.add_argument("--measure", action="store_true", help="measure the edges by training")
    m.add_argument(
        "--iters",
        type=positive_int,
        default=None,
        metavar="N",
        help="the horizon: iterations a stable run must survive (default: the paper preset's "
        f"500 for a named problem, {USER_ITERS} with --problem)",
    )
    m.add_argument(
        "--budget",
        type=positive_int,
        default=None,
        metavar="CELL_ITERS",
        help="cell-iterations to spend (default 5%% of a 20 x 20 grid at the horizon)",
    )
    m.add_argument(
        "--ladder", type=positive_int, default=3, help="betas trained per batched round (3)"
    )
    m.add_argument(
        "--target-decades",
        type=positive_float,
        default=None,
        metavar="W",
        help="width of a measured beta bracket in decades (default 0.15)",
    )
    m.add_argument(
        "--outer", choices=("sgd", "adam"), default="sgd", help="outer optimizer (default sgd)"
    )
    m.add_argument("--figure", default=None, metavar="DIR", help="also draw the figure into DIR")
    add_device_argument(p, what="where to measure and train")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines (with an ETA) on stderr")
    p.set_defaults(func=run)


USER_ITERS = 100
"""Default horizon of ``--measure`` with ``--problem`` (ours: a user's model on a CPU)."""


def _config_and_problem(args: argparse.Namespace) -> tuple[Any, Any]:
    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.problems.registry import get_preset, get_problem

    if (args.problem is None) == (args.factory is None):
        raise UsageError("give exactly one of a problem name or --problem MODULE:FACTORY")
    if args.factory is not None:
        from mamlconv.experiments.problems.registry import normalize_spec

        try:
            name = normalize_spec(args.factory)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        problem = resolve_problem(name)
        base = SweepConfig(problem=name, pool_size=16, tasks_per_batch=16, steps=1)
    else:
        base = get_preset(args.problem, "paper")
        try:
            problem = get_problem(args.problem, **base.problem_options)
        except Exception as exc:  # e.g. DataError: missing Omniglot files, one line
            raise UsageError(f"{args.problem}: {exc}") from None
    n = args.tasks if args.tasks is not None else base.tasks_per_batch
    steps = args.steps if args.steps is not None else base.steps
    if getattr(args, "measure", False):  # the preset's protocol, at the user's horizon
        iters = args.iters or (USER_ITERS if args.factory is not None else base.iters)
        pool = n if base.task_source == "pool" else base.pool_size
        try:
            return base.replace(
                variant=args.variant,
                steps=steps,
                pool_size=max(pool, n),
                tasks_per_batch=n,
                seed=args.seed,
                device=args.device,
                iters=iters,
                outer=args.outer,
            ), problem
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    try:
        config = base.replace(
            variant=args.variant,
            steps=steps,
            task_source="pool",
            pool_size=n,
            tasks_per_batch=n,
            seed=args.seed,
            dtype="float64",
            device=args.device,
        )
    except ValueError as exc:  # e.g. the surrogate with K > 1
        raise UsageError(str(exc)) from None
    return config, problem


def _fmt(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return "inf" if math.isinf(x) else f"{x:.4g}"


def _print_text(advice: Any, config: Any) -> None:
    from mamlconv.experiments.analysis.advisor import SOURCES

    print(
        f"problem {advice.problem}, variant {advice.variant}, {advice.steps} inner "
        f"step{'s' * (advice.steps > 1)}, {advice.n_tasks} tasks (pool, seed {config.seed}), "
        f"{advice.n_params} parameters, float64"
    )
    print(f"H top eigenvalues     {', '.join(_fmt(v) for v in advice.hessian_top)}")
    print(f"H smallest eigenvalue {_fmt(advice.hessian_min)}")
    print(f"alpha_c (paper Eq. 11, 1/lambda_max) {_fmt(advice.alpha_c_paper)}")
    print(f"{'alpha_c (' + advice.variant + ' model on H)':<36} {_fmt(advice.alpha_c_variant)}")
    print("beta_c(alpha) by prediction (governing: " + advice.governing + ")")
    print(f"{'alpha':>10} {'x alpha_c':>9} " + " ".join(f"{n:>15}" for n in SOURCES))
    for c in advice.candidates:
        mark = " <- alpha*" if c.alpha == advice.alpha_star else ""
        print(
            f"{_fmt(c.alpha):>10} {_fmt(c.fraction_of_alpha_c):>9} "
            + " ".join(f"{_fmt(c.beta_c[n]):>15}" for n in SOURCES)
            + mark
        )
    for name, text in SOURCES.items():
        print(f"  {name}: {text}")
    print(
        f"recommendation  alpha* = {_fmt(advice.alpha_star)}  beta* = {_fmt(advice.beta_star)}"
        f"  (= {advice.safety:g} x beta_c {_fmt(advice.beta_c_star)} from {advice.governing}; "
        f"GD's beta_c {_fmt(advice.beta_c_gd)}; largest beta_c at alpha "
        f"{_fmt(advice.alpha_best_beta)})"
    )
    v = advice.verification
    if v is not None:
        for r in v.runs:
            state = f"diverged at iteration {r['diverged_at']}" if r["diverged"] else "finite"
            print(
                f"verify ({v.iters} iters) alpha {_fmt(r['alpha'])} beta {_fmt(r['beta'])}: "
                f"{state}, final loss {_fmt(r['final_loss'])}"
            )
        print(
            f"verify: recommended run stable: {v.recommended_stable}; 2 x beta_c diverged: "
            f"{v.twice_beta_c_diverged}"
        )
    for note in advice.notes:
        print(f"note: {note}")


def run(args: argparse.Namespace) -> int:
    import torch

    from mamlconv.experiments.analysis.advisor import advise
    from mamlconv.experiments.engine.state import initial_state, resolve_device
    from mamlconv.util.threads import set_threads

    set_threads()  # the package's one thread rule (mamlconv.util.threads)
    if not args.measure:
        given = [f for f in ("iters", "budget", "target_decades", "figure") if getattr(args, f)]
        if given or args.outer != "sgd" or args.ladder != 3:
            flag = "--" + (given[0] if given else "outer").replace("_", "-")
            raise UsageError(f"{flag} belongs to --measure; add --measure or drop it")
    config, problem = _config_and_problem(args)
    if args.measure:
        return _run_measure(args, config, problem)
    if not args.quiet:
        from mamlconv.util.progress import show_on_stderr

        show_on_stderr()
    try:
        device = resolve_device(config.device)
        config = config.replace(device=str(device))
        params, stream = initial_state(problem, config, dtype=torch.float64, device=device)
        assert stream.pool is not None
        advice = advise(
            problem,
            params,
            stream.pool,
            variant=config.variant,
            steps=config.steps,
            alphas=args.alphas,
            safety=args.safety,
            k=args.k,
            seed=args.seed,
            verify_iters=args.verify_iters,
            divergence_level=None if args.factory is not None else config.divergence_level,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    if args.json:
        record = advice.as_dict()
        record["config"] = config.to_dict()
        print(json.dumps(record))
        return 0
    _print_text(advice, config)
    return 0


def _run_measure(args: argparse.Namespace, config: Any, problem: Any) -> int:
    from mamlconv.experiments.analysis.measured_advice import TARGET_DECADES, measure
    from mamlconv.experiments.engine.state import resolve_device

    if not args.quiet:
        from mamlconv.util.progress import show_on_stderr

        show_on_stderr()
    try:
        config = config.replace(device=str(resolve_device(config.device)))
        advice = measure(
            problem,
            config,
            alphas=args.alphas,
            safety=args.safety,
            budget=args.budget,
            ladder=args.ladder,
            target_decades=args.target_decades or TARGET_DECADES,
            k=args.k,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None
    record = advice.as_dict()
    record.update(steps=config.steps, n_tasks=config.tasks_per_batch, config=config.to_dict())
    # today's field names, for the predictions at the measured alphas
    record.update(safety=args.safety, candidates=record["predictions"])
    record["alpha_c"] = {"paper": record["alpha_scan"]["alpha_c_paper"]}
    if args.figure:
        from mamlconv.experiments.figures.advice import draw_measured_advice

        record["figure"] = [str(f) for f in draw_measured_advice(record, args.figure)]
    if args.json:
        print(json.dumps(record))
        return 0
    _print_measured(record)
    return 0


def _print_measured(r: dict[str, Any]) -> None:
    c, rec = r["cost"], r["recommendation"]
    print(
        f"problem {r['problem']}, variant {r['variant']}, outer {r['outer']}, horizon "
        f"{r['iters']} iterations, {r['n_tasks']} tasks per batch (seed {r['config']['seed']})"
    )
    scan = r["alpha_scan"]
    div = scan["alpha_div"]
    print(
        f"alpha scan at beta {_fmt(scan['beta_scan'])}: largest stable alpha "
        f"{_fmt(scan['largest_stable_alpha'] or math.nan)}, alpha_div "
        f"{'above the ladder' if div is None else _fmt(div)} (paper alpha_c "
        f"{_fmt(scan['alpha_c_paper'] or math.inf)})"
    )
    for edge, close in zip(r["measured_edges"], r["closest_prediction"], strict=True):
        lo = "below the range" if edge["lo"] is None else _fmt(edge["lo"])
        hi = "inf" if edge["hi"] is None else _fmt(edge["hi"])
        width = edge["width_decades"]
        line = f"beta edge at alpha {_fmt(edge['alpha'])}: [{lo}, {hi}]"
        line += f" ({'open' if width is None else f'{width:.2f} decades'})"
        if close and close.get("name"):
            line += (
                f"; closest prediction {close['name']} {_fmt(close['value'])}, "
                f"{close['log10_error']:+.2f} decades"
            )
        if edge["lo_learned"] is False:
            line += " (the stable end did not learn: final loss >= 0.9 x reference)"
        print(line + ("  NON-MONOTONE in beta" if edge["non_monotone"] else ""))
    print(
        f"recommendation  alpha* = {_fmt(rec['alpha'])}  beta* = {_fmt(rec['beta'] or math.nan)}"
        f"  (= {rec['safety']:g} x the largest beta measured stable at alpha*)"
    )
    check = r["check"]
    if check is not None:
        state = "trained the horizon" if check["stable"] else f"diverged at {check['diverged_at']}"
        learned = "learned" if r["check_learned"] else "did not learn"
        print(
            f"check run at (alpha*, beta*): {state}, final loss {_fmt(check['final_loss'])} "
            f"({learned}: reference {_fmt(r['learned_reference'])})"
        )
    print(
        f"cost: {c['cell_iterations']} cell-iterations ({100 * c['grid_fraction']:.1f}% of a "
        f"20 x 20 x {r['iters']} grid), {c['seconds']:.1f} s training + "
        f"{c['theory_seconds']:.1f} s spectra"
    )
    if r.get("adam"):
        for row in r["adam"]["per_alpha"]:
            print(
                f"Adam analogue at alpha {_fmt(row['alpha'])}: 38 / lambda_max(P^-1 M) = "
                f"{_fmt(row['beta_c'] or math.inf)} (Cohen et al. 2022), "
                f"{row.get('log10_error', math.nan):+.2f} decades from the measured edge"
            )
        for text in r["adam"]["per_alpha"][0]["conditions_no_longer_apply"]:
            print(f"adam: {text}")
    for note in r["notes"]:
        print(f"note: {note}")
    for path in r.get("figure", []):
        print(path)
