"""The grouped step backend (experiments/engine/grouped.py) against the per-task autograd loop
and the generic torch.func backend, in float64; its rewrites and its choice by ``auto``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine import grouped
from mamlconv.experiments.engine.generic import make_generic_step
from mamlconv.experiments.engine.loop import CellRun, auto_backend, make_step, train_cells
from mamlconv.experiments.engine.reference import train_cell_loop
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems import cnn
from mamlconv.experiments.problems.fewshot import FewShotProblem
from mamlconv.experiments.problems.module_problem import problem_from_module


def synthetic_fewshot(filters: int = 2) -> FewShotProblem:
    """A 3-way 1-shot problem on random 28 x 28 'characters' (no data files needed)."""
    rng = np.random.default_rng(0)
    images = (rng.random((12 * 4, 28, 28)) < 0.3).astype(np.uint8)  # ink-like binary images
    class_rows = np.arange(12 * 4).reshape(12, 4)
    return FewShotProblem(
        name="omniglot",
        images=images,
        class_rows=class_rows,
        spec=cnn.omniglot_spec(3, filters=filters),
        ways=3,
        shots=1,
        query=2,
    )


def small_module_problem():
    """A user's CNN as examples/own_model.py builds it: biased convolutions, stock BatchNorm,
    ReLU before max-pooling, a stride-2 convolution, a linear head."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    )

    def sample_task(generator):
        x = torch.randn(9, 1, 12, 12, generator=generator)
        y = torch.arange(3).repeat(3)
        return x[:3], y[:3], x[3:], y[3:]

    return problem_from_module(model, F.cross_entropy, sample_task, name="small-cnn")


def config(**changes) -> SweepConfig:
    base = SweepConfig(
        problem="grouped-test",
        iters=3,
        tasks_per_batch=2,
        pool_size=2,
        record_every=2,
        steps=2,
        dtype="float64",
        device="cpu",
        task_source="fresh",
    )
    return base.replace(**changes)


# a quiet cell, alpha = 0, a larger alpha, and one that diverges at once
ALPHAS = np.array([0.05, 0.0, 0.3, 0.1])
BETAS = np.array([0.1, 0.3, 0.2, 1e4])


def _assert_runs_close(a: CellRun, b: CellRun, what: str) -> None:
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at, err_msg=f"{what}: diverged_at")
    for field in (*CellRun.TRAJECTORIES, "final_loss"):
        x, y = getattr(a, field), getattr(b, field)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=f"{what}: {field} NaNs")
        ok = np.isfinite(y)
        np.testing.assert_allclose(x[ok], y[ok], rtol=1e-8, atol=1e-11, err_msg=f"{what}: {field}")
    for name in a.final_params:
        scale = np.abs(b.final_params[name]).max() + 1e-300
        diff = np.abs(a.final_params[name] - b.final_params[name])
        finite = np.isfinite(b.final_params[name])
        assert np.all(diff[finite] <= 1e-8 * scale + 1e-12), f"{what}: final {name}"


@pytest.mark.parametrize(
    ("variant", "outer", "steps"),
    [("exact", "sgd", 2), ("first_order", "sgd", 2), ("exact", "adam", 1)],
)
def test_grouped_equals_per_task_loop_float64(variant, outer, steps):
    """Every cell's float64 trajectory (losses, loss_pre, gradient statistics, divergence
    iteration, final parameters) equals the per-task autograd loop's (the slow twin)."""
    problem = synthetic_fewshot()
    cfg = config(variant=variant, outer=outer, steps=steps)
    betas = BETAS if outer == "sgd" else BETAS * 0.05
    run = train_cells(problem, cfg, ALPHAS, betas, backend="grouped", save_params=True)
    ref = CellRun.concatenate(
        [train_cell_loop(problem, cfg, alpha=a, beta=b) for a, b in zip(ALPHAS, betas, strict=True)]
    )
    assert run.diverged[-1], "the test needs a diverging cell"
    _assert_runs_close(run, ref, f"{variant}/{outer}/{steps}")


@pytest.mark.parametrize("variant", ["exact", "first_order"])
def test_module_problem_grouped_equals_generic_float64(variant):
    problem = small_module_problem()
    assert grouped.layer_plan(problem) is not None
    cfg = config(variant=variant)
    a = train_cells(problem, cfg, ALPHAS, BETAS, backend="grouped", save_params=True)
    b = train_cells(problem, cfg, ALPHAS, BETAS, backend="generic", save_params=True)
    _assert_runs_close(a, b, variant)


def test_pairs_per_call_do_not_change_the_numbers():
    problem = synthetic_fewshot()
    cfg = config()
    init, stream = initial_state(problem, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    params = {n: torch.stack([p, 1.2 * p]) for n, p in init.items()}
    alphas = torch.tensor([0.1, 0.4], dtype=torch.float64)
    ref = make_generic_step(problem, variant="exact", steps=2)(
        params, alphas, tasks, need_direction=True, need_stats=True
    )
    for support_pairs, query_pairs in ((1, 1), (4, 3), (6, 6)):
        step = grouped.make_grouped_step(
            problem,
            variant="exact",
            steps=2,
            support_pairs=support_pairs,
            query_pairs=query_pairs,
        )
        out = step(params, alphas, tasks, need_direction=True, need_stats=True)
        for n in params:
            torch.testing.assert_close(out.direction[n], ref.direction[n], rtol=1e-9, atol=1e-12)
        for field in ("loss_post", "loss_pre", "grad_norm", "grad_inner"):
            torch.testing.assert_close(getattr(out, field), getattr(ref, field), rtol=1e-9, atol=0)


@pytest.mark.parametrize("stride", [1, 2])
def test_folded_first_layer_equals_conv_then_batch_norm(stride):
    """The conv_bn rewrite: one affine convolution from the patch moments equals batch norm of
    the convolution (biased, with zero padding), in float64."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 5, 2, 9, 9, generator=gen, dtype=torch.float64)  # (pairs, N, C, h, w)
    w = torch.randn(2, 4, 2, 3, 3, generator=gen, dtype=torch.float64)
    gamma = torch.rand(2, 4, generator=gen, dtype=torch.float64) + 0.5
    beta = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    layer = grouped.Layer(
        "conv_bn",
        "w",
        None,
        (("kernel_size", 3), ("stride", stride), ("padding", 1), ("eps", 1e-3), ("bn", ("g", "b"))),
    )
    plan = grouped.Plan((layer,), None)
    patches = grouped._patches(layer, x)
    weights = {"w": w, "g": gamma, "b": beta}
    images = x.transpose(0, 1).reshape(5, 4, 9, 9)
    out = grouped._forward(plan, weights, images, 2, patches)
    for g in range(2):
        conv = F.conv2d(x[g], w[g], stride=stride, padding=1)
        want = F.batch_norm(conv, None, None, gamma[g], beta[g], training=True, eps=1e-3)
        torch.testing.assert_close(out[:, 4 * g : 4 * g + 4], want, rtol=1e-10, atol=1e-12)


def test_auto_picks_grouped_on_a_cpu_only():
    problem = synthetic_fewshot()
    assert auto_backend(problem, variant="exact", steps=2, device="cpu") == "grouped"
    assert auto_backend(problem, variant="exact", steps=2, device="cuda") == "generic"
    assert auto_backend(problem, variant="exact", steps=2, device=None) == "generic"
    assert auto_backend(problem, variant="surrogate", steps=1, device="cpu") == "generic"
    with pytest.raises(ValueError, match="grouped backend computes"):
        make_step(problem, variant="surrogate", steps=1, backend="grouped")


def test_unsupported_layers_fall_back_to_generic():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(2 * 10 * 10, 3))

    def sample_task(generator):
        x = torch.randn(6, 1, 12, 12, generator=generator)
        y = torch.arange(3).repeat(2)
        return x[:3], y[:3], x[3:], y[3:]

    problem = problem_from_module(model, F.cross_entropy, sample_task)
    assert grouped.layer_plan(problem) is None
    assert auto_backend(problem, variant="exact", steps=1, device="cpu") == "generic"
    with pytest.raises(ValueError, match="does not apply"):
        grouped.make_grouped_step(problem, variant="exact", steps=1)


def test_loss_pre_only_when_diagnostics_are_recorded():
    """The diagnostic query loss at theta is not computed on the training path."""
    problem = synthetic_fewshot()
    cfg = config()
    init, stream = initial_state(problem, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    params = {n: p[None] for n, p in init.items()}
    alphas = torch.tensor([0.1], dtype=torch.float64)
    for step in (
        make_generic_step(problem, variant="exact", steps=2),
        grouped.make_grouped_step(problem, variant="exact", steps=2),
    ):
        assert step(params, alphas, tasks, need_direction=True, need_stats=False).loss_pre is None
        out = step(params, alphas, tasks, need_direction=True, need_stats=True)
        assert out.loss_pre is not None and torch.isfinite(out.loss_pre).all()
