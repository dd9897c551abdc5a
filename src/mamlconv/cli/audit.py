"""``mamlconv audit``: run the claims audit and write its report and figures into a folder.

Runs ``python -m pytest --pyargs mamlconv.paper_checks`` in a child process (so it works from a
regular install as well as from a checkout) with the package's pytest plugin, and leaves
``DIR/audit-report.md``, ``DIR/audit-report.json`` and ``DIR/audit-report.files/`` (figures and
the result files of reruns).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mamlconv.cli._args import UsageError

REPORT_NAME = "audit-report.md"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="run the claims audit and write its report",
        description=(
            "Audit every claim of Takagi et al. (2019) listed in docs/CLAIMS.md: one verdict per "
            "claim (HOLDS, HOLDS-FOR, APPROXIMATE, FAILS, NOT-RUN) with its evidence. Writes "
            f"DIR/{REPORT_NAME}, the same data as JSON beside it, and the figures made on the "
            "way. The default tier takes a few minutes on a laptop CPU."
        ),
    )
    parser.add_argument(
        "--out",
        default="audit-out",
        metavar="DIR",
        help="folder for the report and figures (created; default: audit-out)",
    )
    parser.add_argument(
        "--slow",
        action="store_true",
        help="also rerun the empirical claims on the CPU at the largest reasonable size",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="also run the paper-size reruns on a CUDA device"
    )
    parser.add_argument(
        "-k",
        dest="select",
        metavar="EXPR",
        default=None,
        help="only the claim tests matching this pytest -k expression (e.g. 'S3_5 or X_1')",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="pass -q to pytest (less per-test output)"
    )
    parser.set_defaults(func=run)


def pytest_command(
    out: Path, *, slow: bool, gpu: bool, select: str | None = None, quiet: bool = False
) -> list[str]:
    """The child command line: pytest over the installed audit, with the package's plugin."""
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "mamlconv.paper_checks",
        "-p",
        "mamlconv.paper_checks.plugin",
        "-p",
        "no:cacheprovider",
        "-rfEsxX",
        "--audit-report",
        str(out / REPORT_NAME),
    ]
    if slow:
        cmd.append("--slow")
    if gpu:
        cmd.append("--gpu")
    if select:
        cmd += ["-k", select]
    if quiet:
        cmd.append("-q")
    return cmd


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {args.out!r}: {exc.strerror}") from None
    out = out.resolve()
    cmd = pytest_command(out, slow=args.slow, gpu=args.gpu, select=args.select, quiet=args.quiet)
    env = dict(os.environ)
    # Keep the child from writing bytecode caches into an installed package's folder.
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # Run from the output folder so that nothing lands in the caller's working directory.
    code = subprocess.call(cmd, cwd=out, env=env)
    report = out / REPORT_NAME
    if report.is_file():
        print(f"mamlconv audit: report {report} (JSON: {report.with_suffix('.json')})")
    else:
        print(f"mamlconv audit: no report written (pytest exit code {code})", file=sys.stderr)
    return int(code)
