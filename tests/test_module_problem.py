"""problem_from_module: an nn.Module, a loss and a sampler as a Problem (issue 11).

The adapter's meta-gradient is held against a plain per-task autograd loop on the same module
(learn2learn-style: parameters swapped for tensors, ``torch.autograd.grad`` with
``create_graph``), the module-built sinusoid MLP against the built-in sinusoid sweep, and every
refusal is one line naming the bad value and the fix.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.generic import make_generic_step
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems.module_problem import ModuleProblemError, problem_from_module
from mamlconv.experiments.problems.registry import get_problem, load_spec, trust_spec
from mamlconv.experiments.problems.sinusoid import SinusoidProblem
from mamlconv.experiments.sweep.run import run_sweep

F64 = torch.float64
REPO = Path(__file__).resolve().parents[1]


# -------------------------------------------------------------------------- models and tasks


def tanh_mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def bn_cnn(track: bool = True) -> nn.Module:
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3, track_running_stats=track),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 5 * 5, 3),
        nn.BatchNorm1d(3, track_running_stats=track),
    ).double()
    with torch.no_grad():  # non-trivial affine parameters
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.5, 0.5)
    return net


def vector_task(g: torch.Generator):
    xs, xq = torch.randn(5, 2, generator=g), torch.randn(7, 2, generator=g)
    return xs, torch.randint(0, 3, (5,), generator=g), xq, torch.randint(0, 3, (7,), generator=g)


def image_task(g: torch.Generator):
    xs, xq = torch.randn(6, 1, 5, 5, generator=g), torch.randn(6, 1, 5, 5, generator=g)
    y = torch.arange(3).repeat(2)
    return xs, y, xq, y


CASES = {"mlp": (tanh_mlp, vector_task), "cnn_batchnorm": (bn_cnn, image_task)}


def _swap(module: nn.Module, names: list[str], values: list[torch.Tensor]) -> None:
    """Replace the named parameters by plain tensors (what learn2learn's MAML clone does)."""
    for name, value in zip(names, values, strict=True):
        *path, leaf = name.split(".")
        sub = module
        for part in path:
            sub = getattr(sub, part)
        del sub._parameters[leaf]
        setattr(sub, leaf, value)


def plain_meta_gradient(model, loss_fn, tasks, *, alpha: float, first_order: bool):
    """Task mean of one-step MAML meta-gradients by plain autograd, one task at a time, on a
    copy of the user's module as it is (BatchNorm in training mode: batch statistics)."""
    names = [n for n, _ in model.named_parameters()]
    theta = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    total = [torch.zeros_like(t) for t in theta]
    for i in range(tasks.n_tasks):
        inner = copy.deepcopy(model).train()
        _swap(inner, names, theta)
        loss_s = loss_fn(inner(tasks.x_support[i]), tasks.y_support[i])
        g = torch.autograd.grad(loss_s, theta, create_graph=not first_order)
        adapted = [t - alpha * gi for t, gi in zip(theta, g, strict=True)]
        if first_order:
            adapted = [a.detach().requires_grad_(True) for a in adapted]
        outer = copy.deepcopy(model).train()
        _swap(outer, names, adapted)
        loss_q = loss_fn(outer(tasks.x_query[i]), tasks.y_query[i])
        wrt = adapted if first_order else theta
        for acc, gq in zip(total, torch.autograd.grad(loss_q, wrt), strict=True):
            acc += gq / tasks.n_tasks
    return dict(zip(names, total, strict=True))


@pytest.mark.parametrize("variant", ["exact", "first_order"])
@pytest.mark.parametrize("case", list(CASES))
def test_meta_gradient_equals_plain_autograd_loop(case, variant):
    make, sampler = CASES[case]
    model = make()
    problem = problem_from_module(model, F.cross_entropy, sampler)
    config = SweepConfig(problem="x", tasks_per_batch=4, pool_size=4, dtype="float64", seed=2)
    params, stream = initial_state(problem, config, dtype=F64, device="cpu")
    tasks = stream.next()
    step = make_generic_step(problem, variant=variant, steps=1)
    alpha = 0.3
    out = step(
        {n: p[None] for n, p in params.items()},
        torch.tensor([alpha], dtype=F64),
        tasks,
        need_direction=True,
        need_stats=False,
    )
    desired = plain_meta_gradient(
        model, F.cross_entropy, tasks, alpha=alpha, first_order=variant == "first_order"
    )
    # Relative to the whole meta-gradient: a conv bias followed by BatchNorm has an
    # identically zero gradient (the mean subtraction cancels it), so per-tensor ratios of
    # rounding noise would be meaningless there.
    scale = torch.cat([d.flatten() for d in desired.values()]).norm()
    errors = {n: ((out.direction[n][0] - d).norm() / scale).item() for n, d in desired.items()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-10, f"{case}/{variant} {worst}: relative error {errors[worst]:.2e}"


def test_batchnorm_uses_batch_statistics_and_leaves_the_user_module_alone():
    model = bn_cnn(track=True)
    before = {n: b.clone() for n, b in model.named_buffers()}
    problem = problem_from_module(model, F.cross_entropy, image_task)
    twin = problem_from_module(bn_cnn(track=False), F.cross_entropy, image_task)
    assert not list(problem.module.named_buffers())  # running statistics gone from the copy
    g = torch.Generator().manual_seed(0)
    tasks = problem.sample_tasks(g, 3, dtype=F64, device="cpu")
    params = problem.init_params(g, dtype=F64, device="cpu")
    losses = torch.func.vmap(problem.loss, in_dims=(None, 0, 0))(
        params, tasks.x_support, tasks.y_support
    )
    desired = torch.func.vmap(twin.loss, in_dims=(None, 0, 0))(
        params, tasks.x_support, tasks.y_support
    )
    torch.testing.assert_close(losses, desired, rtol=1e-12, atol=0)
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), f"user's buffer {name} changed"
    assert model[1].track_running_stats


def test_init_current_default_reset_per_seed_without_touching_the_global_rng():
    model = tanh_mlp()
    current = problem_from_module(model, F.cross_entropy, vector_task)
    p = current.init_params(torch.Generator().manual_seed(5), dtype=F64, device="cpu")
    torch.testing.assert_close(p["0.weight"], model[0].weight.detach(), rtol=0, atol=0)
    reset = problem_from_module(model, F.cross_entropy, vector_task, init="reset")
    state = torch.get_rng_state()
    a = reset.init_params(torch.Generator().manual_seed(1), dtype=F64, device="cpu")
    b = reset.init_params(torch.Generator().manual_seed(1), dtype=F64, device="cpu")
    c = reset.init_params(torch.Generator().manual_seed(2), dtype=F64, device="cpu")
    assert torch.equal(torch.get_rng_state(), state), "global RNG state changed"
    assert torch.equal(a["0.weight"], b["0.weight"])
    assert not torch.equal(a["0.weight"], c["0.weight"])
    assert not torch.equal(a["0.weight"], model[0].weight.detach())


def test_frozen_parameters_are_constants():
    model = tanh_mlp()
    model[0].bias.requires_grad_(False)
    problem = problem_from_module(model, F.cross_entropy, vector_task)
    params = problem.init_params(torch.Generator(), dtype=torch.float32, device="cpu")
    assert set(params) == {"0.weight", "2.weight", "2.bias"}
    assert problem.constants(torch.float32, "cpu")["0.bias"].dtype == torch.float32


def test_module_sinusoid_sweep_equals_builtin_cell_for_cell(tmp_path):
    sin = SinusoidProblem()
    mlp = nn.Sequential(
        nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)
    ).double()  # float64 weights hold the built-in draws exactly

    def init(module, generator):  # the built-in's draws, so the tasks drawn next agree too
        w = sin.init_params(generator, dtype=F64, device="cpu")
        for i, layer in enumerate((module[0], module[2], module[4])):
            layer.weight.copy_(w[f"w{i + 1}"].T)
            layer.bias.copy_(w[f"b{i + 1}"])

    def batch(g, n):
        return tuple(sin.sample_tasks(g, n, dtype=F64, device="cpu"))

    problem = problem_from_module(
        mlp, F.mse_loss, sample_tasks=batch, init=init, name="module-sinusoid"
    )
    from mamlconv.experiments.problems.registry import register_problem

    config = SweepConfig(
        problem="sinusoid",
        alphas=(0.01, 0.3),
        betas=(0.01, 0.3, 3.0, 30.0),
        iters=15,
        tasks_per_batch=5,
        pool_size=5,
        record_every=5,
        dtype="float64",
        device="cpu",
    )
    builtin = run_sweep(config, tmp_path / "b.npz", progress=False)
    mine = run_sweep(
        config.replace(problem=register_problem(problem)), tmp_path / "m.npz", progress=False
    )
    np.testing.assert_array_equal(mine.diverged_at, builtin.diverged_at)
    np.testing.assert_array_equal(mine.alpha0["diverged_at"], builtin.alpha0["diverged_at"])
    ok = ~builtin.diverged
    assert ok.any() and builtin.diverged.any()  # both kinds of cell are compared
    np.testing.assert_allclose(mine.final_loss[ok], builtin.final_loss[ok], rtol=1e-9)
    np.testing.assert_allclose(mine.alpha0["final_loss"], builtin.alpha0["final_loss"], rtol=1e-9)


# -------------------------------------------------------------------------- refusals


class Counter(nn.Module):
    """A layer with state that cannot be made functional: it counts its calls in a buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls += 1
        return x


def _bad_shapes(g):
    xs, ys, xq, yq = vector_task(g)
    return xs, ys[:4], xq, yq


_sizes = iter(range(5, 1000))


def _ragged(g):
    n = next(_sizes)
    return torch.randn(n, 2, generator=g), torch.zeros(n, dtype=torch.long), *vector_task(g)[2:]


BAD = {
    "mismatched_shapes": (
        tanh_mlp,
        F.cross_entropy,
        _bad_shapes,
        "x_support (5, 2) and y_support (4,)",
    ),
    "ragged_tasks": (tanh_mlp, F.cross_entropy, _ragged, "task 1 has x_support of shape"),
    "non_scalar_loss": (
        tanh_mlp,
        lambda o, y: F.cross_entropy(o, y, reduction="none"),
        vector_task,
        "not a scalar",
    ),
    "buffer_written": (
        lambda: nn.Sequential(Counter(), nn.Linear(2, 3)).double(),
        F.cross_entropy,
        vector_task,
        "layer '0' (Counter) buffer 'calls'",
    ),
    "dropout": (
        lambda: nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.2)),
        F.cross_entropy,
        vector_task,
        "layer '1' (Dropout) draws random numbers",
    ),
    "lazy": (lambda: nn.Sequential(nn.LazyLinear(3)), F.cross_entropy, vector_task, "lazy"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_it(case):
    make, loss, sampler, expected = BAD[case]
    with pytest.raises(ModuleProblemError) as info:
        problem_from_module(make(), loss, sampler)
    message = str(info.value)
    assert expected in message and "\n" not in message, message


# -------------------------------------------------------------------------- specs and the CLI

FACTORY = """
import torch, torch.nn.functional as F
from torch import nn
import mamlconv

def task(g):
    xs, xq = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    w = torch.randn(2, 1, generator=g)
    return xs, xs @ w, xq, xq @ w

def make():
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))  # global RNG: seeded
    return mamlconv.problem_from_module(net, F.mse_loss, task, name="tiny")

def bad_shapes():
    return mamlconv.problem_from_module(
        nn.Linear(2, 1), F.mse_loss, lambda g: (torch.zeros(4, 2), torch.zeros(3, 1),
                                                 torch.zeros(4, 2), torch.zeros(4, 1)))

def bad_loss():
    return mamlconv.problem_from_module(
        nn.Linear(2, 1), lambda o, y: (o - y) ** 2, task)

def bad_state():
    return mamlconv.problem_from_module(
        nn.Sequential(nn.Linear(2, 1), nn.Dropout(0.5)), F.mse_loss, task)
"""


@pytest.fixture()
def user_dir(tmp_path):
    (tmp_path / "userprob.py").write_text(textwrap.dedent(FACTORY))
    return tmp_path


def _cli(args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "mamlconv", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        # a fresh command: no spec named by this test process (registry.TRUST_ENV)
        env={**os.environ, "OMP_NUM_THREADS": "1", "MAMLCONV_TRUSTED_PROBLEMS": "[]"},
        timeout=600,
    )


def test_spec_resolves_from_the_current_directory_like_python_m(user_dir, monkeypatch):
    monkeypatch.chdir(user_dir)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(user_dir))])
    monkeypatch.setenv("MAMLCONV_TRUSTED_PROBLEMS", "[]")
    trust_spec("userprob:make")  # the user names the spec (a file alone never runs code)
    a = get_problem("userprob:make")
    b = load_spec(f"{user_dir / 'userprob.py'}:make")
    g = torch.Generator()
    pa, pb = (p.init_params(g, dtype=F64, device="cpu") for p in (a, b))
    for n in pa:  # the factory's global-RNG draws are seeded: same weights every time
        torch.testing.assert_close(pa[n], pb[n], rtol=0, atol=0)


@pytest.mark.parametrize(
    "factory, expected",
    [
        ("nosuchmodule:make", "cannot import 'nosuchmodule': no module 'nosuchmodule' in the"),
        ("nosuch/file.py:make", "no file"),
        ("userprob:missing", "has no callable 'missing'"),
        ("userprob:bad_shapes", "x_support (4, 2) and y_support (3, 1)"),
        ("userprob:bad_loss", "not a scalar"),
        ("userprob:bad_state", "(Dropout) draws random numbers"),
    ],
)
def test_cli_bad_problem_is_one_line_exit_2(user_dir, factory, expected):
    proc = _cli(["sweep", "--problem", factory, "--preset", "smoke", "--out", "s.npz"], user_dir)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (user_dir / "s.npz.chunks").exists()


def test_cli_sweep_compare_resume_with_a_user_problem(user_dir):
    args = ["sweep", "--problem", "userprob:make", "--preset", "smoke", "--iters", "4"]
    args += ["--alphas", "0.01:0.1:2", "--betas", "0.01:1:3", "--no-progress", "--out", "s.npz"]
    proc = _cli(args, user_dir)
    assert proc.returncode == 0, proc.stderr
    from mamlconv.experiments.sweep.results import load_result

    result = load_result(user_dir / "s.npz")
    assert result.config.problem == "userprob:make"  # the spec is recorded
    proc = _cli(["compare", "s.npz", "--out", "cmp", "--k", "2", "--quiet"], user_dir)
    assert proc.returncode == 2 and "--problem userprob:make" in proc.stderr  # a file's spec
    proc = _cli(
        ["compare", "s.npz", "--problem", "userprob:make", "--out", "cmp", "--k", "2", "--quiet"],
        user_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert (user_dir / "cmp" / "s_compare.png").is_file()
    # an interrupted sweep: one finished chunk on disk; --resume trains only the rest,
    # rebuilding the problem from the spec the configuration records
    from mamlconv.experiments.sweep.chunks import plan_chunks, run_chunk, sweep_cells
    from mamlconv.experiments.sweep.storage import chunk_dir

    n_cells = sweep_cells(result.config)[0].size
    first = plan_chunks(np.arange(n_cells), 3)[0]
    chunks = chunk_dir(user_dir / "s2.npz")
    chunks.mkdir()
    cwd = os.getcwd()
    os.chdir(user_dir)
    trust_spec("userprob:make")
    try:
        run_chunk(result.config.to_json(), 0, first, str(chunks / "chunk_0000.npz"), "auto")
    finally:
        os.chdir(cwd)
    # chunk k of a sweep holds fixed cells (chunk 0 of chunk size 3 is the one written above)
    proc = _cli([*args[:-1], "s2.npz", "--resume", "--chunk-size", "3"], user_dir)
    assert proc.returncode == 0, proc.stderr
    again = load_result(user_dir / "s2.npz")
    assert again.run_info["resumed_cells"] == first.size
    np.testing.assert_allclose(again.final_loss, result.final_loss, rtol=1e-6)


def test_mse_loss_works_in_hessian_vector_products():
    """F.mse_loss fails under jvp of grad in torch ("ZeroTensors are immutable"); the adapter
    swaps in the same mean squared error, so spectra of an MSE model work."""
    from mamlconv.numerics.curvature import hvp

    def task(g):
        x = torch.randn(4, 2, generator=g, dtype=F64)
        return x, x[:, :1] ** 2, x, x[:, :1] ** 2

    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    for loss in (F.mse_loss, nn.MSELoss()):
        problem = problem_from_module(model, loss, task)
        params = problem.init_params(torch.Generator(), dtype=F64, device="cpu")
        x, y = task(torch.Generator().manual_seed(0))[:2]
        out = hvp(functools.partial(problem.loss, x=x, y=y), params, params)
        assert all(torch.isfinite(v).all() for v in out.values())
        torch.testing.assert_close(
            problem.loss(params, x, y), F.mse_loss(model(x), y), rtol=1e-14, atol=0
        )
