"""What a result file records about how it was made: versions, commit, device, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]


COMMIT_ENV = "MAMLCONV_COMMIT"
"""Names the commit of a source tree that has no ``.git`` (a copy sent to a GPU machine): pass
``MAMLCONV_COMMIT=$(git rev-parse HEAD)`` (with ``+dirty`` appended when the tree has changes)."""


def _git_commit(path: Path) -> str | None:
    try:
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def commit_record(path: Path = REPO_ROOT) -> tuple[str | None, str]:
    """(commit, where it came from): ``git`` when ``path`` is a git checkout, else ``env`` when
    ``MAMLCONV_COMMIT`` is set (its value, as given), else ``none``."""
    sha = _git_commit(path)
    if sha is not None:
        return sha, "git"
    env = os.environ.get(COMMIT_ENV, "").strip()
    return (env, "env") if env else (None, "none")


def git_commit(path: Path = REPO_ROOT) -> str | None:
    """The commit of the source tree (with '+dirty' when it has changes); outside git the
    ``MAMLCONV_COMMIT`` environment variable, else None."""
    return commit_record(path)[0]


def describe(device: str | None = None) -> dict[str, Any]:
    """A JSON-ready record of the software and hardware that produced a result."""
    import torch

    from mamlconv.util.version import __version__

    commit, source = commit_record()
    record: dict[str, Any] = {
        "mamlconv_version": __version__,
        "git_commit": commit,
        "commit_source": source,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if device is not None:
        record["device"] = device
        if device.startswith("cuda") and torch.cuda.is_available():
            record["device_name"] = torch.cuda.get_device_name(torch.device(device))
            record["tf32"] = {
                "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                "cudnn": bool(torch.backends.cudnn.allow_tf32),
            }
    return record
