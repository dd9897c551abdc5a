"""Where the data files are and whether they are intact: the data roots, the table of shipped
files (:data:`SHIPPED`), sha256 verification remembered per file version, the cache folder, and
the deterministic ``.npz`` archive writer. Every failure is a one-line :class:`DataError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mamlconv.errors import MamlconvError
from mamlconv.experiments.data import integrity
from mamlconv.util.files import atomic_write_text

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
    :func:`~mamlconv.experiments.data.integrity.file_key` (size, mtime, ctime, sha256 of the
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
