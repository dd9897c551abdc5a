"""Few-shot episodes (Omniglot, MiniImagenet), the problems' Problem protocol, the presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shipped_data import OMNIGLOT as SHIPPED_OMNIGLOT
from shipped_data import needs_shipped, use_shipped_root

from mamlconv.experiments import data
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.problems import fewshot
from mamlconv.experiments.problems.registry import get_preset, get_problem


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "mamlconv-cache"))
    use_shipped_root(monkeypatch)


@pytest.fixture(scope="module")
def omni() -> data.Omniglot:
    if not SHIPPED_OMNIGLOT.is_file():
        pytest.skip("no shipped data")
    return data.load_omniglot()


def _tiny_mini(n_classes: int = 6, per_class: int = 5, side: int = 84) -> data.MiniImagenetSplit:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_classes * per_class, side, side, 3), dtype=np.uint8)
    label = np.repeat(np.arange(n_classes), per_class).astype(np.uint8)
    wnids = np.array([f"n{c:08d}" for c in range(n_classes)])
    return data.MiniImagenetSplit(images=images, label=label, wnids=wnids, split="val")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------ episodes


@needs_shipped
@pytest.mark.parametrize(
    ("ways", "shots", "query"),
    [(5, 1, 15), (3, 5, 2), (20, 1, 1)],
    ids=["5w1s15q", "3w5s2q", "20w"],
)
def test_omniglot_episode_shapes_and_labels(omni, ways, shots, query):
    prob = fewshot.omniglot_problem(ways=ways, shots=shots, query=query, data=omni)
    tb = prob.sample_tasks(_gen(0), 4, dtype=torch.float32, device="cpu")
    assert tb.x_support.shape == (4, ways * shots, 1, 28, 28)
    assert tb.x_query.shape == (4, ways * query, 1, 28, 28)
    assert tb.y_support.dtype == torch.int64
    expected = torch.arange(ways).repeat_interleave(shots)
    assert (tb.y_support == expected).all()
    assert (tb.y_query == torch.arange(ways).repeat_interleave(query)).all()
    assert set(torch.unique(tb.x_support).tolist()) <= {0.0, 1.0}  # binary, ink = 1


@needs_shipped
def test_episodes_are_reproducible_from_the_generator(omni):
    prob = fewshot.omniglot_problem(data=omni)
    a = prob.sample_tasks(_gen(7), 3, dtype=torch.float64, device="cpu")
    b = prob.sample_tasks(_gen(7), 3, dtype=torch.float64, device="cpu")
    c = prob.sample_tasks(_gen(8), 3, dtype=torch.float64, device="cpu")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.x_query, c.x_query)
    assert a.x_support.dtype == torch.float64


@needs_shipped
def test_episode_classes_distinct_and_support_query_disjoint(omni):
    prob = fewshot.omniglot_problem(shots=5, query=15, data=omni)
    classes, picks = prob.sample_indices(_gen(1), 50)
    assert classes.shape == (50, 5) and picks.shape == (50, 5, 20)
    for t in range(50):
        assert len(set(classes[t].tolist())) == 5
        for w in range(5):
            assert len(set(picks[t, w].tolist())) == 20  # all 20 drawings, none twice
    train_chars = set(data.omniglot_split(omni, "train").tolist())
    rows = prob.class_rows[(classes // 4).numpy()]  # (tasks, ways, 20)
    assert set((rows // 20).ravel().tolist()) <= train_chars


@needs_shipped
def test_omniglot_rotations_are_quarter_turns_of_the_source(omni):
    prob = fewshot.omniglot_problem(query=3, data=omni)
    assert prob.n_classes == 4 * 1100
    classes, picks = prob.sample_indices(_gen(2), 40)
    x = prob.gather(classes, picks).numpy()  # (tasks, ways, picks, 1, 28, 28)
    seen = set()
    for t in range(40):
        for w in range(5):
            c = int(classes[t, w])
            char, k = divmod(c, 4)
            seen.add(k)
            row = prob.class_rows[char, int(picks[t, w, 0])]
            expected = np.rot90(omni.images.reshape(-1, 28, 28)[row], k)  # independent: numpy
            np.testing.assert_array_equal(x[t, w, 0, 0], expected)
    assert seen == {0, 1, 2, 3}


@needs_shipped
def test_omniglot_without_rotations_and_other_scheme(omni):
    prob = fewshot.omniglot_problem(rotations=False, scheme="background", split="test", data=omni)
    assert prob.n_classes == 659
    classes, _ = prob.sample_indices(_gen(0), 10)
    chars = prob.class_rows[classes.numpy(), 0] // 20
    assert (omni.split[chars] == 1).all()


def test_miniimagenet_scaling_and_channel_order():
    split = _tiny_mini()
    prob = fewshot.miniimagenet_problem(shots=1, query=2, filters=4, data=split)
    classes, picks = prob.sample_indices(_gen(3), 2)
    tb = prob.sample_tasks(_gen(3), 2, dtype=torch.float64, device="cpu")
    rows = split.class_rows()[classes.numpy()[..., None], picks.numpy()]  # (tasks, ways, 3)
    for t in range(2):
        for w in range(5):
            img = split.images[rows[t, w, 0]].astype(np.float64) / 255.0  # (84, 84, 3)
            np.testing.assert_allclose(
                tb.x_support[t, w].numpy(), img.transpose(2, 0, 1), rtol=0, atol=1e-15
            )
            q = split.images[rows[t, w, 2]].astype(np.float64) / 255.0
            np.testing.assert_allclose(tb.x_query[t, 2 * w + 1].numpy(), q.transpose(2, 0, 1))
    assert tb.x_support.shape == (2, 5, 3, 84, 84)


@pytest.mark.parametrize(
    ("options", "phrase"),
    [
        ({"ways": 7}, "ways=7 exceeds the 6 classes"),
        ({"shots": 3, "query": 3}, "exceeds the 5 images per class"),
        ({"shots": 0}, "shots must be an integer >= 1, got 0"),
    ],
    ids=["too-many-ways", "too-many-images", "zero-shots"],
)
def test_bad_episode_options_name_the_value(options, phrase):
    with pytest.raises(ValueError, match=phrase):
        fewshot.miniimagenet_problem(filters=4, data=_tiny_mini(), **options)


def test_sample_tasks_rejects_bad_count():
    prob = fewshot.miniimagenet_problem(filters=4, query=2, data=_tiny_mini())
    with pytest.raises(ValueError, match="n_tasks must be an integer >= 1, got 0"):
        prob.sample_tasks(_gen(0), 0, dtype=torch.float32, device="cpu")


# ------------------------------------------------------------------------------ problem protocol


def test_problem_loss_is_the_cnn_cross_entropy_and_init_is_seeded():
    from mamlconv.experiments.problems import cnn

    prob = fewshot.miniimagenet_problem(filters=4, query=2, data=_tiny_mini())
    p1 = prob.init_params(_gen(0), dtype=torch.float64, device="cpu")
    p2 = prob.init_params(_gen(0), dtype=torch.float64, device="cpu")
    assert all(torch.equal(p1[n], p2[n]) for n in p1)
    assert p1["head.weight"].shape == (5, 4 * 5 * 5)
    tb = prob.sample_tasks(_gen(1), 1, dtype=torch.float64, device="cpu")
    loss = prob.loss(p1, tb.x_query[0], tb.y_query[0])
    logits = cnn.ConvNetModule(prob.spec).double().load_functional(p1)(tb.x_query[0])
    expected = torch.nn.functional.cross_entropy(logits, tb.y_query[0])
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ presets


@pytest.mark.parametrize(
    ("name", "alpha_range", "beta_range", "iters", "batch", "filters"),
    [
        ("omniglot", (3e-3, 9.0), (3e-2, 90.0), 100, 32, 64),
        ("miniimagenet", (3e-3, 9e-1), (3e-3, 9.0), 120, 4, 32),
    ],
    ids=["omniglot", "miniimagenet"],
)
def test_paper_presets_carry_section_4_2(name, alpha_range, beta_range, iters, batch, filters):
    cfg = get_preset(name, "paper")
    assert isinstance(cfg, SweepConfig) and cfg.problem == name
    np.testing.assert_allclose((cfg.alphas[0], cfg.alphas[-1]), alpha_range, rtol=1e-12)
    np.testing.assert_allclose((cfg.betas[0], cfg.betas[-1]), beta_range, rtol=1e-12)
    ratios = np.diff(np.log(cfg.alphas))
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # log-spaced
    assert (cfg.iters, cfg.tasks_per_batch, cfg.steps) == (iters, batch, 2)
    opts = cfg.problem_options
    assert (opts["ways"], opts["shots"], opts["query"], opts["filters"]) == (5, 1, 15, filters)
    assert cfg.variant == "exact" and cfg.outer == "sgd" and cfg.alpha_zero_row
    assert SweepConfig.from_json(cfg.to_json()) == cfg


def test_one_epoch_of_miniimagenet():
    # 38,400 training images; an iteration sees 4 tasks x 5 classes x (1 + 15) images.
    assert fewshot.MINIIMAGENET_EPOCH_ITERS * 4 * 5 * 16 >= 38_400
    assert (fewshot.MINIIMAGENET_EPOCH_ITERS - 1) * 4 * 5 * 16 < 38_400


@needs_shipped
@pytest.mark.parametrize("name", ["omniglot", "miniimagenet"])
def test_smoke_preset_trains_through_the_engine(name):
    from mamlconv.experiments.engine.loop import train_cells

    cfg = get_preset(name, "smoke")
    prob = get_problem(name, **cfg.problem_options)
    a, b = np.meshgrid(cfg.alphas, cfg.betas, indexing="ij")
    run = train_cells(prob, cfg.replace(device="cpu"), a.ravel(), b.ravel())
    assert np.isfinite(run.final_loss).all()
    assert run.final_loss.shape == (a.size,)
    assert np.isfinite(run.grad_norm[:, 0]).all()


@needs_shipped
def test_cli_sweep_omniglot_smoke_writes_a_result_that_fig4_draws(tmp_path, capsys):
    from mamlconv.cli import main
    from mamlconv.experiments.figures import fig4
    from mamlconv.experiments.sweep.results import load_result

    out = tmp_path / "omni.npz"
    argv = ["sweep", "omniglot", "--preset", "smoke", "--device", "cpu", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    result = load_result(out)
    assert result.config == get_preset("omniglot", "smoke").replace(device="cpu")
    assert result.final_loss.shape == (2, 2) and result.alpha0 is not None
    paths = fig4(out, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf", ".json"]
