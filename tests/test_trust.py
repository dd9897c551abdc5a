"""Trust, round two (issue 21): one test per defect. A result file never runs code, locks name
their owner and are taken over from a dead one, reading runs resume, ``readings judge`` judges
what ``readings list`` counts, the audit recomputes derived fields, user problems are checked
up front (generator, finite data, shapes, state, sys.exit), the Ray backend fails fast, and
``sweep --config`` reads sweep records only. The probe that found them: tests/trust_probe.py."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mamlconv
from mamlconv.cli import main
from mamlconv.experiments.problems.module_problem import ModuleProblemError

RESULTS = Path(__file__).resolve().parent.parent / "experiments" / "results"
SMOKE = ["sweep", "sinusoid", "--preset", "smoke", "--no-progress", "--device", "cpu"]
FRESH = {"MAMLCONV_TRUSTED_PROBLEMS": "[]", "OMP_NUM_THREADS": "1"}


def cli(args, cwd, timeout=300):
    """A fresh ``mamlconv`` process that was named no spec."""
    return subprocess.run(
        [sys.executable, "-m", "mamlconv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **FRESH},
        timeout=timeout,
    )


def one_line(proc):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    """A 2 x 2 (+ alpha = 0 row) sinusoid result of 3 iterations."""
    out = tmp_path_factory.mktemp("tiny") / "base.npz"
    argv = [*SMOKE, "--iters", "3", "--alphas", "0.01:0.1:2", "--betas", "0.01:1:2"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def with_config(src: Path, dst: Path, **changes) -> Path:
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["meta_json"]))
    meta["config"].update(changes)
    data["meta_json"] = np.array(json.dumps(meta))
    np.savez(dst, **data)
    return dst


# ---- 1. a result file runs no code ----------------------------------------------------------


def test_a_result_naming_os_system_runs_nothing_in_compare_or_sweep_config(tiny_result, tmp_path):
    """Old: compare and sweep --config called os.system(command) from the file's config."""
    marker = tmp_path / "PWNED"
    hostile = with_config(
        tiny_result,
        tmp_path / "hostile.npz",
        problem="os:system",
        problem_options={"command": f"touch {marker}"},
    )
    line = one_line(cli(["compare", str(hostile), "--out", str(tmp_path / "c")], tmp_path))
    assert "--problem os:system" in line and "never runs code" in line
    proc = cli(["sweep", "--config", str(hostile), "--out", str(tmp_path / "s.npz")], tmp_path)
    one_line(proc)
    assert not marker.exists()


def test_a_spec_the_user_names_runs(tiny_result, tmp_path):
    """The same spec given with --problem is the user's word (here: a harmless factory)."""
    (tmp_path / "mine.py").write_text(
        "import torch\nfrom torch import nn\nimport torch.nn.functional as F\nimport mamlconv\n"
        "def task(g):\n    x = torch.rand(6, 1, generator=g)\n    return x, 2 * x, x, 2 * x\n"
        "def make():\n    return mamlconv.problem_from_module(nn.Linear(1, 1), F.mse_loss, task)\n"
    )
    spec = f"{tmp_path / 'mine.py'}:make"
    res = with_config(tiny_result, tmp_path / "mine.npz", problem=spec)
    one_line(cli(["compare", str(res), "--points", "none", "--out", str(tmp_path / "a")], tmp_path))
    proc = cli(
        ["compare", str(res), "--problem", spec, "--points", "none", "--out", str(tmp_path / "b")],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr


# ---- 2. reading-run locks and resumable reading runs ----------------------------------------


def test_a_lock_of_a_dead_owner_is_taken_over_and_a_live_one_is_named(tmp_path):
    """Old: an empty lock file without a PID; after kill -9 every later run skipped the job."""
    from mamlconv.experiments.sweep.storage import lock_owner, release_lock, take_lock

    lock = tmp_path / "sinusoid_finn_pool_exact_seed0.json.lock"  # the job run below
    lock.write_text("")  # what an old `readings run` left behind
    old = time.time() - 3600
    os.utime(lock, (old, old))
    assert take_lock(lock) is None
    pid, host, *_ = lock.read_text().split()
    assert int(pid) == os.getpid() and host
    release_lock(lock)
    assert not lock.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid} {os.uname().nodename} - 2026-01-01T00:00:00Z\n")
    assert take_lock(lock) is None  # the owner is gone
    release_lock(lock)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{live.pid} {os.uname().nodename} - 2026-01-01T00:00:00Z\n")
        owner = take_lock(lock)
        assert owner is not None and owner.pid == live.pid and lock_owner(lock) == owner
        proc = cli(
            ["readings", "run", "S4-1", "--seeds", "0", "--out", str(tmp_path),
             "--reading", "init=finn,tasks=pool,variant=exact"],
            tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0 and f"PID {live.pid}" in proc.stdout, proc.stdout
    finally:
        live.kill()
        live.wait()


def _tiny_matrix():
    from mamlconv.experiments.readings.matrix import SINUSOID

    base = {**SINUSOID.base, "iters": 6, "pool_size": 4, "tasks_per_batch": 4}
    return dataclasses.replace(SINUSOID, base=base, alphas=(0.0, 0.3), betas=(0.1, 3.0, 30.0))


def test_a_reading_run_writes_progress_and_resumes_to_the_same_record(tmp_path):
    """Old: a reading run wrote nothing until it ended (a kill lost the whole job)."""
    from mamlconv.experiments.readings.run import progress_path, run_reading

    torch.set_num_threads(1)
    matrix = _tiny_matrix()
    reading = {"init": "finn", "tasks": "pool", "variant": "exact"}
    progress = progress_path(tmp_path / "run.json")
    whole = run_reading(matrix, reading, 0, progress=progress)
    stored = json.loads(progress.read_text())
    assert len(stored["cells"]) >= 6  # every grid cell is on disk
    stored["cells"] = stored["cells"][:3]  # a run killed after three cells
    progress.write_text(json.dumps(stored))
    said = []
    again = run_reading(matrix, reading, 0, progress=progress, log=said.append)
    assert any("resuming, 3 cells" in s for s in said)
    for key in ("final_loss", "max_loss", "initial_loss", "diverged_at"):
        np.testing.assert_array_equal(again["grid"][key], whole["grid"][key])
    from mamlconv.util.files import dumps

    assert dumps(again["bisections"]) == dumps(whole["bisections"])


# ---- 3. readings judge judges what readings list counts -------------------------------------


def test_judge_leaves_out_copies_and_stale_runs_that_list_rejects(tmp_path):
    """Old: a copied file counted as an extra run and stale runs were judged."""
    out = tmp_path / "readings"
    shutil.copytree(RESULTS / "readings", out)
    shutil.copy(out / "sinusoid_finn_pool_exact_seed0.json", out / "sinusoid_copy_seed0.json")
    stale = json.loads((out / "sinusoid_finn_pool_exact_seed1.json").read_text())
    stale["config"]["iters"] = 400
    (out / "sinusoid_finn_pool_exact_seed1.json").write_text(json.dumps(stale))
    listed = cli(["readings", "list", "--json", "--out", str(out)], tmp_path)
    done = sum(r["done"] for r in json.loads(listed.stdout)["sinusoid"]["runs"])
    judged = cli(["readings", "judge", "--json", "--out", str(out)], tmp_path)
    assert judged.returncode == 0, judged.stderr
    n_runs = int(re.search(r"(\d+) runs in", json.loads(judged.stdout)["text"]).group(1))
    assert done == n_runs == 23
    assert "sinusoid_copy_seed0.json" in judged.stderr and "stale" in judged.stderr


def test_list_counts_the_committed_runs_from_any_directory(tmp_path):
    """Old: a last-digit float difference made every committed run 'not done' (0 of 24), and
    the default folder was relative to the working directory (the audit uses the package's)."""
    proc = cli(["readings", "list"], tmp_path)
    assert proc.returncode == 0 and "24 of 24" in proc.stdout, proc.stdout
    assert str(RESULTS / "readings") in proc.stdout


# ---- 4. the audit recomputes derived fields --------------------------------------------------


@pytest.mark.parametrize("edit", ["arrays", "sidecar"])
def test_the_audit_refuses_a_result_whose_numbers_contradict_its_trajectories(tmp_path, edit):
    """Old: diverged_at and final_loss edited (trajectories still diverging) + manifest update
    turned S4-2 from INCONCLUSIVE into HOLDS."""
    from mamlconv.errors import ResultFileError
    from mamlconv.paper_checks import manifest

    name = "omniglot_paper_7x7_h200.npz"
    shutil.copy(RESULTS / name, tmp_path / name)
    shutil.copy(RESULTS / name.replace(".npz", ".json"), tmp_path / name.replace(".npz", ".json"))
    manifest.add(tmp_path, [name])
    manifest.load_sweep(tmp_path, manifest.load_manifest(tmp_path).files[name])  # as made
    if edit == "arrays":
        z = dict(np.load(tmp_path / name))
        div, final = z["diverged_at"].copy(), z["final_loss"].copy()
        final[div >= 0] = 0.01
        div[:] = -1
        np.savez(tmp_path / name, **{**z, "diverged_at": div, "final_loss": final})
    else:
        side_path = tmp_path / name.replace(".npz", ".json")
        side = json.loads(side_path.read_text())
        side["n_diverged"] = 0
        side_path.write_text(json.dumps(side))
    manifest.update(tmp_path)  # registered again: the sha256 matches
    with pytest.raises(ResultFileError, match="edited or damaged"):
        manifest.load_sweep(tmp_path, manifest.load_manifest(tmp_path).files[name])


# ---- 5-8. user problems ---------------------------------------------------------------------


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))


def test_a_sampler_that_ignores_its_generator_is_refused():
    """Old: a module-level generator made --seed do nothing, torch's global RNG made two equal
    commands differ by up to 22x."""
    own = torch.Generator().manual_seed(1)

    def module_level(g):
        x = torch.rand(8, 1, generator=own)
        return x, 2 * x, x, 2 * x

    def global_rng(g):
        x = torch.rand(8, 1)
        return x, 2 * x, x, 2 * x

    def constant(g):
        x = torch.linspace(0, 1, 8)[:, None]
        return x, 2 * x, x, 2 * x

    for sampler in (module_level, global_rng, constant):
        with pytest.raises(ModuleProblemError, match="ignores its generator"):
            mamlconv.problem_from_module(_net(), F.mse_loss, sampler)


def test_nan_or_inf_in_task_data_is_an_error_naming_task_and_tensor(tmp_path):
    """Old: '12 cells, 12 diverged', exit 0."""

    def nan_targets(g):
        x = torch.rand(8, 1, generator=g)
        y = 2 * x
        if x[0, 0] > 0.5:
            y[3, 0] = float("nan")
        return x, y, x, y

    with pytest.raises(ModuleProblemError, match=r"task \d+'s y_\w+ holds nan"):
        problem = mamlconv.problem_from_module(_net(), F.mse_loss, nan_targets, check=False)
        problem.sample_tasks(torch.Generator().manual_seed(0), 8, dtype=torch.float32, device="cpu")

    class Huge(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)

        def forward(self, x):
            return torch.log(0 * self.lin(x))  # -inf everywhere

    def task(g):
        x = torch.rand(8, 1, generator=g)
        return x, 2 * x, x, 2 * x

    with pytest.raises(ModuleProblemError, match="loss at the initial parameters is inf"):
        mamlconv.problem_from_module(Huge(), F.mse_loss, task)
    problem = mamlconv.problem_from_module(Huge(), F.mse_loss, task, check=False)
    from mamlconv.errors import ProblemError

    with pytest.raises(ProblemError, match="task 0's support set"):
        mamlconv.sweep(problem, [0.1], [0.1], iters=2, out=tmp_path / "h.npz", device="cpu")
    assert not (tmp_path / "h.npz").exists()


def test_targets_that_broadcast_against_the_outputs_are_refused():
    """Old: (10,) targets against (10, 1) outputs trained on the (10, 10) broadcast loss."""

    def flat_targets(g):
        x = torch.rand(10, 1, generator=g)
        return x, 2 * x[:, 0], x, 2 * x[:, 0]

    with pytest.raises(ModuleProblemError, match=r"outputs \(10, 1\) for targets \(10,\)"):
        mamlconv.problem_from_module(_net(), F.mse_loss, flat_targets)


def test_a_forward_pass_that_changes_state_is_refused():
    class Drift(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.lin(x) * self.calls

    def task(g):
        x = torch.rand(8, 1, generator=g)
        return x, 2 * x, x, 2 * x

    with pytest.raises(ModuleProblemError, match="different outputs on the same input"):
        mamlconv.problem_from_module(Drift(), F.mse_loss, task)


@pytest.mark.parametrize("where", ["import", "factory"])
def test_user_code_that_calls_sys_exit_is_one_line_exit_2(tmp_path, where):
    """Old: sweep exited 0 with no output and no file."""
    body = "import sys\n" + ("sys.exit(0)\ndef make():\n    pass\n" if where == "import" else
                             "def make():\n    sys.exit(0)\n")  # fmt: skip
    (tmp_path / "quits.py").write_text(body)
    proc = cli(
        ["sweep", "--problem", f"{tmp_path / 'quits.py'}:make", "--preset", "smoke",
         "--out", str(tmp_path / "q.npz")],
        tmp_path,
    )  # fmt: skip
    assert "sys.exit(0)" in one_line(proc)


# ---- 9. Ray: no hang ------------------------------------------------------------------------


def test_ray_refused_address_is_one_line_at_once(tmp_path):
    """Old: killed at 423 s."""
    pytest.importorskip("ray")
    t0 = time.monotonic()
    proc = cli(
        [*SMOKE, "--iters", "2", "--backend", "ray", "--ray-address", "127.0.0.1:1",
         "--out", str(tmp_path / "r.npz")],
        tmp_path,
        timeout=120,
    )  # fmt: skip
    assert "127.0.0.1:1" in one_line(proc)
    assert time.monotonic() - t0 < 60


def test_ray_gpus_per_task_on_a_cluster_without_gpus_is_one_line(tmp_path):
    """Old: waited for ever."""
    pytest.importorskip("ray")
    proc = cli(
        [*SMOKE, "--iters", "2", "--backend", "ray", "--ray-address", "local",
         "--gpus-per-task", "1", "--out", str(tmp_path / "g.npz")],
        tmp_path,
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("mamlconv")]
    assert len(errors) == 1, proc.stderr  # beside the estimate line and Ray's own log lines
    assert "1 GPUs" in errors[0] and "--gpus-per-task" in errors[0]


# ---- 10. sweep --config reads sweep records only --------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        "fig1.json",
        "sinusoid_exact_paper_compare.json",
        "readings/sinusoid_finn_pool_exact_seed0.json",
    ],
)
def test_sweep_config_refuses_records_that_are_not_sweeps(tmp_path, capsys, record):
    """Old: a Fig. 1 record started a 31-minute sweep that was not Fig. 1."""
    rc = main(["sweep", "--config", str(RESULTS / record), "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a sweep record" in err, err
    assert not (tmp_path / "x.npz.chunks").exists()


# ---- found by the probe ---------------------------------------------------------------------


def test_an_object_array_npz_is_refused_without_pickle_advice(tmp_path, capsys):
    """Old: numpy's 'allow_pickle=True' advice reached the user (it would let the file run
    code)."""
    path = tmp_path / "obj.npz"
    np.savez(path, meta_json=np.array([{"a": 1}], dtype=object))
    rc = main(["sweep", "--config", str(path), "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and "allow_pickle" not in err and str(path) in err, err


def test_a_bad_bisection_rtol_or_chunk_size_in_a_config_is_one_line(tmp_path, capsys, tiny_result):
    side = json.loads(tiny_result.with_suffix(".json").read_text())
    bis = tmp_path / "bis.json"
    bis.write_text(json.dumps({"config": side["config"], "bisection": {"rtol": "abc"},
                               "boundary": []}))  # fmt: skip
    assert main(["sweep", "--config", str(bis), "--no-progress"]) == 2
    assert "rtol" in capsys.readouterr().err
    folder = tmp_path / "z.npz.chunks"
    folder.mkdir()
    (folder / "layout.json").write_text(
        json.dumps({"config": side["config"], "layout": {"chunk_size": -3}})
    )
    assert main(["sweep", "--config", str(folder), "--no-progress"]) == 2
    assert "chunk_size" in capsys.readouterr().err


def test_readings_run_refuses_negative_seeds_and_a_file_as_out(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["readings", "run", "S4-1", "--seeds", "-1", "--out", str(tmp_path)]) == 2
    assert "--seeds -1" in capsys.readouterr().err
    assert main(["readings", "list", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_module_that_parses_its_command_line_at_import_sees_none_of_mamlconvs(tmp_path):
    """Old: argparse in the user's file read `sweep --problem ...`, printed its own usage and
    exited."""
    (tmp_path / "script.py").write_text(
        "import argparse, torch, torch.nn.functional as F\nfrom torch import nn\nimport mamlconv\n"
        "ARGS = argparse.ArgumentParser().parse_args()\n"
        "def task(g):\n    x = torch.rand(6, 1, generator=g)\n    return x, 2 * x, x, 2 * x\n"
        "def make():\n    return mamlconv.problem_from_module(nn.Linear(1, 1), F.mse_loss, task)\n"
    )
    proc = cli(
        ["sweep", "--problem", f"{tmp_path / 'script.py'}:make", "--preset", "smoke", "--iters",
         "2", "--alphas", "0.1:0.2:2", "--betas", "0.1:1:2", "--no-progress",
         "--out", str(tmp_path / "s.npz")],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0 and "usage:" not in proc.stderr, proc.stderr
    assert (tmp_path / "s.npz").is_file()


def test_a_record_with_a_broken_bisection_is_not_read_as_a_grid(tmp_path, capsys, tiny_result):
    side = json.loads(tiny_result.with_suffix(".json").read_text())
    side["bisection"] = "yes"  # a sidecar (format mamlconv-sweep/1) edited into a bisection
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(side))
    assert main(["sweep", "--config", str(path), "--out", str(tmp_path / "m.npz")]) == 2
    assert "not a sweep record" in capsys.readouterr().err


def test_the_estimate_probes_a_bounded_number_of_cells_of_a_huge_chunk():
    """Old: the estimate trained the whole first chunk (90,000 cells: an allocation of tens of
    GB) before it could refuse the sweep as too large. Run in a fresh process, as the command
    line runs it: the host-memory probe reads the growth of the resident set, which a long-lived
    process (this test session) may already have reserved, and would then read too low."""
    code = textwrap.dedent(
        """
        import numpy as np
        from mamlconv.experiments.problems.registry import get_preset
        from mamlconv.experiments.sweep.estimate import PROBE_CELLS, estimate_sweep

        config = get_preset("sinusoid", "smoke").replace(
            alphas=tuple(np.geomspace(1e-4, 0.5, 300)),
            betas=tuple(np.geomspace(1e-2, 9, 300)),
            chunk_size=90000,
            device="cpu",
        )
        est = estimate_sweep(config)
        assert f"probe of {PROBE_CELLS} cells" in est.probe, est.probe
        print(est.memory_bytes)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    memory = float(proc.stdout.strip().splitlines()[-1])
    assert memory > 4 * 2**30  # scaled up to the chunk: big enough to be refused


def test_a_checksum_record_is_not_written_through_a_planted_link(tmp_path):
    """Old: the record went to a temporary file of a predictable name (host and PID), written
    through whatever link another user had planted there."""
    from mamlconv.experiments.data import integrity

    target = tmp_path / "cache.npy"
    target.write_bytes(b"x" * 10)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    side = integrity.record_path(target)
    planted = side.with_name(f".{side.name}.{integrity.writer_tag()}.tmp")
    planted.symlink_to(victim)
    integrity.write_record(target, sha256="0" * 64, source_sha256="1" * 64)
    assert victim.read_text() == "keep me"
    assert json.loads(side.read_text())["sha256"] == "0" * 64


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"seed": 2**70}, "seed must be"),
        ({"iters": 10**12}, "iters must be at most"),
        ({"steps": 10**6}, "steps must be at most"),
        ({"problem_options": {"hidden": [-5]}}, "option hidden"),
        ({"problem_options": {"k_support": 10**9}}, "option k_support"),
        ({"problem_options": {"amplitude": [float("nan"), 1]}}, "option amplitude"),
    ],
)
def test_extreme_numbers_in_a_saved_config_are_one_line(
    tmp_path, capsys, tiny_result, change, fragment
):
    """Old: 'internal error' lines (an overflow, a MemoryError, an allocation of GBs, a shape
    error inside torch) or a run that never ends (10**6 inner steps)."""
    side = json.loads(tiny_result.with_suffix(".json").read_text())
    side["config"].update(change)
    path = tmp_path / "extreme.json"
    path.write_text(json.dumps(side))
    rc = main(["sweep", "--config", str(path), "--out", str(tmp_path / "e.npz"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and fragment in err and "internal error" not in err, err
    assert not (tmp_path / "e.npz.chunks").exists()


def test_a_lock_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path):
    """Old: a lock naming a PID (here 1, alive) was honoured for ever, whoever had it now."""
    from mamlconv.experiments.sweep.storage import lock_owner, take_lock

    lock = tmp_path / "x.npz.lock"
    lock.write_text(f"1 {os.uname().nodename} 999999999 2026-01-01T00:00:00Z\n")
    assert lock_owner(lock) is None
    assert take_lock(lock) is None and lock.read_text().split()[0] == str(os.getpid())
