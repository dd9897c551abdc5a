"""Sweep configuration, presets, result files, chunking, resume, workers, bisection and CLI."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from sweep_helpers import tiny_config

import mamlconv.experiments.problems
from mamlconv.cli import main
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.loop import train_cells
from mamlconv.experiments.problems.registry import get_preset, get_problem
from mamlconv.experiments.sweep.bisection import bisect_sweep
from mamlconv.experiments.sweep.chunks import plan_chunks, sweep_cells
from mamlconv.experiments.sweep.results import load_result
from mamlconv.experiments.sweep.run import run_sweep
from mamlconv.experiments.sweep.storage import chunk_dir
from mamlconv.util.progress import ChunkProgress

# ---- configuration ------------------------------------------------------------------------


def test_config_json_round_trip_is_exact():
    cfg = get_preset("sinusoid", "paper").replace(seed=7, problem_options={"init": "finn"})
    again = SweepConfig.from_json(cfg.to_json())
    assert again == cfg and again.alphas == cfg.alphas  # floats survive bit for bit


def test_paper_preset_carries_section_4_1():
    cfg = get_preset("sinusoid", "paper")
    assert (cfg.iters, cfg.tasks_per_batch, cfg.steps, cfg.outer) == (500, 100, 1, "sgd")
    assert cfg.alphas[0] == pytest.approx(1e-4) and cfg.alphas[-1] == pytest.approx(0.9)
    assert cfg.betas[0] == pytest.approx(1e-2) and cfg.betas[-1] == pytest.approx(9.0)
    assert cfg.problem_options["k_support"] == 10


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"variant": "second"}, "variant must be one of", id="variant"),
        pytest.param({"betas": (1.0, 0.5)}, "strictly increasing", id="betas-order"),
        pytest.param({"betas": (0.0, 0.5)}, "betas must be > 0", id="beta-zero"),
        pytest.param({"alphas": (-1.0,)}, "finite and >= 0", id="alpha-negative"),
        pytest.param({"iters": 0}, "iters must be", id="iters"),
        pytest.param({"outer": "rmsprop"}, "outer must be", id="outer"),
        pytest.param({"task_source": "stream"}, "task_source", id="task-source"),
        pytest.param({"tasks_per_batch": 200}, "exceeds pool_size", id="pool-too-small"),
        pytest.param({"dtype": "float16"}, "dtype", id="dtype"),
        pytest.param({"device": "tpu"}, "device", id="device"),
        pytest.param({"variant": "surrogate", "steps": 2}, "one-step", id="surrogate-steps"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        get_preset("sinusoid", "paper").replace(**changes)


def test_unknown_problem_and_preset():
    with pytest.raises(ValueError, match="unknown problem"):
        get_problem("mnist")
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("sinusoid", "huge")


def test_fewshot_problems_dispatch_through_the_documented_contract(monkeypatch):
    """omniglot / miniimagenet come from mamlconv.experiments.problems.fewshot's named functions and
    FEWSHOT_PRESETS, imported only when asked for (the fake stands in for the module both in
    sys.modules and as the package attribute that a plain import finds first)."""
    fake = types.ModuleType("mamlconv.experiments.problems.fewshot")
    fake.omniglot_problem = lambda **o: ("omniglot", o)
    fake.miniimagenet_problem = lambda **o: ("miniimagenet", o)
    preset = tiny_config(problem="omniglot")
    fake.FEWSHOT_PRESETS = {("omniglot", "paper"): preset}
    monkeypatch.setitem(sys.modules, "mamlconv.experiments.problems.fewshot", fake)
    monkeypatch.setattr(mamlconv.experiments.problems, "fewshot", fake, raising=False)
    assert get_problem("omniglot", shots=1) == ("omniglot", {"shots": 1})
    assert get_problem("miniimagenet") == ("miniimagenet", {})
    assert get_preset("omniglot", "paper") is preset
    with pytest.raises(ValueError, match="choose one of \\['paper'\\]"):
        get_preset("omniglot", "smoke")


# ---- chunks and sweeps --------------------------------------------------------------------


@pytest.mark.parametrize(("n", "size"), [(10, 3), (7, 7), (7, 100), (1, 1)])
def test_plan_chunks_partitions_the_cells(n, size):
    chunks = plan_chunks(np.arange(n), size)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(n))
    assert max(len(c) for c in chunks) <= size
    assert max(len(c) for c in chunks) - min(len(c) for c in chunks) <= 1


def test_sweep_file_holds_what_the_engine_computes(tmp_path):
    """Chunked sweep (chunks of 2 cells) == one batched engine call on all cells; the file is
    self-describing (config, provenance) and loads back."""
    cfg = tiny_config(chunk_size=2, save_params="all")
    run_sweep(cfg, tmp_path / "s.npz", progress=False)
    alphas, betas = sweep_cells(cfg)
    prob = get_problem(cfg.problem, **cfg.problem_options)
    direct = train_cells(prob, cfg, alphas, betas, save_params=True)
    loaded = load_result(tmp_path / "s.npz")
    assert loaded.config == cfg
    assert loaded.provenance["torch"] and "git_commit" in loaded.provenance
    assert loaded.provenance["device"] == "cpu"
    n_b = len(cfg.betas)
    np.testing.assert_allclose(loaded.final_loss.ravel(), direct.final_loss[n_b:], rtol=1e-12)
    np.testing.assert_array_equal(loaded.diverged_at.ravel(), direct.diverged_at[n_b:])
    np.testing.assert_array_equal(loaded.alpha0["diverged_at"], direct.diverged_at[:n_b])
    np.testing.assert_allclose(
        loaded.trajectories["loss"].reshape(-1, cfg.record_iters.size),
        direct.loss[n_b:],
        rtol=1e-6,  # trajectories are stored in float32
    )
    np.testing.assert_allclose(
        loaded.params["w2"].reshape(-1, 40, 40), direct.final_params["w2"][n_b:], rtol=1e-12
    )
    assert loaded.diverged.any() and loaded.stable.any()
    side = json.loads((tmp_path / "s.json").read_text())
    assert side["n_cells"] == loaded.diverged.size
    assert len(side["boundary"]) == len(cfg.alphas)
    assert not chunk_dir(tmp_path / "s.npz").exists()


def test_best_params_are_the_lowest_loss_stable_cell(tmp_path):
    cfg = tiny_config()
    res = run_sweep(cfg, tmp_path / "b.npz", progress=False)
    full = run_sweep(cfg.replace(save_params="all"), tmp_path / "a.npz", progress=False)
    for i in range(len(cfg.alphas)):
        ok = ~res.diverged[i]
        if not ok.any():
            assert res.best_beta_index[i] == -1 and res.trained_params(i) is None
            continue
        j = int(np.argmin(np.where(ok, res.final_loss[i], np.inf)))
        assert res.best_beta_index[i] == j
        np.testing.assert_array_equal(res.trained_params(i)["w3"], full.params["w3"][i, j])


class _StopAfterFirstChunk(ChunkProgress):
    def chunk_done(self, chunk, n_cells, n_diverged):
        super().chunk_done(chunk, n_cells, n_diverged)
        raise KeyboardInterrupt


def test_interrupted_sweep_resumes_from_finished_chunks(tmp_path):
    cfg = tiny_config(chunk_size=3)
    out = tmp_path / "r.npz"
    bar = _StopAfterFirstChunk("t", total_cells=9, iters=cfg.iters)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, out, progress=bar)
    kept = list(chunk_dir(out).glob("chunk_*.npz"))
    assert len(kept) == 1 and not out.exists()
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(cfg, out, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        run_sweep(cfg.replace(seed=1), out, resume=True, progress=False)
    resumed = run_sweep(cfg, out, resume=True, progress=False)
    assert resumed.run_info["resumed_cells"] == 3
    fresh = run_sweep(cfg, tmp_path / "f.npz", progress=False)
    np.testing.assert_array_equal(resumed.final_loss, fresh.final_loss)
    np.testing.assert_array_equal(resumed.alpha0["final_loss"], fresh.alpha0["final_loss"])


def test_two_worker_processes_give_the_same_numbers(tmp_path):
    cfg = tiny_config(chunk_size=3)
    one = run_sweep(cfg, tmp_path / "one.npz", progress=False)
    two = run_sweep(cfg, tmp_path / "two.npz", workers=2, progress=False)
    np.testing.assert_array_equal(one.final_loss, two.final_loss)
    np.testing.assert_array_equal(one.diverged_at, two.diverged_at)
    assert two.run_info["workers"] == 2


def test_bisection_agrees_with_the_grid():
    """The bisection bracket of each alpha overlaps the grid's bracket, with far fewer runs
    than a grid of the bisection's resolution would need."""
    cfg = tiny_config(
        alphas=(1e-3, 0.05), betas=tuple(np.geomspace(0.02, 20, 7)), alpha_zero_row=False
    )
    prob = get_problem(cfg.problem, **cfg.problem_options)
    a, b = sweep_cells(cfg)
    grid = train_cells(prob, cfg, a, b)
    from mamlconv.numerics.boundary import extract_boundary

    bound = extract_boundary(
        np.array(cfg.alphas), np.array(cfg.betas), grid.diverged_at.reshape(2, 7) < 0
    )
    assert bound.inside_grid.all() and bound.monotone.all()
    bis = bisect_sweep(cfg, rtol=0.05, progress=False)
    res = bis.result
    assert bis.stable_at_beta_min.all() and not bis.stable_at_beta_max.any()
    assert res.inside_range.all()
    assert (res.beta_lo >= bound.beta_lo * (1 - 1e-12)).all()
    assert (res.beta_hi <= bound.beta_hi * (1 + 1e-12)).all()
    assert (res.beta_hi / res.beta_lo <= 1.05 + 1e-12).all()
    resolution_grid = 2 * np.log(20 / 0.02) / np.log(1.05)
    assert res.n_runs < resolution_grid / 4


# ---- command line -------------------------------------------------------------------------


def test_cli_sweep_smoke_and_resume_guard(tmp_path, capsys):
    out = tmp_path / "cli.npz"
    argv = [
        "sweep",
        "sinusoid",
        "--preset",
        "smoke",
        "--iters",
        "3",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    res = load_result(out)
    assert res.config.iters == 3 and res.final_loss.shape == (3, 4)
    assert "cells" in capsys.readouterr().out
    out.unlink()  # a finished result is guarded too (tests/test_sweep_safety.py)
    chunk_dir(out).mkdir()
    (chunk_dir(out) / "chunk_0000.npz").write_bytes(b"")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        pytest.param(["--alphas", "1:0.1:3"], "need 0 < LO <= HI", id="alpha-grid-order"),
        pytest.param(["--betas", "a:1:3"], "not a number", id="beta-grid-text"),
        pytest.param(["--iters", "0"], "must be >= 1", id="iters-zero"),
        pytest.param(["--variant", "second"], "invalid choice", id="variant"),
        pytest.param(["--device", "tpu"], "expected auto, cpu", id="device"),
    ],
)
def test_cli_sweep_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, fragment):
    argv = ["sweep", "sinusoid", "--preset", "smoke", "--out", str(tmp_path / "x.npz"), *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err and err.strip().count("\n") == 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="tests the no-CUDA message")
def test_cli_sweep_cuda_without_cuda_is_a_usage_error(tmp_path, capsys):
    argv = [
        "sweep",
        "sinusoid",
        "--preset",
        "smoke",
        "--device",
        "cuda",
        "--out",
        str(tmp_path / "x.npz"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no CUDA device is available" in err and err.count("\n") == 1


def test_cli_bisect_writes_json(tmp_path):
    out = tmp_path / "bisect.json"
    argv = [
        "sweep",
        "sinusoid",
        "--preset",
        "smoke",
        "--iters",
        "4",
        "--bisect",
        "--rtol",
        "0.5",
        "--no-progress",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    record = json.loads(out.read_text())
    assert len(record["boundary"]) == 3 and record["bisection"]["runs"] >= 6
    for row in record["boundary"]:
        if not (row["edge_below_range"] or row["edge_above_range"]):
            assert row["beta_hi"] / row["beta_lo"] <= 1.5 + 1e-12


def test_recheck_in_the_same_precision_reproduces_the_edge(tmp_path):
    """Re-running the edge cells with the sweep's own dtype and seed changes nothing (the
    engine is deterministic); the record names what was re-run."""
    from mamlconv.experiments.sweep.bisection import recheck_boundary

    cfg = tiny_config(betas=tuple(np.geomspace(0.02, 20, 6)))
    result = run_sweep(cfg, tmp_path / "r.npz", progress=False)
    rec = recheck_boundary(result, dtype="float64", width=1)
    assert rec["recheck"]["cells_changed"] == 0
    assert not any(r["moved"] for r in rec["boundary"])
    assert 2 <= rec["recheck"]["cells_rerun"] <= 4 * len(cfg.alphas)
