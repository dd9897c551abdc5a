"""How a chunk reaches a Ray worker: one Ray task per sweep chunk (or bisection alpha column).

The driver (the process running ``mamlconv sweep --backend ray``) plans the chunks exactly as a
local sweep does (:func:`mamlconv.experiments.sweep.chunks.plan_chunks`), submits one Ray task per
chunk
and, as tasks finish (``ray.wait``, in completion order), writes each returned chunk file into
``<out>.chunks/`` itself. A task runs the same :func:`~mamlconv.experiments.sweep.chunks.run_chunk`
as
a local worker process, into a temporary folder on its node, and returns the chunk file's bytes:
so the chunk files, ``--resume``, the result file and its sidecar are those of a local sweep,
and the numbers are identical cell for cell to ``--workers 1`` with the same seed and chunk
size (same cells per batch, same code, same task stream).

Faults. A worker process that dies mid-chunk (killed, out of memory, node lost) is a system
failure: Ray reruns the task (``max_retries``), and since only the driver writes chunk files,
and only once per chunk, every cell lands exactly once. An exception raised by the chunk itself
(bad data on that node, a bug) is not retried (``retry_exceptions=False``): the driver cancels
the other tasks and raises :class:`ChunkFailed`, one line naming the chunk and the node.
Finished chunk files stay, so a killed driver or a failed chunk resumes with ``--resume``.

Data. Tasks receive the configuration (a JSON string) and cell indices only; a few-shot task
loads Omniglot / MiniImagenet on its own node through :mod:`mamlconv.experiments.data`
(``MAMLCONV_DATA`` of the worker's environment, sha256-verified as everywhere). No data set
travels through Ray's object store.

Ray is an optional dependency (``pip install 'mamlconv[ray]'``); it is imported only here, and
only when the Ray backend is asked for.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import MamlconvError, RunFailed

INSTALL_HINT = "the Ray backend needs Ray: pip install 'mamlconv[ray]' (or pip install ray)"

LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray binds its servers to every interface and advertises the machine's network address
unless this is "0" (then it uses 127.0.0.1 throughout; Ray's own switch for single-machine
use). Set for a local instance started here and for a driver joining one on 127.0.0.1."""


class RayMissing(MamlconvError, ImportError):
    """``--backend ray`` without Ray installed."""


class RayUnreachable(MamlconvError, RuntimeError):
    """The Ray cluster named by the address cannot be joined."""


class ChunkFailed(RunFailed, RuntimeError):
    """A chunk (or bisection column) raised on its worker; the message names chunk and node."""


class _OnNode(Exception):
    """A task's exception as it travels back: (node address, "Type: first line")."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(node, reason)


@contextlib.contextmanager
def _naming_the_node() -> Iterator[None]:
    """Re-raise an exception of the task body with the node it happened on (Ray's own task
    error carries the node's address only on an attribute that ``ray.get`` drops)."""
    try:
        yield
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise _OnNode(_where()["node"], reason) from exc


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray tasks run.

    ``address``: ``auto`` (the cluster named by ``RAY_ADDRESS``, else the one ``ray start``
    last started on this machine; else a local instance started for the run and stopped after
    it; a Ray instance that another program started for itself is never joined), ``local``
    (always a fresh local instance) or ``HOST:PORT`` of a cluster's head. When
    this process is already connected to Ray (``ray.is_initialized()``), that connection is
    used and left open. ``cpus_per_task`` / ``gpus_per_task`` are the Ray resources of one task
    (a chunk); a task runs ``max(1, floor(cpus_per_task))`` torch threads. ``max_retries``:
    reruns of a task whose worker died. ``env_vars``: extra environment of the task workers
    (Ray ``runtime_env``), e.g. ``{"MAMLCONV_DATA": ...}`` when the nodes do not set it
    themselves. ``num_cpus``: CPUs of a local instance started here (default: all)."""

    address: str = "auto"
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3
    env_vars: Mapping[str, str] = field(default_factory=dict)
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("Ray address is empty; use auto, local or HOST:PORT")
        if not (0 < self.cpus_per_task < float("inf")):  # NaN fails both
            raise ValueError(f"cpus per task must be a finite number > 0, got {self.cpus_per_task}")
        if not (0 <= self.gpus_per_task < float("inf")):
            raise ValueError(
                f"gpus per task must be a finite number >= 0, got {self.gpus_per_task}"
            )
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_task))


def require_ray() -> Any:
    """The ``ray`` module, or :class:`RayMissing` with the install hint."""
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """Make Ray (this process and the processes it starts) use 127.0.0.1 only, and send no
    usage statistics."""
    from ray._private import ray_constants

    settings = {LOOPBACK_ONLY_ENV: "0", "RAY_USAGE_STATS_ENABLED": "0"}
    old_env = {k: os.environ.get(k) for k in settings}
    old_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(settings)  # inherited by the GCS, raylet and workers
    ray_constants.ENABLE_RAY_CLUSTER = False  # this process imported ray before we set it
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def start_local(*, num_cpus: int | None = None, num_gpus: int | None = None) -> Any:
    """Start a Ray instance on this machine bound to 127.0.0.1, dashboard off; returns ray.

    Stop it with ``ray.shutdown()``, which ends exactly the processes it started."""
    ray = require_ray()
    for attempt in range(2):
        try:
            with _loopback_only(ray):
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    num_gpus=num_gpus,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    logging_level=logging.WARNING,
                )
            return ray
        except Exception as exc:
            # Ray gives its raylet a fixed 30 s to register; a busy machine can miss that once.
            ray.shutdown()  # stops what this attempt started
            if attempt or "timed out during startup" not in str(exc):
                raise
    return ray


def gcs_address(ray: Any) -> str:
    """HOST:PORT of the Ray instance this process is connected to (for another driver)."""
    return ray.get_runtime_context().gcs_address


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Connected to Ray for the duration: an existing connection is reused and left open;
    one made here (cluster or local instance) is closed afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        check_resources(ray, options)
        yield ray
        return
    address = options.address
    if address == "auto":
        address = _cluster_address() or "local"
    if address == "local":
        start_local(num_cpus=options.num_cpus)
    else:
        check_reachable(address)
        try:
            with _loopback_only(ray) if _is_loopback(address) else contextlib.nullcontext():
                ray.init(address=address, logging_level=logging.WARNING)
        except Exception as exc:  # Ray raises several kinds; the user needs one line
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise RayUnreachable(
                f"cannot join the Ray cluster at {address} ({reason}); check --ray-address"
            ) from None
    try:
        check_resources(ray, options)
        yield ray
    finally:
        ray.shutdown()


CONNECT_TIMEOUT_S = 5.0
"""How long the driver waits for a TCP connection to the head before it reports the address as
unreachable (Ray itself retries a refused address for minutes)."""


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """:class:`RayUnreachable` (one line) unless something accepts a TCP connection at
    ``HOST:PORT`` within ``timeout`` seconds (``ray://HOST:PORT`` too)."""
    import socket

    bare = address.split("://", 1)[1] if "://" in address else address
    host, sep, port_text = bare.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
        if not sep or not host or not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise RayUnreachable(
            f"--ray-address {address!r} is not HOST:PORT (nor auto or local)"
        ) from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer within {timeout:g} s"
        raise RayUnreachable(
            f"cannot join the Ray cluster at {address} ({reason}); check --ray-address and that "
            "`ray start --head` runs there"
        ) from None


class RayResourcesMissing(RayUnreachable):
    """No node of the cluster has the resources one task asks for: it would wait forever."""


def check_resources(ray: Any, options: RayOptions) -> None:
    """:class:`RayResourcesMissing` unless some live node has ``cpus_per_task`` CPUs and
    ``gpus_per_task`` GPUs (Ray would queue such a task for ever)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    want = {"CPU": options.cpus_per_task, "GPU": options.gpus_per_task}
    for node in nodes:
        have = node.get("Resources", {})
        if all(have.get(k, 0.0) >= v for k, v in want.items() if v > 0):
            return
    total = ray.cluster_resources()
    biggest = {
        k: max((n.get("Resources", {}).get(k, 0.0) for n in nodes), default=0.0) for k in want
    }
    raise RayResourcesMissing(
        f"no node of the Ray cluster has {want['CPU']:g} CPUs and {want['GPU']:g} GPUs for one "
        f"task (largest node: {biggest['CPU']:g} CPUs, {biggest['GPU']:g} GPUs; cluster total "
        f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs); lower --cpus-per-task / "
        "--gpus-per-task or add such a node"
    )


def _cluster_address() -> str | None:
    """``RAY_ADDRESS``, else the address that ``ray start`` recorded on this machine, else None.

    Unlike ``ray.init(address="auto")`` this does not join any Ray process found running here
    (a test's or another program's private instance)."""
    from ray._private import services

    return services.get_ray_address_from_environment(None, None)


def _remote(ray: Any, fn: Any, options: RayOptions) -> Any:
    kwargs: dict[str, Any] = {
        "num_cpus": options.cpus_per_task,
        "num_gpus": options.gpus_per_task,
        "max_retries": options.max_retries,
        "retry_exceptions": False,  # a chunk's own exception is real: do not rerun it
    }
    from mamlconv.experiments.problems.registry import TRUST_ENV

    env_vars = dict(options.env_vars)
    if TRUST_ENV in os.environ and TRUST_ENV not in env_vars:  # the specs the user named
        env_vars[TRUST_ENV] = os.environ[TRUST_ENV]
    if env_vars:
        kwargs["runtime_env"] = {"env_vars": env_vars}
    return ray.remote(**kwargs)(fn)


def _where() -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "node": ray.util.get_node_ip_address(),
        "node_id": ctx.get_node_id()[:12],
        "pid": os.getpid(),
    }


# --------------------------------------------------------------------------------------------
# the tasks (run on the workers)
# --------------------------------------------------------------------------------------------


def chunk_task(
    config_json: str, chunk_id: int, cells: np.ndarray, backend: str, threads: int
) -> tuple[bytes, dict[str, Any]]:
    """One chunk on a worker: the chunk file's bytes and run_chunk's summary (plus the node)."""
    import torch

    from mamlconv.experiments.sweep.chunks import run_chunk

    torch.set_num_threads(threads)
    with _naming_the_node(), tempfile.TemporaryDirectory(prefix="mamlconv-chunk-") as tmp:
        path = Path(tmp) / f"chunk_{chunk_id:04d}.npz"
        summary = run_chunk(config_json, chunk_id, cells, str(path), backend)
        payload = path.read_bytes()
    summary.update(_where())
    return payload, summary


def column_task(
    config_json: str, alphas: np.ndarray, betas: np.ndarray, backend: str, threads: int
) -> np.ndarray:
    """Cells of one alpha column of a bisection round on a worker: stable (not diverged)?"""
    import torch

    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.problems.registry import get_problem

    torch.set_num_threads(threads)
    with _naming_the_node():
        config = SweepConfig.from_json(config_json)
        problem = get_problem(config.problem, **config.problem_options)
        # np.array: arrays from Ray's object store are read-only views
        run = train_cells(problem, config, np.array(alphas), np.array(betas), backend=backend)
    return run.diverged_at < 0


# --------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------


def _failure(ray: Any, exc: BaseException, what: str) -> ChunkFailed:
    """One line naming ``what`` (the chunk), the node and the cause."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, _OnNode):
        node, reason = cause.args
        return ChunkFailed(f"{what} failed on node {node}: {reason}")
    # A system failure that outlived the retries (worker died every time, node lost, ...).
    reason = (str(exc).splitlines() or [""])[0]
    return ChunkFailed(f"{what} failed: {type(exc).__name__}: {reason}")


def _drain(ray: Any, refs: dict[Any, Any]) -> Iterator[tuple[Any, Any]]:
    """(key, value) of each task as it finishes; on any exception the rest are cancelled."""
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                key = refs.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    raise _failure(ray, exc, key[0]) from None
                yield key, value
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)


def run_chunks_ray(
    config_json: str,
    plan: list[tuple[int, np.ndarray, Path]],
    *,
    backend: str,
    options: RayOptions,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Run the planned chunks as Ray tasks; write each chunk file as its task finishes.

    ``plan`` and the returned summaries are those of the local ``_run_chunks``; ``progress`` (a
    :class:`~mamlconv.util.progress.ChunkProgress`) hears of each finished chunk."""
    from mamlconv.util.files import atomic_write

    summaries: list[dict[str, Any]] = []
    with ray_session(options) as ray:
        task = _remote(ray, chunk_task, options)
        conf = ray.put(config_json)
        refs = {
            task.remote(conf, cid, cells, backend, options.threads): (
                f"chunk {cid:04d} ({len(cells)} cells)",
                cid,
                path,
            )
            for cid, cells, path in plan
        }
        for (_, _, path), (payload, summary) in _drain(ray, refs):
            atomic_write(path, lambda fh, data=payload: fh.write(data), binary=True)
            summaries.append(summary)
            if progress is not None:
                progress.chunk_done(summary["chunk"], summary["n_cells"], summary["n_diverged"])
    return summaries


def stable_by_column(
    config_json: str,
    alphas: np.ndarray,
    betas: np.ndarray,
    *,
    backend: str,
    options: RayOptions,
) -> np.ndarray:
    """One bisection round: one Ray task per distinct alpha (its cells of this round)."""
    ray = require_ray()
    task = _remote(ray, column_task, options)
    stable = np.zeros(alphas.size, dtype=bool)
    refs = {}
    for a in np.unique(alphas):
        cells = np.flatnonzero(alphas == a)
        ref = task.remote(config_json, alphas[cells], betas[cells], backend, options.threads)
        refs[ref] = (f"bisection column alpha={a:.4g} ({cells.size} cells)", cells)
    for (_, cells), column in _drain(ray, refs):
        stable[cells] = column
    return stable


def wait_for_workers(ray: Any, n: int, *, timeout: float = 60.0) -> None:
    """Block until ``n`` worker processes have imported mamlconv and torch (benchmarks and
    tests measure the sweep, not the workers' first imports)."""
    fn = ray.remote(num_cpus=1)(_warm)
    deadline = time.monotonic() + timeout
    ray.get([fn.remote(0.5) for _ in range(n)], timeout=max(1.0, deadline - time.monotonic()))


def _warm(seconds: float) -> int:
    import torch  # noqa: F401

    import mamlconv.experiments.sweep.chunks  # noqa: F401

    time.sleep(seconds)  # hold the CPU so that n calls land on n different workers
    return os.getpid()
