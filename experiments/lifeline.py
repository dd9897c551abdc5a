"""Worker processes that end when the process that started them dies.

A spawned ``multiprocessing`` worker outlives a parent killed with SIGKILL: it keeps
training and writing chunk files that nobody will merge, and prints BrokenPipe tracebacks
when it reports back. :func:`die_with_parent`, called first thing in a worker, ends it as
soon as its parent is gone: on Linux the kernel sends SIGTERM on the parent's death
(``prctl(PR_SET_PDEATHSIG)``); everywhere, a daemon thread checks ``os.getppid()`` once a
second as well (it also covers a parent that died before the ``prctl`` call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""
POLL_S = 1.0


def _set_pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent is gone: nobody will read what this process makes
        time.sleep(POLL_S)


def die_with_parent(parent_pid: int) -> None:
    """End this process (exit status 1, or SIGTERM) when ``parent_pid``, its parent, dies."""
    _set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch, args=(parent_pid,), name="lifeline", daemon=True).start()


def start_worker(parent_pid: int, init: str, init_args: tuple[object, ...]) -> None:
    """A ``multiprocessing`` initializer: :func:`die_with_parent` first, then ``init``
    ("module:function", imported only now: a worker still importing torch when its parent is
    killed must already be on the lifeline) called with ``init_args``."""
    die_with_parent(parent_pid)
    import importlib

    module, _, name = init.partition(":")
    getattr(importlib.import_module(module), name)(*init_args)
