"""Where a sweep keeps its files, and the guards that keep a result from being lost: the
result's suffix, refusing to replace a finished result, the chunk folder's layout record,
and the lock that keeps two sweeps off the same ``--out``.

Files of a grid sweep with ``out = res.npz``:

- ``res.npz`` (the result) and ``res.json`` (its sidecar), written at the end;
- ``res.npz.chunks/`` while it runs: ``layout.json`` (configuration, chunk size, device,
  backend: what a resume must match) and one ``chunk_NNNN.npz`` per finished chunk;
- ``res.npz.lock`` while a process works on it: that process's PID, host and start time
  (:func:`take_lock`, also the lock of a reading run).

A bisection writes one ``.json`` file. A grid's ``--out`` must end in ``.npz`` and a
bisection's in ``.json``, so that a result never collides with its own sidecar.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import OutputError, ResultFileError, ResumeMismatch, SweepLocked
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.sweep.results import FORMAT

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
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, UnicodeDecodeError, OSError) as exc:
        # numpy's own text for an object array advises allow_pickle=True, which would let the
        # file run code: the reason is named without it
        reason = {
            zipfile.BadZipFile: "truncated or not a zip archive",
            KeyError: "no meta_json in it",
        }.get(type(exc), "not a sweep's JSON or an .npz of plain arrays")
        raise ResultFileError(
            f"{path} is not a readable mamlconv sweep result ({reason}); it may be truncated or "
            "another program's file"
        ) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ResultFileError(f"{path} holds no sweep configuration; not a mamlconv sweep result")
    return meta


def config_of(meta: dict[str, Any], path: Path) -> SweepConfig:
    try:
        config = SweepConfig.from_dict(meta["config"])
        check_extremes(config)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # e.g. "device": null
        raise ResultFileError(f"{path}: its sweep configuration is invalid ({exc})") from None
    return config


MAX_SEED = 2**63
"""Seeds are 0 <= seed < 2**63 (torch's generator takes 64-bit seeds)."""
MAX_ITERS = 10**9
MAX_RECORDS = 10**7
"""Recorded iterations of one run at most (``iters / record_every``; arrays of that length are
allocated before any training)."""
MAX_STEPS = 1000
"""Inner steps at most (every step is a differentiated forward pass per task)."""


def check_extremes(config: SweepConfig) -> None:
    """A ValueError naming the field for numbers no sweep can run (a seed beyond 64 bits,
    10**12 iterations, a million inner steps): what a configuration read from a file or given
    on the command line must pass before anything is allocated or trained."""
    if not 0 <= config.seed < MAX_SEED:
        raise ValueError(f"seed must be 0 <= seed < 2**63, got {config.seed}")
    if config.iters > MAX_ITERS:
        raise ValueError(f"iters must be at most {MAX_ITERS:.0e}, got {config.iters}")
    if config.iters // config.record_every > MAX_RECORDS:
        raise ValueError(
            f"iters / record_every = {config.iters // config.record_every} recorded iterations, "
            f"more than {MAX_RECORDS:.0e}; raise record_every"
        )
    if config.steps > MAX_STEPS:
        raise ValueError(f"steps must be at most {MAX_STEPS}, got {config.steps}")


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


def _start_ticks(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, /proc/PID/stat field 22):
    with the PID it names one process, so a PID reused by another program is not the owner."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock file: PID, host and start time (what the file records)."""

    pid: int
    host: str
    since: str

    def __str__(self) -> str:
        return f"PID {self.pid} on {self.host or 'this machine'} since {self.since}"


FRESH_EMPTY_LOCK_S = 5.0
"""An empty lock file younger than this is a lock being written (its owner is between creating
and writing it); an older one is a dead owner's (or an old mamlconv's) and is taken over."""


def lock_owner(path: str | os.PathLike[str]) -> LockOwner | None:
    """The live owner of the lock file ``path``, or None when it is free or its owner is dead
    (a dead PID, a PID now used by another process, an unreadable or old empty file)."""
    path = Path(path)
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable: treated as stale
    parts = text.split()
    if not parts:
        return LockOwner(-1, "", "just now") if age < FRESH_EMPTY_LOCK_S else None
    try:
        pid = int(parts[0])
    except ValueError:
        return None
    host = parts[1] if len(parts) > 1 else ""
    ticks = parts[2] if len(parts) > 2 else "-"
    since = parts[3] if len(parts) > 3 else "an unknown time"
    if host and host != socket.gethostname():
        return LockOwner(pid, host, since)  # another machine's: cannot check, assume alive
    if pid == os.getpid() or pid <= 0 or not _pid_alive(pid):
        return None
    if ticks != "-" and _start_ticks(pid) not in (None, ticks):
        return None  # the PID now belongs to another process
    return LockOwner(pid, host, since)


def take_lock(path: str | os.PathLike[str]) -> LockOwner | None:
    """Create the lock file ``path`` naming this process (PID, host, start time); a dead
    owner's lock is taken over. Returns None when taken, else the live owner."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = lock_owner(path)
            if owner is not None:
                return owner
            _remove_stale(path)
            continue
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()} {socket.gethostname()} {_start_ticks(os.getpid()) or '-'} ")
            fh.write(f"{since}\n")
        return None
    owner = lock_owner(path)
    if owner is not None:
        return owner
    raise OutputError(f"cannot take the lock {path}; remove it if no process is running")


def _remove_stale(path: Path) -> None:
    """Remove a stale lock, but not one another process has just put in its place: the file
    is moved aside first and moved back when what was moved is a live owner's."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    if lock_owner(aside) is not None:  # replaced by a live owner in between: put it back
        with contextlib.suppress(FileExistsError, OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def release_lock(path: str | os.PathLike[str]) -> None:
    """Remove the lock file ``path`` if this process holds it."""
    path = Path(path)
    try:
        mine = path.read_text().split()[:1] == [str(os.getpid())]
    except (OSError, ValueError):
        return
    if mine:
        path.unlink(missing_ok=True)


def lock_holder(out: str | os.PathLike[str]) -> tuple[int, str] | None:
    """(PID, host) of the process holding ``out``'s lock, or None when free or stale."""
    owner = lock_owner(lock_path(out))
    return None if owner is None else (owner.pid, owner.host)


def check_lock_free(out: Path) -> None:
    owner = lock_owner(lock_path(out))
    if owner is not None:
        raise SweepLocked(
            f"another sweep ({owner}) is writing {out} "
            f"(lock {lock_path(out)}); wait for it to finish or stop it, or choose another --out"
        )


class SweepLock:
    """``<out>.lock`` naming this process (PID, host, start time) while a sweep writes
    ``out``; a lock left by a dead process is taken over."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.path = lock_path(out)
        self.held = False

    def __enter__(self) -> SweepLock:
        if take_lock(self.path) is not None:
            check_lock_free(self.out)
            raise OutputError(f"cannot take the lock {self.path}; remove it if no sweep runs")
        self.held = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.held:
            release_lock(self.path)
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
            config = config_of(record, record_path)
        except FileNotFoundError:
            raise ResultFileError(
                f"--config {path} has no {LAYOUT_FILE} (made by an older mamlconv); pass the "
                "sweep's options instead"
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ResultFileError(f"--config {record_path} is unreadable ({exc})") from None
        out = path.with_name(path.name[: -len(".chunks")])
        layout = record.get("layout") if isinstance(record, dict) else None
        size = layout.get("chunk_size") if isinstance(layout, dict) else None
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ResultFileError(f"--config {record_path}: its chunk_size {size!r} is not >= 1")
        return SavedSweep(config, out, False, chunk_size=size)
    if not path.is_file():
        raise ResultFileError(f"--config {path}: no such result file or chunk folder")
    meta = read_meta(path)
    kind = _sweep_record_kind(meta)
    if kind is None:
        raise ResultFileError(
            f"--config {path} is not a sweep record (a grid result .npz or its .json sidecar, "
            f"a bisection .json, or a chunk folder); it holds {_looks_like(meta)}"
        )
    config = config_of(meta, path)
    if kind == "bisection":
        return SavedSweep(config, path, True, rtol=_rtol(meta["bisection"].get("rtol"), path))
    return SavedSweep(config, path.with_suffix(GRID_SUFFIX), False)


def _sweep_record_kind(meta: dict[str, Any]) -> str | None:
    """'grid' for a result or its sidecar (the sweep format), 'bisection' for a bisection's
    record (its ``bisection`` and ``boundary``), None for anything else with a config (a
    figure record, a comparison, a reading run)."""
    if "bisection" in meta:  # a bisection's record, whatever else it holds
        ok = isinstance(meta["bisection"], dict) and isinstance(meta.get("boundary"), list)
        return "bisection" if ok else None
    if meta.get("format") == FORMAT:
        return "grid"
    return None


def _looks_like(meta: dict[str, Any]) -> str:
    for key, what in (
        ("figure", "a figure record (mamlconv figure)"),
        ("schema", f"a {meta.get('schema')!r} record"),
        ("spectra", "a comparison (mamlconv compare)"),
        ("recheck", "a re-check record"),
        ("format", f"format {meta.get('format')!r}"),
    ):
        if key in meta:
            return what
    return f"keys {sorted(meta)[:6]}"


def _rtol(value: Any, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < 10):
        raise ResultFileError(f"--config {path}: its bisection rtol {value!r} is not in (0, 10)")
    return float(value)
