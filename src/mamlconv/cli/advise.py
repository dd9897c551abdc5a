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
        help="candidate inner rates (default: 0, 0.25, 0.5, 0.75, 0.9 x alpha_c)",
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
    add_device_argument(p, what="where to measure and train")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines (with an ETA) on stderr")
    p.set_defaults(func=run)


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
    config, problem = _config_and_problem(args)
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
