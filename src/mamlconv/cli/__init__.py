"""The ``mamlconv`` command: a thin dispatcher over one module per subcommand.

Each subcommand module defines ``add_parser(subparsers)`` (registering its parsers, one
subcommand or a few related ones, and setting ``func``) and keeps its imports of heavy layers
inside the function it runs, so that ``mamlconv --help`` and ``mamlconv thresholds`` start
fast.
"""

from __future__ import annotations

import os
import sys

from mamlconv import __version__
from mamlconv.cli import (
    advise,
    audit,
    compare,
    data,
    derive,
    figure,
    linreg,
    manifest,
    readings,
    sweep,
)
from mamlconv.cli._args import Parser, cli_logging, describe_os_error
from mamlconv.errors import MamlconvError

# Order is the order in `mamlconv --help`.
SUBCOMMANDS = (
    audit,
    manifest,
    derive,  # derive and thresholds
    linreg,
    figure,
    sweep,
    compare,  # compare and local
    advise,
    data,
    readings,
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
    for module in SUBCOMMANDS:
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
    except KeyboardInterrupt:
        sys.stderr.write(f"mamlconv {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:  # `mamlconv ... | head`: the reader left; nothing to report
        return 141
    except Exception as exc:  # noqa: BLE001 -- the one place that turns errors into exit codes
        code, message = describe_error(exc)
        if code is None and os.environ.get(DEBUG_ENV):
            raise
        sys.stderr.write(f"mamlconv {args.command}: error: {message}\n")
        return 1 if code is None else code


DEBUG_ENV = "MAMLCONV_DEBUG"
"""Set to show the traceback of an unexpected error (a bug) instead of its one-line summary."""


def describe_error(exc: BaseException) -> tuple[int | None, str]:
    """Exit code and one-line message for an error escaping a subcommand.

    The package's own errors (every :class:`mamlconv.errors.MamlconvError`, the data layer's
    ``DataError`` included) and ``OSError`` are the user's to fix: exit 2 (``RunFailed``: 1).
    Anything else is a bug in mamlconv: exit code None (the caller exits 1), a one-line
    summary naming ``MAMLCONV_DEBUG``.
    """
    if isinstance(exc, MamlconvError):
        return exc.exit_code, _one_line(str(exc))
    if isinstance(exc, OSError):
        return 2, _one_line(describe_os_error(exc))
    return None, _one_line(
        f"internal error ({type(exc).__name__}: {exc}); this is a bug in mamlconv, please "
        f"report it with the command line (set {DEBUG_ENV}=1 to see the traceback)"
    )


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


if __name__ == "__main__":  # python -m mamlconv.cli
    sys.exit(main())
