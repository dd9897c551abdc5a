"""Where a sweep keeps its files, and the guards that keep a result from being lost: the
result's suffix, refusing to replace a finished result, the chunk folder's layout record,
and the lock that keeps two sweeps off the same ``--out``.

Files of a grid sweep with ``out = res.npz``:

- ``res.npz`` (the result) and ``res.json`` (its sidecar), written at the end;
- ``res.npz.chunks/`` while it runs: ``layout.json`` (configuration, chunk size, device,
  backend: what a resume must match) and one ``chunk_NNNN.npz`` per finished chunk;
- ``res.npz.lock`` while a process works on it: that process's PID and host.

A bisection writes one ``.json`` file. A grid's ``--out`` must end in ``.npz`` and a
bisection's in ``.json``, so that a result never collides with its own sidecar.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import OutputError, ResultFileError, ResumeMismatch, SweepLocked
from mamlconv.experiments.config import SweepConfig

GRID_SUFFIX = ".npz"
BISECT_SUFFIX = ".json"
LAYOUT_FILE = "layout.json"


def chunk_dir(out: str | os.PathLike[str]) -> Path:
    """``<out>.chunks``: the finished chunks of a running or interrupted grid sweep."""
    out = Path(out)
    return out.with_name(out.name + ".chunks")


def lock_path(out: str | os.PathLike[str]) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".lock")


def check_suffix(out: str | os.PathLike[str], *, bisect: bool) -> None:
    """A grid writes ``.npz`` (plus a ``.json`` sidecar beside it), a bisection ``.json``."""
    out = Path(out)
    want = BISECT_SUFFIX if bisect else GRID_SUFFIX
    if out.suffix.lower() != want:
        mode = "a bisection (--bisect)" if bisect else "a grid sweep"
        why = "" if bisect else " (its .json sidecar is written beside it)"
        raise OutputError(
            f"--out {out}: {mode} writes a {want} file{why}; use --out {out.with_suffix(want)}"
        )


# --------------------------------------------------------------------------------------------
# what an existing result holds
# --------------------------------------------------------------------------------------------


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a sweep result (``.npz``), its sidecar or a bisection (``.json``):
    ``config``, ``provenance`` and more. :class:`ResultFileError` naming the file when it is
    truncated, foreign or not a sweep's."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            meta = json.loads(path.read_text())
        else:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta_json"]))
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ResultFileError(
            f"{path} is not a readable mamlconv sweep result ({type(exc).__name__}: {exc}); "
            "it may be truncated or another program's file"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ResultFileError(f"{path} holds no sweep configuration; not a mamlconv sweep result")
    return meta


def config_of(meta: dict[str, Any], path: Path) -> SweepConfig:
    try:
        return SweepConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as exc:
        raise ResultFileError(f"{path}: its sweep configuration is invalid ({exc})") from None


def summary(meta: dict[str, Any]) -> str:
    """'12 cells, 20 iterations, made 2026-11-29T22:30:00+00:00' from a result's metadata."""
    cfg = meta.get("config", {})
    made = meta.get("provenance", {}).get("created_utc", "at an unknown date")
    if "bisection" in meta:
        size = f"{len(meta.get('boundary', []))} alphas, {meta['bisection'].get('runs')} runs"
    else:
        rows = len(cfg.get("alphas", ())) + (1 if cfg.get("alpha_zero_row") else 0)
        size = f"{rows * len(cfg.get('betas', ()))} cells"
    return f"{size}, {cfg.get('iters')} iterations, made {made}"


def differences(a: SweepConfig, b: SweepConfig) -> str:
    """'iters 20 (there) vs 3 (asked), seed ...': the identity fields in which two differ."""
    da, db = a.identity(), b.identity()
    keys = [k for k in da if da[k] != db.get(k)]
    shown = [f"{k} {_short(da[k])} there vs {_short(db.get(k))} asked" for k in keys[:3]]
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(shown) + more


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------------------------
# the guards run before any work
# --------------------------------------------------------------------------------------------


def finished_or_refuse(
    config: SweepConfig, out: str | os.PathLike[str], *, resume: bool, force: bool
) -> dict[str, Any] | None:
    """What to do about an existing ``out`` before a sweep starts.

    Returns the metadata of ``out`` when ``resume`` finds it complete with this
    configuration (nothing to do). Raises :class:`OutputError` when ``out`` holds a finished
    result and neither ``force`` nor a matching resume was asked for (saying what it holds),
    and :class:`SweepLocked` when another live process holds the sweep's lock. Returns None
    when the sweep should run.
    """
    out = Path(out)
    check_lock_free(out)
    if not out.exists() or force:
        return None
    try:
        meta = read_meta(out)
    except ResultFileError:
        raise OutputError(
            f"--out {out} exists and is not a readable sweep result; pass --force to "
            "replace it, or choose another --out"
        ) from None
    held = summary(meta)
    if resume and "bisection" not in meta:
        there = config_of(meta, out)
        if there.identity() == config.identity() and not chunk_dir(out).exists():
            return meta
        if there.identity() != config.identity():
            raise OutputError(
                f"--out {out} holds a finished sweep of another configuration ({held}; "
                f"{differences(there, config)}); pass --force to replace it, or choose "
                "another --out"
            )
        return None
    raise OutputError(
        f"--out {out} already holds a finished result ({held}); pass --force to replace "
        "it, or choose another --out"
    )


# --------------------------------------------------------------------------------------------
# the chunk folder
# --------------------------------------------------------------------------------------------


def finished_chunk_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("chunk_*.npz")) if directory.is_dir() else []


def clear_if_empty(directory: Path) -> bool:
    """Remove ``directory`` when it holds no finished chunk (a run that failed before its
    first chunk, or a killed worker's temporary file); True when it is gone."""
    if not directory.exists():
        return True
    if not directory.is_dir():
        raise OutputError(
            f"{directory} is a file where the sweep keeps its chunk folder; move it away"
        )
    if finished_chunk_files(directory):
        return False
    shutil.rmtree(directory)
    return True


def remove_stale_temporaries(directory: Path) -> None:
    """Half-written chunk files of a killed process (``.chunk_NNNN.npz.*.tmp``)."""
    if directory.is_dir():
        for tmp in directory.glob(".chunk_*.tmp"):
            tmp.unlink(missing_ok=True)


def layout_record(config: SweepConfig, *, chunk_size: int, device: str, backend: str) -> dict:
    """What decides how the cells were split and computed, beyond the configuration: float32
    numbers depend on the batch a cell was trained in and on the device."""
    return {"chunk_size": int(chunk_size), "device": device, "backend": backend}


def write_layout(directory: Path, config: SweepConfig, layout: dict[str, Any]) -> None:
    from mamlconv.util.files import atomic_write_text

    record = {"config": config.to_dict(), "layout": layout}
    atomic_write_text(directory / LAYOUT_FILE, json.dumps(record, indent=1) + "\n")


def read_layout(directory: Path) -> dict[str, Any] | None:
    """The layout record of a chunk folder (None for a folder made before it existed)."""
    path = directory / LAYOUT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return dict(record["layout"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ResultFileError(
            f"{path} is unreadable ({exc}); remove {directory} to start the sweep again"
        ) from None


def check_layout(directory: Path, recorded: dict[str, Any], asked: dict[str, Any]) -> None:
    """Refuse to resume with another chunk size, device or backend, naming the originals."""
    bad = [k for k in ("chunk_size", "device", "backend") if recorded.get(k) != asked.get(k)]
    if bad:
        was = ", ".join(f"{k} {recorded.get(k)}" for k in bad)
        now = ", ".join(f"{k} {asked.get(k)}" for k in bad)
        flags = " ".join(
            f"--{k.replace('_', '-')} {recorded.get(k)}" for k in bad if k != "backend"
        )
        raise ResumeMismatch(
            f"the finished chunks in {directory} were made with {was}, this run asks for "
            f"{now} (float32 numbers depend on both); resume with {flags or 'the original'}"
            f" options, or remove {directory} to start again"
        )


# --------------------------------------------------------------------------------------------
# one sweep per --out at a time
# --------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process that its parent has not reaped yet is dead too
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def lock_holder(out: str | os.PathLike[str]) -> tuple[int, str] | None:
    """(PID, host) of the process holding ``out``'s lock, or None when free or stale."""
    path = lock_path(out)
    try:
        pid_text, _, host = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or half-written: treated as stale
    if host and host != socket.gethostname():
        return pid, host  # another machine's: cannot check, assume alive
    if pid == os.getpid() or not _pid_alive(pid):
        return None
    return pid, host


def check_lock_free(out: Path) -> None:
    holder = lock_holder(out)
    if holder is not None:
        pid, host = holder
        raise SweepLocked(
            f"another sweep (PID {pid} on {host or 'this machine'}) is writing {out} "
            f"(lock {lock_path(out)}); wait for it to finish or stop it, or choose another --out"
        )


class SweepLock:
    """``<out>.lock`` holding this process's PID while a sweep writes ``out``; a lock left by
    a dead process is taken over."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.path = lock_path(out)
        self.held = False

    def __enter__(self) -> SweepLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                check_lock_free(self.out)
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {socket.gethostname()}\n")
            self.held = True
            return self
        check_lock_free(self.out)
        raise OutputError(f"cannot take the lock {self.path}; remove it if no sweep is running")

    def __exit__(self, *exc: object) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# --------------------------------------------------------------------------------------------
# a sweep's configuration read back from its own files (``mamlconv sweep --config``)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedSweep:
    """A sweep's configuration as its files record it, and where its result goes."""

    config: SweepConfig
    out: Path
    """The result file the sweep writes (the ``.npz`` of a grid, the ``.json`` of a bisection)."""
    bisect: bool
    rtol: float | None = None
    """A bisection's tolerance."""
    chunk_size: int | None = None
    """The chunk size of an interrupted grid's chunk folder."""


def read_saved_sweep(path: str | os.PathLike[str]) -> SavedSweep:
    """The configuration in a grid result (``.npz``), its sidecar (``.json``), a bisection
    (``.json``), or the chunk folder of an interrupted grid (``<out>.chunks`` or ``<out>``
    itself when only its chunk folder exists)."""
    path = Path(path)
    folder = path if path.name.endswith(".chunks") else chunk_dir(path)
    if not path.exists() and folder.is_dir():
        path = folder
    if path.is_dir():
        if not path.name.endswith(".chunks"):
            raise ResultFileError(
                f"--config {path} is a folder but not a sweep's chunk folder (<out>.chunks)"
            )
        record_path = path / LAYOUT_FILE
        try:
            record = json.loads(record_path.read_text())
            config = SweepConfig.from_dict(record["config"])
        except FileNotFoundError:
            raise ResultFileError(
                f"--config {path} has no {LAYOUT_FILE} (made by an older mamlconv); pass the "
                "sweep's options instead"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultFileError(f"--config {record_path} is unreadable ({exc})") from None
        out = path.with_name(path.name[: -len(".chunks")])
        size = record.get("layout", {}).get("chunk_size")
        return SavedSweep(config, out, False, chunk_size=size)
    if not path.is_file():
        raise ResultFileError(f"--config {path}: no such result file or chunk folder")
    meta = read_meta(path)
    config = config_of(meta, path)
    if "bisection" in meta:
        return SavedSweep(config, path, True, rtol=meta["bisection"].get("rtol"))
    return SavedSweep(config, path.with_suffix(GRID_SUFFIX), False)
