"""The local regime (``mamlconv local``, experiments/analysis/local.py and stationary.py):
on linear regression the measured local edge equals the closed forms, and the pieces agree with
independent routes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mamlconv.experiments.analysis import local, stationary
from mamlconv.numerics.linreg import paper_alphas
from mamlconv.numerics.losses import sample_linreg

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return sample_linreg(torch.Generator().manual_seed(0))


@pytest.mark.parametrize("variant", ["exact", "first_order"])
def test_linreg_local_edge_equals_the_closed_form(data, variant):
    """App. C data, a 10-point grid over the paper's alpha range: at every alpha the bisected
    local edge holds 2 / max lambda (1 - alpha lambda)^2 (exact) or Eq. 15 (first order) within
    0.01 decades; first order past alpha_c = 1/lambda_max has no stable beta, and says so."""
    problem, init, tasks, closed_form, lam = local.linreg_setup(data, variant=variant)
    alphas = paper_alphas(10)
    study = local.local_stability(
        problem,
        alphas,
        tasks=tasks,
        init=init,
        variant=variant,
        optimiser_iters=0,
        horizon=300,
        closed_form=closed_form,
    )
    assert [r.alpha for r in study.rows] == pytest.approx(alphas)
    for r in study.rows:
        exact_edge = closed_form(r.alpha)
        assert r.point["grad_norm"] <= 1e-12 * r.point["grad_norm_start"]
        if variant == "first_order" and r.alpha > 1 / lam.max():
            assert exact_edge == 0
            assert r.measured is None
            assert not r.certified and r.point["lambda_min"] < 0
            continue
        assert r.certified
        assert r.measured is not None
        centre = math.sqrt(r.measured["lo"] * r.measured["hi"])
        assert math.log10(r.measured["hi"] / r.measured["lo"]) <= 0.0051
        assert abs(math.log10(exact_edge / centre)) <= 0.01, (r.alpha, exact_edge, r.measured)
        assert abs(math.log10(r.predictions[r.governing] / exact_edge)) <= 1e-6
    rec = study.record()
    json.dumps(rec, allow_nan=False)
    for row in rec["rows"]:
        assert {"alpha", "certified", "grad_norm", "grad_norm_start", "lambda_min"} <= set(row)
        assert {"predictions", "governing", "measured"} <= set(row)


def test_the_first_order_field_is_the_engines_direction(data):
    """F of stationary.UpdateField (differentiable, built from numerics.maml.adapt) equals the
    direction of the engine's step (task_meta_gradient), and the exact Jacobian equals the
    dense meta-Hessian of numerics.curvature (torch.func.hessian of the meta-objective)."""
    from mamlconv.experiments.engine.loop import make_step
    from mamlconv.numerics.curvature import dense_operator

    problem, init, tasks, _, _ = local.linreg_setup(data, variant="exact")
    theta = {
        "w": torch.tensor([0.7], dtype=torch.float64),
        "c": torch.tensor([-0.3], dtype=torch.float64),
    }
    flat = stationary.to_flat(theta)
    for variant in ("exact", "first_order"):
        field = stationary.UpdateField(problem.loss, tasks, init, 0.02, variant)
        step = make_step(problem, variant=variant, steps=1, backend="generic")
        batched = {k: v[None] for k, v in theta.items()}
        out = step(
            batched,
            torch.tensor([0.02], dtype=torch.float64),
            tasks,
            need_direction=True,
            need_stats=False,
        )
        engine = torch.cat([out.direction[k][0].reshape(-1) for k in theta])
        assert torch.allclose(field.direction(flat), engine, rtol=1e-12, atol=1e-12)
    field = stationary.UpdateField(problem.loss, tasks, init, 0.02, "exact")
    meta = dense_operator(problem.loss, theta, tasks, operator="meta", alpha=0.02)
    assert np.allclose(field.dense_jacobian(flat), meta.numpy(), rtol=1e-10, atol=1e-10)


def test_jacobian_beta_c_for_complex_eigenvalues():
    """|1 - beta mu| < 1 iff beta < 2 Re(mu) / |mu|^2; a mode with Re(mu) <= 0 admits no beta;
    flat modes are left out."""
    mu = np.array([2.0 + 0j, 1.0 + 1.0j, 1.0 - 1.0j, 1e-12 + 0j])
    assert stationary.jacobian_beta_c(mu) == pytest.approx(1.0)  # 2 * 1 / 2 for 1 +- i
    assert stationary.jacobian_beta_c(np.array([1.0, -0.5])) == 0.0
    beta = 0.999
    assert np.all(np.abs(1 - beta * mu[:3]) < 1)
    assert np.any(np.abs(1 - 1.001 * mu[:3]) > 1)


def test_decades_off():
    assert local.decades_off(1.0, {"lo": 1.0, "hi": 1.0}) == 0
    assert local.decades_off(0.0, None) == 0
    assert local.decades_off(0.1, None) == math.inf
    assert local.decades_off(10.0, {"lo": 0.9, "hi": 1.1}) == pytest.approx(
        1 - math.log10(math.sqrt(0.99))
    )


def test_cli_local_bad_alpha_is_one_line(capsys, tmp_path):
    from mamlconv.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["local", "linreg", "--alphas", "0,-1", "--out", str(tmp_path / "x.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "alphas must be >= 0" in err and "Traceback" not in err


def test_cli_local_linreg_writes_json_and_table(tmp_path):
    from mamlconv.cli import main

    xy = tmp_path / "data.json"
    rng = np.random.default_rng(3)
    x = rng.uniform(-5, 5, 40)
    xy.write_text(json.dumps({"x": x.tolist(), "y": (2 * x + 1).tolist()}))
    out = tmp_path / "local.json"
    code = main(
        [
            "local",
            "linreg",
            "--alphas",
            "0,0.02",
            "--data",
            str(xy),
            "--optimiser-iters",
            "0",
            "--horizon",
            "200",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["data"] == str(xy)
    assert [r["alpha"] for r in rec["rows"]] == [0.0, 0.02]
    assert all(r["certified"] for r in rec["rows"])
    assert out.with_suffix(".md").read_text().startswith("# linreg / exact")


def test_first_order_sharpness_is_the_top_mode_curvature(data):
    """mechanism.governing_curvature for first order: 2 / lambda_gov is the largest stable beta
    of the first-order update, so on linear regression lambda_gov = max lambda (1 - alpha lambda)
    (the closed-form Jacobian A (I - alpha A)), and 2 / lambda_gov is Eq. 15's beta_c."""
    from mamlconv.experiments.analysis.mechanism import governing_curvature
    from mamlconv.theory.thresholds import beta_c

    problem, init, tasks, _, lam = local.linreg_setup(data, variant="first_order")
    for alpha in (0.0, 0.01, 0.05):
        got = governing_curvature(problem, init, tasks, alpha=alpha, variant="first_order")
        assert got == pytest.approx(np.max(lam * (1 - alpha * lam)), rel=1e-9)
        assert 2 / got == pytest.approx(float(beta_c(lam, alpha, model="first_order")), rel=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.02])
def test_smooth_net_is_certified_by_lbfgs_and_saddle_free_newton(alpha):
    """A small tanh MLP (1-3-3-1, 2 tasks of 5 points): L-BFGS then saddle-free Newton reach
    ||F|| <= 1e-8 of its start (exact MAML), and the certificate's smallest eigenvalue is that
    of an independent dense Hessian (torch.autograd.functional.hessian of the meta-objective)."""
    problem = local.smooth_sinusoid(hidden=(3, 3), k_support=5, k_query=5)
    gen = torch.Generator().manual_seed(3)
    init = problem.init_params(gen, dtype=torch.float64, device="cpu")
    tasks = problem.sample_tasks(gen, 2, dtype=torch.float64, device="cpu")
    like = {k: v.detach() for k, v in init.items()}
    field_ = stationary.UpdateField(problem.loss, tasks, like, alpha, "exact", 1)
    point = stationary.find_stationary(
        field_, stationary.to_flat(like), optimiser_iters=0, lbfgs_iters=3000, saddle_free=True
    )
    assert point.relative_grad_norm <= 1e-8, point.history
    cert = stationary.certify(field_, point)
    hess = torch.autograd.functional.hessian(field_.objective, point.theta).numpy()
    slow = np.linalg.eigvalsh(0.5 * (hess + hess.T))
    assert cert.lambda_min_all == pytest.approx(slow[0], rel=1e-6, abs=1e-9 * slow[-1])
    assert cert.lambda_max == pytest.approx(slow[-1], rel=1e-9)
    assert cert.certified, cert.reason
