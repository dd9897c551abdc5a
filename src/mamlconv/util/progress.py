"""Progress with an estimated time to completion, for commands that run longer than a moment.

Library code reports through the logger ``mamlconv.util.progress`` at INFO level and is therefore
quiet unless logging is configured; the CLI calls :func:`show_on_stderr`, which prints the
reports on stderr: redrawn in place about once a second on a terminal, one line about every
10 s otherwise (logs of long runs stay short). Work that ends within the first interval prints
nothing at all; work that was reported gets a final line. A report reads, e.g.::

    compare: 3/10 spectra (30%), 42 s elapsed, about 1 min 38 s left (trained alpha=0.01)

The estimate assumes the remaining units take as long as those finished since the first one did
on average (the first unit often carries start-up costs: compilation, caches, data loading).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

LOGGER_NAME = "mamlconv.util.progress"
log = logging.getLogger(LOGGER_NAME)

TTY_INTERVAL_S = 1.0
"""Seconds between reports when they are redrawn in place on a terminal."""
LOG_INTERVAL_S = 10.0
"""Seconds between reports when stderr is not a terminal (a file, a pipe, CI)."""

_interval_s = LOG_INTERVAL_S


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``, ``3 days 04 h``; ``forever`` for infinity, ``?``
    when unknown (NaN or negative). Used for elapsed times, times left and estimates alike."""
    if seconds == math.inf:
        return "forever"
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 48 * 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} days {s % 86400 // 3600:02d} h"


class Eta:
    """Counts finished units of work and reports progress with an ETA, throttled.

    ``label`` names the command ("compare"), ``total`` the units, ``unit`` their name
    ("spectra", "iterations"). Call :meth:`advance` after each finished unit (or batch of
    units): a report is emitted when ``interval`` seconds (default: set by :func:`show_on_stderr`,
    else 10 s) have passed since the start or the last report; :meth:`finish` emits a final
    report if any was emitted before. ``enabled=False`` makes every call a no-op, for library
    functions whose caller asked for quiet.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "steps",
        interval: float | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.interval = _interval_s if interval is None else float(interval)
        self.enabled = enabled
        self.clock = clock
        self.logger = log if logger is None else logger
        self.done = 0
        self.start = self.last = clock()
        self._first: tuple[float, float] | None = None  # (time, work done) at the first report
        self.reported = False
        self.finished = False

    def add_total(self, units: int) -> None:
        """Announce ``units`` more of work than planned (e.g. an optional phase)."""
        self.total += max(int(units), 0)

    def advance(self, units: int = 1, *, note: str = "") -> None:
        """``units`` more are finished; report if the interval has passed."""
        self.done = min(self.done + int(units), self.total) if self.total else self.done + units
        self._mark_first()
        if self.enabled:
            self._report(note=note)

    def finish(self, *, note: str = "done") -> None:
        """The work is complete (or stopped): the final report, once, if any came before."""
        if self.enabled and not self.finished:
            self.finished = True
            if self.reported:
                self._report(note=note, force=True)

    def work_done(self) -> float:
        """Units finished, the measure the time left is extrapolated from (a subclass may
        count fractions of units in progress)."""
        return float(self.done)

    def _mark_first(self) -> None:
        if self._first is None:
            self._first = (self.clock(), self.work_done())

    def __enter__(self) -> Eta:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.finish(note="done" if exc_type is None else "stopped")

    def line(self, *, note: str = "") -> str:
        """The report as text (no timing side effects)."""
        elapsed = self.clock() - self.start
        head = f"{self.label}: {self.done}/{self.total} {self.unit}"
        if self.total:
            head += f" ({100 * self.done / self.total:.0f}%)"
        text = f"{head}, {format_seconds(elapsed)} elapsed"
        if self.finished:
            pass
        elif self._first is not None and self._first[1] < self.work_done() < self.total:
            t1, w1 = self._first
            work = self.work_done()
            left = (self.clock() - t1) / (work - w1) * (self.total - work)
            text += f", about {format_seconds(left)} left"
        elif self.done < self.total:
            text += ", time left not yet known"
        return f"{text} ({note})" if note else text

    def _report(self, *, note: str, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        self.reported = True
        self.logger.info(self.line(note=note), extra={"progress_final": self.finished})


class ChunkProgress(Eta):
    """:class:`Eta` over the cells of work done in chunks of cells trained together (a sweep):
    finished cells count whole, a running chunk counts by its iterations, so a sweep of a single
    chunk has an ETA too. A report reads, e.g.::

        sweep sinusoid/exact: 12/84 cells (14%), 40 s elapsed, about 3 min 20 s left
        (2 diverged; chunk 3 at iteration 120/500, 10 active)

    ``done_cells`` were finished before (a resumed sweep); ``chunk_cells`` maps each chunk to
    come to its number of cells (without it a chunk counts the most cells it reported active,
    which misses cells that diverged before its first report). Call :meth:`update` as a chunk
    iterates (``n_active``: its cells still training), :meth:`chunk_done` when it is finished
    and :meth:`close` at the end.
    """

    def __init__(
        self,
        label: str,
        *,
        total_cells: int,
        done_cells: int = 0,
        iters: int,
        chunk_cells: Mapping[int, int] | None = None,
        interval: float | None = None,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            label,
            total_cells,
            unit="cells",
            interval=interval,
            enabled=enabled,
            clock=clock,
            logger=logger,
        )
        self.done = min(max(int(done_cells), 0), self.total)
        self.iters = max(int(iters), 1)
        self.diverged = 0
        self.running: dict[int, tuple[int, int]] = {}  # chunk -> (iteration, cells active)
        self._sizes: dict[int, int] = dict(chunk_cells or {})  # chunk -> its cells

    def work_done(self) -> float:
        partial = sum(
            min(it, self.iters) / self.iters * self._sizes.get(chunk, 0)
            for chunk, (it, _) in self.running.items()
        )
        return min(self.done + partial, float(self.total))

    def update(self, chunk: int, iteration: int, n_active: int) -> None:
        """Chunk ``chunk`` finished outer iteration ``iteration`` with ``n_active`` cells left."""
        self.running[chunk] = (int(iteration), int(n_active))
        self._sizes[chunk] = max(self._sizes.get(chunk, 0), int(n_active))
        self._mark_first()
        if self.enabled:
            self._report(note=self._note())

    def chunk_done(self, chunk: int, n_cells: int, n_diverged: int) -> None:
        """Chunk ``chunk`` is finished: ``n_cells`` cells, ``n_diverged`` of them diverged."""
        self.running.pop(chunk, None)
        self._sizes.pop(chunk, None)
        self.diverged += int(n_diverged)
        self.advance(n_cells)

    def advance(self, units: int = 1, *, note: str = "") -> None:
        super().advance(units, note=note or self._note())

    def close(self) -> None:
        """The final report (if any came before), as :meth:`Eta.finish`."""
        self.finish(note=self._note(final=True))

    def _note(self, *, final: bool = False) -> str:
        parts = [f"{self.diverged} diverged"]
        if not final:
            parts += [
                f"chunk {chunk} at iteration {it}/{self.iters}, {act} active"
                for chunk, (it, act) in sorted(self.running.items())
            ]
        return "; ".join(parts)


class _StderrHandler(logging.Handler):
    """Writes progress records to a stream: in place on a terminal, one line each otherwise."""

    def __init__(self, stream: TextIO | None, tty: bool) -> None:
        super().__init__(logging.INFO)
        self.stream, self.tty = stream, tty

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr if self.stream is None else self.stream  # stderr as of now
        try:
            text = self.format(record)
            if self.tty:
                end = "\n" if getattr(record, "progress_final", False) else ""
                stream.write("\r" + text[:200] + "\x1b[K" + end)
            else:
                stream.write(text + "\n")
            stream.flush()
        except Exception:  # a closed pipe must not stop the work
            self.handleError(record)


def show_on_stderr(stream: TextIO | None = None) -> None:
    """Print progress reports on ``stream`` (default: whatever ``sys.stderr`` is when a report
    is written); the CLI calls this. Idempotent."""
    global _interval_s
    current = sys.stderr if stream is None else stream
    tty = bool(getattr(current, "isatty", lambda: False)())
    for handler in list(log.handlers):
        if isinstance(handler, _StderrHandler):
            log.removeHandler(handler)
    log.addHandler(_StderrHandler(stream, tty))
    log.setLevel(logging.INFO)
    log.propagate = False
    _interval_s = TTY_INTERVAL_S if tty else LOG_INTERVAL_S


log.addHandler(logging.NullHandler())

__all__ = ["ChunkProgress", "Eta", "format_seconds", "show_on_stderr"]
