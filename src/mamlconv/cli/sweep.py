"""``mamlconv sweep``: train MAML over an alpha x beta grid (paper Section 4, Fig. 4).

Library: :mod:`mamlconv.experiments.sweep` (chunks, resume, workers),
:mod:`mamlconv.experiments.engine` (the batched trainer),
:mod:`mamlconv.experiments.problems.registry`
(problems and presets).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from mamlconv.cli._args import (
    PROBLEM_CHOICES,
    VARIANT_CHOICES,
    UsageError,
    add_problem_argument,
    device_spec,
    integer,
    log_grid,
    nonnegative_float,
    positive_float,
    positive_int,
    resolve_problem,
)

KERNEL_CHOICES = ("auto", "generic", "mlp", "grouped")
"""The engine's step backends (``experiments.engine.loop.BACKENDS``, spelled out here so that
the parser stays torch-free; tests/test_engine.py keeps the two equal)."""


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
        default=None,
        help="task family (or --problem MODULE:FACTORY, or --config RESULT)",
    )
    add_problem_argument(
        p, dest="spec", note="; presets: the sinusoid protocol (Sec. 4.1) and its smoke size"
    )
    p.add_argument(
        "--preset",
        choices=("paper", "smoke"),
        default=None,
        help="paper: the paper's settings (default); smoke: a seconds-long run",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="RESULT",
        help="rerun or resume the sweep recorded in RESULT (a result .npz, its .json sidecar, "
        "a bisection .json, or an interrupted sweep's .chunks folder); options given as well "
        "override it, --out defaults to its result file",
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
        default=None,
        help="torch threads per process (default 1, or MAMLCONV_THREADS: on a shared machine "
        "more threads can cost far more in contention than they gain; use --workers for more "
        "cores)",
    )
    # The compute kernel (library argument ``backend``): hidden, for benchmarks and tests.
    p.add_argument("--kernel", choices=KERNEL_CHOICES, default="auto", help=argparse.SUPPRESS)
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
        default=None,
        help="bisection: stop when beta_hi / beta_lo <= 1 + RTOL (default 0.05, or the --config's)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a finished result at --out (default: refuse, saying what it holds)",
    )
    p.add_argument(
        "--yes",
        action="store_true",
        help="start even when the estimated time, memory or file count is above the limits "
        "(4 h, 80%% of the free memory, 20000 chunk files)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="result file (.npz; with --bisect, .json); required unless --config gives it",
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


DEFAULT_RTOL = 0.05
"""Bisection tolerance: brackets narrower than 5 % in beta (finer than a 20-point grid)."""


def build_config(args: argparse.Namespace, base: Any = None) -> Any:
    """The preset of ``args.problem`` (or ``base``, a saved sweep's configuration) with the
    command line's overrides applied."""
    from mamlconv.experiments.problems.registry import get_preset

    if base is not None:
        config = base
    else:
        if (args.problem is None) == (getattr(args, "spec", None) is None):
            raise UsageError("give exactly one of a problem name or --problem MODULE:FACTORY")
        config = get_preset(args.spec or args.problem, args.preset or "paper")
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
    from mamlconv.experiments.sweep.ray_backend import RayMissing, RayOptions, require_ray

    if args.workers > 1:
        raise UsageError(
            "--workers is for --backend local; with --backend ray the cluster's CPUs and "
            "--cpus-per-task decide how many chunks run at once"
        )
    try:
        require_ray()
    except RayMissing as exc:
        raise UsageError(str(exc)) from None
    options = RayOptions(
        address=args.ray_address,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
    )
    if options.address not in ("auto", "local"):  # before the estimate and any file: one line
        from mamlconv.experiments.sweep.ray_backend import RayUnreachable, check_reachable

        try:
            check_reachable(options.address)
        except RayUnreachable as exc:
            raise UsageError(str(exc)) from None
    return options


def _from_saved(args: argparse.Namespace) -> Any:
    """Apply ``--config``: the saved configuration, its result path and mode (bisection)."""
    from mamlconv.experiments.sweep.storage import read_saved_sweep

    saved = read_saved_sweep(args.config)
    if args.problem is not None and args.problem != saved.config.problem:
        raise UsageError(
            f"--config {args.config} is a {saved.config.problem} sweep, not {args.problem}; "
            "drop the problem argument"
        )
    if args.preset is not None:
        raise UsageError("--preset and --config exclude each other: the saved sweep is the base")
    spec = getattr(args, "spec", None)
    if spec is not None:
        from mamlconv.experiments.problems.registry import normalize_spec

        if normalize_spec(spec) != saved.config.problem:
            raise UsageError(
                f"--config {args.config} is a sweep of {saved.config.problem}, not of "
                f"--problem {spec}; give the spec the file records, or drop --config"
            )
        args.spec = None  # the saved configuration names it (and the user repeated it)
    args.problem = saved.config.problem
    if args.out is None:
        args.out = saved.out
    if saved.bisect:
        args.bisect = True
        if args.rtol is None and saved.rtol is not None:
            args.rtol = float(saved.rtol)
    base = saved.config
    if saved.chunk_size is not None and args.chunk_size is None:
        base = base.replace(chunk_size=int(saved.chunk_size))
    return base


def _check_out(args: argparse.Namespace, config: Any) -> bool:
    """Everything about ``--out`` that can be known before work: True when a resumed
    sweep is already complete."""
    from mamlconv.cli._args import check_output_file
    from mamlconv.experiments.sweep import storage as sweep_files

    sweep_files.check_suffix(args.out, bisect=args.bisect)
    check_output_file(args.out)
    if args.bisect:
        sweep_files.check_lock_free(args.out)
        if args.out.exists() and not args.force:
            try:
                held = sweep_files.summary(sweep_files.read_meta(args.out))
            except Exception:  # noqa: BLE001 -- any unreadable file: say it exists
                held = "not a readable result"
            raise UsageError(
                f"--out {args.out} already holds a result ({held}); pass --force to replace "
                "it, or choose another --out"
            )
        return False
    folder = sweep_files.chunk_dir(args.out)
    check_output_file(folder / "chunk_0000.npz")
    n_old = len(sweep_files.finished_chunk_files(folder))
    if n_old and not args.resume:
        raise UsageError(
            f"{folder} holds {n_old} finished chunks of an earlier run; pass --resume to "
            "continue it, or delete the folder"
        )
    done = sweep_files.finished_or_refuse(config, args.out, resume=args.resume, force=args.force)
    return done is not None


def _estimate(args: argparse.Namespace, config: Any) -> None:
    """Print the sweep's size and estimated cost (stderr); refuse above the limits."""
    import numpy as np

    from mamlconv.experiments.sweep import storage as sweep_files
    from mamlconv.experiments.sweep.estimate import estimate_sweep, refuse_unless_confirmed

    if args.bisect:
        lo, hi = config.betas[0], config.betas[-1]
        span = max(math.log(hi / lo), 1e-12) / math.log1p(args.rtol)
        rounds = max(math.ceil(math.log2(span)), 0)
        config = config.replace(
            betas=tuple(np.geomspace(lo, hi, rounds + 2)) if hi > lo else (lo,),
            alpha_zero_row=False,
        )
        done = 0
    else:
        chunks = sweep_files.finished_chunk_files(sweep_files.chunk_dir(args.out))
        done = 0
        if args.resume and chunks:
            from mamlconv.experiments.sweep.chunks import default_chunk_size
            from mamlconv.experiments.sweep.run import resume_chunk_size

            config = resume_chunk_size(config, args.out)
            size = default_chunk_size(config, args.kernel)
            n_cells = (len(config.alphas) + int(config.alpha_zero_row)) * len(config.betas)
            done = min(len(chunks) * size, n_cells)
    est = estimate_sweep(config, backend=args.kernel, workers=args.workers, done_cells=done)
    sys.stderr.write(est.line() + "\n")
    refuse_unless_confirmed(est, yes=args.yes)


def run(args: argparse.Namespace) -> int:
    import torch

    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.experiments.sweep.bisection import bisect_sweep
    from mamlconv.experiments.sweep.ray_backend import ChunkFailed, RayUnreachable
    from mamlconv.experiments.sweep.run import run_sweep
    from mamlconv.experiments.sweep.storage import check_extremes, chunk_dir
    from mamlconv.util.files import atomic_write_text

    base = _from_saved(args) if args.config is not None else None
    if args.problem is None and getattr(args, "spec", None) is None:
        raise UsageError(
            "give the problem (sinusoid, omniglot, miniimagenet), --problem MODULE:FACTORY "
            "or --config RESULT"
        )
    if args.out is None:
        raise UsageError("--out FILE is required (or --config RESULT, whose file it defaults to)")
    if args.rtol is None:
        args.rtol = DEFAULT_RTOL
    try:
        config = build_config(args, base)
        check_extremes(config)
        resolve_device(config.device)
        ray = ray_options(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    resolve_problem(config.problem, config.problem_options)  # fails before any file
    if _check_out(args, config):
        sys.stdout.write(f"{args.out}: already complete (this configuration); nothing to do\n")
        return 0
    from mamlconv.util.threads import policy_threads, set_threads

    set_threads(args.threads)  # the package's one thread rule (mamlconv.util.threads)
    args.threads = policy_threads(args.threads) or torch.get_num_threads()
    _estimate(args, config)
    if not args.no_progress:
        from mamlconv.util.progress import show_on_stderr

        show_on_stderr()  # cells finished and the time left, on stderr
    if args.bisect:
        from mamlconv.experiments.sweep.storage import SweepLock
        from mamlconv.util.provenance import describe

        with SweepLock(args.out):
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
                "provenance": describe(resolve_device(config.device)),
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
            force=args.force,
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
        if chunk_dir(args.out).exists():
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
