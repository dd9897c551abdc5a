"""Writing result files, shared by every layer: strict JSON from NumPy/torch values, and
atomic writes (a reader never sees a half-written file; an interrupted run keeps the old one)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

STATUS_SUFFIX = "_status"
"""A key ``K`` whose value is an infinite float is written as ``K: null`` beside
``K_status: "inf"`` (or ``"-inf"``): see :func:`jsonable`."""


def jsonable(value: Any) -> Any:
    """``value`` as strict JSON data: the one rule for every JSON file the package writes.

    NumPy/torch scalars and arrays become Python numbers and lists; paths become strings.
    Numbers stay numbers; a value that is not a finite number is ``null`` (JSON has no
    infinity or NaN). What a ``null`` means:

    - under a key ``K`` of an object, +-inf is written ``K: null`` together with a status
      field ``K_status: "inf"`` (or ``"-inf"``), e.g. ``"beta_c": null, "beta_c_status":
      "inf"`` for "every beta converges"; :func:`restore_nonfinite` turns it back into inf;
    - a ``null`` without a status field (and every ``null`` inside a list) means no finite
      value: missing, undefined, or a diverged run's NaN; the producer's docstring says which.

    The rule is documented for users in ``docs/engine.md`` ("JSON files").
    """

    def conv(v: Any) -> Any:
        if isinstance(v, dict):
            out: dict[str, Any] = {}
            for k, x in v.items():
                out[str(k)] = conv(x)
                status = _inf_status(x)
                if status is not None:
                    out[f"{k}{STATUS_SUFFIX}"] = status
            return out
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
            return v if math.isfinite(v) else None
        return str(v)

    return conv(value)


def _inf_status(v: Any) -> str | None:
    """ "inf" / "-inf" for an infinite scalar (Python, NumPy or 0-d torch), else None."""
    if isinstance(v, bool | str) or v is None:
        return None
    if hasattr(v, "tolist"):
        if getattr(v, "ndim", 1) != 0:
            return None
        v = v.tolist()
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return None


def restore_nonfinite(value: Any) -> Any:
    """The inverse of :func:`jsonable`'s status fields: ``K: null`` with ``K_status: "inf"``
    becomes ``K: inf`` (the status field is dropped); everything else is returned unchanged."""
    if isinstance(value, dict):
        out = {}
        for k, x in value.items():
            if k.endswith(STATUS_SUFFIX) and value.get(k[: -len(STATUS_SUFFIX)], 0) is None:
                if x in ("inf", "-inf"):
                    continue
            status = value.get(f"{k}{STATUS_SUFFIX}")
            if x is None and status in ("inf", "-inf"):
                out[k] = float(status)
            else:
                out[k] = restore_nonfinite(x)
        return out
    if isinstance(value, list):
        return [restore_nonfinite(x) for x in value]
    return value


def dumps(value: Any, *, indent: int | None = 1) -> str:
    """``value`` as strict JSON text under the package's rule (:func:`jsonable`), newline-ended."""
    return json.dumps(jsonable(value), indent=indent, allow_nan=False) + "\n"


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file written by the package, infinities restored (:func:`restore_nonfinite`).

    Files written before the rule (bare ``Infinity`` / ``NaN`` tokens) are still read."""
    text = Path(path).read_text()
    return restore_nonfinite(json.loads(text, parse_constant=float))


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


def same_values(a: Any, b: Any, *, rel_tol: float = 1e-12) -> bool:
    """Equal JSON-like data (dicts, lists, numbers, strings), numbers compared to ``rel_tol``
    (a number written by another numpy may differ in its last digit) and NaN equal to NaN:
    the one comparison of a file's recorded value with the value recomputed from its data."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b or math.isclose(a, b, rel_tol=rel_tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[k], b[k], rel_tol=rel_tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(
            same_values(x, y, rel_tol=rel_tol) for x, y in zip(a, b, strict=True)
        )
    return a == b
