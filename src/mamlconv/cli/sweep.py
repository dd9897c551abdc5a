"""``mamlconv sweep``: train MAML over an alpha x beta grid (paper Section 4, Fig. 4).

Library: :mod:`mamlconv.experiments.sweep` (chunks, resume, workers),
:mod:`mamlconv.experiments.engine` (the batched trainer), :mod:`mamlconv.experiments.problems`
(problems and presets).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mamlconv.cli._args import (
    PROBLEM_CHOICES,
    PROBLEM_SPEC_HELP,
    VARIANT_CHOICES,
    UsageError,
    device_spec,
    integer,
    log_grid,
    nonnegative_float,
    positive_float,
    positive_int,
    problem_spec,
    resolve_problem,
)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="Fig. 4: train MAML over an alpha x beta grid and save the losses",
        description=(
            "Train MAML on every cell of a log-spaced alpha x beta grid at once (cells batched, "
            "all seeing the same tasks), freezing cells that diverge, and write one "
            "self-describing result file (.npz, with a .json sidecar). Interrupted sweeps "
            "keep their finished chunks; rerun with --resume. Options override the preset."
        ),
    )
    p.add_argument(
        "problem",
        nargs="?",
        choices=PROBLEM_CHOICES,
        help="task family (or give --problem MODULE:FACTORY)",
    )
    p.add_argument(
        "--problem",
        dest="spec",
        type=problem_spec,
        default=None,
        metavar="MODULE:FACTORY",
        help=PROBLEM_SPEC_HELP + "; presets: the sinusoid protocol (Sec. 4.1) and its smoke size",
    )
    p.add_argument(
        "--preset",
        choices=("paper", "smoke"),
        default="paper",
        help="paper: the paper's settings (default); smoke: a seconds-long run",
    )
    p.add_argument(
        "--variant",
        choices=VARIANT_CHOICES,
        default=None,
        help="MAML object (default: the preset's, exact)",
    )
    p.add_argument(
        "--alphas",
        type=log_grid,
        metavar="LO:HI:N",
        default=None,
        help="log-spaced inner learning rates",
    )
    p.add_argument(
        "--betas",
        type=log_grid,
        metavar="LO:HI:N",
        default=None,
        help="log-spaced meta learning rates",
    )
    p.add_argument(
        "--no-alpha-zero", action="store_true", help="skip the alpha = 0 row (Fig. 4's dashed line)"
    )
    p.add_argument("--iters", type=positive_int, default=None, help="outer iterations")
    p.add_argument(
        "--tasks",
        type=positive_int,
        default=None,
        dest="tasks_per_batch",
        help="tasks per meta-update",
    )
    p.add_argument(
        "--task-source",
        choices=("pool", "fresh"),
        default=None,
        help="fixed task pool (preset) or fresh tasks every iteration",
    )
    p.add_argument("--outer", choices=("sgd", "adam"), default=None, help="outer optimizer")
    p.add_argument(
        "--divergence-level",
        type=positive_float,
        default=None,
        help="loss above which a cell counts as diverged",
    )
    p.add_argument(
        "--record-every", type=positive_int, default=None, help="trajectory subsampling interval"
    )
    p.add_argument("--seed", type=integer, default=None, help="seed of init and tasks")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="training precision (default float32)",
    )
    p.add_argument(
        "--device",
        type=device_spec,
        default=None,
        help="auto (CUDA when present), cpu, cuda, cuda:N",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=None,
        help="cells per batched computation (default: chosen by the backend)",
    )
    p.add_argument(
        "--save-params",
        choices=("none", "best", "all"),
        default=None,
        help="final parameters to keep (default best: one cell per alpha)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes on disjoint chunks (default 1)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads per process (default 1: on a shared machine more threads can "
        "cost far more in contention than they gain; use --workers for more cores)",
    )
    # The compute kernel (library argument ``backend``): hidden, for benchmarks and tests.
    p.add_argument(
        "--kernel", choices=("auto", "generic", "mlp"), default="auto", help=argparse.SUPPRESS
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where chunks run: local (this machine, --workers processes; default) or ray "
        "(one Ray task per chunk, or per alpha column with --bisect; docs/cluster.md)",
    )
    p.add_argument(
        "--ray-address",
        default="auto",
        metavar="ADDR",
        help="--backend ray: auto (a running cluster, else a local Ray started for the run; "
        "default), local, or HOST:PORT of the cluster's head",
    )
    p.add_argument(
        "--cpus-per-task",
        type=positive_float,
        default=1.0,
        metavar="C",
        help="--backend ray: CPUs per task; a task runs floor(C) torch threads (default 1)",
    )
    p.add_argument(
        "--gpus-per-task",
        type=nonnegative_float,
        default=0.0,
        metavar="G",
        help="--backend ray: GPUs per task (default 0; with G > 0 use --device auto)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep from its finished chunks",
    )
    p.add_argument(
        "--bisect",
        action="store_true",
        help="find beta_c(alpha) by bisection instead of the grid (writes JSON)",
    )
    p.add_argument(
        "--rtol",
        type=positive_float,
        default=0.05,
        help="bisection: stop when beta_hi / beta_lo <= 1 + RTOL (default 0.05)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="result file (.npz; with --bisect, .json)",
    )
    p.set_defaults(func=run)


OVERRIDES = (
    "variant",
    "iters",
    "tasks_per_batch",
    "task_source",
    "outer",
    "divergence_level",
    "record_every",
    "seed",
    "dtype",
    "device",
    "chunk_size",
    "save_params",
)


def build_config(args: argparse.Namespace) -> Any:
    """The preset of ``args.problem`` with the command line's overrides applied."""
    from mamlconv.experiments.problems import get_preset

    if (args.problem is None) == (getattr(args, "spec", None) is None):
        raise UsageError("give exactly one of a problem name or --problem MODULE:FACTORY")
    config = get_preset(args.spec or args.problem, args.preset)
    changes = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.alphas is not None:
        changes["alphas"] = tuple(args.alphas)
    if args.betas is not None:
        changes["betas"] = tuple(args.betas)
    if args.no_alpha_zero:
        changes["alpha_zero_row"] = False
    tasks = changes.get("tasks_per_batch")
    if tasks is not None and tasks > config.pool_size:
        changes["pool_size"] = tasks  # a pool at least as large as one batch
    return config.replace(**changes)


def ray_options(args: argparse.Namespace) -> Any:
    """The Ray backend's options, or None for a local run (a usage error without Ray)."""
    if args.backend != "ray":
        for flag, value, default in (
            ("--ray-address", args.ray_address, "auto"),
            ("--cpus-per-task", args.cpus_per_task, 1.0),
            ("--gpus-per-task", args.gpus_per_task, 0.0),
        ):
            if value != default:
                raise UsageError(f"{flag} needs --backend ray")
        return None
    from mamlconv.experiments.ray_backend import RayMissing, RayOptions, require_ray

    if args.workers > 1:
        raise UsageError(
            "--workers is for --backend local; with --backend ray the cluster's CPUs and "
            "--cpus-per-task decide how many chunks run at once"
        )
    try:
        require_ray()
    except RayMissing as exc:
        raise UsageError(str(exc)) from None
    return RayOptions(
        address=args.ray_address,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from mamlconv.experiments.engine import resolve_device
    from mamlconv.experiments.ray_backend import ChunkFailed, RayUnreachable
    from mamlconv.experiments.sweep import bisect_sweep, chunk_dir, run_sweep
    from mamlconv.files import atomic_write_text

    try:
        config = build_config(args)
        resolve_device(config.device)
        ray = ray_options(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    resolve_problem(config.problem, config.problem_options)  # fails before any file
    torch.set_num_threads(args.threads)
    if args.bisect:
        from mamlconv.provenance import describe

        try:
            bis = bisect_sweep(
                config,
                rtol=args.rtol,
                backend=args.kernel,
                progress=not args.no_progress,
                ray=ray,
            )
        except RayUnreachable as exc:
            raise UsageError(str(exc)) from None
        except ChunkFailed as exc:
            sys.stderr.write(f"mamlconv sweep: error: {exc}\n")
            return 1
        record = {
            "config": config.to_dict(),
            "provenance": describe(str(resolve_device(config.device))),
            "bisection": {
                "rtol": args.rtol,
                "rounds": bis.result.n_rounds,
                "runs": bis.result.n_runs,
                "beta_min": bis.beta_min,
                "beta_max": bis.beta_max,
            },
            "boundary": bis.records(),
        }
        atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
        sys.stdout.write(f"{args.out}: {bis.result.n_runs} runs in {bis.result.n_rounds} rounds\n")
        return 0
    try:
        result = run_sweep(
            config,
            args.out,
            resume=args.resume,
            workers=args.workers,
            threads=args.threads,
            backend=args.kernel,
            progress=not args.no_progress,
            ray=ray,
        )
    except (FileExistsError, RayUnreachable) as exc:
        raise UsageError(str(exc)) from None
    except ChunkFailed as exc:
        sys.stderr.write(
            f"mamlconv sweep: error: {exc}; finished chunks are kept in {chunk_dir(args.out)}, "
            "rerun with --resume once it is fixed\n"
        )
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\ninterrupted: finished chunks are kept in {chunk_dir(args.out)}; "
            "rerun the same command with --resume\n"
        )
        raise
    info = result.run_info
    sys.stdout.write(
        f"{args.out}: {result.diverged.size} cells, {int(result.diverged.sum())} diverged, "
        f"{info['cell_iterations']} cell-iterations in {info['wall_s']:.1f} s\n"
    )
    return 0
