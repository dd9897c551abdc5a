"""Omniglot: loading the shipped archive, the paper's train/test split of characters, and
rebuilding the archive byte for byte from the official ``images_background.zip`` and
``images_evaluation.zip``.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mamlconv.experiments.data.store import (
    _OMNIGLOT_COUNTS,
    OMNIGLOT_SPLIT_NAMES,
    SHIPPED,
    DataError,
    FileSpec,
    _load_npz,
    dataset_file,
    write_npz,
)


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
