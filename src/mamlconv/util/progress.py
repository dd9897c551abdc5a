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
from collections.abc import Callable
from typing import TextIO

LOGGER_NAME = "mamlconv.util.progress"
log = logging.getLogger(LOGGER_NAME)

TTY_INTERVAL_S = 1.0
"""Seconds between reports when they are redrawn in place on a terminal."""
LOG_INTERVAL_S = 10.0
"""Seconds between reports when stderr is not a terminal (a file, a pipe, CI)."""

_interval_s = LOG_INTERVAL_S


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``; ``?`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


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
        self._first: tuple[float, int] | None = None  # (time, units done) at the first advance
        self.reported = False
        self.finished = False

    def add_total(self, units: int) -> None:
        """Announce ``units`` more of work than planned (e.g. an optional phase)."""
        self.total += max(int(units), 0)

    def advance(self, units: int = 1, *, note: str = "") -> None:
        """``units`` more are finished; report if the interval has passed."""
        self.done = min(self.done + int(units), self.total) if self.total else self.done + units
        if self._first is None:
            self._first = (self.clock(), self.done)
        if self.enabled:
            self._report(note=note)

    def finish(self, *, note: str = "done") -> None:
        """The work is complete (or stopped): the final report, once, if any came before."""
        if self.enabled and not self.finished:
            self.finished = True
            if self.reported:
                self._report(note=note, force=True)

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
        elif self._first is not None and self._first[1] < self.done < self.total:
            t1, d1 = self._first
            left = (self.clock() - t1) / (self.done - d1) * (self.total - self.done)
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

__all__ = ["Eta", "format_seconds", "show_on_stderr"]
