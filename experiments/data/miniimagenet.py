"""MiniImagenet: loading a split (JPEG bytes decoded once with Pillow into a memory-mapped,
checksummed cache), and rebuilding the archives from the Ravi & Larochelle 84x84 JPEGs and
split CSVs.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mamlconv.experiments.data import integrity
from mamlconv.experiments.data.store import (
    _MINI_CLASSES,
    _MINI_PER_CLASS,
    MINIIMAGENET_SPLITS,
    SHIPPED,
    DataError,
    FileSpec,
    _load_npz,
    _remember_verified,
    _verified_db,
    cache_dir,
    sha256_file,
    verify_file,
    write_npz,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiniImagenetSplit:
    """One split of MiniImagenet, decoded: ``images`` is a read-only memory map."""

    images: np.ndarray  # (n, 84, 84, 3) uint8, RGB
    label: np.ndarray  # (n,) index into wnids
    wnids: np.ndarray  # (classes,)
    split: str

    def class_rows(self) -> np.ndarray:
        """(classes, images per class) row indices, each class's rows in file order."""
        counts = np.bincount(self.label, minlength=len(self.wnids))
        if counts.min() != counts.max():
            raise DataError(f"miniimagenet {self.split}: unequal class sizes {sorted(set(counts))}")
        order = np.argsort(self.label, kind="stable")
        return order.reshape(len(self.wnids), int(counts[0]))  # (class, image)


def decode_jpegs(data: np.ndarray, offsets: np.ndarray, out: np.ndarray, *, source: str) -> None:
    """Decode JPEG ``i`` = ``data[offsets[i]:offsets[i+1]]`` into ``out[i]`` (RGB, uint8)."""
    from PIL import Image

    shape = out.shape[1:]
    for i in range(len(offsets) - 1):
        blob = data[offsets[i] : offsets[i + 1]].tobytes()
        try:
            with Image.open(io.BytesIO(blob)) as img:
                pixels = np.asarray(img.convert("RGB"))
        except OSError as exc:
            raise DataError(f"{source}: image {i} does not decode: {exc}") from None
        if pixels.shape != shape:
            raise DataError(f"{source}: image {i} has shape {pixels.shape}, expected {shape}")
        out[i] = pixels


def load_miniimagenet(
    split: str,
    root: str | os.PathLike[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    specs: Mapping[str, FileSpec] = SHIPPED,
) -> MiniImagenetSplit:
    """Verify ``miniimagenet_<split>.npz`` and return its pixels, decoded once and cached.

    The decoded array lives at ``<cache>/miniimagenet/<split>-<sha256[:16]>.npy`` (so a changed
    source never reuses a stale decode) and is opened with ``mmap_mode="r"``; its sha256 is
    recorded when it is made and checked by :func:`decoded_cache`.
    Decoding all 38,400 training images takes about 10 s on one core; afterwards loading is
    instant.
    """
    if split not in MINIIMAGENET_SPLITS:
        raise ValueError(f"split must be one of {MINIIMAGENET_SPLITS}, got {split!r}")
    key = f"miniimagenet_{split}"
    from mamlconv.experiments.data.shards import locate_split  # the file, or its shards reassembled

    path = locate_split(key, root, cache=cache, specs=specs)
    z = _load_npz(path, ("jpeg_offsets", "label", "wnids"))
    offsets, label, wnids = z["jpeg_offsets"], z["label"], z["wnids"]
    n = len(label)
    if len(offsets) != n + 1:
        raise DataError(f"{path}: {len(offsets)} offsets for {n} images")
    shape = (n, 84, 84, 3)
    target = _decoded_path(split, cache, specs)

    def decode(out: np.ndarray) -> None:
        decode_jpegs(_load_npz(path, ("jpeg_data",))["jpeg_data"], offsets, out, source=str(path))

    images, _ = decoded_cache(
        target, shape, decode=decode, source_sha256=specs[key].sha256, cache=cache
    )
    return MiniImagenetSplit(images=images, label=label, wnids=wnids, split=split)


def _decoded_path(
    split: str, cache: str | os.PathLike[str] | None, specs: Mapping[str, FileSpec]
) -> Path:
    folder = cache_dir(cache) / "miniimagenet"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{split}-{specs[f'miniimagenet_{split}'].sha256[:16]}.npy"


def decoded_cache(
    target: Path,
    shape: tuple[int, ...],
    *,
    decode: Callable[[np.ndarray], None],
    source_sha256: str,
    cache: str | os.PathLike[str] | None = None,
    rehash: bool = False,
) -> tuple[np.ndarray, str]:
    """The uint8 array of ``shape`` cached at ``target`` (read-only memory map) and its status.

    A cached file is used only if the sha256 recorded beside it when it was made
    (``<target>.json``) still matches: checked in full once per file version (``rehash``:
    always). Otherwise (no record, corrupt, wrong shape) it is made again by ``decode(out)``
    into a temporary file, hashed, recorded and renamed into place; temporaries of killed
    writers are removed first. Status: ``"verified"``, ``"decoded"`` or ``"decoded again: ..."``.
    """
    folder = target.parent
    for stale in integrity.remove_stale_temporaries(folder):
        log.info("removed %s, left by a writer that no longer runs", stale)
    problem = _check_decoded(target, shape, cache=cache, rehash=rehash)
    if problem is None:
        images = _open_decoded(target, shape)
        assert images is not None
        return images, "verified"
    if problem != "missing":
        log.warning("decoded cache %s: %s; decoding it again", target, problem)
    tmp = integrity.temp_file(folder, target.name)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        decode(out)
        out.flush()
        del out
        digest = sha256_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    integrity.write_record(target, sha256=digest, source_sha256=source_sha256)
    # Hashed just before the rename (which may change ctime): remember it under the new key.
    _remember_verified(target, integrity.file_key(target), digest, _verified_db(cache_dir(cache)))
    images = _open_decoded(target, shape)
    assert images is not None
    return images, "decoded" if problem == "missing" else f"decoded again: {problem}"


def _check_decoded(
    target: Path, shape: tuple[int, ...], *, cache: str | os.PathLike[str] | None, rehash: bool
) -> str | None:
    """None if the cached decode at ``target`` is intact, else what is wrong with it."""
    if not target.exists():
        return "missing"
    record = integrity.read_record(target)
    if record is None:
        return f"no checksum recorded in {integrity.record_path(target).name}"
    spec = FileSpec(target.name, record["size"], record["sha256"])
    try:
        verify_file(target, spec, cache=cache, use_cache=not rehash)
    except DataError:
        return "does not match its recorded checksum (the sha256 taken when it was made)"
    if _open_decoded(target, shape) is None:
        return f"is not a uint8 array of shape {shape}"
    return None


def _open_decoded(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The cached decode at ``path`` if it exists with the right shape and dtype, else None."""
    if not path.exists():
        return None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.shape != shape or arr.dtype != np.uint8:
        return None
    return arr


def _read_split_csv(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not lines or lines[0].strip() != "filename,label":
        raise DataError(f"{path}: expected the header 'filename,label'")
    rows = []
    for k, line in enumerate(lines[1:], start=2):
        parts = line.strip().split(",")
        if len(parts) != 2:
            raise DataError(f"{path}:{k}: expected 'filename,label', got {line!r}")
        rows.append((parts[0], parts[1]))
    return rows


def miniimagenet_arrays(
    images_dir: str | os.PathLike[str], csv_path: str | os.PathLike[str], *, strict: bool = True
) -> dict[str, np.ndarray]:
    """The arrays of ``miniimagenet_<split>.npz`` from the 84x84 JPEGs and the split's CSV.

    Rows in CSV order; ``wnids`` the distinct labels in order of appearance (the CSVs are
    sorted); the JPEG files are copied byte for byte, never re-encoded. A file is looked up as
    ``images_dir/<name>`` or ``images_dir/<wnid>/<name>``. ``strict`` checks the Ravi & Larochelle
    class counts (64/16/20 x 600) and that every image is an 84x84 RGB JPEG (Finn et al.'s
    ``proc_images.py`` output; resize the original ``images.zip`` with it first).
    """
    from PIL import Image

    images_dir, csv_path = Path(images_dir), Path(csv_path)
    rows = _read_split_csv(csv_path)
    if not rows:
        raise DataError(f"{csv_path} lists no images")
    wnids: list[str] = list(dict.fromkeys(w for _, w in rows))
    index = {w: i for i, w in enumerate(wnids)}
    blobs, offsets = [], [0]
    for name, wnid in rows:
        path = images_dir / name
        if not path.is_file():
            path = images_dir / wnid / name
        if not path.is_file():
            raise DataError(f"{name} (listed in {csv_path.name}) not found in {images_dir}")
        blob = path.read_bytes()
        if strict:
            try:
                with Image.open(io.BytesIO(blob)) as img:
                    ok = img.format == "JPEG" and img.size == (84, 84) and img.mode == "RGB"
            except OSError:
                ok = False
            if not ok:
                raise DataError(
                    f"{path} is not an 84x84 RGB JPEG: "
                    "run Finn et al.'s proc_images.py resize first"
                )
        blobs.append(blob)
        offsets.append(offsets[-1] + len(blob))
    label = np.array([index[w] for _, w in rows], dtype=np.uint8)
    split = csv_path.stem
    if strict and split in _MINI_CLASSES:
        counts = np.bincount(label)
        if len(wnids) != _MINI_CLASSES[split] or set(counts) != {_MINI_PER_CLASS}:
            raise DataError(
                f"{csv_path}: {len(wnids)} classes with sizes {sorted(set(counts))}, expected "
                f"{_MINI_CLASSES[split]} x {_MINI_PER_CLASS}"
            )
    return {
        "jpeg_data": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "jpeg_offsets": np.array(offsets, dtype=np.int64),
        "label": label,
        "wnids": np.array(wnids),
        "filenames": np.array([name for name, _ in rows]),
    }


def import_miniimagenet(
    images_dir: str | os.PathLike[str],
    csv_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    splits: Iterable[str] = MINIIMAGENET_SPLITS,
    strict: bool = True,
) -> list[Path]:
    """Build ``miniimagenet_<split>.npz`` in ``out_dir`` for each split from its CSV in csv_dir."""
    written = []
    for split in splits:
        if split not in MINIIMAGENET_SPLITS:
            raise ValueError(f"split must be one of {MINIIMAGENET_SPLITS}, got {split!r}")
        arrays = miniimagenet_arrays(images_dir, Path(csv_dir) / f"{split}.csv", strict=strict)
        out = Path(out_dir) / f"miniimagenet_{split}.npz"
        written.append(write_npz(out, arrays, stored=("jpeg_data",)))
    return written
