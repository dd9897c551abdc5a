"""Where the tests find the shipped Omniglot / MiniImagenet files: the folder named by
``MAMLCONV_DATA`` only (``.ci/run`` exports it where the files exist). Tests that need the
files are marked ``needs_shipped`` and skip, saying why, when it is unset or lacks them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mamlconv.experiments import data

_ENV = os.environ.get(data.DATA_ENV, "")
DATA_ROOT: Path | None = Path(_ENV).expanduser() if _ENV else None
"""The shipped data root, read once at collection (before fixtures change the environment)."""
OMNIGLOT = (DATA_ROOT or Path("/nonexistent")) / data.SHIPPED["omniglot"].relpath
MINI_VAL = (DATA_ROOT or Path("/nonexistent")) / data.SHIPPED["miniimagenet_val"].relpath

_REASON = (
    f"shipped data not found: {data.DATA_ENV} is not set"
    if DATA_ROOT is None
    else f"shipped data not found: {OMNIGLOT} does not exist ({data.DATA_ENV}={DATA_ROOT})"
)
needs_shipped = pytest.mark.skipif(not OMNIGLOT.is_file(), reason=_REASON)


def use_shipped_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MAMLCONV_DATA at the shipped files for one test (unset it when there are none)."""
    if DATA_ROOT is None:
        monkeypatch.delenv(data.DATA_ENV, raising=False)
    else:
        monkeypatch.setenv(data.DATA_ENV, str(DATA_ROOT))
