"""A sweep never loses or silently replaces a result (issue 10): the result's suffix, refusing
to overwrite, "already complete", --out checked before work, empty chunk folders, the resume
identity (chunk size, device), the lock, workers that die with their parent, the size
estimate, and ``sweep --config`` (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import live_descendants, tiny_config

from mamlconv.cli import main
from mamlconv.errors import ResultFileError, ResumeMismatch
from mamlconv.experiments.sweep.results import load_result
from mamlconv.experiments.sweep.run import run_sweep
from mamlconv.experiments.sweep.storage import LAYOUT_FILE, chunk_dir, lock_path
from mamlconv.util.progress import ChunkProgress

SMOKE = ["sweep", "sinusoid", "--preset", "smoke", "--no-progress", "--device", "cpu"]


def one_line_error(capsys, code, rc):
    err = capsys.readouterr().err
    assert rc == code, err
    lines = [ln for ln in err.splitlines() if ln.startswith("mamlconv")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class _StopAfterFirstChunk(ChunkProgress):
    def chunk_done(self, chunk, n_cells, n_diverged):
        super().chunk_done(chunk, n_cells, n_diverged)
        raise KeyboardInterrupt


def interrupted(cfg, out, tmp_path):
    bar = _StopAfterFirstChunk("t", total_cells=9, iters=cfg.iters)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, progress=bar)
    assert len(list(chunk_dir(out).glob("chunk_*.npz"))) == 1


# ---- suffix, overwrite, already complete ---------------------------------------------------


def test_grid_out_with_the_sidecar_suffix_is_refused(tmp_path, capsys):
    """Old: `--out res.json` wrote the .npz, then the sidecar over it (arrays gone, exit 0)."""
    out = tmp_path / "res.json"
    line = one_line_error(capsys, 2, main([*SMOKE, "--iters", "2", "--out", str(out)]))
    assert ".npz" in line and str(out.with_suffix(".npz")) in line
    assert not out.exists()


def test_bisection_out_must_be_json(tmp_path, capsys):
    out = tmp_path / "b.npz"
    rc = main([*SMOKE, "--iters", "2", "--bisect", "--rtol", "0.5", "--out", str(out)])
    assert ".json" in one_line_error(capsys, 2, rc)
    assert not out.exists()


def test_a_finished_result_is_replaced_only_with_force(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main([*SMOKE, "--iters", "3", "--out", str(out)]) == 0
    before = out.read_bytes()
    line = one_line_error(capsys, 2, main([*SMOKE, "--iters", "2", "--out", str(out)]))
    assert "--force" in line and "16 cells" in line and "3 iterations" in line
    assert "made 20" in line  # the date it was made
    assert out.read_bytes() == before
    assert main([*SMOKE, "--iters", "2", "--out", str(out), "--force"]) == 0
    assert load_result(out).config.iters == 2


def test_resume_of_a_finished_result_is_already_complete(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main([*SMOKE, "--iters", "3", "--out", str(out)]) == 0
    stamp = (out.read_bytes(), out.stat().st_mtime_ns, out.with_suffix(".json").read_bytes())
    capsys.readouterr()
    assert main([*SMOKE, "--iters", "3", "--out", str(out), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out
    assert (out.read_bytes(), out.stat().st_mtime_ns) == stamp[:2]
    assert out.with_suffix(".json").read_bytes() == stamp[2]
    # another configuration on top of a finished result is refused, not retrained
    rc = main([*SMOKE, "--iters", "4", "--out", str(out), "--resume"])
    assert "iters 3 there vs 4 asked" in one_line_error(capsys, 2, rc)
    assert out.read_bytes() == stamp[0]


# ---- --out checked before any work ---------------------------------------------------------


def _no_work(monkeypatch):
    import mamlconv.experiments.engine.loop as engine

    def refuse(*args, **kwargs):
        raise AssertionError("training started before --out was checked")

    monkeypatch.setattr(engine, "train_cells", refuse)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        pytest.param(lambda d: (d / "x.npz").mkdir() or d / "x.npz", "is a folder", id="folder"),
        pytest.param(
            lambda d: (d / "f").write_text("") or d / "f" / "x.npz", "is a file", id="file-parent"
        ),
        pytest.param(lambda d: Path("/proc/mamlconv-x.npz"), "cannot write", id="unwritable"),
    ],
)
def test_sweep_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch, make, fragment):
    _no_work(monkeypatch)
    out = make(tmp_path)
    line = one_line_error(capsys, 2, main([*SMOKE, "--iters", "2", "--out", str(out)]))
    assert fragment in line and "--out" in line


def test_compare_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    res = tmp_path / "r.npz"
    run_sweep(tiny_config(), res, progress=False)
    import mamlconv.experiments.analysis.comparison as cmp

    monkeypatch.setattr(cmp, "compare", lambda *a, **k: pytest.fail("spectra before --out check"))
    (tmp_path / "taken").write_text("")
    rc = main(["compare", str(res), "--out", str(tmp_path / "taken"), "--quiet"])
    assert "--out" in one_line_error(capsys, 2, rc)


def test_figure_out_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import mamlconv.experiments.figures as figs

    monkeypatch.setattr(figs, "fig1", lambda *a, **k: pytest.fail("trained before --out check"))
    (tmp_path / "taken").write_text("")
    rc = main(["figure", "fig1", "--iters", "1", "--out", str(tmp_path / "taken" / "sub")])
    assert "is a file" in one_line_error(capsys, 2, rc)


def test_linreg_plot_is_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import mamlconv.numerics.linreg as lin

    monkeypatch.setattr(lin, "linreg_study", lambda *a, **k: pytest.fail("grid before --plot"))
    (tmp_path / "taken").write_text("")
    rc = main(["linreg", "--iters", "2", "--plot", str(tmp_path / "taken" / "m.png")])
    assert "--plot" in one_line_error(capsys, 2, rc)


# ---- the chunk folder ----------------------------------------------------------------------


def test_an_empty_chunk_folder_does_not_block_the_next_run(tmp_path, capsys):
    """Old: "holds 0 finished chunks of an earlier run", exit 2."""
    out = tmp_path / "r.npz"
    chunk_dir(out).mkdir()
    assert main([*SMOKE, "--iters", "2", "--out", str(out)]) == 0
    assert out.exists() and not chunk_dir(out).exists()


def test_a_failure_before_the_first_chunk_leaves_no_folder(tmp_path, monkeypatch):
    import mamlconv.experiments.engine.loop as engine

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(engine, "train_cells", fail)
    out = tmp_path / "r.npz"
    with pytest.raises(RuntimeError, match="out of memory"):
        run_sweep(tiny_config(), out, progress=False)
    assert not chunk_dir(out).exists() and not lock_path(out).exists()


def test_resume_with_another_chunk_size_or_device_is_refused(tmp_path):
    cfg = tiny_config(chunk_size=3)
    out = tmp_path / "r.npz"
    interrupted(cfg, out, tmp_path)
    with pytest.raises(ResumeMismatch, match="chunk_size 3") as info:
        run_sweep(cfg.replace(chunk_size=4), out, resume=True, progress=False)
    assert "--chunk-size 3" in str(info.value)
    layout_file = chunk_dir(out) / LAYOUT_FILE
    record = json.loads(layout_file.read_text())
    assert record["layout"] == {"chunk_size": 3, "device": "cpu", "backend": "auto"}
    record["layout"]["device"] = "cuda:1"  # as if the interrupted run had used a GPU
    layout_file.write_text(json.dumps(record))
    with pytest.raises(ResumeMismatch, match="device cuda:1"):
        run_sweep(cfg, out, resume=True, progress=False)
    record["layout"]["device"] = "cpu"
    layout_file.write_text(json.dumps(record))
    # without a chunk size, the resume takes the folder's, and the numbers are the fresh run's
    resumed = run_sweep(cfg.replace(chunk_size=None), out, resume=True, progress=False)
    fresh = run_sweep(cfg, tmp_path / "fresh.npz", progress=False)
    assert resumed.run_info["chunk_size"] == 3 and resumed.run_info["resumed_cells"] == 3
    np.testing.assert_array_equal(resumed.final_loss, fresh.final_loss)
    np.testing.assert_array_equal(resumed.trajectories["loss"], fresh.trajectories["loss"])


def test_a_truncated_chunk_is_one_line_naming_it(tmp_path, capsys):
    cfg = tiny_config(chunk_size=3)
    out = tmp_path / "r.npz"
    interrupted(cfg, out, tmp_path)
    chunk = next(chunk_dir(out).glob("chunk_*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:200])
    with pytest.raises(ResultFileError, match=chunk.name):
        run_sweep(cfg, out, resume=True, progress=False)
    argv = ["sweep", "--config", str(chunk_dir(out)), "--resume", "--no-progress"]
    line = one_line_error(capsys, 2, main(argv))
    assert chunk.name in line and "allow_pickle" not in line


# ---- one sweep per --out -------------------------------------------------------------------


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(tmp_path, capsys):
    out = tmp_path / "r.npz"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(out).write_text(f"{holder.pid} {os.uname().nodename}\n")
        line = one_line_error(capsys, 2, main([*SMOKE, "--iters", "2", "--out", str(out)]))
        assert f"PID {holder.pid}" in line and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main([*SMOKE, "--iters", "2", "--out", str(out)]) == 0  # its process is gone
    assert out.exists() and not lock_path(out).exists()


def _sweep_process(out: Path, *extra: str) -> subprocess.Popen:
    argv = [*SMOKE, "--iters", "100000", "--yes", "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from mamlconv.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_second_sweep_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "r.npz"
    first = _sweep_process(out)
    try:
        assert _wait_for(lambda: lock_path(out).exists(), 120), "first sweep never started"
        line = one_line_error(capsys, 2, main([*SMOKE, "--iters", "100000", "--out", str(out)]))
        assert f"PID {first.pid}" in line
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_their_parent(tmp_path):
    """kill -9 of the parent during a 2-worker sweep leaves no process behind."""
    out = tmp_path / "r.npz"
    parent = _sweep_process(out, "--workers", "2", "--chunk-size", "4")
    kids: set[int] = set()
    try:
        assert _wait_for(lambda: len(live_descendants(parent.pid)) >= 2, 180), "no workers started"
        time.sleep(1.0)  # let them import and start training
        kids = live_descendants(parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        gone = _wait_for(lambda: not any(_alive(k) for k in kids), 15)
        assert gone, f"still running after the parent was killed: {sorted(filter(_alive, kids))}"
    finally:
        for k in kids:
            if _alive(k):
                os.kill(k, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_never_more_workers_than_chunks(tmp_path):
    res = run_sweep(tiny_config(chunk_size=5), tmp_path / "r.npz", workers=4, progress=False)
    assert res.run_info["workers"] == 2  # 9 cells in chunks of 5


# ---- size and estimate ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        pytest.param(
            ["--alphas", "1e-4:0.5:1000", "--betas", "1e-2:9:1000"], "1001000 cells", id="1M"
        ),
        pytest.param(["--tasks", "100000000"], "memory", id="tasks-1e8"),
    ],
)
def test_a_huge_sweep_needs_yes(tmp_path, capsys, extra, fragment):
    out = tmp_path / "r.npz"
    rc = main([*SMOKE, *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--yes" in err and fragment in err and "Traceback" not in err
    assert "estimated from a 3-iteration probe" in err
    assert not out.exists() and not chunk_dir(out).exists()


def test_every_sweep_prints_its_size_and_estimate(tmp_path, capsys):
    assert main([*SMOKE, "--iters", "2", "--out", str(tmp_path / "r.npz")]) == 0
    err = capsys.readouterr().err
    assert "16 cells (3 alphas + alpha = 0, 4 betas) x 2 iterations" in err
    assert "memory" in err and "up to" in err


# ---- sweep --config (issue 12) -------------------------------------------------------------


def test_config_reruns_a_sweep_from_its_sidecar(tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert main([*SMOKE, "--iters", "3", "--seed", "5", "--out", str(out)]) == 0
    first = load_result(out)
    again = tmp_path / "again.npz"
    assert main(["sweep", "--config", str(out.with_suffix(".json")), "--no-progress",
                 "--out", str(again)]) == 0  # fmt: skip
    second = load_result(again)
    assert second.config == first.config
    np.testing.assert_array_equal(second.final_loss, first.final_loss)
    # flags on top override; --out defaults to the result itself (finished: needs --force)
    rc = main(["sweep", "--config", str(out), "--iters", "2", "--no-progress"])
    assert "--force" in one_line_error(capsys, 2, rc)
    assert main(["sweep", "--config", str(out), "--iters", "2", "--force", "--no-progress"]) == 0
    assert load_result(out).config.replace(iters=3) == first.config


def test_config_resumes_an_interrupted_sweep(tmp_path, capsys):
    cfg = tiny_config(chunk_size=3)
    out = tmp_path / "r.npz"
    interrupted(cfg, out, tmp_path)
    assert main(["sweep", "--config", str(out), "--resume", "--no-progress"]) == 0
    res = load_result(out)
    assert res.config.replace(chunk_size=3) == cfg and res.run_info["resumed_cells"] == 3


def test_config_reruns_a_bisection(tmp_path):
    out = tmp_path / "b.json"
    argv = [*SMOKE, "--iters", "3", "--bisect", "--rtol", "0.5", "--out", str(out)]
    assert main(argv) == 0
    again = tmp_path / "b2.json"
    assert main(["sweep", "--config", str(out), "--no-progress", "--out", str(again)]) == 0
    a, b = json.loads(out.read_text()), json.loads(again.read_text())
    assert a["boundary"] == b["boundary"] and b["bisection"]["rtol"] == 0.5


def test_config_from_a_foreign_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    line = one_line_error(capsys, 2, main(["sweep", "--config", str(bad)]))
    assert str(bad) in line
