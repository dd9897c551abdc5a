"""Losses with known Hessians: closed form vs autodiff (torch.func.hessian), float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import hessian

from mamlconv.numerics import losses
from mamlconv.numerics.curvature import flatten, unflatten

RTOL = 1e-12


def autodiff_hessian(loss_fn, params, x, y) -> torch.Tensor:
    """Dense Hessian of the flattened loss by torch.func (the independent route)."""
    return hessian(lambda w: loss_fn(unflatten(w, params), x, y))(flatten(params))


QUADRATIC_CASES = [
    pytest.param([2.0], 0, id="1d"),
    pytest.param([0.01, 1.0, 100.0], 1, id="3d-wide"),
    pytest.param([0.5, 0.5, 3.0, 7.0], 2, id="4d-repeated"),
    pytest.param([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 3, id="6d-singular"),
]


@pytest.mark.parametrize(("eigs", "seed"), QUADRATIC_CASES)
def test_quadratic_hessian_and_spectrum(eigs: list[float], seed: int) -> None:
    q = losses.make_quadratic(eigs, seed=seed, center=torch.arange(len(eigs), dtype=torch.float64))
    theta = torch.randn(len(eigs), generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    h_auto = autodiff_hessian(losses.quadratic_loss, q.params(theta), q.x, q.y)
    torch.testing.assert_close(h_auto, q.hessian, rtol=RTOL, atol=1e-12 * max(eigs))
    torch.testing.assert_close(losses.quadratic_hessian(q.x), q.hessian, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.eigvalsh(q.hessian.numpy()), np.sort(eigs), rtol=1e-12, atol=1e-12
    )
    # Basis is orthogonal; loss is 1/2 v^T A v with minimum 0 at the centre.
    torch.testing.assert_close(q.basis.T @ q.basis, torch.eye(len(eigs), dtype=torch.float64))
    v = theta - q.center
    expected = 0.5 * v @ q.hessian @ v
    torch.testing.assert_close(losses.quadratic_loss(q.params(theta), q.x, q.y), expected)
    assert float(losses.quadratic_loss(q.params(q.center), q.x, q.y)) == pytest.approx(0, abs=1e-24)


def test_quadratic_basis_depends_on_seed_only() -> None:
    a = losses.make_quadratic([1.0, 2.0, 3.0], seed=5).basis
    b = losses.make_quadratic([1.0, 2.0, 3.0], seed=5).basis
    c = losses.make_quadratic([1.0, 2.0, 3.0], seed=6).basis
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    "eigs", [pytest.param([], id="empty"), pytest.param([1.0, -1.0], id="negative")]
)
def test_quadratic_rejects_bad_spectrum(eigs: list[float]) -> None:
    with pytest.raises(ValueError, match="eigs"):
        losses.make_quadratic(eigs, seed=0)


@pytest.mark.parametrize("convention", losses.LOSS_CONVENTIONS)
def test_linreg_hessian_closed_form_matches_autodiff(convention: str) -> None:
    data = losses.sample_linreg(torch.Generator().manual_seed(3), n_points=37)
    loss_fn = losses.linreg_loss_fn(convention)
    params = losses.linreg_params(0.3, -1.2)
    h_auto = autodiff_hessian(loss_fn, params, data.x, data.y)
    h_closed = losses.linreg_hessian(data.x, convention=convention)
    torch.testing.assert_close(h_auto, h_closed, rtol=RTOL, atol=1e-12)


def test_linreg_conventions_differ_by_factor_two() -> None:
    """half_mse halves the Hessian, hence doubles every alpha_c and beta_c."""
    data = losses.sample_linreg(torch.Generator().manual_seed(0))
    mse = losses.linreg_hessian(data.x, convention="mse")
    half = losses.linreg_hessian(data.x, convention="half_mse")
    torch.testing.assert_close(mse, 2 * half, rtol=0, atol=0)
    p = losses.linreg_params(1.0, 1.0)
    ratio = losses.linreg_loss_fn("mse")(p, data.x, data.y) / losses.linreg_loss_fn("half_mse")(
        p, data.x, data.y
    )
    assert float(ratio) == pytest.approx(2.0, rel=1e-15)


def test_linreg_loss_is_torch_mse() -> None:
    data = losses.sample_linreg(torch.Generator().manual_seed(1), n_points=20)
    p = losses.linreg_params(0.7, 0.1)
    expected = torch.nn.functional.mse_loss(p["w"] * data.x + p["c"], data.y)
    assert float(losses.linreg_loss_fn("mse")(p, data.x, data.y)) == pytest.approx(
        float(expected), rel=1e-14
    )


def test_sample_linreg_ranges_and_exactness() -> None:
    """App. C: a, b in [0, 5], x in [-5, 5], y = a x + b exactly (zero loss at (a, b))."""
    data = losses.sample_linreg(torch.Generator().manual_seed(11), n_points=500)
    assert 0 <= data.a <= 5 and 0 <= data.b <= 5
    assert data.x.shape == (500, 1) and data.y.shape == (500, 1)
    assert float(data.x.min()) >= -5 and float(data.x.max()) <= 5
    assert float(data.x.min()) < -4.5 and float(data.x.max()) > 4.5  # the range is covered
    p = losses.linreg_params(data.a, data.b)
    assert float(losses.linreg_loss_fn()(p, data.x, data.y)) < 1e-28
    again = losses.sample_linreg(torch.Generator().manual_seed(11), n_points=500)
    assert torch.equal(again.x, data.x) and again.a == data.a


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        pytest.param([1.0, 2.0], [1.0], "same length", id="length"),
        pytest.param([1.0], [1.0], "at least 2", id="too-few"),
        pytest.param([1.0, float("nan")], [1.0, 2.0], "finite", id="nan"),
    ],
)
def test_linreg_from_arrays_rejects(x: list[float], y: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        losses.linreg_from_arrays(x, y)


def test_bad_convention() -> None:
    with pytest.raises(ValueError, match="half"):
        losses.linreg_loss_fn("sse")  # type: ignore[arg-type]
