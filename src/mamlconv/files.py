"""Writing result files, shared by every layer: strict JSON from NumPy/torch values, and
atomic writes (a reader never sees a half-written file; an interrupted run keeps the old one)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

NonFinite = Literal["null", "string", "keep_inf"]


def jsonable(value: Any, *, nonfinite: NonFinite = "null") -> Any:
    """``value`` with NumPy/torch scalars and arrays turned into Python numbers and lists.

    Non-finite floats: ``"null"`` writes None (strict JSON), ``"string"`` writes "inf", "-inf",
    "nan" (strict JSON that keeps the value), ``"keep_inf"`` keeps +-inf as floats (Python's
    json writes Infinity) and writes NaN as None.
    """

    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [conv(x) for x in v]
        if isinstance(v, Path):
            return str(v)
        if v is None or isinstance(v, str | bool):
            return v
        if hasattr(v, "tolist"):  # numpy arrays and scalars, torch tensors
            return conv(v.tolist())
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            if math.isfinite(v):
                return v
            if nonfinite == "string":
                return str(v)
            if nonfinite == "keep_inf" and not math.isnan(v):
                return v
            return None
        return str(v)

    return conv(value)


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[Any]], None], *, binary: bool = False
) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it into place
    with the usual permissions (mkstemp makes files 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text))
