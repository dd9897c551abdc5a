"""The functional 4-block CNN against its nn.Module twin, in float64; vmap; MAML through it."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import vmap

from mamlconv.experiments.problems import cnn
from mamlconv.numerics.maml import meta_objective, task_meta_gradient
from mamlconv.numerics.tasks import TaskBatch

F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-12)

SPECS = {
    "omniglot-64": cnn.omniglot_spec(5),
    "miniimagenet-32": cnn.miniimagenet_spec(5),
    "omniglot-small": cnn.omniglot_spec(3, filters=4),
}


def _inputs(spec: cnn.ConvNetSpec, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (n, spec.in_channels, spec.image_size, spec.image_size)
    x = torch.rand(shape, generator=g, dtype=F64)
    y = torch.randint(0, spec.n_classes, (n,), generator=g)
    return x, y


def _params(spec: cnn.ConvNetSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    params = cnn.init_params(spec, torch.Generator().manual_seed(seed), dtype=F64)
    # Non-trivial batch-norm affine and head bias, so that every parameter is exercised.
    g = torch.Generator().manual_seed(seed + 1)
    for name in params:
        if name.startswith("bn") or name == "head.bias":
            params[name] = params[name] + 0.3 * torch.randn(
                params[name].shape, generator=g, dtype=F64
            )
    return params


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # 64*9 + 3*64*64*9 conv, 4*2*64 batch norm, 64*5 + 5 head (Finn et al.'s Omniglot net)
        (SPECS["omniglot-64"], 64 * 9 + 3 * 64 * 64 * 9 + 8 * 64 + 64 * 5 + 5),
        # 32*27 + 3*32*32*9 conv, 4*2*32 batch norm, (32*5*5)*5 + 5 head
        (SPECS["miniimagenet-32"], 32 * 27 + 3 * 32 * 32 * 9 + 8 * 32 + 800 * 5 + 5),
    ],
    ids=["omniglot", "miniimagenet"],
)
def test_parameter_count_and_feature_size(spec, expected):
    module = cnn.ConvNetModule(spec)
    assert spec.n_params() == expected
    assert sum(p.numel() for p in module.parameters()) == expected
    assert spec.n_features == {28: 64, 84: 800}[spec.image_size]


@pytest.mark.parametrize("name", list(SPECS), ids=list(SPECS))
def test_functional_matches_module_in_float64(name):
    spec = SPECS[name]
    params = _params(spec)
    x, y = _inputs(spec, 3, seed=3)  # float64 convolutions are slow on CPU: few images
    module = cnn.ConvNetModule(spec).double().load_functional(params)
    torch.testing.assert_close(cnn.logits(params, x), module(x), **TOL)

    loss_f = cnn.loss(params, x, y)
    loss_m = torch.nn.functional.cross_entropy(module(x), y)
    torch.testing.assert_close(loss_f, loss_m, **TOL)

    grads_f = torch.func.grad(cnn.loss)(params, x, y)
    loss_m.backward()
    for pname, p in module.functional_names().items():
        torch.testing.assert_close(
            grads_f[pname], p.grad, **TOL, msg=lambda m, n=pname: f"{n}: {m}"
        )


def test_batch_norm_uses_the_batch_statistics():
    """Per-task batch statistics: each channel has mean 0 and variance v / (v + eps) after BN."""
    g = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(7, 5, 6, 6, generator=g, dtype=F64)
    out = cnn.batch_norm(x, torch.ones(5, dtype=F64), torch.zeros(5, dtype=F64))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    torch.testing.assert_close(
        out.mean(dim=(0, 2, 3)), torch.zeros(5, dtype=F64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        out.var(dim=(0, 2, 3), unbiased=False), var / (var + cnn.BN_EPS), rtol=1e-10, atol=0
    )


def test_init_is_reproducible_and_glorot_bounded():
    spec = SPECS["omniglot-64"]
    a = cnn.init_params(spec, torch.Generator().manual_seed(5), dtype=F64)
    b = cnn.init_params(spec, torch.Generator().manual_seed(5), dtype=F64)
    c = cnn.init_params(spec, torch.Generator().manual_seed(6), dtype=F64)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    w = a["conv1.weight"]  # (64, 64, 3, 3): fan_in = fan_out = 576
    bound = math.sqrt(6 / (576 + 576))
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.95 * bound
    f32 = cnn.init_params(spec, torch.Generator().manual_seed(5), dtype=torch.float32)
    torch.testing.assert_close(f32["head.weight"].double(), a["head.weight"], rtol=1e-6, atol=1e-7)


def _task_batch(
    spec: cnn.ConvNetSpec, n_tasks: int, shots: int, query: int, seed: int
) -> TaskBatch:
    xs, ys, xq, yq = [], [], [], []
    for t in range(n_tasks):
        a, b = _inputs(spec, spec.n_classes * shots, seed=seed + 2 * t)
        c, d = _inputs(spec, spec.n_classes * query, seed=seed + 2 * t + 1)
        xs.append(a), ys.append(b), xq.append(c), yq.append(d)
    return TaskBatch(torch.stack(xs), torch.stack(ys), torch.stack(xq), torch.stack(yq))


def test_vmap_over_tasks_and_cells_equals_loops():
    spec = SPECS["omniglot-small"]
    tasks = _task_batch(spec, n_tasks=3, shots=1, query=2, seed=10)
    cells = [_params(spec, seed=s) for s in (0, 1)]
    stacked = {n: torch.stack([c[n] for c in cells]) for n in cells[0]}
    batched = vmap(vmap(cnn.loss, in_dims=(None, 0, 0)), in_dims=(0, None, None))(
        stacked, tasks.x_query, tasks.y_query
    )
    for c, params in enumerate(cells):
        for t in range(tasks.n_tasks):
            expected = cnn.loss(params, tasks.x_query[t], tasks.y_query[t])
            torch.testing.assert_close(batched[c, t], expected, **TOL)


@pytest.mark.parametrize("variant", ["exact", "first_order", "surrogate"])
def test_maml_meta_gradient_through_the_cnn(variant):
    """task_meta_gradient on the CNN (second order through batch norm and max-pool) against
    central finite differences of an independently written objective, float64."""
    spec = SPECS["omniglot-small"]
    params = _params(spec)
    task = _task_batch(spec, n_tasks=1, shots=1, query=2, seed=20)
    one = TaskBatch(*(t[0] for t in task))
    alpha, steps = 0.3, (1 if variant == "surrogate" else 2)
    direction, _ = task_meta_gradient(
        params, one, loss_fn=cnn.loss, alpha=alpha, steps=steps, variant=variant
    )
    g = torch.Generator().manual_seed(99)
    v = {n: torch.randn(p.shape, generator=g, dtype=F64) for n, p in params.items()}
    # A unit direction: a long one crosses ReLU / max-pool kinks within the difference step.
    norm = torch.sqrt(sum((t * t).sum() for t in v.values()))
    v = {n: t / norm for n, t in v.items()}
    along = sum((direction[n] * v[n]).sum() for n in params)

    def inner(p):
        for _ in range(steps):
            gs = torch.func.grad(cnn.loss)(p, one.x_support, one.y_support)
            p = {n: p[n] - alpha * gs[n] for n in p}
        return p

    eps = 1e-5
    if variant == "exact":  # d/de L_q(adapt(theta + e v))

        def f(e):
            return meta_objective(
                {n: params[n] + e * v[n] for n in params},
                task,
                loss_fn=cnn.loss,
                alpha=alpha,
                steps=steps,
            )
    elif variant == "first_order":  # d/de L_q(theta_k + e v): the query gradient at theta_k
        adapted = inner(params)

        def f(e):
            return cnn.loss({n: adapted[n] + e * v[n] for n in params}, one.x_query, one.y_query)
    else:  # surrogate with s != q: g_q - alpha H_s g_q = d/de [L_q - alpha g_s . g_q](theta + e v)

        def f(e):
            p = {n: params[n] + e * v[n] for n in params}
            gs = torch.func.grad(cnn.loss)(p, one.x_support, one.y_support)
            gq = torch.func.grad(cnn.loss)(p, one.x_query, one.y_query)
            # d/dtheta (g_s . g_q) = H_s g_q + H_q g_s; subtract the H_q g_s part below
            return cnn.loss(p, one.x_query, one.y_query) - alpha * sum(
                (gs[n] * gq[n]).sum() for n in p
            )

    fd = (f(eps) - f(-eps)) / (2 * eps)
    if variant == "surrogate":
        # remove alpha * (H_q g_s) . v, computed by a finite difference of g_q along v
        gs0 = torch.func.grad(cnn.loss)(params, one.x_support, one.y_support)
        gq_p = torch.func.grad(cnn.loss)(
            {n: params[n] + eps * v[n] for n in params}, one.x_query, one.y_query
        )
        gq_m = torch.func.grad(cnn.loss)(
            {n: params[n] - eps * v[n] for n in params}, one.x_query, one.y_query
        )
        hq_v = {n: (gq_p[n] - gq_m[n]) / (2 * eps) for n in params}
        fd = fd + alpha * sum((hq_v[n] * gs0[n]).sum() for n in params)
    torch.testing.assert_close(along, fd, rtol=1e-6, atol=1e-9)
