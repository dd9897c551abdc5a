"""The Ray backend of ``mamlconv sweep``: same numbers as ``--workers 1``, faults, loopback only.

The tests start one local Ray instance for the module (2 CPUs, 127.0.0.1 only, dashboard off)
and stop it at the end; every sweep here connects to that instance and nothing else. Ray's
start-up takes 10-40 s on a loaded 2-core machine, so the module shares the instance and keeps
its sweeps small.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from shipped_data import needs_shipped
from sweep_helpers import live_descendants

from mamlconv.cli import main
from mamlconv.experiments.problems.registry import get_preset
from mamlconv.experiments.sweep.bisection import bisect_sweep
from mamlconv.experiments.sweep.chunks import plan_chunks
from mamlconv.experiments.sweep.results import sidecar_path
from mamlconv.experiments.sweep.run import run_sweep
from mamlconv.experiments.sweep.storage import chunk_dir

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray not installed: pip install '.[ray]'"
)

SIX_BY_SIX = [
    "sinusoid",
    "--preset",
    "smoke",
    "--alphas",
    "1e-3:0.3:6",
    "--betas",
    "0.05:20:6",
    "--iters",
    "20",
    "--chunk-size",
    "4",
    "--device",
    "cpu",
    "--no-progress",
]


def _stable_config():
    """Six chunks of four cells that all run every iteration (stable corner of the sinusoid
    map), long enough (about a second per chunk) for a kill to land mid-chunk."""
    return get_preset("sinusoid", "smoke").replace(
        alphas=tuple(np.geomspace(1e-4, 1e-3, 4)),
        betas=tuple(np.geomspace(1e-2, 3e-2, 6)),
        alpha_zero_row=False,
        iters=150,
        chunk_size=4,
        device="cpu",
    )


# --------------------------------------------------------------------------------------------
# helpers: processes of this test session (Linux /proc)
# --------------------------------------------------------------------------------------------


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _listening_addresses(pids: list[int]) -> set[str]:
    """Local IPv4/IPv6 addresses of the TCP sockets in LISTEN state owned by ``pids``."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    addresses = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                hexaddr = cols[1].split(":")[0]
                assert len(hexaddr) == width
                addresses.add(hexaddr)
    return addresses


LOOPBACK = {  # as /proc/net/tcp{,6} print them
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance for this module: 2 CPUs, 127.0.0.1 only, dashboard off."""
    from mamlconv.experiments.sweep import ray_backend

    ray = ray_backend.start_local(num_cpus=2)
    try:
        ray_backend.wait_for_workers(ray, 2, timeout=300)
        yield ray
    finally:
        ray.shutdown()


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "meta_json"}


def _assert_same_result(a: Path, b: Path) -> None:
    """Every array of the two result files equal (NaN = NaN); sidecars equal but for the run."""
    x, y = _arrays(a), _arrays(b)
    assert sorted(x) == sorted(y)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)
    sx, sy = (json.loads(sidecar_path(p).read_text()) for p in (a, b))
    for s in (sx, sy):
        s.pop("run_info", None), s.pop("provenance", None)
    assert sx == sy


# --------------------------------------------------------------------------------------------
# without Ray, and flags
# --------------------------------------------------------------------------------------------


def test_backend_ray_without_ray_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["sweep", *SIX_BY_SIX, "--backend", "ray", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'mamlconv[ray]'" in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        pytest.param(["--ray-address", "127.0.0.1:1"], "needs --backend ray", id="address"),
        pytest.param(["--gpus-per-task", "1"], "needs --backend ray", id="gpus"),
        pytest.param(["--backend", "ray", "--workers", "2"], "--workers is for", id="workers"),
    ],
)
def test_ray_flags_misused_are_one_line_exit_2(tmp_path, capsys, extra, fragment):
    assert main(["sweep", *SIX_BY_SIX, *extra, "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


# --------------------------------------------------------------------------------------------
# on the local instance
# --------------------------------------------------------------------------------------------


@needs_ray
def test_local_instance_listens_on_loopback_only(ray_local):
    nodes = ray_local.nodes()
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    assert ray_local.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    listening = _listening_addresses(live_descendants(os.getpid()))
    assert listening, "found no listening socket of the Ray processes"
    assert listening <= LOOPBACK, f"Ray listens beyond loopback: {sorted(listening)}"


@needs_ray
def test_auto_joins_a_named_cluster_never_a_private_instance(ray_local, monkeypatch):
    """``--ray-address auto`` with this module's instance running: not joined (it is nobody's
    cluster), so a sweep would start its own; RAY_ADDRESS is followed."""
    from mamlconv.experiments.sweep.ray_backend import _cluster_address, gcs_address

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if Path(tempfile.gettempdir(), "ray", "ray_current_cluster").exists():
        pytest.skip("a cluster started with `ray start` runs on this machine")
    assert _cluster_address() is None
    monkeypatch.setenv("RAY_ADDRESS", gcs_address(ray_local))
    assert _cluster_address() == gcs_address(ray_local)


@needs_ray
def test_six_by_six_sweep_equals_workers_1(ray_local, tmp_path, capsys):
    """CLI, 6 x 6 sinusoid grid plus the alpha = 0 row, 11 chunks of at most 4 cells."""
    local, remote = tmp_path / "local.npz", tmp_path / "ray.npz"
    assert main(["sweep", *SIX_BY_SIX, "--out", str(local)]) == 0
    assert main(["sweep", *SIX_BY_SIX, "--backend", "ray", "--out", str(remote)]) == 0
    _assert_same_result(local, remote)
    info = json.loads(sidecar_path(remote).read_text())["run_info"]
    assert info["executor"] == "ray" and len(info["chunks"]) == 11
    assert {c["node"] for c in info["chunks"]} == {"127.0.0.1"}
    assert not chunk_dir(remote).exists()


@needs_ray
def test_bisection_on_ray_equals_local(ray_local):
    """One task per alpha column and round; same brackets and run count as the local run."""
    cfg = get_preset("sinusoid", "smoke").replace(
        alphas=(1e-3, 0.05, 0.3), betas=(0.02, 20.0), iters=10, device="cpu", dtype="float64"
    )
    local = bisect_sweep(cfg, rtol=0.3, progress=False)
    remote = bisect_sweep(cfg, rtol=0.3, progress=False, ray=_options())
    assert remote.records() == local.records()
    assert remote.result.n_runs == local.result.n_runs


def _options(**kw):
    from mamlconv.experiments.sweep.ray_backend import RayOptions

    return RayOptions(**kw)


@needs_ray
@needs_shipped
def test_omniglot_smoke_sweep_equals_workers_1(ray_local, tmp_path):
    """The workers read the files from MAMLCONV_DATA as the module's Ray instance inherited it."""
    cfg = get_preset("omniglot", "smoke").replace(device="cpu")
    run_sweep(cfg, tmp_path / "local.npz", progress=False)
    run_sweep(cfg, tmp_path / "ray.npz", progress=False, ray=_options())
    _assert_same_result(tmp_path / "local.npz", tmp_path / "ray.npz")


@pytest.fixture(scope="module")
def stable_reference(tmp_path_factory):
    """The --workers 1 result of ``_stable_config`` (shared by the two kill tests)."""
    path = tmp_path_factory.mktemp("ref") / "ref.npz"
    run_sweep(_stable_config(), path, progress=False)
    return path


def _every_cell_once(info: dict, n_cells: int) -> None:
    ids = [c["chunk"] for c in info["chunks"]]
    assert len(ids) == len(set(ids)), f"a chunk was written twice: {sorted(ids)}"
    assert sum(c["n_cells"] for c in info["chunks"]) + info["resumed_cells"] == n_cells


@needs_ray
def test_killed_worker_is_retried_and_every_cell_lands_once(ray_local, stable_reference, tmp_path):
    cfg = _stable_config()
    out = tmp_path / "k.npz"
    box: dict = {}

    def drive():
        try:
            box["result"] = run_sweep(cfg, out, progress=False, ray=_options())
        except BaseException as exc:  # reported by the assertions below
            box["error"] = exc

    driver = threading.Thread(target=drive)
    driver.start()
    victim, deadline = None, time.monotonic() + 120
    while victim is None and driver.is_alive() and time.monotonic() < deadline:
        busy = [p for p in live_descendants(os.getpid()) if _title(p).startswith("ray::chunk_task")]
        if busy:
            victim = busy[0]
            os.kill(victim, signal.SIGKILL)  # mid-chunk: the process title says it is running
        else:
            time.sleep(0.05)
    driver.join(timeout=300)
    assert victim is not None, "no chunk was seen running"
    assert "error" not in box, box.get("error")
    info = box["result"].run_info
    _every_cell_once(info, 24)
    assert len(info["chunks"]) == len(plan_chunks(np.arange(24), cfg.chunk_size))
    assert victim not in {c["pid"] for c in info["chunks"]}  # its chunk was rerun elsewhere
    _assert_same_result(stable_reference, out)


@needs_ray
def test_killed_driver_resumes_with_resume(ray_local, stable_reference, tmp_path):
    from mamlconv.experiments.sweep.ray_backend import gcs_address

    cfg = _stable_config()
    out = tmp_path / "d.npz"
    argv = [
        "sweep",
        "sinusoid",
        "--preset",
        "smoke",
        "--alphas",
        "1e-4:1e-3:4",
        "--betas",
        "1e-2:3e-2:6",
        "--no-alpha-zero",
        "--iters",
        str(cfg.iters),
        "--chunk-size",
        "4",
        "--device",
        "cpu",
        "--no-progress",
        "--backend",
        "ray",
        "--ray-address",
        gcs_address(ray_local),
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = "import sys; from mamlconv.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", cli, *argv], env=env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if list(chunk_dir(out).glob("chunk_*.npz")):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the driver finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    kept = len(list(chunk_dir(out).glob("chunk_*.npz")))
    assert 1 <= kept < 6 and not out.exists()
    assert main([*argv, "--resume"]) == 0
    info = json.loads(sidecar_path(out).read_text())["run_info"]
    assert info["resumed_cells"] == 4 * kept
    _every_cell_once(info, 24)
    _assert_same_result(stable_reference, out)


@needs_ray
@needs_shipped  # the driver builds the problem from the real files before any worker runs
def test_chunk_failing_on_its_node_stops_with_one_line(ray_local, tmp_path):
    """Bad data on the workers' node: the sweep stops, naming chunk and node; nothing retried."""
    from mamlconv.experiments.sweep.ray_backend import ChunkFailed

    bad = tmp_path / "data" / "omniglot"
    bad.mkdir(parents=True)
    (bad / "omniglot.npz").write_bytes(b"not the data set")
    cfg = get_preset("omniglot", "smoke").replace(device="cpu")
    out = tmp_path / "f.npz"
    with pytest.raises(ChunkFailed) as exc:
        run_sweep(
            cfg, out, progress=False, ray=_options(env_vars={"MAMLCONV_DATA": str(bad.parent)})
        )
    message = str(exc.value)
    assert message.startswith("chunk 0") and "failed on node 127.0.0.1" in message
    assert "omniglot.npz" in message and "\n" not in message
    assert not out.exists()
