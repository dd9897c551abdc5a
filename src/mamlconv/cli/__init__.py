"""The ``mamlconv`` command: a thin dispatcher over one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (registering its parser and
setting ``func``) and keeps its imports of heavy layers inside the function it runs, so that
``mamlconv --help`` and ``mamlconv thresholds`` start fast.
"""

from __future__ import annotations

import importlib
import sys

from mamlconv import __version__
from mamlconv.cli._args import Parser, UsageError, cli_logging

# Order is the order in `mamlconv --help`.
SUBCOMMAND_MODULES = (
    "audit",
    "derive",
    "thresholds",
    "linreg",
    "figure",
    "sweep",
    "compare",
    "advise",
    "data",
    "readings",
)


def build_parser() -> Parser:
    parser = Parser(
        prog="mamlconv",
        description=(
            "Audit, derive and test the learning-rate conditions of "
            "'On the conditions of MAML convergence' (Takagi et al., 2019)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"mamlconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"mamlconv.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mamlconv.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with cli_logging(args.command):
            return int(args.func(args) or 0)
    except UsageError as exc:
        sys.stderr.write(f"mamlconv {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"mamlconv {args.command}: interrupted\n")
        return 130


if __name__ == "__main__":  # python -m mamlconv.cli
    sys.exit(main())
