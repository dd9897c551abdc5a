"""The package's one rule for torch's intra-op threads, for the command line and the Python API.

The heavy work of mamlconv (Lanczos spectra, meta-Hessian products, few-shot and sinusoid
training steps) is many small float64 or float32 kernels, for which a second torch thread
mostly adds synchronisation, and on a machine whose cores other work shares it costs far more
(measured: ``mamlconv.advise`` 161 s on torch's default 2 threads against 9.6 s on one thread;
``benchmarks/api_threads_bench.py`` compares the API with the command line). So:

- :data:`DEFAULT_THREADS` (1) is the default of every heavy call: ``mamlconv advise``,
  ``compare``, ``sweep`` and ``linreg`` on the command line (``--threads`` where the command
  has it) and :func:`mamlconv.advise`, :func:`mamlconv.compare`, :func:`mamlconv.sweep`,
  :func:`mamlconv.spectrum` in Python;
- the environment variable ``MAMLCONV_THREADS`` changes that default (an integer >= 1), or
  turns the rule off with ``keep`` (torch's own setting is then left as it is);
- a Python call applies the rule only while it runs (:func:`torch_threads`) and restores the
  caller's setting afterwards, so a notebook's own torch work is not changed by it.

torch is imported only when a rule is applied (``import mamlconv`` stays light).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from mamlconv.errors import UsageError

DEFAULT_THREADS = 1
"""torch threads of a heavy call unless ``MAMLCONV_THREADS`` says otherwise."""
THREADS_ENV = "MAMLCONV_THREADS"
KEEP = "keep"
"""``MAMLCONV_THREADS=keep``: leave torch's thread setting alone."""

F = TypeVar("F", bound=Callable[..., Any])


def policy_threads(requested: int | None = None) -> int | None:
    """The thread count a heavy call uses: ``requested`` when given (a command's ``--threads``),
    else ``MAMLCONV_THREADS`` (None for ``keep``: no change), else :data:`DEFAULT_THREADS`.
    A bad value is a one-line :class:`~mamlconv.errors.UsageError`."""
    if requested is not None:
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise UsageError(f"threads must be an integer >= 1, got {requested!r}")
        return requested
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return DEFAULT_THREADS
    if text.lower() == KEEP:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(
            f"{THREADS_ENV}={text!r}: expected an integer >= 1 or {KEEP!r} (unset it for the "
            f"default of {DEFAULT_THREADS})"
        )
    return value


def set_threads(requested: int | None = None) -> None:
    """Apply the rule for the rest of the process (the command line's use)."""
    threads = policy_threads(requested)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@contextmanager
def torch_threads(requested: int | None = None) -> Iterator[None]:
    """Apply the rule inside the block, and restore torch's setting when it ends (even on an
    error). Nested blocks keep the outer one's setting unless they ask for another."""
    threads = policy_threads(requested)
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    if before != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def heavy_call(function: F) -> F:
    """Decorator: the call runs under :func:`torch_threads` (the API's heavy functions)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch_threads():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
