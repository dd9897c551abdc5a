"""``mamlconv readings``: list, run (resumable) and judge the reading matrix of the claims."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mamlconv.cli._args import (
    UsageError,
    add_device_argument,
    device_spec,
    positive_float,
    positive_int,
)

DEFAULT_OUT = None
"""--out's default: the ``readings/`` folder of the results the audit reads (``MAMLCONV_RESULTS``,
else the package's experiments/results/), wherever the command runs (:func:`_out`)."""
OUT_HELP = "results folder (default: readings/ of MAMLCONV_RESULTS or the package's results)"
CLAIM_FAMILY = {"S4-1": "sinusoid", "S5-1": "sinusoid"}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return values


def _part(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    try:
        kk, nn = int(k), int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N like 1/2, got {text!r}") from None
    if not (1 <= kk <= nn):
        raise argparse.ArgumentTypeError(f"need 1 <= K <= N in K/N, got {text!r}")
    return kk, nn


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "readings",
        help="the reading matrix of the empirical claims: list, run, judge",
        description=(
            "Every empirical claim is checked under every reading of the settings the paper "
            "leaves open (initialisation, task source, MAML variant, divergence criterion), "
            "over seeds, with the beta edge bisected at the deciding alphas (docs/readings.md)."
        ),
        epilog=(
            "examples: mamlconv readings list; mamlconv readings run S4-1 --seeds 0,1,2; "
            "mamlconv readings judge --json"
        ),
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p_list = sub.add_parser("list", help="axes, values and their sources; which runs exist")
    p_list.add_argument("--out", type=Path, default=DEFAULT_OUT, help=OUT_HELP)
    p_list.add_argument("--json", action="store_true", help="print one JSON object")
    p_list.set_defaults(func=run_list)

    p_run = sub.add_parser("run", help="train the readings of a claim (skips finished runs)")
    p_run.add_argument("claim", help=f"claim ID: {', '.join(CLAIM_FAMILY)}")
    p_run.add_argument(
        "--reading",
        action="append",
        default=None,
        metavar="AXIS=V,...",
        help="only this run reading (repeatable), e.g. init=finn,tasks=pool,variant=exact",
    )
    p_run.add_argument("--seeds", type=_int_list, default=None, help="seeds (default: 0,1,2)")
    p_run.add_argument("--out", type=Path, default=DEFAULT_OUT, help=OUT_HELP)
    p_run.add_argument("--device", type=device_spec, default="cpu", help="cpu (default) | cuda")
    p_run.add_argument(
        "--part", type=_part, default=(1, 1), metavar="K/N", help="run every N-th job from K"
    )
    p_run.add_argument(
        "--dry-run", action="store_true", help="print the jobs and their status, train nothing"
    )
    p_run.set_defaults(func=run_run)

    p_judge = sub.add_parser("judge", help="per-reading and per-claim verdicts from the results")
    p_judge.add_argument("--out", type=Path, default=DEFAULT_OUT, help=OUT_HELP)
    p_judge.add_argument("--json", action="store_true", help="print one JSON object")
    p_judge.set_defaults(func=run_judge)

    p_few = sub.add_parser(
        "fewshot",
        help="Fig. 4b/4c: beta edges of the few-shot problems per reading and seed (resumable)",
        description=(
            "For each few-shot problem, reading (variant x initialisation) and seed, locate the "
            "divergence edge beta_c(alpha) by a k-ary search on log(beta); every finished chunk "
            "is stored, so a rerun resumes (docs/gpu.md)."
        ),
    )
    p_few.add_argument("--preset", default="paper", help="paper (default) | tiny")
    p_few.add_argument("--out", type=Path, default=Path("fewshot-matrix"), help="state folder")
    p_few.add_argument(
        "--problems", default="omniglot,miniimagenet", help="comma list (default: both)"
    )
    add_device_argument(p_few, what="where the cells train")
    p_few.add_argument("--deadline", type=positive_float, default=None, help="seconds for this run")
    p_few.add_argument(
        "--chunk", type=positive_int, default=None, help="cells per call (default: model)"
    )
    p_few.add_argument(
        "--check-every",
        type=positive_int,
        default=None,
        help="host divergence checks every k iterations",
    )
    p_few.add_argument("--channels-last", action="store_true", help="NHWC episode images")
    p_few.add_argument(
        "--points", type=positive_int, default=None, help="betas per bracket per round (preset: 7)"
    )
    p_few.add_argument("--plan", action="store_true", help="print the work bound and exit")
    p_few.add_argument("--rate", type=positive_float, default=16.6, help="cell-it/s for --plan")
    p_few.set_defaults(func=run_fewshot)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _matrix(claim: str):
    from mamlconv.experiments.readings.matrix import MATRICES

    family = CLAIM_FAMILY.get(claim)
    if family is None:
        raise UsageError(
            f"no reading matrix runs claim {claim!r}; choose one of {', '.join(CLAIM_FAMILY)} "
            "(S2-7 runs as `mamlconv figure fig1 --seed S`; S4-2/S4-3 are judged on the "
            "committed few-shot sweeps)"
        )
    return MATRICES[family]


def _out(args: argparse.Namespace) -> Path:
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"--out {args.out} is a file, not a folder")
        return args.out
    from mamlconv.paper_checks import results_dir

    return results_dir() / "readings"


def _jobs(matrix, readings, seeds):
    return [(r, s) for s in seeds for r in readings]  # seed-major: every reading gets seed 0 first


def run_list(args: argparse.Namespace) -> int:
    from mamlconv.experiments.readings.matrix import MATRICES, reading_name
    from mamlconv.experiments.readings.run import is_done, result_path

    args.out = _out(args)
    out = {}
    for family, matrix in MATRICES.items():
        desc = matrix.describe()
        desc["runs"] = [
            {
                "reading": reading_name(r),
                "seed": s,
                "file": str(result_path(args.out, matrix, r, s)),
                "done": is_done(result_path(args.out, matrix, r, s), matrix, r, s),
            }
            for r, s in _jobs(matrix, matrix.run_readings(), matrix.seeds)
        ]
        out[family] = desc
    if args.json:
        from mamlconv.util.files import jsonable

        print(json.dumps(jsonable(out), indent=1))
        return 0
    for family, desc in out.items():
        print(f"{family}: claims {', '.join(desc['claims'])}")
        for axis in desc["axes"]:
            kind = " (applied after training)" if axis["post_hoc"] else ""
            print(f"  {axis['name']}{kind}:")
            for v in axis["values"]:
                print(f"    {v['name']}: {v['source']}")
        done = sum(r["done"] for r in desc["runs"])
        print(f"  runs: {done} of {len(desc['runs'])} done in {args.out}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    from mamlconv.experiments.readings.matrix import parse_reading, reading_name
    from mamlconv.experiments.readings.run import (
        is_done,
        progress_path,
        result_path,
        run_reading,
        save_run,
    )
    from mamlconv.experiments.sweep.storage import release_lock, take_lock

    matrix = _matrix(args.claim)
    try:
        readings = (
            [parse_reading(matrix, r) for r in args.reading]
            if args.reading
            else matrix.run_readings()
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    seeds = args.seeds if args.seeds is not None else list(matrix.seeds)
    bad = [s for s in seeds if not 0 <= s < 2**31]
    if bad:
        raise UsageError(f"--seeds {bad[0]} is out of range; seeds are 0 <= S < 2**31")
    args.out = _out(args)
    k, n = args.part
    jobs = _jobs(matrix, readings, seeds)[k - 1 :: n]
    for reading, seed in jobs:
        path = result_path(args.out, matrix, reading, seed)
        done = is_done(path, matrix, reading, seed)
        if args.dry_run:
            print(f"{'done' if done else 'todo'}  {reading_name(reading)} seed {seed}  {path}")
            continue
        if done:
            print(f"skip {path} (done)", flush=True)
            continue
        lock = path.with_name(path.name + ".lock")
        # several `readings run` processes share the jobs: each claims one by a lock file that
        # names its owner; a dead owner's lock (kill -9, OOM) is taken over
        owner = take_lock(lock)
        if owner is not None:
            print(f"skip {path} (held by {owner}: {lock.name})", flush=True)
            continue
        try:
            t0 = time.time()
            record = run_reading(
                matrix,
                reading,
                seed,
                device=args.device,
                log=lambda s: print(s, file=sys.stderr, flush=True),
                progress=progress_path(path),
            )
            save_run(record, path)
            progress_path(path).unlink(missing_ok=True)
            print(f"wrote {path} ({time.time() - t0:.0f}s)", flush=True)
        finally:
            release_lock(lock)
    return 0


def run_judge(args: argparse.Namespace) -> int:
    from mamlconv.experiments.readings.matrix import SINUSOID
    from mamlconv.experiments.readings.run import scan_runs
    from mamlconv.paper_checks.judging import summarize

    args.out = _out(args)
    if not args.out.is_dir():
        raise UsageError(f"no results folder {args.out}; run `mamlconv readings run S4-1` first")
    for path, why in scan_runs(args.out, SINUSOID.family)[1]:  # what `readings list` rejects
        print(f"mamlconv readings judge: left out {path.name}: {why}", file=sys.stderr)
    summary = summarize(args.out, SINUSOID)
    if args.json:
        from mamlconv.util.files import jsonable

        print(json.dumps(jsonable(summary), indent=1))
        return 0
    print(summary["text"])
    return 0


def run_fewshot(args: argparse.Namespace) -> int:
    from mamlconv.experiments.readings.fewshot import run_matrix

    run_matrix(
        args.preset,
        args.out,
        problems=tuple(p for p in args.problems.split(",") if p),
        device=args.device,
        deadline=args.deadline,
        chunk=args.chunk,
        check_every=args.check_every,
        channels_last=args.channels_last,
        points=args.points,
        plan_rate=args.rate if args.plan else None,
        log=lambda s: print(s, flush=True),
    )
    return 0
