"""What a result file records about how it was made: versions, commit, device, time."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit(path: Path = REPO_ROOT) -> str | None:
    """The commit of the source tree (with '+dirty' when it has changes), or None outside git."""
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


def describe(device: str | None = None) -> dict[str, Any]:
    """A JSON-ready record of the software and hardware that produced a result."""
    import torch

    from mamlconv import __version__

    record: dict[str, Any] = {
        "mamlconv_version": __version__,
        "git_commit": git_commit(),
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
    return record
