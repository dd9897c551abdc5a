"""Data files split into shards with their own sha256, reassembled transparently on load.

A data file too large for one transfer (MiniImagenet's training archive is 99 MB) can be
copied as shards (``mamlconv data shard``) and used as is. A shard set of
``miniimagenet/miniimagenet_train.npz`` is, in the same folder of a data root:

* ``miniimagenet_train.npz.shards.json``: the manifest -- the whole file's name, size and
  sha256, and per part its name, size and sha256;
* ``miniimagenet_train.npz.part-KK-of-NN``: the parts, consecutive byte ranges of the file.

:func:`locate_split` (what :func:`mamlconv.experiments.data.miniimagenet.load_miniimagenet`
calls) returns the whole file when a data root holds it, else reassembles the shards: every
part is checked
against the manifest (size, sha256), the parts are concatenated into
``<cache>/shards/<name>``, and the result is verified against the shipped size and sha256
like any data file. The arrays are therefore those of the unsharded file, byte for byte.

    mamlconv data shard SRC.npz OUT_DIR [--max-mib 48]
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mamlconv.experiments.data import store
from mamlconv.util.files import atomic_write_text

MANIFEST_SUFFIX = ".shards.json"
DEFAULT_MAX_MIB = 48
"""Default largest part, MiB: one part and a working tree of a few MiB fit a 64 MiB
transfer."""


@dataclass(frozen=True)
class Part:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A shard set: the whole file (name, size, sha256) and its parts in order."""

    name: str
    size: int
    sha256: str
    parts: tuple[Part, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "size": self.size,
                "sha256": self.sha256,
                "parts": [vars(p) for p in self.parts],
            },
            indent=1,
        )

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            d = json.loads(path.read_text())
            parts = tuple(
                Part(str(p["name"]), int(p["size"]), str(p["sha256"])) for p in d["parts"]
            )
            return cls(str(d["name"]), int(d["size"]), str(d["sha256"]), parts)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise store.DataError(f"{path} is not a readable shard manifest: {exc}") from None


def part_name(name: str, k: int, n: int) -> str:
    return f"{name}.part-{k:02d}-of-{n:02d}"


def shard_file(
    src: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, max_bytes: int
) -> Manifest:
    """Split ``src`` into the fewest parts of at most ``max_bytes`` (equal sizes but the last)
    in ``out_dir``, with the manifest beside them; returns the manifest."""
    src, out_dir = Path(src), Path(out_dir)
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    size = src.stat().st_size
    n = max(1, math.ceil(size / max_bytes))
    step = math.ceil(size / n)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    with open(src, "rb") as f:
        for k in range(n):
            blob = f.read(step)
            path = out_dir / part_name(src.name, k, n)
            path.write_bytes(blob)
            parts.append(Part(path.name, len(blob), store.sha256_file(path)))
    manifest = Manifest(src.name, size, store.sha256_file(src), tuple(parts))
    atomic_write_text(out_dir / (src.name + MANIFEST_SUFFIX), manifest.to_json() + "\n")
    return manifest


def assemble(
    manifest_path: str | os.PathLike[str],
    spec: store.FileSpec,
    *,
    cache: str | os.PathLike[str] | None = None,
) -> Path:
    """Verify the parts of a shard set, concatenate them into ``<cache>/shards/`` and verify the
    result against ``spec`` (the shipped size and sha256); return its path. A reassembled file
    already there and verified is reused."""
    manifest_path = Path(manifest_path)
    manifest = Manifest.read(manifest_path)
    if (manifest.size, manifest.sha256) != (spec.size, spec.sha256):
        raise store.DataError(
            f"{manifest_path} describes a different file (sha256 {manifest.sha256[:16]}...), "
            f"expected {spec.sha256[:16]}...: re-shard the shipped file"
        )
    folder = store.cache_dir(cache) / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / manifest.name
    if target.is_file():
        try:
            return store.verify_file(target, spec, cache=cache)
        except store.DataError:
            target.unlink()
    paths = []
    for part in manifest.parts:
        path = manifest_path.parent / part.name
        paths.append(
            store.verify_file(path, store.FileSpec(part.name, part.size, part.sha256), cache=cache)
        )
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for path in paths:
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return store.verify_file(target, spec, cache=cache)


def locate_split(
    key: str,
    root: str | os.PathLike[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    specs: Mapping[str, store.FileSpec] = store.SHIPPED,
) -> Path:
    """The verified data file ``key``: the whole file where a data root holds it, else the
    reassembly of its shards (see the module docstring), else the usual missing-file error."""
    spec = specs[key]
    for candidate in store.candidate_roots(root):
        if (candidate / spec.relpath).exists():
            break
        manifest = candidate / (spec.relpath + MANIFEST_SUFFIX)
        if manifest.is_file():
            return assemble(manifest, spec, cache=cache)
    return store.dataset_file(key, root, cache=cache, specs=specs)
