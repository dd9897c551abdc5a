"""``mamlconv manifest``: maintain experiments/results/MANIFEST.json, the result files the
claims audit reads (and only these), each with its sha256 (:mod:`mamlconv.paper_checks.manifest`).

    mamlconv manifest add FILE... [--kind K] [--claims S4-1,S5-1] [--what T]
    mamlconv manifest exclude FILE... --why "what it is"
    mamlconv manifest remove FILE...
    mamlconv manifest update     # re-hash the listed files after a deliberate rerun
    mamlconv manifest check      # exit 1 on a changed, missing or unlisted file
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mamlconv.cli._args import UsageError

KINDS = ("sweep", "figure-record", "comparison", "figure", "data")
"""``mamlconv.paper_checks.manifest.KINDS`` (tested equal), here so that building the parser
does not import the audit layer."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifest",
        help="register, exclude or verify the result files the audit reads (MANIFEST.json)",
        description=(
            "Maintain experiments/results/MANIFEST.json: the result files the claims audit "
            "reads (and only these), each with its sha256."
        ),
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        metavar="DIR",
        help="results folder (default: MAMLCONV_RESULTS, else the package's experiments/results)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    p_add = sub.add_parser("add", help="register files the audit reads (and their figures)")
    p_add.add_argument("files", nargs="+", metavar="FILE")
    p_add.add_argument("--kind", choices=KINDS, help="override the detected kind")
    p_add.add_argument("--claims", help="comma-separated claim IDs (e.g. S4-1,S5-1)")
    p_add.add_argument("--what", help="one line: what the file is")
    p_ex = sub.add_parser("exclude", help="list committed files the audit does not read")
    p_ex.add_argument("files", nargs="+", metavar="FILE")
    p_ex.add_argument("--why", required=True, help="one line: what the file is")
    p_rm = sub.add_parser("remove", help="drop files from the manifest")
    p_rm.add_argument("files", nargs="+", metavar="FILE")
    sub.add_parser("update", help="re-hash every listed file (after a deliberate rerun)")
    sub.add_parser("check", help="verify every listed file; exit 1 on a problem")
    parser.set_defaults(func=run, _manifest_parser=parser)


def _claims(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    from mamlconv.paper_checks.claims import BY_ID

    claims = tuple(c.strip() for c in text.split(",") if c.strip())
    bad = [c for c in claims if c not in BY_ID]
    if bad or not claims:
        raise UsageError(f"--claims {text}: not a claim ID of docs/CLAIMS.md ({', '.join(bad)})")
    return claims


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        args._manifest_parser.print_help()
        return 2
    from mamlconv.paper_checks import manifest, results_dir

    results = args.results if args.results is not None else results_dir()
    if not results.is_dir():
        raise UsageError(f"no results folder {results} (--results DIR)")
    try:
        if args.action == "add":
            claims = _claims(args.claims)
            added = manifest.add(results, args.files, kind=args.kind, claims=claims, what=args.what)
            for e in added:
                extra = f" (with {', '.join(e.figures)})" if e.figures else ""
                print(f"added {e.path}: {e.kind} for {', '.join(e.claims) or '-'}{extra}")
        elif args.action == "exclude":
            manifest.exclude(results, args.files, why=args.why)
            print(f"excluded {len(args.files)} file(s): listed as not read by the audit")
        elif args.action == "remove":
            manifest.remove(results, args.files)
            print(f"removed {len(args.files)} file(s)")
        elif args.action == "update":
            changed = manifest.update(results)
            listed = ": " + ", ".join(changed) if changed else ""
            print(f"updated {manifest.MANIFEST_NAME}: {len(changed)} file(s) changed{listed}")
        else:
            problems = manifest.check(results)
            for line in problems:
                sys.stderr.write(f"mamlconv manifest check: {line}\n")
            if problems:
                return 1
            n = len(manifest.load_manifest(results).files)
            print(f"{manifest.MANIFEST_NAME}: {n} files verified, nothing unlisted")
    except UsageError:
        raise
    except ValueError as exc:  # the library's bad-input errors (ResultFileError included)
        raise UsageError(str(exc)) from None
    return 0
