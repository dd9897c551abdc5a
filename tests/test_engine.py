"""The batched MAML engine against an independent per-task autograd loop (float64), against
the generic torch.func route, against finite differences, and its cell isolation."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.loop import CellRun, make_step, train_cells
from mamlconv.experiments.engine.reference import train_cell_loop
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems.sinusoid import SinusoidProblem
from mamlconv.numerics.maml import meta_objective, task_meta_gradient

PROBLEM = SinusoidProblem(k_support=6, k_query=5)


def small_config(**changes) -> SweepConfig:
    base = SweepConfig(
        problem="sinusoid",
        alphas=(0.01,),
        betas=(0.1,),
        iters=9,
        tasks_per_batch=4,
        pool_size=5,
        record_every=3,
        dtype="float64",
        device="cpu",
        problem_options={"k_support": 6, "k_query": 5},
    )
    return base.replace(**changes)


# Cells: a quiet one, alpha = 0 (joint training), one near the edge, one that diverges fast.
ALPHAS = np.array([0.003, 0.0, 0.3, 0.1])
BETAS = np.array([0.05, 0.2, 0.1, 30.0])
ADAM_BETAS = np.array([1e-3, 1e-2, 3e-2, 3.0])


def _assert_runs_close(a: CellRun, b: CellRun, *, rtol: float, what: str) -> None:
    np.testing.assert_array_equal(a.diverged_at, b.diverged_at, err_msg=f"{what}: diverged_at")
    for field in (*CellRun.TRAJECTORIES, "final_loss"):
        x, y = getattr(a, field), getattr(b, field)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=f"{what}: {field} NaNs")
        ok = np.isfinite(y)
        np.testing.assert_allclose(x[ok], y[ok], rtol=rtol, atol=1e-12, err_msg=f"{what}: {field}")


@functools.cache
def _loop_runs(variant: str, outer: str, source: str) -> CellRun:
    """The per-cell loop's runs, shared by the two backends' cases (the slow part)."""
    cfg = small_config(variant=variant, outer=outer, task_source=source)
    betas = BETAS if outer == "sgd" else ADAM_BETAS
    return CellRun.concatenate(
        [train_cell_loop(PROBLEM, cfg, alpha=a, beta=b) for a, b in zip(ALPHAS, betas, strict=True)]
    )


CASES = [
    pytest.param("exact", "sgd", "pool", id="exact-sgd-pool"),
    pytest.param("first_order", "sgd", "pool", id="first_order-sgd-pool"),
    pytest.param("surrogate", "sgd", "pool", id="surrogate-sgd-pool"),
    pytest.param("exact", "adam", "fresh", id="exact-adam-fresh"),
    pytest.param("first_order", "sgd", "fresh", id="first_order-sgd-fresh"),
]


@pytest.mark.parametrize(("variant", "outer", "source"), CASES)
@pytest.mark.parametrize("backend", ["mlp", "generic"])
def test_engine_equals_per_task_autograd_loop_float64(variant, outer, source, backend):
    """Every cell's float64 trajectory (losses, gradient statistics, divergence iteration,
    final parameters) equals the learn2learn-style loop's run with the same seed."""
    cfg = small_config(variant=variant, outer=outer, task_source=source)
    betas = BETAS if outer == "sgd" else ADAM_BETAS
    run = train_cells(PROBLEM, cfg, ALPHAS, betas, backend=backend, save_params=True)
    ref = _loop_runs(variant, outer, source)
    _assert_runs_close(run, ref, rtol=1e-9, what=f"{backend} vs loop")
    for name in run.final_params:
        np.testing.assert_allclose(
            run.final_params[name], ref.final_params[name], rtol=1e-9, atol=1e-12, err_msg=name
        )
    # The table must exercise both outcomes, or the comparison proves little.
    assert run.diverged.any() and (~run.diverged).any()


@pytest.mark.parametrize("variant", ["exact", "first_order", "surrogate"])
def test_mlp_backend_single_float32_step_matches_task_meta_gradient(variant):
    """One float32 step of the hand-batched backend against numerics.maml per cell and task."""
    cfg = small_config(dtype="float32")
    params, stream = initial_state(PROBLEM, cfg, dtype=torch.float32, device="cpu")
    tasks = stream.next()
    alphas = torch.tensor([0.0, 0.02, 0.2])
    stacked = {n: p.unsqueeze(0).repeat(3, *([1] * p.dim())) for n, p in params.items()}
    out = make_step(PROBLEM, variant=variant, steps=1, backend="mlp")(
        stacked, alphas, tasks, need_direction=True, need_stats=True
    )
    for c, alpha in enumerate(alphas):
        dirs = []
        for i in range(tasks.n_tasks):
            task = tuple(f[i] for f in tasks)
            d, _ = task_meta_gradient(
                params, task, loss_fn=PROBLEM.loss, alpha=alpha, steps=1, variant=variant
            )
            dirs.append(d)
        for name in params:
            want = torch.stack([d[name] for d in dirs]).mean(0)
            torch.testing.assert_close(out.direction[name][c], want, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("second_order", [True, False], ids=["exact", "first_order"])
def test_hand_written_backward_equals_autograd_of_the_kernel_forward(second_order):
    """The written-out backward of the mlp backend against torch.autograd through the same
    kernel-form forward pass (support quantities detached for first order), float64."""
    from mamlconv.experiments.engine.mlp import _adapted_query_loss, _mlp_meta_gradient, _mlp_pass

    cfg = small_config()
    params, stream = initial_state(PROBLEM, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    alphas = torch.tensor([0.0, 0.03, 0.4], dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    stacked = {  # three different parameter points
        n: p.unsqueeze(0) + 0.3 * torch.randn((3, *p.shape), generator=gen, dtype=p.dtype)
        for n, p in params.items()
    }
    with torch.no_grad():
        hand, loss, _, _ = _mlp_meta_gradient(stacked, 3, alphas, tasks, second_order=second_order)
    leaves = {n: p.clone().requires_grad_(True) for n, p in stacked.items()}
    with torch.set_grad_enabled(second_order):
        acts, deltas, _ = _mlp_pass(leaves, 3, tasks.x_support, tasks.y_support)
    per_task = _adapted_query_loss(leaves, 3, alphas, acts, deltas, tasks.x_query, tasks.y_query)
    grads = torch.autograd.grad(per_task.mean(1).sum(), list(leaves.values()))
    torch.testing.assert_close(loss, per_task.detach(), rtol=1e-12, atol=0)
    for name, want in zip(leaves, grads, strict=True):
        torch.testing.assert_close(hand[name], want, rtol=1e-10, atol=1e-12, msg=name)


def test_exact_direction_matches_finite_differences_of_meta_objective():
    """<mean exact meta-gradient, v> = d/dt meta_objective(theta + t v) (central differences,
    float64), for random directions v: an autodiff-free check of the hand-batched backend."""
    cfg = small_config()
    params, stream = initial_state(PROBLEM, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    alpha = 0.05
    step = make_step(PROBLEM, variant="exact", steps=1, backend="mlp")
    stacked = {n: p.unsqueeze(0) for n, p in params.items()}
    out = step(
        stacked,
        torch.tensor([alpha], dtype=torch.float64),
        tasks,
        need_direction=True,
        need_stats=False,
    )
    gen = torch.Generator().manual_seed(1)
    h = 1e-5
    for _ in range(3):
        v = {n: torch.randn(p.shape, generator=gen, dtype=torch.float64) for n, p in params.items()}

        def f(t: float, v=v) -> float:
            shifted = {n: params[n] + t * v[n] for n in params}
            return float(meta_objective(shifted, tasks, loss_fn=PROBLEM.loss, alpha=alpha))

        fd = (f(h) - f(-h)) / (2 * h)
        analytic = float(sum((out.direction[n][0] * v[n]).sum() for n in params))
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_diverging_cell_never_touches_the_others():
    """A cell that goes to inf/NaN is dropped; the other cells' numbers are those of a run
    without it (float64, up to the rounding of differently sized batched kernels)."""
    cfg = small_config(iters=12)
    alone = train_cells(PROBLEM, cfg, ALPHAS[:1], BETAS[:1], save_params=True)
    together = train_cells(
        PROBLEM,
        cfg,
        np.array([ALPHAS[0], 0.1, 0.1]),
        np.array([BETAS[0], 1e6, 1e9]),
        save_params=True,
    )
    assert (together.diverged_at[1:] >= 0).all()
    assert together.diverged_at[0] == -1
    first = CellRun(
        **{
            f: (getattr(together, f)[:1] if f != "record_iters" else together.record_iters)
            for f in (
                "alphas",
                "betas",
                "record_iters",
                *CellRun.TRAJECTORIES,
                "final_loss",
                "diverged_at",
            )
        },
        final_params=None,
    )
    _assert_runs_close(first, alone, rtol=1e-12, what="isolated cell")
    # Frozen cells keep NaN after their divergence, never numbers.
    r_div = np.searchsorted(together.record_iters, together.diverged_at[1:], side="right")
    for c, r in zip((1, 2), r_div, strict=True):
        assert np.isnan(together.loss[c, r:]).all()


def test_divergence_level_freezes_at_the_crossing_iteration():
    """diverged_at is the first iteration whose MAML loss exceeds the level."""
    cfg = small_config(iters=12, record_every=1)
    free = train_cells(PROBLEM, cfg.replace(divergence_level=1e300), ALPHAS, BETAS)
    level = 50.0
    capped = train_cells(PROBLEM, cfg.replace(divergence_level=level), ALPHAS, BETAS)
    for c in range(ALPHAS.size):
        over = np.flatnonzero(~(free.loss[c] <= level))  # NaN counts as over
        want = int(over[0]) if over.size else -1
        assert capped.diverged_at[c] == want, c


def test_task_stream_pool_and_fresh():
    """pool with tasks == pool size: the same batch every iteration; a smaller batch: subsets
    of the pool; fresh: new tasks each time; the same seed replays the same stream."""

    def batches(cfg: SweepConfig, n: int = 3) -> list:
        _, stream = initial_state(PROBLEM, cfg, dtype=torch.float64, device="cpu")
        return [stream.next() for _ in range(n)]

    full = batches(small_config(task_source="pool", tasks_per_batch=5, pool_size=5))
    assert all(torch.equal(b.x_support, full[0].x_support) for b in full)
    sub = batches(small_config(task_source="pool", tasks_per_batch=3, pool_size=5))
    pool_x = full[0].x_support
    for b in sub:
        for x in b.x_support:
            assert any(torch.equal(x, p) for p in pool_x)
    fresh = batches(small_config(task_source="fresh"))
    assert not torch.equal(fresh[0].x_support, fresh[1].x_support)
    again = batches(small_config(task_source="fresh"))
    assert all(torch.equal(a.y_query, b.y_query) for a, b in zip(fresh, again, strict=True))


def test_gradient_statistics_match_explicit_per_task_gradients():
    """grad_norm and grad_inner (Gram-matrix route) against per-task gradients formed
    explicitly with torch.func.grad, at the initial point."""
    cfg = small_config(iters=1, record_every=1)
    params, stream = initial_state(PROBLEM, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    grads = torch.stack(
        [
            torch.cat([g.flatten() for g in torch.func.grad(PROBLEM.loss)(params, xs, ys).values()])
            for xs, ys in zip(tasks.x_support, tasks.y_support, strict=True)
        ]
    )
    gram = grads @ grads.T
    n = grads.shape[0]
    want_norm = float(gram.diagonal().sqrt().mean())
    want_inner = float((gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))
    run = train_cells(PROBLEM, cfg, np.array([0.0, 0.1]), np.array([0.1, 0.1]))
    assert run.grad_norm[:, 0] == pytest.approx([want_norm] * 2, rel=1e-12)
    assert run.grad_inner[:, 0] == pytest.approx([want_inner] * 2, rel=1e-10)


@pytest.mark.parametrize("variant", ["exact", "first_order"])
def test_two_inner_steps_generic_backend_equals_loop(variant):
    """steps = 2 takes the generic backend (the mlp one refuses it) and still equals the loop."""
    cfg = small_config(steps=2, iters=6, record_every=2, variant=variant)
    alphas, betas = np.array([0.01, 0.2]), np.array([0.1, 3.0])
    run = train_cells(PROBLEM, cfg, alphas, betas, backend="auto")
    ref = CellRun.concatenate(
        [train_cell_loop(PROBLEM, cfg, alpha=a, beta=b) for a, b in zip(alphas, betas, strict=True)]
    )
    _assert_runs_close(run, ref, rtol=1e-9, what="two steps")
    with pytest.raises(ValueError, match="one inner step"):
        make_step(PROBLEM, variant="exact", steps=2, backend="mlp")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["exact", "first_order", "surrogate"])
@pytest.mark.parametrize("backend", ["mlp", "generic"])
def test_cuda_float64_equals_cpu(variant, backend):
    """The engine on CUDA (float64) reproduces the CPU run cell for cell."""
    assert torch.cuda.is_available(), "--gpu given but no CUDA device"
    cfg = small_config(variant=variant)
    cpu = train_cells(PROBLEM, cfg, ALPHAS, BETAS, backend=backend, save_params=True)
    gpu = train_cells(
        PROBLEM, cfg.replace(device="cuda"), ALPHAS, BETAS, backend=backend, save_params=True
    )
    _assert_runs_close(gpu, cpu, rtol=1e-9, what=f"cuda {backend}")
    for name in cpu.final_params:
        np.testing.assert_allclose(
            gpu.final_params[name], cpu.final_params[name], rtol=1e-9, atol=1e-12
        )


def test_sweep_command_offers_every_engine_backend() -> None:
    """The hidden ``sweep --kernel`` choices are the engine's backends (spelled out in the CLI)."""
    from mamlconv.cli.sweep import KERNEL_CHOICES
    from mamlconv.experiments.engine.loop import BACKENDS

    assert KERNEL_CHOICES == BACKENDS
