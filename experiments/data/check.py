"""``mamlconv data check``: verify an installation's data files and decoded caches."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mamlconv.experiments.data.miniimagenet import _check_decoded, _decoded_path, load_miniimagenet
from mamlconv.experiments.data.store import (
    SHIPPED,
    DataError,
    FileSpec,
    _load_npz,
    dataset_file,
    describe_lookup,
    locate,
    verify_file,
)


@dataclass(frozen=True)
class CheckResult:
    key: str
    path: Path
    ok: bool
    message: str


def check_installation(
    root: str | os.PathLike[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    keys: Iterable[str] | None = None,
    rehash: bool = False,
) -> list[CheckResult]:
    """Verify every shipped file (size and sha256); ``rehash`` ignores the verification cache."""
    results = []
    for key in keys if keys is not None else SHIPPED:
        spec = SHIPPED[key]
        path = locate(key, root)
        try:
            verify_file(
                path, spec, cache=cache, use_cache=not rehash, searched=describe_lookup(root)
            )
        except DataError as exc:
            results.append(CheckResult(key, path, False, str(exc)))
        else:
            results.append(CheckResult(key, path, True, f"ok ({spec.size} bytes, sha256 verified)"))
    return results


def check_decoded(
    split: str,
    root: str | os.PathLike[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    rehash: bool = False,
    specs: Mapping[str, FileSpec] | None = None,
) -> CheckResult:
    """Verify (``rehash``: in full) MiniImagenet's decoded cache of ``split``, making it if needed.

    ``ok`` is False when the source does not load or a cached decode was found damaged (it has
    then been decoded again); the message says which.
    """
    specs = SHIPPED if specs is None else specs
    key = f"miniimagenet_{split}"
    target = _decoded_path(split, cache, specs)
    try:
        n = len(_load_npz(dataset_file(key, root, cache=cache, specs=specs), ("label",))["label"])
        shape = (n, 84, 84, 3)
        problem = _check_decoded(target, shape, cache=cache, rehash=rehash)
        load_miniimagenet(split, root, cache=cache, specs=specs)  # decodes again if needed
    except DataError as exc:
        return CheckResult(key, target, False, str(exc))
    if problem is None:
        return CheckResult(key, target, True, f"{target.name}: sha256 verified, {shape} uint8")
    if problem == "missing":
        return CheckResult(key, target, True, f"{target.name}: decoded, {shape} uint8")
    return CheckResult(key, target, False, f"{target.name} {problem}: decoded again")
