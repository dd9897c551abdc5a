"""The sinusoid task family and the functional 1-40-40-1 MLP (Finn et al.; paper Section 4.1)."""

from __future__ import annotations

import math

import pytest
import torch

from mamlconv.experiments.problems.registry import get_problem
from mamlconv.experiments.problems.sinusoid import SinusoidProblem, mlp_forward, mse_loss


def test_mlp_equals_torch_nn_sequential():
    """The functional MLP against torch.nn layers holding the same weights (float64)."""
    prob = SinusoidProblem()
    params = prob.init_params(torch.Generator().manual_seed(0), dtype=torch.float64, device="cpu")
    net = torch.nn.Sequential(
        torch.nn.Linear(1, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, 40),
        torch.nn.ReLU(),
        torch.nn.Linear(40, 1),
    ).double()
    with torch.no_grad():
        for layer, i in zip((net[0], net[2], net[4]), (1, 2, 3), strict=True):
            layer.weight.copy_(params[f"w{i}"].T)  # nn.Linear stores (out, in)
            layer.bias.copy_(params[f"b{i}"])
    x = torch.linspace(-5, 5, 33, dtype=torch.float64)[:, None]
    y = torch.sin(x)
    torch.testing.assert_close(mlp_forward(params, x), net(x), rtol=1e-13, atol=1e-13)
    want = torch.nn.functional.mse_loss(net(x), y)
    torch.testing.assert_close(mse_loss(params, x, y), want, rtol=1e-13, atol=0)
    assert prob.n_params() == sum(p.numel() for p in net.parameters()) == 1761


def test_tasks_follow_the_paper_distribution():
    """A in [0.1, 5], phase in [0, pi], x in [-5, 5], y = A sin(x - phase) (Section 4.1)."""
    prob = SinusoidProblem(k_support=10, k_query=7)
    n = 4000
    batch = prob.sample_tasks(
        torch.Generator().manual_seed(3), n, dtype=torch.float64, device="cpu"
    )
    assert batch.x_support.shape == (n, 10, 1) and batch.x_query.shape == (n, 7, 1)
    # Re-draw the amplitudes and phases from the same generator state: the sampler draws them
    # first, so y must be A sin(x - phase) with exactly these.
    a, phi = prob.sample_task_parameters(torch.Generator().manual_seed(3), n)
    want = a[:, None, None] * torch.sin(batch.x_support - phi[:, None, None])
    torch.testing.assert_close(batch.y_support, want, rtol=0, atol=1e-14)
    assert 0.1 <= a.min() and a.max() <= 5.0 and 0 <= phi.min() and phi.max() <= math.pi
    x = torch.cat([batch.x_support.flatten(), batch.x_query.flatten()])
    assert -5 <= x.min() and x.max() <= 5
    # Uniform: the means are the interval centres to a few standard errors.
    assert float(a.mean()) == pytest.approx(2.55, abs=4 * 4.9 / math.sqrt(12 * n))
    assert float(x.mean()) == pytest.approx(0.0, abs=4 * 10 / math.sqrt(12 * x.numel()))


@pytest.mark.parametrize(
    ("init", "check"),
    [
        pytest.param("torch_default", "bound", id="torch-default-uniform"),
        pytest.param("finn", "normal", id="finn-truncated-normal"),
    ],
)
def test_initialisations(init, check):
    prob = SinusoidProblem(init=init)
    p = prob.init_params(torch.Generator().manual_seed(0), dtype=torch.float64, device="cpu")
    if check == "bound":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as torch.nn.Linear
        assert p["w1"].abs().max() <= 1.0 and p["w2"].abs().max() <= 1 / math.sqrt(40)
        assert p["w2"].abs().max() > 0.9 / math.sqrt(40)
    else:  # std 0.01 truncated at 2 std, zero biases (Finn et al.'s code)
        assert p["w2"].abs().max() <= 0.02 and float(p["w2"].std()) == pytest.approx(
            0.0088, rel=0.1
        )
        assert all(float(p[b].abs().max()) == 0 for b in ("b1", "b2", "b3"))


def test_same_seed_same_numbers_in_both_precisions():
    """Sampling happens in float64 on the CPU, then casts: float32 is the rounded float64."""
    prob = SinusoidProblem()
    t64 = prob.sample_tasks(torch.Generator().manual_seed(5), 3, dtype=torch.float64, device="cpu")
    t32 = prob.sample_tasks(torch.Generator().manual_seed(5), 3, dtype=torch.float32, device="cpu")
    for a, b in zip(t64, t32, strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a.float(), b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"init": "xavier"}, "init must be one of", id="bad-init"),
        pytest.param({"k_support": 0}, "k_support", id="zero-k"),
        pytest.param({"widht": 3}, "bad sinusoid option", id="unknown-option"),
    ],
)
def test_bad_options_are_value_errors(options, message):
    with pytest.raises(ValueError, match=message):
        get_problem("sinusoid", **options)
