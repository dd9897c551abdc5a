"""``mamlconv audit``: run the claims audit and write its report and figures into a folder.

Runs ``python -m pytest --pyargs mamlconv.paper_checks`` in a child process (so it works from a
regular install as well as from a checkout) with the package's pytest plugin, and leaves
``DIR/audit-report.md``, ``DIR/audit-report.json``, ``DIR/audit-report.html`` (one
self-contained page, figures embedded) and ``DIR/audit-report.files/`` (figures,
copies of the committed figures it cites, and the result files of reruns) -- nothing else: the
child runs in a temporary working folder, so that no ``.hypothesis/`` or other cache lands in
DIR, and the report's links are relative, so DIR can be moved. ``--out`` is checked before any
test runs. Exit code: pytest's (0 unless a claim test is ERROR); with ``--strict`` also 1 when
any claim FAILS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mamlconv.cli._args import UsageError

REPORT_NAME = "audit-report.md"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="run the claims audit and write its report",
        description=(
            "Audit every claim of Takagi et al. (2019) listed in docs/CLAIMS.md: one verdict per "
            "claim (HOLDS, HOLDS-FOR, APPROXIMATE, INCONCLUSIVE, FAILS, NOT-RUN, ERROR) with "
            f"its evidence. Writes DIR/{REPORT_NAME}, the same data as JSON beside it, one "
            "self-contained HTML page (figures embedded), and the figures in "
            "DIR/audit-report.files/ (a self-contained folder). The default tier "
            "recomputes the empirical claims from the committed result files that "
            "experiments/results/MANIFEST.json lists (verified by sha256; add a file with "
            "`mamlconv manifest add FILE`)."
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
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when any claim FAILS (for scripts; by default a FAILS verdict is a "
        "finding, exit 0)",
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


def check_out(out: Path) -> Path:
    """Check ``--out`` before any work: a folder (created) in which the report files can be
    written; UsageError naming the problem otherwise. Returns the resolved folder."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {str(out)!r}: {exc.strerror}") from None
    report = out / REPORT_NAME
    for path, want_dir in (
        (report, False),
        (report.with_suffix(".json"), False),
        (report.with_suffix(".html"), False),
        (report.with_suffix(".files"), True),
    ):
        if path.exists() and path.is_dir() != want_dir:
            what = "a folder" if path.is_dir() else "a file"
            raise UsageError(f"--out: {path} is {what}; remove it or choose another --out")
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise UsageError(f"--out {str(out)!r} is not writable: {exc.strerror}") from None
    return out.resolve()


def claims_failing(report_json: Path) -> list[str]:
    """IDs of the claims whose verdict is FAILS in a written report (for --strict)."""
    report = json.loads(report_json.read_text())
    return [c["id"] for c in report["claims"] if c["verdict"] == "FAILS"]


PATH_VARIABLES = ("MAMLCONV_RESULTS", "MAMLCONV_DATA", "MAMLCONV_CACHE")
"""Environment variables naming folders; made absolute for the child, which runs elsewhere."""


def child_environment(environ: dict[str, str]) -> dict[str, str]:
    """The child's environment: folder variables absolute (the child's working folder is a
    temporary one), no bytecode written into an installed package's folder."""
    env = dict(environ)
    for var in PATH_VARIABLES:
        if env.get(var):
            env[var] = os.pathsep.join(
                str(Path(p).expanduser().resolve()) if p else p for p in env[var].split(os.pathsep)
            )
    env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return env


def run(args: argparse.Namespace) -> int:
    out = check_out(Path(args.out))
    cmd = pytest_command(out, slow=args.slow, gpu=args.gpu, select=args.select, quiet=args.quiet)
    env = child_environment(dict(os.environ))
    # Run in a temporary folder so that nothing (.hypothesis/, .benchmarks/, ...) lands in the
    # caller's working directory or in the report's folder.
    for stale in (
        out / REPORT_NAME,
        *((out / REPORT_NAME).with_suffix(x) for x in (".json", ".html")),
    ):
        stale.unlink(missing_ok=True)  # a crashed run must not leave an old report to read
    with tempfile.TemporaryDirectory(prefix="mamlconv-audit-") as work:
        code = subprocess.call(cmd, cwd=work, env=env)
    report = out / REPORT_NAME
    if not report.is_file():
        print(f"mamlconv audit: no report written (pytest exit code {code})", file=sys.stderr)
        return int(code) or 1
    print(
        f"mamlconv audit: report {report} (JSON: {report.with_suffix('.json')}, HTML: "
        f"{report.with_suffix('.html')})"
    )
    if args.strict and code == 0:
        failing = claims_failing(report.with_suffix(".json"))
        if failing:
            print(
                f"mamlconv audit: --strict: {len(failing)} claim(s) FAIL: {', '.join(failing)}",
                file=sys.stderr,
            )
            return 1
    return int(code)
