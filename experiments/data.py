"""Omniglot and MiniImagenet: locating, verifying, importing and decoding the data files.

The package never downloads anything, and never guesses a folder beside the checkout. A data
root is a folder holding ``omniglot/`` and ``miniimagenet/``; the files are looked up

1. in an explicit ``root`` argument (``--root``) alone, when one is given; else
2. in the folder named by the ``MAMLCONV_DATA`` environment variable, if set, then
3. in the user cache ``~/.cache/mamlconv/data`` (where ``mamlconv data import-*`` writes by
   default); the first of 2-3 holding the file wins.

Every loader checks the file's size and sha256 against :data:`SHIPPED` (the table of the data
READMEs) and raises :class:`DataError`, whose message is one line, for a missing, truncated or
corrupt file; a missing file's message says where it looked and how to import the official
archives. A successful verification is remembered in ``<cache>/verified.json`` keyed by the
resolved path and :func:`~mamlconv.experiments.data_integrity.file_key` (size, mtime, ctime and
the sha256 of the first and last MiB), so a file is hashed in full once, not in every run;
``mamlconv data check --rehash`` hashes every file in full again. The cache folder is the
``cache`` argument, else ``MAMLCONV_CACHE``, else ``~/.cache/mamlconv``.

MiniImagenet ships JPEG bytes; :func:`load_miniimagenet` decodes them with Pillow once and keeps
the uint8 pixels as a memory-mapped ``.npy`` in the cache, keyed by the source file's sha256.
The decoded file's own sha256 is recorded beside it when it is made and verified on load (in
full once per file version, like a data file); a decoded file that fails is decoded again.
Temporary files of writers that were killed are removed by the next decode.

:func:`import_omniglot` and :func:`import_miniimagenet` rebuild the shipped archives from the
official inputs (``images_background.zip``/``images_evaluation.zip``; the Ravi & Larochelle
84x84 JPEGs and split CSVs) byte for byte: same arrays, same member order, a fixed timestamp.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mamlconv.errors import MamlconvError
from mamlconv.experiments import data_integrity as integrity
from mamlconv.files import atomic_write_text

log = logging.getLogger(__name__)

DATA_ENV = "MAMLCONV_DATA"
CACHE_ENV = "MAMLCONV_CACHE"
USER_DATA_ROOT = Path.home() / ".cache" / "mamlconv" / "data"
"""The user cache: searched after MAMLCONV_DATA; ``mamlconv data import-*`` writes here."""
DEFAULT_DATA_ROOTS: tuple[Path, ...] = (USER_DATA_ROOT,)
"""The default locations searched after MAMLCONV_DATA (only the user cache)."""
IMPORT_HINT = (
    "import the official archives with `mamlconv data import-omniglot DIR` or "
    "`mamlconv data import-miniimagenet IMAGES_DIR CSV_DIR`"
)

MINIIMAGENET_SPLITS = ("train", "val", "test")
OMNIGLOT_SPLIT_NAMES = ("images_background", "images_evaluation")
_OMNIGLOT_COUNTS = {"characters": 1623, "drawings": 20, "alphabets": 50}
_MINI_CLASSES = {"train": 64, "val": 16, "test": 20}
_MINI_PER_CLASS = 600
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_HASH_CHUNK = 1 << 20


class DataError(MamlconvError, RuntimeError):
    """A data file is missing, truncated, corrupt or malformed; the message is one line."""


@dataclass(frozen=True)
class FileSpec:
    """Where a data file lives below the data root, and its size and sha256 (data READMEs)."""

    relpath: str
    size: int
    sha256: str


SHIPPED: dict[str, FileSpec] = {
    "omniglot": FileSpec(
        "omniglot/omniglot.npz",
        6_462_097,
        "458dc9311fdb6476fd4b57de51c5cb34ed538b9dbab06562a2918415a42e5823",
    ),
    "miniimagenet_train": FileSpec(
        "miniimagenet/miniimagenet_train.npz",
        99_263_810,
        "b400747e9375fd9d42240ba67e8c193be9d310e9467520c58bfea1336334ac89",
    ),
    "miniimagenet_val": FileSpec(
        "miniimagenet/miniimagenet_val.npz",
        24_192_301,
        "6a3fe427618ae1b2d0b6630c92d4f232f10df187740d70c18bdb766ea0facb2f",
    ),
    "miniimagenet_test": FileSpec(
        "miniimagenet/miniimagenet_test.npz",
        30_828_395,
        "3670258e7aa533521bee05b478ee0f00344ddc688962072194767c769747e236",
    ),
}
"""sha256 and sizes from the READMEs shipped with the data (``omniglot/README.md`` and
``miniimagenet/README.md`` in the data root)."""


# --------------------------------------------------------------------------- locations


def candidate_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The data roots in lookup order: ``root`` alone if given, else MAMLCONV_DATA (if set)
    followed by the user cache ``~/.cache/mamlconv/data``."""
    if root is not None:
        return [Path(root).expanduser()]
    env = os.environ.get(DATA_ENV)
    roots = [Path(env).expanduser()] if env else []
    return roots + [r for r in DEFAULT_DATA_ROOTS if r not in roots]


def describe_lookup(root: str | os.PathLike[str] | None = None) -> str:
    """Where :func:`locate` looks, in words, for messages: one line, no trailing period."""
    if root is not None:
        return f"--root {Path(root).expanduser()}"
    env = os.environ.get(DATA_ENV)
    where = [f"{DATA_ENV}={Path(env).expanduser()}"] if env else [f"{DATA_ENV} (not set)"]
    where += [f"the user cache {r}" for r in DEFAULT_DATA_ROOTS]
    return ", then ".join(where)


def _not_found(name: str, path: Path, searched: str | None) -> DataError:
    where = f"looked in {searched}" if searched else f"looked at {path}"
    return DataError(
        f"{name} not found ({where}): set {DATA_ENV} to a folder holding omniglot/ and "
        f"miniimagenet/, or {IMPORT_HINT}"
    )


def locate(key: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Path of the data file ``key`` of :data:`SHIPPED` (or a full relpath); not verified.

    Among several default roots the first one holding the file wins; when none holds it,
    the path below the first candidate is returned so that the error names it.
    """
    return _find(SHIPPED[key].relpath if key in SHIPPED else key, root)


def _find(relpath: str, root: str | os.PathLike[str] | None) -> Path:
    roots = candidate_roots(root)
    return next((r / relpath for r in roots if (r / relpath).exists()), roots[0] / relpath)


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache``, else MAMLCONV_CACHE, else ``~/.cache/mamlconv`` (created)."""
    if cache is not None:
        path = Path(cache).expanduser()
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        path = Path.home() / ".cache" / "mamlconv"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- verification


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verified_db(cache: Path) -> Path:
    return cache / "verified.json"


def _read_db(db: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(db.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def verify_file(
    path: str | os.PathLike[str],
    spec: FileSpec,
    *,
    cache: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    searched: str | None = None,
) -> Path:
    """Check that ``path`` exists with the size and sha256 of ``spec``; return it.

    Raises :class:`DataError` with a one-line message otherwise (``searched``, from
    :func:`describe_lookup`, says where a missing file was looked for). A file once verified
    is not hashed in full again while its resolved path and
    :func:`~mamlconv.experiments.data_integrity.file_key` (size, mtime, ctime, sha256 of the
    first and last MiB) stay the same; ``use_cache=False`` always hashes in full.
    """
    path = Path(path)
    if not path.is_file():
        raise _not_found(spec.relpath, path, searched)
    stat = path.stat()
    if stat.st_size != spec.size:
        kind = "truncated" if stat.st_size < spec.size else "too long"
        raise DataError(
            f"{path} is {kind}: {stat.st_size} bytes, expected {spec.size} "
            "(re-copy or re-import it)"
        )
    key = str(path.resolve())
    db_path = _verified_db(cache_dir(cache))
    before = integrity.file_key(path)
    if use_cache and _read_db(db_path).get(key) == {**before, "sha256": spec.sha256}:
        return path
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise DataError(
            f"{path} is corrupt or a different version: sha256 {digest[:16]}..., "
            f"expected {spec.sha256[:16]}... (re-copy or re-import it)"
        )
    _remember_verified(path, before, digest, db_path)
    return path


def _remember_verified(path: Path, before: dict[str, int | str], digest: str, db: Path) -> None:
    """Record a full verification, unless the file changed while it was being hashed."""
    if integrity.file_key(path) != before:
        return
    entries = _read_db(db)
    entries[str(path.resolve())] = {**before, "sha256": digest}
    try:
        atomic_write_text(db, json.dumps(entries, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time


def dataset_file(
    key: str,
    root: str | os.PathLike[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    specs: Mapping[str, FileSpec] = SHIPPED,
) -> Path:
    """Locate and verify the data file ``key`` (a key of ``specs``)."""
    spec = specs[key]
    return verify_file(_find(spec.relpath, root), spec, cache=cache, searched=describe_lookup(root))


def _load_npz(path: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise DataError(f"{path} lacks the arrays {missing}")
            return {n: z[n] for n in names}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} cannot be read as a numpy archive: {exc}") from None


# --------------------------------------------------------------------------- Omniglot


@dataclass(frozen=True)
class Omniglot:
    """The Omniglot characters at 28x28, MAML polarity (ink = 1, background = 0).

    ``images[c, d]`` is drawing ``d`` (0..19) of character ``c`` (0..1622, in the README's
    record order: background alphabets first, then evaluation, each sorted by name).
    """

    images: np.ndarray  # (characters, 20, 28, 28) uint8 in {0, 1}
    alphabet: np.ndarray  # (characters,) index into alphabet_names
    split: np.ndarray  # (characters,) 0 = images_background, 1 = images_evaluation
    character_id: np.ndarray  # (characters,) Lake's global id 1..1623
    alphabet_names: np.ndarray  # (50,)

    @property
    def n_characters(self) -> int:
        return int(self.images.shape[0])


def load_omniglot(
    root: str | os.PathLike[str] | None = None,
    *,
    cache: str | os.PathLike[str] | None = None,
    specs: Mapping[str, FileSpec] = SHIPPED,
) -> Omniglot:
    """Load and verify ``omniglot/omniglot.npz``; images flipped to MAML polarity (1 - x)."""
    path = dataset_file("omniglot", root, cache=cache, specs=specs)
    z = _load_npz(
        path, ("images_28", "alphabet", "split", "character_id", "drawing", "alphabet_names")
    )
    n = z["images_28"].shape[0]
    drawings = _OMNIGLOT_COUNTS["drawings"]
    if n % drawings or not np.array_equal(
        z["drawing"], np.tile(np.arange(1, drawings + 1), n // drawings)
    ):
        raise DataError(f"{path}: records are not grouped as 20 drawings per character")
    chars = n // drawings
    # The file stores 1 = white background; MAML feeds 1 - x so that strokes are 1.
    images = (1 - z["images_28"]).reshape(chars, drawings, 28, 28)  # (char, drawing, h, w)
    per_char = slice(0, n, drawings)
    return Omniglot(
        images=np.ascontiguousarray(images),
        alphabet=z["alphabet"][per_char],
        split=z["split"][per_char],
        character_id=z["character_id"][per_char],
        alphabet_names=z["alphabet_names"],
    )


OMNIGLOT_SCHEMES = ("finn", "background")


def omniglot_split(
    data: Omniglot, split: str, *, scheme: str = "finn", seed: int = 1
) -> np.ndarray:
    """Character indices of one split of Omniglot.

    ``scheme="finn"`` (the default) follows Finn et al.'s code (cbfinn/maml data_generator.py):
    all 1,623 characters shuffled with seed 1, the first 1,100 for meta-training, the next 100
    for validation and the remaining 423 for testing (their "1200 training characters" are the
    1,100 + 100). Their shuffle order depended on ``os.listdir`` and cannot be reproduced, so the
    shuffle here is ``numpy.random.default_rng(seed).permutation`` of the README record order:
    the same sizes, a documented and reproducible draw of the characters.

    ``scheme="background"`` is Lake's split: train = the 964 background characters, test = the
    659 evaluation characters, val = the last 100 background characters (train keeps the
    other 864).
    """
    n = data.n_characters
    if scheme == "finn":
        order = np.random.default_rng(seed).permutation(n)
        n_val, n_train = 100, 1100
        parts = {
            "train": order[:n_train],
            "val": order[n_train : n_train + n_val],
            "test": order[n_train + n_val :],
        }
    elif scheme == "background":
        bg = np.flatnonzero(data.split == 0)
        parts = {
            "train": bg[:-100],
            "val": bg[-100:],
            "test": np.flatnonzero(data.split == 1),
        }
    else:
        raise ValueError(f"scheme must be one of {OMNIGLOT_SCHEMES}, got {scheme!r}")
    if split not in parts:
        raise ValueError(f"split must be one of {tuple(parts)}, got {split!r}")
    return np.sort(parts[split])


# --------------------------------------------------------------------------- MiniImagenet


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
    from mamlconv.experiments.shards import locate_split  # the file, or its shards reassembled

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


# --------------------------------------------------------------------------- writing archives


def write_npz(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], *, stored: Iterable[str] = ()
) -> Path:
    """Write ``arrays`` as a reproducible .npz (the shipped files' format).

    Members in the given order, each a ``.npy`` written by ``numpy.lib.format.write_array``,
    deflated (zlib default level) except the names in ``stored``, with the fixed timestamp
    1980-01-01, permissions 0644 and zip64 local headers (as ``numpy.savez`` writes them). The
    same arrays therefore always give the same bytes. Written to a temporary file, then renamed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = set(stored)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- Omniglot import

_OMNI_PNG = re.compile(
    r"(?:^|/)(images_background|images_evaluation)/([^/]+)/character(\d+)/(\d{4})_(\d{2})\.png$"
)
_RESIZE_IDX = np.floor((np.arange(28) + 0.5) * 105 / 28).astype(np.int64)
"""Pillow >= 3.4 resizes a mode-"1" image with nearest neighbour at pixel centres (README)."""


def _omniglot_sources(src: Path) -> Iterator[tuple[str, bytes]]:
    """(relative path, PNG bytes) from the two official zips in ``src``, or from folders."""
    found = False
    for split in OMNIGLOT_SPLIT_NAMES:
        archive, folder = src / f"{split}.zip", src / split
        if archive.is_file():
            found = True
            try:
                with zipfile.ZipFile(archive) as zf:
                    for info in zf.infolist():
                        if info.filename.endswith(".png"):
                            yield info.filename, zf.read(info)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{archive} is not a readable zip: {exc}") from None
        elif folder.is_dir():
            found = True
            for png in sorted(folder.rglob("*.png")):
                yield png.relative_to(src).as_posix(), png.read_bytes()
    if not found:
        raise DataError(
            f"{src} holds neither images_background.zip/images_evaluation.zip nor their folders"
        )


def omniglot_arrays(src: str | os.PathLike[str], *, strict: bool = True) -> dict[str, np.ndarray]:
    """The arrays of ``omniglot.npz`` rebuilt from the official zips (or unzipped folders).

    Records sorted by (split, alphabet name, character, drawing); 105x105 pixels bit-packed
    row-major; ``images_28 = img105[ix_(idx, idx)]`` with idx = floor((k + 0.5) * 105 / 28),
    which is what Finn et al.'s ``resize((28, 28), LANCZOS)`` gives for these mode-"1" PNGs.
    ``strict`` checks the full data set's counts (50 alphabets, 1,623 characters, 20 drawings).
    """
    from PIL import Image

    src = Path(src)
    records: list[tuple[int, str, int, int, int, np.ndarray]] = []
    for rel, blob in _omniglot_sources(src):
        m = _OMNI_PNG.search(rel)
        if m is None:
            raise DataError(f"unexpected file name in the Omniglot input: {rel}")
        split_name, alphabet, char, cid, drawing = m.groups()
        try:
            with Image.open(io.BytesIO(blob)) as img:
                pixels = np.asarray(img.convert("1"), dtype=np.uint8)
        except OSError as exc:
            raise DataError(f"{rel} does not decode as PNG: {exc}") from None
        if pixels.shape != (105, 105):
            raise DataError(f"{rel} is {pixels.shape[1]}x{pixels.shape[0]}, expected 105x105")
        split = OMNIGLOT_SPLIT_NAMES.index(split_name)
        records.append((split, alphabet, int(char), int(cid), int(drawing), pixels))
    if not records:
        raise DataError(f"no Omniglot PNG files found in {src}")
    records.sort(key=lambda r: (r[0], r[1], r[2], r[4]))
    alphabets = sorted({(r[0], r[1]) for r in records})
    alphabet_index = {a: i for i, a in enumerate(alphabets)}
    img105 = np.stack([r[5] for r in records])  # (n, 105, 105)
    n = len(records)
    if strict:
        chars = {(r[0], r[1], r[2]) for r in records}
        expected = _OMNIGLOT_COUNTS
        if (len(alphabets), len(chars), n) != (
            expected["alphabets"],
            expected["characters"],
            expected["characters"] * expected["drawings"],
        ):
            raise DataError(
                f"{src}: found {len(alphabets)} alphabets, {len(chars)} characters, {n} images; "
                "expected 50, 1623, 32460 (the full official zips)"
            )
    return {
        "images_105_packed": np.packbits(img105.reshape(n, -1), axis=1),
        "images_28": np.ascontiguousarray(img105[:, _RESIZE_IDX][:, :, _RESIZE_IDX]),
        "alphabet": np.array([alphabet_index[(r[0], r[1])] for r in records], dtype=np.uint8),
        "character": np.array([r[2] - 1 for r in records], dtype=np.uint8),
        "character_id": np.array([r[3] for r in records], dtype=np.int16),
        "drawing": np.array([r[4] for r in records], dtype=np.uint8),
        "split": np.array([r[0] for r in records], dtype=np.uint8),
        "alphabet_names": np.array([a[1] for a in alphabets]),
        "alphabet_split": np.array([a[0] for a in alphabets], dtype=np.uint8),
        "split_names": np.array(OMNIGLOT_SPLIT_NAMES),
    }


def import_omniglot(
    src: str | os.PathLike[str], out: str | os.PathLike[str], *, strict: bool = True
) -> Path:
    """Build ``omniglot.npz`` at ``out`` from the official zips in ``src`` (see omniglot_arrays)."""
    return write_npz(out, omniglot_arrays(src, strict=strict))


# --------------------------------------------------------------------------- MiniImagenet import


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


# --------------------------------------------------------------------------- check


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
