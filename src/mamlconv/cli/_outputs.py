"""Output paths checked before any work starts, and OSErrors turned into one line with a fix.

A command that will write ``--out`` after minutes or hours of computation calls
:func:`check_output_file` or :func:`check_output_dir` first, so that an unwritable folder, a
folder where a file should be, or a file where a folder should be is reported at once
(:class:`mamlconv.errors.OutputError`, exit 2). The check writes and removes one empty
temporary file in the nearest existing folder (permission bits alone do not tell, e.g. for
root or a read-only file system) and creates nothing else.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mamlconv.errors import OutputError

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
