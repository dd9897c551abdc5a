"""Argument parsing and output checks shared by the subcommands: one-line errors, exit code 2.

A command that will write ``--out`` after minutes or hours of computation calls
:func:`check_output_file` or :func:`check_output_dir` first, so that an unwritable folder, a
folder where a file should be, or a file where a folder should be is reported at once
(:class:`mamlconv.errors.OutputError`, exit 2). The check writes and removes one empty
temporary file in the nearest existing folder (permission bits alone do not tell, e.g. for
root or a read-only file system) and creates nothing else. :func:`describe_os_error` turns an
OSError into one line with a fix.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import OutputError
from mamlconv.errors import UsageError as UsageError  # re-exported for the subcommands
from mamlconv.numerics.variants import VARIANTS
from mamlconv.util.devices import DEVICE_SPELLINGS, is_device_spec

PROBLEM_CHOICES = ("sinusoid", "omniglot", "miniimagenet")
"""The task families that `sweep`, `advise` and the presets know by name."""

VARIANT_CHOICES = VARIANTS
"""The MAML objects by name, from the torch-free :mod:`mamlconv.numerics.variants` (building the
parser must not import torch: ``mamlconv --help`` starts fast)."""


PROBLEM_SPEC_HELP = (
    "your own problem: MODULE:FACTORY (a module in the current directory or on sys.path) or "
    "path/to/file.py:FACTORY, FACTORY() returning a Problem (e.g. mamlconv.problem_from_module)"
)


def problem_spec(text: str) -> str:
    """MODULE:FACTORY or FILE.py:FACTORY (imported where it is used). Naming it on the command
    line is the user's word that its code may run (``registry.trust_spec``); a spec that only a
    file names is never run."""
    target, sep, attr = text.rpartition(":")
    if not sep or not target or not attr:
        raise argparse.ArgumentTypeError(
            f"expected MODULE:FACTORY or FILE.py:FACTORY, got {text!r}"
        )
    from mamlconv.experiments.problems.registry import trust_spec

    trust_spec(text)
    return text


def resolve_problem(name: str, options: dict | None = None):
    """The problem of a name or spec; an unresolvable one is a UsageError (one line)."""
    from mamlconv.experiments.problems.registry import get_problem

    try:
        return get_problem(name, **(options or {}))
    except ValueError as exc:
        raise UsageError(str(exc).splitlines()[0]) from None


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the bad value, exit code 2, and
    that reads a negative number as a value wherever one can stand: ``--eigs -1,0.5`` works
    as ``--eigs=-1,0.5`` does (argparse alone takes ``-1,0.5`` for an unknown option, since
    only plain numbers such as ``-1`` or ``-0.5`` pass its negative-number test)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Anything that starts like a number ("-1,0.5", "-1e-3", "-.5:2:3") is a value. No
        # option of this package's commands starts with a digit, so nothing is shadowed.
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def nonnegative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


DEVICE_HELP = "auto (the default: CUDA when present, else the CPU), cpu, cuda or cuda:N"
"""The one device rule of every command (``docs/engine.md``, "Devices")."""


def device_spec(text: str) -> str:
    """auto | cpu | cuda | cuda:N (availability is checked where the device is used)."""
    if is_device_spec(text):
        return text
    raise argparse.ArgumentTypeError(f"expected {DEVICE_SPELLINGS}, got {text!r}")


def add_problem_argument(parser: Any, *, dest: str = "spec", note: str = "") -> None:
    """``--problem MODULE:FACTORY``: a user's problem (see ``PROBLEM_SPEC_HELP``), stored in
    ``args.<dest>``; ``note`` ends the help line with what the command does without it."""
    parser.add_argument(
        "--problem",
        dest=dest,
        type=problem_spec,
        default=None,
        metavar="MODULE:FACTORY",
        help=PROBLEM_SPEC_HELP + note,
    )


def add_device_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--device`` with the one rule: ``auto`` by default, any ``cuda:N`` accepted.

    ``what`` finishes the help text: what runs on the device."""
    parser.add_argument("--device", type=device_spec, default="auto", help=f"{what}: {DEVICE_HELP}")


def float_list(text: str) -> list[float]:
    """'0.5,1,2' -> [0.5, 1.0, 2.0]; every entry finite."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(p == "" for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return [finite_float(p) for p in parts]


def log_grid(text: str) -> np.ndarray:
    """'LO:HI:N' -> numpy.geomspace(LO, HI, N), with 0 < LO <= HI and N >= 1."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected LO:HI:N, got {text!r}")
    lo, hi = finite_float(parts[0]), finite_float(parts[1])
    n = positive_int(parts[2])
    if not (0 < lo <= hi):
        raise argparse.ArgumentTypeError(f"need 0 < LO <= HI, got {text!r}")
    return np.geomspace(lo, hi, n)


@contextlib.contextmanager
def cli_logging(command: str, *, level: int = logging.INFO) -> Iterator[None]:
    """While a command runs, show the library's progress and diagnostics (``logging``, one
    logger per module under ``mamlconv``) on stderr as ``mamlconv COMMAND: message``; afterwards
    the library is quiet again (``mamlconv`` itself installs only a NullHandler)."""
    root = logging.getLogger("mamlconv")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"mamlconv {command}: %(message)s"))
    saved = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


_FIXES = {
    errno.EACCES: "choose a folder you can write, or change its permissions",
    errno.EPERM: "choose a folder you can write, or change its permissions",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.ENOSPC: "the disk is full; free space or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded; free space or choose another disk",
    errno.ENOTDIR: "a file stands where a folder is needed; rename it or choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose a file name",
    errno.EEXIST: "a file of that name is in the way; remove it or choose another path",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def describe_os_error(exc: OSError, *, what: str | None = None) -> str:
    """One line for an OSError: the file, the system's reason and a fix (no traceback)."""
    name = exc.filename if exc.filename is not None else what
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = _FIXES.get(exc.errno or -1)
    text = f"{name}: {reason}" if name is not None else reason
    if exc.filename2 is not None:
        text += f" (and {exc.filename2})"
    setting = _setting_of(name)
    if setting is not None:
        text += f" (from {setting})"
        fix = f"point {setting} at a folder you can write" if setting.endswith("CACHE") else fix
    return f"{text}; {fix}" if fix else text


_PATH_SETTINGS = ("MAMLCONV_CACHE", "MAMLCONV_DATA")
"""Environment variables that name folders; an error under one of them says so."""


def _setting_of(name: object) -> str | None:
    if name is None:
        return None
    path = os.path.abspath(os.fspath(name)) if isinstance(name, str | os.PathLike) else None
    for var in _PATH_SETTINGS:
        value = os.environ.get(var)
        if path is None or not value:
            continue
        for root in value.split(os.pathsep):
            root = os.path.abspath(os.path.expanduser(root))
            if path == root or path.startswith(root.rstrip(os.sep) + os.sep):
                return var
    return None


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest existing ancestor (the folder a new file would go under)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _probe_folder(folder: Path, *, flag: str, target: Path) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".mamlconv-probe-")
    except OSError as exc:
        raise OutputError(
            f"{flag} {target}: cannot write in {folder} ({exc.strerror or exc}); "
            f"{_FIXES.get(exc.errno or -1, 'choose another folder')}"
        ) from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(
    path: str | os.PathLike[str], *, flag: str = "--out", suffixes: Sequence[str] = ()
) -> Path:
    """Raise :class:`OutputError` unless a file can be written at ``path`` (an existing file
    there is fine: whether to replace it is the caller's decision). ``suffixes``: the allowed
    endings (e.g. ``(".npz",)``), named in the message when ``path`` has another."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        want = " or ".join(suffixes)
        example = path.with_suffix(suffixes[0])
        raise OutputError(f"{flag} {path}: expected a {want} file name, e.g. {flag} {example}")
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; {flag} needs a file name inside it")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(
            f"{flag} {path}: {folder} is a file, not a folder; choose another path "
            "or move the file away"
        )
    _probe_folder(folder, flag=flag, target=path)
    return path


def check_output_dir(path: str | os.PathLike[str], *, flag: str = "--out") -> Path:
    """Raise :class:`OutputError` unless ``path`` is, or can be made, a writable folder."""
    path = Path(path)
    folder = _nearest_existing(path)
    if not folder.is_dir():
        if folder == path:
            raise OutputError(f"{flag} {path} is a file; {flag} needs a folder")
        raise OutputError(
            f"{flag} {path}: {folder} is a file, not a folder; choose another path "
            "or move the file away"
        )
    _probe_folder(folder, flag=flag, target=path)
    return path
