"""The CPU side of the GPU work (issues 14/15): FLOP counts, the memory model, the opt-in speed
options against the per-cell reference loop in float64, provenance without .git, sharded
MiniImagenet and the few-shot evidence script's CPU smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from shipped_data import DATA_ROOT, OMNIGLOT, needs_shipped, use_shipped_root
from torch.utils.flop_counter import FlopCounterMode

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.loop import train_cells
from mamlconv.experiments.engine.reference import train_cell_loop
from mamlconv.experiments.problems import cnn, fewshot


def _exit_code(main, argv: list[str]) -> int:
    """``main(argv)``, or the code of the SystemExit that argparse raises on bad input."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


# ------------------------------------------------------------------------------ a tiny problem


def _tiny_problem(
    *, channels_last: bool = False, side: int = 8, channels: int = 1
) -> fewshot.FewShotProblem:
    """3-way 1-shot on 8x8 one-channel noise images, 3 filters: the engine's code paths (vmap
    over tasks and cells, second order through 2 inner steps) at a size that runs in seconds."""
    rng = np.random.default_rng(0)
    shape = (6 * 4, side, side) + ((channels,) if channels > 1 else ())
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    class_rows = np.arange(24).reshape(6, 4)
    spec = cnn.ConvNetSpec(in_channels=channels, image_size=side, filters=3, n_classes=3, blocks=2)
    return fewshot.FewShotProblem(
        name="tiny",
        images=images,
        class_rows=class_rows,
        spec=spec,
        ways=3,
        shots=1,
        query=2,
        scale=1.0 / 255.0,
        channels_last=channels_last,
    )


def _config(**changes) -> SweepConfig:
    base = SweepConfig(
        problem="omniglot",  # only the name; the tests pass the problem object
        variant="exact",
        alphas=(0.1,),
        betas=(0.1,),
        iters=8,
        tasks_per_batch=2,
        pool_size=2,
        steps=2,
        outer="sgd",
        task_source="fresh",
        divergence_level=3.0,
        record_every=3,
        dtype="float64",
        device="cpu",
    )
    return base.replace(**changes)


# Cells: stable ones and ones that cross the divergence level at different iterations.
ALPHAS = np.array([0.0, 0.05, 0.3, 0.3, 0.3, 0.0])
BETAS = np.array([0.3, 0.7, 4.2, 5.1, 5.62, 20.0])


def _same_runs(a, b, *, atol: float = 1e-10) -> None:
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at)
    np.testing.assert_allclose(a.final_loss, b.final_loss, rtol=0, atol=atol)
    # the running maximum of the loss (post-hoc divergence criteria) stops at the divergence
    np.testing.assert_allclose(a.max_loss, b.max_loss, rtol=0, atol=atol, err_msg="max_loss")
    for f in a.TRAJECTORIES:
        np.testing.assert_array_equal(np.isnan(getattr(a, f)), np.isnan(getattr(b, f)), err_msg=f)
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=0, atol=atol, err_msg=f)
    if a.final_params is not None and b.final_params is not None:
        for n in a.final_params:
            np.testing.assert_allclose(a.final_params[n], b.final_params[n], rtol=0, atol=atol)


def test_the_tiny_cells_cover_stable_and_diverging_at_several_iterations():
    run = train_cells(_tiny_problem(), _config(), ALPHAS, BETAS)
    at = run.diverged_at
    assert (at < 0).sum() >= 2 and len(set(at[at >= 0].tolist())) >= 2, at


@pytest.mark.parametrize("every", [2, 4, 100], ids=lambda k: f"every{k}")
@pytest.mark.parametrize("variant", ["exact", "first_order"])
def test_deferred_divergence_checks_give_the_per_iteration_numbers(every, variant):
    prob, cfg = _tiny_problem(), _config(variant=variant)
    eager = train_cells(prob, cfg, ALPHAS, BETAS, save_params=True)
    deferred = train_cells(prob, cfg, ALPHAS, BETAS, save_params=True, check_every=every)
    _same_runs(deferred, eager)


@pytest.mark.parametrize("every", [1, 3])
def test_speed_options_match_the_reference_loop_in_float64(every):
    """channels-last + deferred checks in the batched engine vs the plain per-cell autograd
    loop with neither: the same final losses to 1e-10 (relative for a diverged cell's loss of
    hundreds) and the same divergence iterations."""
    cfg = _config()
    fast = train_cells(
        _tiny_problem(channels_last=True, channels=3), cfg, ALPHAS, BETAS, check_every=every
    )
    plain = _tiny_problem(channels=3)
    for c in range(ALPHAS.size):
        ref = train_cell_loop(plain, cfg, alpha=float(ALPHAS[c]), beta=float(BETAS[c]))
        assert fast.diverged_at[c] == ref.diverged_at[0], c
        np.testing.assert_allclose(fast.final_loss[c], ref.final_loss[0], rtol=1e-10, atol=1e-10)


def test_channels_last_changes_the_memory_order_not_the_values():
    def tasks(prob):
        gen = torch.Generator().manual_seed(1)
        return prob.sample_tasks(gen, 2, dtype=torch.float64, device="cpu")

    plain = tasks(_tiny_problem(channels=3))
    nhwc = tasks(_tiny_problem(channels=3, channels_last=True))
    for a, b in zip(plain, nhwc, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    x = nhwc.x_query[0]  # one task's images (n, C, H, W)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert not plain.x_query[0].is_contiguous(memory_format=torch.channels_last)


def test_check_every_rejects_a_bad_value():
    with pytest.raises(ValueError, match="check_every must be an integer >= 1, got 0"):
        train_cells(_tiny_problem(), _config(), ALPHAS[:1], BETAS[:1], check_every=0)


@pytest.mark.slow
def test_compiled_step_matches_the_reference_loop_in_float64():
    pytest.importorskip("torch._inductor")
    cfg = _config(iters=3)
    fast = train_cells(_tiny_problem(), cfg, ALPHAS[:3], BETAS[:3], compile=True)
    for c in range(3):
        ref = train_cell_loop(_tiny_problem(), cfg, alpha=float(ALPHAS[c]), beta=float(BETAS[c]))
        np.testing.assert_allclose(fast.final_loss[c], ref.final_loss[0], rtol=1e-10, atol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("every", [1, 10])
def test_cuda_speed_options_match_the_cpu_reference_loop_in_float64(every):
    """On the GPU (cuDNN, channels-last, deferred checks) in float64: the per-cell reference
    loop's final losses and divergence iterations on the CPU."""
    assert torch.cuda.is_available(), "--gpu given but no CUDA device"
    cfg = _config()
    fast = train_cells(
        _tiny_problem(channels_last=True, channels=3),
        cfg.replace(device="cuda"),
        ALPHAS,
        BETAS,
        check_every=every,
    )
    plain = _tiny_problem(channels=3)
    for c in range(ALPHAS.size):
        ref = train_cell_loop(plain, cfg, alpha=float(ALPHAS[c]), beta=float(BETAS[c]))
        assert fast.diverged_at[c] == ref.diverged_at[0], c
        np.testing.assert_allclose(fast.final_loss[c], ref.final_loss[0], rtol=1e-9, atol=1e-9)


@pytest.mark.gpu
def test_cuda_chunk_comes_from_the_memory_model_and_fits():
    from mamlconv.experiments.engine.loop import train_cells as train
    from mamlconv.experiments.engine.memory import cuda_chunk_size
    from mamlconv.experiments.problems.registry import get_preset, get_problem
    from mamlconv.experiments.sweep.chunks import default_chunk_size

    assert torch.cuda.is_available(), "--gpu given but no CUDA device"
    cfg = get_preset("omniglot", "paper").replace(device="cuda", iters=1)
    chunk = default_chunk_size(cfg)
    assert chunk == cuda_chunk_size(cfg) and 1 <= chunk <= 64
    prob = get_problem("omniglot", **cfg.problem_options)
    run = train(prob, cfg, np.full(chunk, 1e-2), np.full(chunk, 1e-2))  # no out-of-memory
    assert np.isfinite(run.final_loss).all()


# ------------------------------------------------------------------------------ FLOPs


def test_flop_count_is_per_cell_invariant_and_matches_the_unbatched_loop():
    from mamlconv.experiments.engine.flops import count_loop_flops, count_step_flops

    prob, cfg = _tiny_problem(), _config(tasks_per_batch=3, pool_size=3)
    one = count_step_flops(prob, cfg, n_cells=1)
    many = count_step_flops(prob, cfg, n_cells=5)
    assert one["flops"] > 0
    assert many["flops_per_cell"] == pytest.approx(one["flops_per_cell"], rel=1e-12)
    # Per-task autograd has no grouped convolutions (count_loop_flops leaves out the reference
    # loop's diagnostic query pass, which the engine's training step no longer runs).
    loop = count_loop_flops(prob, cfg.replace(dtype="float32"))
    assert one["flops"] == pytest.approx(loop, rel=0.05)
    assert one["flops"] <= loop
    # Linear in the tasks per meta-step (tasks are independent).
    six = count_step_flops(prob, cfg.replace(tasks_per_batch=6, pool_size=6), n_cells=1)
    assert six["flops"] == pytest.approx(2 * one["flops"], rel=1e-6)


def test_stock_flop_counter_overcounts_grouped_weight_gradients():
    """The correction is needed: without it the count per cell grows with the batch."""
    from mamlconv.experiments.engine.loop import make_step
    from mamlconv.experiments.engine.state import initial_state

    prob, cfg = _tiny_problem(), _config(tasks_per_batch=3, pool_size=3)
    init, stream = initial_state(prob, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    step = make_step(prob, variant="exact", steps=2)
    per_cell = []
    for n in (1, 4):
        params = {k: v.unsqueeze(0).repeat(n, *[1] * v.dim()) for k, v in init.items()}
        mode = FlopCounterMode(display=False)
        with mode:
            step(params, torch.full((n,), 0.1, dtype=torch.float64), tasks,
                 need_direction=True, need_stats=False)  # fmt: skip
        per_cell.append(mode.get_total_flops() / n)
    assert per_cell[1] > 1.05 * per_cell[0]


# ------------------------------------------------------------------------------ memory model


def test_memory_model_fit_and_chunk_choice():
    from mamlconv.experiments.engine.memory import fit

    gib = 2**30
    model = fit([1, 2, 4], [3 * gib, 5 * gib, 9 * gib], tasks=2, device="cuda")
    assert model.base_bytes == pytest.approx(gib) and model.per_cell_bytes == pytest.approx(2 * gib)
    assert model.peak(10) == pytest.approx(21 * gib)
    # 0.8 * 100 GiB = 80 GiB; (80 - 1) / 2 = 39.5 -> 39 cells
    assert model.chunk_size(100 * gib) == 39
    assert model.chunk_size(100 * gib, cap=16) == 16
    assert model.chunk_size(1 * gib) == 1  # never below one cell
    big = model.scaled(32)  # 16x the tasks: 16x the per-cell bytes, same base
    assert big.per_cell_bytes == pytest.approx(32 * gib) and big.base_bytes == pytest.approx(gib)
    assert big.chunk_size(100 * gib) == 2
    with pytest.raises(ValueError, match="two or more different cell counts"):
        fit([2, 2], [1.0, 1.0], tasks=1, device="cpu")


def _measurable_config(tasks: int) -> SweepConfig:
    # A MiniImagenet-shaped step on synthetic data is not reachable from a fresh process, so
    # the measurement runs the Omniglot smoke network (needs the shipped Omniglot file).
    from mamlconv.experiments.problems.registry import get_preset

    smoke = get_preset("omniglot", "smoke")
    opts = {**smoke.problem_options, "filters": 16, "query": 3}
    return smoke.replace(tasks_per_batch=tasks, pool_size=tasks, device="cpu", problem_options=opts)


@needs_shipped
def test_cpu_peak_memory_is_affine_in_cells_and_linear_in_tasks(monkeypatch):
    from mamlconv.experiments.engine.memory import fit, measure_cpu

    use_shipped_root(monkeypatch)  # the measuring process finds the data through it
    peaks = measure_cpu(_measurable_config(2), (1, 2, 4))
    model = fit([1, 2, 4], peaks, tasks=2, device="cpu")
    assert model.per_cell_bytes > 1e6
    # affine in cells: the 4-cell peak is predicted from 1 and 2 within 10 %
    assert peaks[2] == pytest.approx(model.peak(4), rel=0.1)
    double = fit([1, 2], measure_cpu(_measurable_config(4), (1, 2)), tasks=4, device="cpu")
    assert double.per_cell_bytes == pytest.approx(model.scaled(4).per_cell_bytes, rel=0.15)


# ------------------------------------------------------------------------------ provenance


def test_commit_comes_from_the_environment_outside_git(tmp_path, monkeypatch):
    from mamlconv.util import provenance

    monkeypatch.delenv(provenance.COMMIT_ENV, raising=False)
    assert provenance.commit_record(tmp_path) == (None, "none")
    monkeypatch.setenv(provenance.COMMIT_ENV, "0123abcd+dirty")
    assert provenance.commit_record(tmp_path) == ("0123abcd+dirty", "env")
    assert provenance.git_commit(tmp_path) == "0123abcd+dirty"


def test_commit_from_git_wins_over_the_environment(monkeypatch):
    from mamlconv.util import provenance

    if provenance.commit_record()[1] != "git":
        pytest.skip("the source tree is not a git checkout")
    monkeypatch.setenv(provenance.COMMIT_ENV, "not-this")
    commit, source = provenance.commit_record()
    assert source == "git" and commit != "not-this"
    assert provenance.describe()["commit_source"] == "git"


# ------------------------------------------------------------------------------ shards


def _synthetic_archive(folder, *, n_classes: int = 4, per_class: int = 6):
    """A MiniImagenet-format archive of random 84x84 JPEGs, and its FileSpec table."""
    import io

    from PIL import Image

    from mamlconv.experiments import data

    rng = np.random.default_rng(3)
    blobs, offsets = [], [0]
    for _ in range(n_classes * per_class):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(buf, "JPEG")
        blobs.append(buf.getvalue())
        offsets.append(offsets[-1] + len(blobs[-1]))
    arrays = {
        "jpeg_data": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "jpeg_offsets": np.array(offsets, dtype=np.int64),
        "label": np.repeat(np.arange(n_classes), per_class).astype(np.uint8),
        "wnids": np.array([f"n{c:08d}" for c in range(n_classes)]),
        "filenames": np.array([f"img{i}.jpg" for i in range(n_classes * per_class)]),
    }
    path = data.write_npz(folder / "miniimagenet" / "miniimagenet_val.npz", arrays,
                          stored=("jpeg_data",))  # fmt: skip
    spec = data.FileSpec("miniimagenet/miniimagenet_val.npz", path.stat().st_size,
                         data.sha256_file(path))  # fmt: skip
    return path, {**data.SHIPPED, "miniimagenet_val": spec}


def _assert_same_split(a, b) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.wnids, b.wnids)


def test_sharded_synthetic_archive_loads_the_same_arrays(tmp_path, monkeypatch):
    from mamlconv.experiments import data
    from mamlconv.experiments.data import shards

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    whole_root, shard_root = tmp_path / "whole", tmp_path / "sharded"
    path, specs = _synthetic_archive(whole_root)
    size = path.stat().st_size
    manifest = shards.shard_file(path, shard_root / "miniimagenet", max_bytes=size // 3 + 1)
    assert len(manifest.parts) == 3 and sum(p.size for p in manifest.parts) == size
    assert all(p.size <= size // 3 + 1 for p in manifest.parts)
    assert not (shard_root / "miniimagenet" / "miniimagenet_val.npz").exists()

    whole = data.load_miniimagenet("val", whole_root, cache=tmp_path / "c1", specs=specs)
    sharded = data.load_miniimagenet("val", shard_root, cache=tmp_path / "c2", specs=specs)
    _assert_same_split(sharded, whole)
    assert sharded.images.shape == (24, 84, 84, 3)
    # the reassembled file is the shipped one, byte for byte
    rebuilt = tmp_path / "c2" / "shards" / "miniimagenet_val.npz"
    assert rebuilt.read_bytes() == path.read_bytes()
    again = data.load_miniimagenet("val", shard_root, cache=tmp_path / "c2", specs=specs)
    _assert_same_split(again, whole)


def test_a_corrupt_shard_is_named_in_one_line(tmp_path, monkeypatch):
    from mamlconv.experiments import data
    from mamlconv.experiments.data import shards

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    path, specs = _synthetic_archive(tmp_path / "whole")
    folder = tmp_path / "sharded" / "miniimagenet"
    manifest = shards.shard_file(path, folder, max_bytes=path.stat().st_size // 2 + 1)
    victim = folder / manifest.parts[1].name
    blob = bytearray(victim.read_bytes())
    blob[100] ^= 0xFF
    victim.write_bytes(bytes(blob))
    with pytest.raises(data.DataError, match=r"part-01-of-02 is corrupt") as err:
        data.load_miniimagenet("val", tmp_path / "sharded", cache=tmp_path / "c", specs=specs)
    assert "\n" not in str(err.value)
    victim.unlink()
    with pytest.raises(data.DataError, match="part-01-of-02 not found"):
        data.load_miniimagenet("val", tmp_path / "sharded", cache=tmp_path / "c", specs=specs)


def test_shard_command_writes_the_parts_and_rejects_bad_input_in_one_line(tmp_path, capsys):
    from mamlconv.cli import main
    from mamlconv.experiments.data import shards

    f = tmp_path / "x.bin"
    f.write_bytes(bytes(range(256)) * 10_000)  # 2.44 MiB
    assert main(["data", "shard", str(f), str(tmp_path / "o"), "--max-mib", "1"]) == 0
    out = capsys.readouterr().out
    assert "x.bin.shards.json: 3 parts of x.bin" in out
    manifest = shards.Manifest.read(tmp_path / "o" / "x.bin.shards.json")
    joined = b"".join((tmp_path / "o" / p.name).read_bytes() for p in manifest.parts)
    assert joined == f.read_bytes()

    for argv, message in (
        ([str(tmp_path / "missing.npz"), str(tmp_path)], "missing.npz is not a file"),
        ([str(f), str(tmp_path / "p"), "--max-mib", "0.01"], "more than 99 parts"),
        ([str(f), str(tmp_path / "p"), "--max-mib", "0"], "--max-mib: must be > 0"),
    ):
        assert _exit_code(main, ["data", "shard", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "p").exists()


SHIPPED_MINI = (DATA_ROOT or Path("/nonexistent")) / "miniimagenet"


@pytest.mark.skipif(
    not (SHIPPED_MINI / "miniimagenet_train.npz").is_file(), reason="no shipped MiniImagenet"
)
def test_real_miniimagenet_shards_under_60_mib_give_identical_arrays(tmp_path, monkeypatch):
    from mamlconv.experiments import data
    from mamlconv.experiments.data import shards

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    src = SHIPPED_MINI / "miniimagenet_train.npz"
    out = tmp_path / "root" / "miniimagenet"
    manifest = shards.shard_file(src, out, max_bytes=shards.DEFAULT_MAX_MIB * 2**20)
    assert len(manifest.parts) == 2
    assert all(p.size < 60 * 2**20 for p in manifest.parts)
    assert manifest.sha256 == data.SHIPPED["miniimagenet_train"].sha256
    rebuilt = shards.locate_split("miniimagenet_train", tmp_path / "root", cache=tmp_path / "c")
    names = ("jpeg_data", "jpeg_offsets", "label", "wnids", "filenames")
    a, b = data.store._load_npz(src, names), data.store._load_npz(rebuilt, names)
    for n in names:
        np.testing.assert_array_equal(b[n], a[n], err_msg=n)


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHIPPED_MINI / "miniimagenet_val.npz").is_file(), reason="no shipped MiniImagenet"
)
def test_real_miniimagenet_sharded_split_decodes_to_the_same_pixels(tmp_path, monkeypatch):
    """The decoded pixels, each side decoded into its own cache (val: 9,600 JPEGs twice)."""
    from mamlconv.experiments import data
    from mamlconv.experiments.data import shards

    monkeypatch.delenv(data.DATA_ENV, raising=False)
    out = tmp_path / "root" / "miniimagenet"
    val = shards.shard_file(SHIPPED_MINI / "miniimagenet_val.npz", out, max_bytes=10 * 2**20)
    assert len(val.parts) == 3
    whole = data.load_miniimagenet("val", DATA_ROOT, cache=tmp_path / "c1")
    sharded = data.load_miniimagenet("val", tmp_path / "root", cache=tmp_path / "c2")
    _assert_same_split(sharded, whole)


# ------------------------------------------------------------------------------ few-shot matrix

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "gpu" / "fewshot_matrix.sh"
needs_data = pytest.mark.skipif(
    not OMNIGLOT.is_file() or not (SHIPPED_MINI / "miniimagenet_val.npz").is_file(),
    reason="shipped data not found (set MAMLCONV_DATA)",
)


def _script(tmp_path, *args: str, out: str = "matrix") -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "MATRIX_OUT": str(tmp_path / out),
        "MAMLCONV_DATA": str(DATA_ROOT),
        "MAMLCONV_CACHE": str(tmp_path / "cache"),
        "OUT": str(tmp_path),
        "OMP_NUM_THREADS": "1",
        "MAMLCONV_COMMIT": "feedc0de",
        "MAMLCONV_LINK_SITE": "1",  # import the tree through the links, as on the GPU machine
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


@needs_data
def test_fewshot_matrix_script_smoke_resume_and_deadline(tmp_path):
    """The GPU script itself at the tiny preset on the CPU: a run stopped by its deadline
    leaves the rest for a rerun, which finishes; a third run trains nothing."""
    stopped = _script(tmp_path, "tiny", "0.01", "--device", "cpu", "--problems", "omniglot")
    assert stopped.returncode == 0, stopped.stderr
    assert "rerun to resume" in stopped.stdout
    first = json.loads((tmp_path / "matrix" / "summary.json").read_text())
    assert not first["complete"] and first["jobs_left"]

    full = _script(tmp_path, "tiny", "600", "--device", "cpu")
    assert full.returncode == 0, full.stderr
    summary = json.loads((tmp_path / "matrix" / "summary.json").read_text())
    assert summary["complete"] and not summary["jobs_left"]
    names = [j["job"] for j in summary["jobs"]]
    assert names[:2] == [
        "omniglot/exact-torch_default-seed0",
        "miniimagenet/exact-torch_default-seed0",
    ]
    assert "omniglot/exact-torch_default-seed1" in names and len(names) == 6
    for job in summary["jobs"]:
        assert job["config"]["dtype"] == "float32" and job["config"]["steps"] == 2
        for edge in job["edges"]:
            if not edge["edge_above_range"]:
                assert edge["decades"] <= 1.0 + 1e-9  # the tiny preset's tolerance
                assert edge["beta_lo"] < edge["beta_hi"]
    assert summary["provenance"]["git_commit"] is not None
    assert all(len(j["commits"]) == 1 and j["commits"][0] != "None" for j in summary["jobs"])
    assert (tmp_path / "fewshot_matrix.tgz").is_file()

    again = _script(tmp_path, "tiny", "600", "--device", "cpu")
    assert again.returncode == 0 and "cell-iterations in" not in again.stdout
    assert json.loads((tmp_path / "matrix" / "summary.json").read_text())["jobs"] == [
        {**j} for j in summary["jobs"]
    ]


def test_fewshot_matrix_plan_and_bad_input(capsys):
    from mamlconv.cli import main
    from mamlconv.experiments.readings import fewshot as fm

    assert main(["readings", "fewshot", "--plan", "--rate", "50"]) == 0
    text = capsys.readouterr().out
    assert "omniglot/exact-torch_default-seed2" in text and "total <=" in text
    preset = fm.PRESETS["paper"]()
    omni = preset.problems["omniglot"].config
    assert (omni.iters, omni.tasks_per_batch, omni.variant, omni.outer) == (100, 32, "exact", "sgd")
    assert omni.problem_options["query"] == 15 and preset.tol_decades == 0.1
    assert preset.problems["miniimagenet"].config.tasks_per_batch == 4
    seeds = {r.name: r.seeds for r in preset.readings}
    assert len(seeds["exact-torch_default"]) >= 3 and set(seeds) >= {
        "exact-finn",
        "first_order-torch_default",
    }
    job = fm.jobs_in_order(preset, Path("unused"), ("omniglot",))[1]
    assert job.config.problem_options["init"] == job.reading.init == "finn"
    for bad, message in (
        (["--preset", "huge"], "--preset 'huge' unknown"),
        (["--problems", "cifar"], "--problems 'cifar': choose from"),
        (["--deadline", "-1"], "--deadline"),
        (["--points", "0"], "--points"),
    ):
        assert _exit_code(main, ["readings", "fewshot", "--plan", *bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------ benchmarks


@needs_shipped
def test_omniglot_benchmark_reports_tflops_and_writes_provenance(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--cells", "1", "2", "--iters", "1", "--tasks", "1"]
    args += ["--query", "1", "--filters", "4", "--baseline-cells", "1", "--check-every", "2"]
    args += ["--channels-last", "--json", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MAMLCONV_COMMIT": "feedc0de"}
    env["MAMLCONV_DATA"] = str(DATA_ROOT)
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "omniglot_bench.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "TFLOP/s" in proc.stdout and "GFLOP" in proc.stdout
    record = json.loads(out.read_text())
    assert record["flops_per_cell_iteration"] > 0
    assert [r["cells"] for r in record["rows"]] == [1, 2]
    for row in record["rows"]:
        assert row["batched_tflops"] > 0 and row["per_cell_cells_timed"] == 1
    assert record["settings"]["check_every"] == 2 and record["settings"]["channels_last"]
    assert record["provenance"]["git_commit"]


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("flops_count.py", ["--problems", "cifar"], "flops_count: error: --problems 'cifar'"),
        ("memory_model.py", ["--tasks", "0"], "memory_model: error: --tasks 0 must be >= 1"),
        ("memory_model.py", ["--free-gib", "0"], "memory_model: error: --free-gib 0.0 must be"),
    ],
)
def test_memory_and_flop_scripts_reject_bad_input_in_one_line(script, argv, message):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


def test_benchmark_bad_input_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "miniimagenet_bench.py"), "--cells", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "benchmark: error: --cells [0]: every entry must be >= 1"
