"""Data files: location, sha256 verification (and its cache), corrupt-file errors, importers.

The shipped files are found through MAMLCONV_DATA (tests/shipped_data.py; tests needing them skip
when it is unset). Corrupt-file tests copy or build small files in tmp_path; nothing here writes
outside tmp_path (MAMLCONV_CACHE points there).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shipped_data import MINI_VAL, OMNIGLOT, needs_shipped, use_shipped_root

from mamlconv.experiments import data
from mamlconv.experiments.data import integrity


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    use_shipped_root(monkeypatch)


def _sha(path: Path) -> str:  # independent of data.sha256_file: one read, no chunks
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ locations


USER_CACHE = Path.home() / ".cache" / "mamlconv" / "data"


def test_root_order_explicit_then_env_then_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data.candidate_roots() == [USER_CACHE]
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    assert data.candidate_roots() == [tmp_path / "env", USER_CACHE]
    assert data.candidate_roots(tmp_path / "arg") == [tmp_path / "arg"]  # --root alone


def test_no_folder_beside_the_checkout_is_guessed(monkeypatch):
    """The package guesses no data folder beside its checkout: MAMLCONV_DATA, then the user
    cache, and nothing else."""
    from mamlconv.util.provenance import REPO_ROOT

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    assert data.candidate_roots() == [USER_CACHE]
    assert not USER_CACHE.is_relative_to(REPO_ROOT.parent)
    assert data.DEFAULT_DATA_ROOTS == (USER_CACHE,)
    assert data.USER_DATA_ROOT == USER_CACHE


def test_env_root_first_then_user_cache(tmp_path, monkeypatch):
    env, user = tmp_path / "env", tmp_path / "user"
    (user / "omniglot").mkdir(parents=True)
    (user / "omniglot" / "omniglot.npz").write_bytes(b"x")
    monkeypatch.setattr(data.store, "DEFAULT_DATA_ROOTS", (user,))
    monkeypatch.setenv(data.DATA_ENV, str(env))
    assert data.locate("omniglot") == user / "omniglot" / "omniglot.npz"
    assert data.locate("miniimagenet_val") == env / "miniimagenet" / "miniimagenet_val.npz"
    with pytest.raises(data.DataError, match="truncated"):  # the one found is checked
        data.dataset_file("omniglot")


def test_missing_file_says_where_it_looked_and_how_to_import(tmp_path, monkeypatch):
    monkeypatch.setattr(data.store, "DEFAULT_DATA_ROOTS", (tmp_path / "user",))
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    with pytest.raises(data.DataError) as err:
        data.load_omniglot()
    message = str(err.value)
    assert "\n" not in message
    assert f"MAMLCONV_DATA={tmp_path / 'env'}, then the user cache {tmp_path / 'user'}" in message
    assert "mamlconv data import-omniglot DIR" in message
    assert "mamlconv data import-miniimagenet IMAGES_DIR CSV_DIR" in message
    assert "set MAMLCONV_DATA to a folder holding omniglot/ and miniimagenet/" in message
    assert "root=" not in message
    monkeypatch.delenv(data.DATA_ENV)
    with pytest.raises(data.DataError, match=r"looked in MAMLCONV_DATA \(not set\), then"):
        data.load_omniglot()
    with pytest.raises(data.DataError, match=f"looked in --root {tmp_path / 'r'}"):
        data.load_omniglot(tmp_path / "r")


def test_cache_dir_from_env(tmp_path):
    assert data.cache_dir() == tmp_path / "cache"
    assert data.cache_dir(tmp_path / "x") == tmp_path / "x"


# ------------------------------------------------------------------------------ verification


@needs_shipped
def test_check_installation_of_shipped_files():
    results = data.check_installation(rehash=True)
    assert [r.key for r in results] == list(data.SHIPPED)
    bad = [r.message for r in results if not r.ok]
    assert not bad, bad


@needs_shipped
def test_shipped_sha256_table_matches_independent_hash():
    spec = data.SHIPPED["omniglot"]
    assert _sha(OMNIGLOT) == spec.sha256
    assert OMNIGLOT.stat().st_size == spec.size


def _corrupt(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "appended":
        path.write_bytes(raw + b"\0")
    elif how == "flipped_byte":
        raw[len(raw) // 3] ^= 0xFF
        path.write_bytes(raw)
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise AssertionError(how)


CORRUPTIONS = [
    ("missing", "not found"),
    ("truncated", "truncated"),
    ("empty", "truncated"),
    ("appended", "too long"),
    ("flipped_byte", "corrupt"),
]


@needs_shipped
@pytest.mark.parametrize(("how", "phrase"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_omniglot_rejected_with_one_line(tmp_path, how, phrase):
    root = tmp_path / "root"
    (root / "omniglot").mkdir(parents=True)
    target = root / "omniglot" / "omniglot.npz"
    shutil.copyfile(OMNIGLOT, target)
    _corrupt(target, how)
    with pytest.raises(data.DataError) as err:
        data.load_omniglot(root)
    message = str(err.value)
    assert phrase in message
    assert "\n" not in message
    if how == "missing":  # says where it looked
        assert f"omniglot/omniglot.npz not found (looked in --root {root})" in message
    else:
        assert str(target) in message


@needs_shipped
def test_corruption_after_a_cached_verification_is_caught(tmp_path):
    root = tmp_path / "root"
    (root / "omniglot").mkdir(parents=True)
    target = root / "omniglot" / "omniglot.npz"
    shutil.copyfile(OMNIGLOT, target)
    data.load_omniglot(root)  # verified and remembered
    _corrupt(target, "flipped_byte")  # same size, new mtime
    with pytest.raises(data.DataError, match="corrupt"):
        data.load_omniglot(root)


def _restore_mtime(path: Path, stat: os.stat_result) -> None:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@needs_shipped
def test_same_size_flip_with_mtime_restored_is_caught(tmp_path):
    """Issue 10: the cache was keyed on (path, size, mtime) only; ctime now catches this."""
    target = tmp_path / "omniglot" / "omniglot.npz"
    target.parent.mkdir()
    shutil.copyfile(OMNIGLOT, target)
    data.load_omniglot(tmp_path)  # verified and remembered
    stat = target.stat()
    time.sleep(0.01)
    _corrupt(target, "flipped_byte")  # in the middle, not in the first or last MiB
    _restore_mtime(target, stat)
    assert target.stat().st_mtime_ns == stat.st_mtime_ns
    with pytest.raises(data.DataError, match="corrupt"):
        data.load_omniglot(tmp_path)


@needs_shipped
@pytest.mark.parametrize("where", ["head", "tail"])
def test_content_probe_catches_what_the_stat_fields_miss(tmp_path, where):
    """A file system that keeps no ctime: the first and last MiB are hashed on every use."""
    target = tmp_path / "omniglot" / "omniglot.npz"
    target.parent.mkdir()
    shutil.copyfile(OMNIGLOT, target)
    data.load_omniglot(tmp_path)
    raw = bytearray(target.read_bytes())
    raw[100 if where == "head" else len(raw) - 100] ^= 0x01
    target.write_bytes(raw)
    # Make the remembered entry agree with the new stat fields, as if they had not changed.
    db = tmp_path / "cache" / "verified.json"
    entries = json.loads(db.read_text())
    entry = entries[str(target.resolve())]
    stat = target.stat()
    entry.update(size=stat.st_size, mtime_ns=stat.st_mtime_ns, ctime_ns=stat.st_ctime_ns)
    db.write_text(json.dumps(entries))
    with pytest.raises(data.DataError, match="corrupt"):
        data.load_omniglot(tmp_path)


def test_content_probe_reads_size_head_and_tail(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"abc")
    payload = os.urandom(3 * integrity.PROBE_BYTES)
    big.write_bytes(payload)
    mib = integrity.PROBE_BYTES
    desired = hashlib.sha256(
        len(payload).to_bytes(8, "little") + payload[:mib] + payload[-mib:]
    ).hexdigest()
    assert integrity.content_probe(big, len(payload)) == desired
    assert (
        integrity.content_probe(small, 3)
        == hashlib.sha256((3).to_bytes(8, "little") + b"abc").hexdigest()
    )


@needs_shipped
def test_verification_is_cached_by_path_size_mtime(tmp_path, monkeypatch):
    calls = []
    real = data.sha256_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(data.store, "sha256_file", counting)
    spec = data.SHIPPED["omniglot"]
    data.verify_file(OMNIGLOT, spec)
    data.verify_file(OMNIGLOT, spec)
    data.verify_file(OMNIGLOT, spec)
    assert len(calls) == 1
    data.verify_file(OMNIGLOT, spec, use_cache=False)
    assert len(calls) == 2
    copy = tmp_path / "copy.npz"
    shutil.copyfile(OMNIGLOT, copy)  # another path: hashed once more
    data.verify_file(copy, spec)
    data.verify_file(copy, spec)
    assert len(calls) == 3


# ------------------------------------------------------------------------------ Omniglot


@needs_shipped
def test_omniglot_arrays_and_polarity():
    z = np.load(OMNIGLOT)
    omni = data.load_omniglot()
    assert omni.images.shape == (1623, 20, 28, 28)
    assert omni.images.dtype == np.uint8
    # MAML polarity: 1 - stored pixel, so ink (stored 0) becomes 1.
    np.testing.assert_array_equal(omni.images.reshape(-1, 28, 28), 1 - z["images_28"])
    ink = omni.images.mean()
    assert 0.05 < ink < 0.12, ink  # strokes are a small minority of the pixels
    assert omni.split.sum() == 659  # evaluation characters (README: 964 + 659)
    assert len(omni.alphabet_names) == 50


@needs_shipped
def test_omniglot_28_is_pillow_resize_of_105():
    """README: images_28 is Pillow's resize((28, 28), LANCZOS) of the mode-"1" 105x105 PNG."""
    z = np.load(OMNIGLOT)
    rows = [0, 777, 20_000, 32_459]
    img105 = np.unpackbits(z["images_105_packed"][rows], axis=1, count=105 * 105)
    for k, row in enumerate(rows):
        pil = Image.fromarray(img105[k].reshape(105, 105).astype(bool))
        small = np.asarray(pil.resize((28, 28), resample=Image.LANCZOS), dtype=np.uint8)
        np.testing.assert_array_equal(small, z["images_28"][row], err_msg=f"record {row}")


@needs_shipped
@pytest.mark.parametrize(
    ("scheme", "sizes"),
    [("finn", (1100, 100, 423)), ("background", (864, 100, 659))],
    ids=["finn", "background"],
)
def test_omniglot_splits_partition_the_characters(scheme, sizes):
    omni = data.load_omniglot()
    parts = [data.omniglot_split(omni, s, scheme=scheme) for s in ("train", "val", "test")]
    assert tuple(len(p) for p in parts) == sizes
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == 1623
    if scheme == "background":
        assert (omni.split[parts[2]] == 1).all() and (omni.split[parts[0]] == 0).all()
    again = data.omniglot_split(omni, "train", scheme=scheme)
    np.testing.assert_array_equal(parts[0], again)


@needs_shipped
def test_omniglot_split_rejects_bad_names():
    omni = data.load_omniglot()
    with pytest.raises(ValueError, match="'nope'"):
        data.omniglot_split(omni, "nope")
    with pytest.raises(ValueError, match="'lake'"):
        data.omniglot_split(omni, "train", scheme="lake")


@needs_shipped
def test_write_npz_reproduces_the_shipped_omniglot_bytes(tmp_path):
    z = np.load(OMNIGLOT)
    arrays = {name: z[name] for name in z.files}
    out = data.write_npz(tmp_path / "o.npz", arrays)
    assert _sha(out) == data.SHIPPED["omniglot"].sha256


def _omniglot_zips(out: Path, records: np.ndarray) -> None:
    """The official zips' layout, rebuilt as PNGs from the shipped 105x105 originals."""
    z = np.load(OMNIGLOT)
    img = np.unpackbits(z["images_105_packed"][records], axis=1, count=105 * 105)
    out.mkdir(parents=True, exist_ok=True)
    zips = {s: zipfile.ZipFile(out / f"{s}.zip", "w") for s in z["split_names"]}
    names, split_names = z["alphabet_names"], z["split_names"]
    for k, i in enumerate(records):
        split = split_names[z["split"][i]]
        rel = (
            f"{split}/{names[z['alphabet'][i]]}/character{z['character'][i] + 1:02d}/"
            f"{z['character_id'][i]:04d}_{z['drawing'][i]:02d}.png"
        )
        buf = io.BytesIO()
        Image.fromarray(img[k].reshape(105, 105).astype(bool)).save(buf, format="PNG")
        zips[split].writestr(rel, buf.getvalue())
    for f in zips.values():
        f.close()


@needs_shipped
def test_import_omniglot_subset_gives_the_shipped_records(tmp_path):
    z = np.load(OMNIGLOT)
    # Two alphabets, one of each split, chosen so that their sorted order is kept.
    keep = np.flatnonzero(np.isin(z["alphabet"], [8, 35]))  # Braille (bg), Ge_ez (eval)
    _omniglot_zips(tmp_path / "src", keep[::-1])  # zip order must not matter
    with pytest.raises(data.DataError, match="expected 50, 1623, 32460"):
        data.omniglot_arrays(tmp_path / "src")
    arrays = data.omniglot_arrays(tmp_path / "src", strict=False)
    for name in ("images_105_packed", "images_28", "character", "character_id", "drawing"):
        np.testing.assert_array_equal(arrays[name], z[name][keep], err_msg=name)
    np.testing.assert_array_equal(arrays["split"], z["split"][keep])
    assert list(arrays["alphabet_names"]) == [z["alphabet_names"][8], z["alphabet_names"][35]]


@needs_shipped
@pytest.mark.slow
def test_import_omniglot_reproduces_the_shipped_checksum(tmp_path):
    z = np.load(OMNIGLOT)
    _omniglot_zips(tmp_path / "src", np.arange(z["split"].shape[0]))
    out = data.import_omniglot(tmp_path / "src", tmp_path / "omniglot.npz")
    assert _sha(out) == data.SHIPPED["omniglot"].sha256


def test_import_omniglot_rejects_a_bad_input(tmp_path):
    with pytest.raises(data.DataError, match="neither"):
        data.omniglot_arrays(tmp_path)
    (tmp_path / "images_background.zip").write_bytes(b"not a zip")
    with pytest.raises(data.DataError, match="not a readable zip"):
        data.omniglot_arrays(tmp_path)


# ------------------------------------------------------------------------------ MiniImagenet


def _jpeg(rng: np.random.Generator, size: int = 84) -> bytes:
    buf = io.BytesIO()
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def _synthetic_mini(root: Path, blobs: list[bytes], label: np.ndarray) -> dict[str, data.FileSpec]:
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    arrays = {
        "jpeg_data": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "jpeg_offsets": offsets,
        "label": label.astype(np.uint8),
        "wnids": np.array([f"n{c:08d}" for c in range(label.max() + 1)]),
        "filenames": np.array([f"img{i}.jpg" for i in range(len(blobs))]),
    }
    path = data.write_npz(root / "miniimagenet" / "miniimagenet_val.npz", arrays)
    spec = data.FileSpec("miniimagenet/miniimagenet_val.npz", path.stat().st_size, _sha(path))
    return {"miniimagenet_val": spec}


def test_miniimagenet_decoded_once_and_memory_mapped(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    blobs = [_jpeg(rng) for _ in range(6)]
    label = np.repeat(np.arange(3), 2)
    specs = _synthetic_mini(tmp_path / "root", blobs, label)
    split = data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    assert isinstance(split.images, np.memmap)
    assert split.images.shape == (6, 84, 84, 3)
    for i, blob in enumerate(blobs):  # independent decode, one image at a time
        expected = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
        np.testing.assert_array_equal(split.images[i], expected, err_msg=f"image {i}")
    np.testing.assert_array_equal(split.class_rows(), [[0, 1], [2, 3], [4, 5]])
    cached = list((tmp_path / "cache" / "miniimagenet").glob("val-*.npy"))
    assert [p.name for p in cached] == [f"val-{specs['miniimagenet_val'].sha256[:16]}.npy"]

    def fail(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data.miniimagenet, "decode_jpegs", fail)
    again = data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    np.testing.assert_array_equal(again.images, split.images)


def test_miniimagenet_undecodable_jpeg_is_one_line(tmp_path):
    rng = np.random.default_rng(1)
    blobs = [_jpeg(rng), b"\xff\xd8 garbage, not a jpeg"]
    specs = _synthetic_mini(tmp_path / "root", blobs, np.array([0, 1]))
    with pytest.raises(data.DataError, match="image 1 does not decode") as err:
        data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "cache" / "miniimagenet").glob("*.npy"))  # nothing half-written


def test_miniimagenet_wrong_image_size_rejected(tmp_path):
    rng = np.random.default_rng(2)
    specs = _synthetic_mini(tmp_path / "root", [_jpeg(rng, 80)], np.array([0]))
    with pytest.raises(data.DataError, match=r"shape \(80, 80, 3\)"):
        data.load_miniimagenet("val", tmp_path / "root", specs=specs)


def _decoded_file(tmp_path: Path) -> Path:
    (target,) = (tmp_path / "cache" / "miniimagenet").glob("val-*.npy")
    return target


def _zero_fill_keeping_mtime(path: Path) -> None:
    """Overwrite the array data with zeros; the .npy header, the size and the mtime stay."""
    stat = path.stat()
    header = np.load(path, mmap_mode="r").offset
    with open(path, "r+b") as f:
        f.seek(header)
        f.write(bytes(stat.st_size - header))
    _restore_mtime(path, stat)


def test_miniimagenet_decoded_cache_records_its_checksum(tmp_path):
    rng = np.random.default_rng(4)
    specs = _synthetic_mini(tmp_path / "root", [_jpeg(rng) for _ in range(4)], np.arange(4))
    data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    target = _decoded_file(tmp_path)
    record = json.loads(integrity.record_path(target).read_text())
    assert record["sha256"] == _sha(target)
    assert record["size"] == target.stat().st_size
    assert record["source_sha256"] == specs["miniimagenet_val"].sha256


@pytest.mark.parametrize("rehash", [False, True], ids=["load", "rehash"])
def test_zero_filled_decoded_cache_is_detected_and_decoded_again(tmp_path, caplog, rehash):
    """Issue 10: a zero-filled decode (same size, mtime restored) was used without a word."""
    rng = np.random.default_rng(5)
    blobs = [_jpeg(rng) for _ in range(4)]
    specs = _synthetic_mini(tmp_path / "root", blobs, np.arange(4))
    first = np.array(data.load_miniimagenet("val", tmp_path / "root", specs=specs).images)
    assert first.any()
    target = _decoded_file(tmp_path)
    _zero_fill_keeping_mtime(target)
    with caplog.at_level(logging.WARNING, logger="mamlconv.experiments.data"):
        if rehash:
            result = data.check_decoded("val", tmp_path / "root", rehash=True, specs=specs)
            assert not result.ok
            assert "does not match its recorded checksum" in result.message
            assert "decoded again" in result.message
        again = data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    np.testing.assert_array_equal(again.images, first)
    assert "decoding it again" in caplog.text
    assert data.check_decoded("val", tmp_path / "root", rehash=True, specs=specs).ok


def test_decoded_cache_without_a_record_is_decoded_again(tmp_path):
    rng = np.random.default_rng(6)
    specs = _synthetic_mini(tmp_path / "root", [_jpeg(rng) for _ in range(2)], np.arange(2))
    data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    target = _decoded_file(tmp_path)
    integrity.record_path(target).unlink()  # as left by a version that recorded no checksum
    result = data.check_decoded("val", tmp_path / "root", specs=specs)
    assert not result.ok and "no checksum recorded" in result.message
    assert data.check_decoded("val", tmp_path / "root", specs=specs).ok


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    """Issue 10: a killed decode left its (813 MB) temporary in the cache forever."""
    rng = np.random.default_rng(7)
    specs = _synthetic_mini(tmp_path / "root", [_jpeg(rng)], np.array([0]))
    folder = tmp_path / "cache" / "miniimagenet"
    folder.mkdir(parents=True)
    host = integrity.writer_tag().rsplit("-", 1)[0]
    name = f"val-{specs['miniimagenet_val'].sha256[:16]}.npy"
    dead = folder / f".{name}.{host}-{_dead_pid()}.abc123.tmp"
    live = folder / f".{name}.{integrity.writer_tag()}.def456.tmp"
    other_host = folder / f".{name}.elsewhere-{_dead_pid()}.ghi789.tmp"
    legacy_old, legacy_new = folder / f".{name}.jkl012.tmp", folder / f".{name}.mno345.tmp"
    for path in (dead, live, other_host, legacy_old, legacy_new):
        path.write_bytes(b"partial decode")
    hours_ago = time.time() - 2 * integrity.LEGACY_TEMP_AGE_S
    os.utime(legacy_old, (hours_ago, hours_ago))
    data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    assert not dead.exists() and not legacy_old.exists()
    assert live.exists() and other_host.exists() and legacy_new.exists()


def test_a_reused_pid_does_not_keep_a_stale_temporary(tmp_path):
    """A live process that started after the file was last written is not its writer."""
    path = tmp_path / f".x.npy.{integrity.writer_tag()}.abc.tmp"
    path.write_bytes(b"")
    assert integrity.stale_temporaries(tmp_path) == []
    before_start = time.time() - 3600 * 24 * 365
    os.utime(path, (before_start, before_start))
    assert integrity.stale_temporaries(tmp_path) == [path]


def test_an_interrupted_decode_leaves_no_temporary(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    specs = _synthetic_mini(tmp_path / "root", [_jpeg(rng)], np.array([0]))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data.miniimagenet, "decode_jpegs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        data.load_miniimagenet("val", tmp_path / "root", specs=specs)
    assert list((tmp_path / "cache" / "miniimagenet").iterdir()) == []


@needs_shipped
def test_shipped_miniimagenet_rejects_a_truncated_copy(tmp_path):
    root = tmp_path / "root"
    (root / "miniimagenet").mkdir(parents=True)
    target = root / "miniimagenet" / "miniimagenet_val.npz"
    target.write_bytes(MINI_VAL.read_bytes()[:1000])
    with pytest.raises(data.DataError, match="truncated"):
        data.load_miniimagenet("val", root)


@needs_shipped
def test_import_miniimagenet_reproduces_the_shipped_val_checksum(tmp_path):
    z = np.load(MINI_VAL)
    blob, off, label, wnids, names = (
        z["jpeg_data"],
        z["jpeg_offsets"],
        z["label"],
        z["wnids"],
        z["filenames"],
    )
    images = tmp_path / "images"
    images.mkdir()
    for i, name in enumerate(names):
        (images / name).write_bytes(blob[off[i] : off[i + 1]].tobytes())
    csv = "filename,label\n" + "".join(
        f"{n},{wnids[c]}\n" for n, c in zip(names, label, strict=True)
    )
    (tmp_path / "val.csv").write_text(csv)
    (out,) = data.import_miniimagenet(images, tmp_path, tmp_path / "out", splits=["val"])
    assert out.name == "miniimagenet_val.npz"
    assert _sha(out) == data.SHIPPED["miniimagenet_val"].sha256
    # a missing image is named
    (images / names[5]).unlink()
    with pytest.raises(data.DataError, match=str(names[5])):
        data.import_miniimagenet(images, tmp_path, tmp_path / "out", splits=["val"])


def test_import_miniimagenet_rejects_unresized_images(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "a.jpg").write_bytes(_jpeg(rng, 100))
    (tmp_path / "val.csv").write_text("filename,label\na.jpg,n00000001\n")
    with pytest.raises(data.DataError, match="not an 84x84 RGB JPEG"):
        data.import_miniimagenet(tmp_path, tmp_path, tmp_path / "out", splits=["val"])
    (tmp_path / "val.csv").write_text("file,wnid\n")
    with pytest.raises(data.DataError, match="header"):
        data.import_miniimagenet(tmp_path, tmp_path, tmp_path / "out", splits=["val"])


# ------------------------------------------------------------------------------ CLI


def _cli(argv: list[str]) -> int:
    from mamlconv.cli import main

    return main(argv)


@needs_shipped
def test_cli_check_ok(capsys):
    assert _cli(["data", "check"]) == 0
    assert "all 4 data files verified" in capsys.readouterr().out


def test_cli_check_missing_root_fails(tmp_path, capsys):
    assert _cli(["data", "check", "--root", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("FAIL") == 4
    assert "not found" in captured.out
    assert captured.out.splitlines()[0] == f"data looked up in --root {tmp_path}"
    assert "mamlconv data import-omniglot DIR" in captured.out


def _synthetic_installation(root: Path) -> dict[str, data.FileSpec]:
    """All four files, small: random bytes for Omniglot, two JPEGs per MiniImagenet split."""
    rng = np.random.default_rng(9)
    specs = {}
    for split in ("train", "test", "val"):  # _synthetic_mini writes the val file
        one = _synthetic_mini(root, [_jpeg(rng), _jpeg(rng)], np.array([0, 1]))["miniimagenet_val"]
        path = root / "miniimagenet" / f"miniimagenet_{split}.npz"
        os.replace(root / one.relpath, path)
        specs[f"miniimagenet_{split}"] = data.FileSpec(
            path.relative_to(root).as_posix(), one.size, one.sha256
        )
    omni = root / "omniglot" / "omniglot.npz"
    omni.parent.mkdir(parents=True)
    omni.write_bytes(rng.bytes(1000))
    specs["omniglot"] = data.FileSpec("omniglot/omniglot.npz", 1000, _sha(omni))
    return specs


def test_cli_check_decode_rehash_reports_a_zero_filled_decode(tmp_path, monkeypatch, capsys):
    """Issue 10: `data check --decode --rehash` said "ok" for zero-filled decoded arrays."""
    specs = _synthetic_installation(tmp_path / "root")
    monkeypatch.setattr(data.store, "SHIPPED", specs)
    monkeypatch.setattr(data.check, "SHIPPED", specs)
    argv = ["data", "check", "--root", str(tmp_path / "root"), "--decode"]
    rc = _cli(argv)
    assert rc == 0, capsys.readouterr().out
    assert capsys.readouterr().out.count("decoded, (2, 84, 84, 3) uint8") == 3
    (target,) = (tmp_path / "cache" / "miniimagenet").glob("test-*.npy")
    _zero_fill_keeping_mtime(target)
    assert _cli([*argv, "--rehash"]) == 1
    out = capsys.readouterr().out
    assert "FAIL decoded test:" in out and "does not match its recorded checksum" in out
    assert out.count("sha256 verified") == 2  # train and val
    assert _cli([*argv, "--rehash"]) == 0  # decoded again by the previous run


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["data", "import-omniglot", "/nonexistent/dir"], "not a folder: '/nonexistent/dir'"),
        (["data", "import-miniimagenet", ".", ".", "--splits", "trian"], "'trian'"),
        (["data", "import-omniglot", "."], "neither images_background.zip"),
    ],
    ids=["omniglot-no-dir", "mini-bad-split", "omniglot-no-zips"],
)
def test_cli_bad_input_is_one_line_exit_2(argv, phrase, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert phrase in err
    assert err.count("\n") == 1


@needs_shipped
def test_cli_import_miniimagenet_subset_fails_the_strict_counts(tmp_path, capsys):
    z = np.load(MINI_VAL)
    blob, off, label, wnids, names = (
        z["jpeg_data"],
        z["jpeg_offsets"],
        z["label"],
        z["wnids"],
        z["filenames"],
    )
    rows = np.flatnonzero(label < 2)[:30]  # a subset: written, but not the shipped bytes
    for i in rows:
        (tmp_path / names[i]).write_bytes(blob[off[i] : off[i + 1]].tobytes())
    csv = "filename,label\n" + "".join(f"{names[i]},{wnids[label[i]]}\n" for i in rows)
    (tmp_path / "val.csv").write_text(csv)
    argv = ["data", "import-miniimagenet", str(tmp_path), str(tmp_path), "--splits", "val"]
    assert _cli([*argv, "--out-root", str(tmp_path / "out")]) == 2  # strict: 16 x 600 classes
    assert "expected 16 x 600" in capsys.readouterr().err
