"""Cheap integrity checks for data files and their caches: stat-and-content keys, checksummed
decoded arrays, and clean-up of temporary files left by killed writers.

Used by :mod:`mamlconv.experiments.data`:

- A file verified once (full sha256) is trusted again only while its :func:`file_key` is the
  same: size, mtime, ctime (which no user call can set back, so a rewrite with the mtime
  restored still changes it) and a content probe, the sha256 of the size and the first and
  last MiB. A change that keeps all of these (a byte flip in the middle of a file on a file
  system that does not keep ctime) is found only by a full re-hash: ``mamlconv data check
  --rehash``.
- A decoded cache file gets a sidecar ``<file>.json`` with its sha256, written when it is made;
  it is then verified like a data file (once per file version, through the same key).
- Temporary files are named ``.<target>.<host>-<pid>.<random>.tmp``, so that the next run can
  tell a dead writer's file (removed) from a live writer's (kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

PROBE_BYTES = 1 << 20
"""How much of each end of a file the content probe reads (1 MiB)."""

LEGACY_TEMP_AGE_S = 3600.0
"""A temporary without a writer tag (written before tags existed) is stale after this long."""


def content_probe(path: str | os.PathLike[str], size: int) -> str:
    """sha256 of ``size`` (8 bytes, little-endian), the first MiB and the last MiB of the file."""
    h = hashlib.sha256(int(size).to_bytes(8, "little"))
    with open(path, "rb") as f:
        h.update(f.read(PROBE_BYTES))
        if size > PROBE_BYTES:
            f.seek(max(PROBE_BYTES, size - PROBE_BYTES))
            h.update(f.read(PROBE_BYTES))
    return h.hexdigest()


def file_key(path: str | os.PathLike[str]) -> dict[str, int | str]:
    """What must stay equal for a once-verified file to be trusted without a full re-hash."""
    stat = os.stat(path)
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "probe": content_probe(path, stat.st_size),
    }


# --------------------------------------------------------------------------- decoded arrays


def record_path(target: Path) -> Path:
    """The sidecar holding a cache file's checksum: ``<target>.json``."""
    return target.with_name(target.name + ".json")


def write_record(target: Path, *, sha256: str, source_sha256: str) -> Path:
    """Record ``target``'s size and sha256 (and the source it was made from) beside it."""
    record = {
        "file": target.name,
        "size": target.stat().st_size,
        "sha256": sha256,
        "source_sha256": source_sha256,
    }
    side = record_path(target)
    tmp = temp_file(side.parent, side.name)  # a fresh file: never one a link points through
    try:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, side)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return side


def read_record(target: Path) -> dict[str, Any] | None:
    """The sidecar of ``target``, or None if it is missing or unreadable."""
    try:
        record = json.loads(record_path(target).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        return None
    if not isinstance(record.get("size"), int):
        return None
    return record


# --------------------------------------------------------------------------- temporaries


def writer_tag() -> str:
    """``<host>-<pid>`` of this process, as written into temporary file names."""
    host = socket.gethostname().replace(".", "_").replace("-", "_") or "host"
    return f"{host}-{os.getpid()}"


def temp_file(folder: Path, target_name: str) -> Path:
    """Create an empty temporary file in ``folder`` for ``target_name``, tagged with this writer."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target_name}.{writer_tag()}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _process_start(pid: int) -> float | None:
    """Start time of process ``pid`` (seconds since the epoch), from /proc; None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5), counted after "pid (comm)"
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _writer_alive(pid: int, written: float) -> bool:
    """Is the process that wrote a file at time ``written`` still running?

    A PID that exists but started after the file was written is a reused PID: not the writer.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    started = _process_start(pid)
    return started is None or started <= written + 1.0


def stale_temporaries(folder: Path, *, now: float | None = None) -> list[Path]:
    """Temporary files in ``folder`` whose writer is gone.

    Tagged files (``.<target>.<host>-<pid>.<random>.tmp``) of this host are stale when the pid is
    dead or was started after the file was last written; another host's are never touched.
    Untagged ``.*.tmp`` files (from versions before the tag) are stale after
    :data:`LEGACY_TEMP_AGE_S` without a write.
    """
    now = time.time() if now is None else now
    host = writer_tag().rsplit("-", 1)[0]
    stale = []
    for path in folder.glob(".*.tmp"):
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        parts = path.name[:-4].split(".")  # ['', target..., tag, random]
        tag = parts[-2] if len(parts) >= 4 else ""
        tag_host, _, pid = tag.rpartition("-")
        if tag_host and pid.isdigit():
            if tag_host == host and not _writer_alive(int(pid), mtime):
                stale.append(path)
        elif now - mtime > LEGACY_TEMP_AGE_S:
            stale.append(path)
    return sorted(stale)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete :func:`stale_temporaries` of ``folder``; return what was removed."""
    removed = []
    for path in stale_temporaries(folder):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue  # read-only cache: nothing to do
        removed.append(path)
    return removed
