"""Theory-vs-experiment comparison: predictions against dense float64 references, the error
convention, the written table/figure and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mamlconv.cli import main
from mamlconv.experiments.analysis.comparison import compare, log10_error
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems.registry import get_preset, get_problem
from mamlconv.experiments.sweep.run import run_sweep
from mamlconv.numerics.boundary import extract_boundary
from mamlconv.numerics.curvature import dense_operator


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A 1-8-8-1 MLP (97 parameters: dense matrices are cheap) on a 3 x 5 grid."""
    cfg = get_preset("sinusoid", "smoke").replace(
        alphas=(1e-3, 0.03, 0.6),
        betas=tuple(np.geomspace(0.02, 20, 5)),
        iters=15,
        tasks_per_batch=6,
        pool_size=6,
        dtype="float64",
        device="cpu",
        problem_options={"k_support": 5, "k_query": 5, "hidden": [8, 8]},
    )
    path = tmp_path_factory.mktemp("cmp") / "small.npz"
    result = run_sweep(cfg, path, progress=False)
    return path, result


def _dense_predictions(result, params, alpha):
    """beta_c three ways from dense matrices (torch.func.hessian; no Hessian-vector products);
    the meta-Hessian with the sweep's own number of inner steps."""
    cfg = result.config
    prob = get_problem(cfg.problem, **cfg.problem_options)
    _, stream = initial_state(prob, cfg, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    lam = np.linalg.eigvalsh(dense_operator(prob.loss, params, tasks, operator="hessian").numpy())
    pos = lam[lam > 0]
    curv = pos - alpha * pos**2  # paper Eq. 14, over the positive eigenvalues
    formula = 0.0 if (curv < 0).any() else 2 / curv.max()
    out = {"formula": formula}
    for op in ("surrogate", "meta"):
        steps = cfg.steps if op == "meta" else 1
        mat = dense_operator(
            prob.loss, params, tasks, operator=op, alpha=alpha, steps=steps
        ).numpy()
        top = np.linalg.eigvalsh(0.5 * (mat + mat.T))[-1]
        out[op] = 2 / top if top > 0 else math.inf
    return out


def test_predictions_match_dense_references(small_sweep):
    path, result = small_sweep
    cmp = compare(result, k=96, tol=1e-10)  # k = n - 1: the formula sees every eigenvalue
    cfg = result.config
    prob = get_problem(cfg.problem, **cfg.problem_options)
    init, _ = initial_state(prob, cfg, dtype=torch.float64, device="cpu")
    for i, alpha in enumerate(result.alphas):
        want = _dense_predictions(result, init, alpha)
        for name, value in want.items():
            assert cmp.predictions["init"][name][i] == pytest.approx(value, rel=1e-7), (name, i)
        theta = result.trained_params(i)
        if theta is None:
            assert np.isnan(cmp.predictions["trained"]["meta"][i])
            continue
        params = {n: torch.as_tensor(v, dtype=torch.float64) for n, v in theta.items()}
        want = _dense_predictions(result, params, alpha)
        for name, value in want.items():
            got = cmp.predictions["trained"][name][i]
            assert got == pytest.approx(value, rel=1e-7), (name, i)
    assert cmp.alpha0["measured"]["alpha"] == 0.0


def test_meta_prediction_uses_the_sweeps_inner_steps(small_sweep, tmp_path):
    """A two-step sweep is predicted from the two-step meta-Hessian (dense reference)."""
    _, one_step = small_sweep
    cfg = one_step.config.replace(alphas=(0.03,), betas=(0.02, 0.2), iters=3, steps=2)
    result = run_sweep(cfg, tmp_path / "two_steps.npz", progress=False)
    cmp = compare(result, points=("init",), k=96, tol=1e-10)
    prob = get_problem(cfg.problem, **cfg.problem_options)
    init, _ = initial_state(prob, cfg, dtype=torch.float64, device="cpu")
    want = _dense_predictions(result, init, 0.03)["meta"]
    one_step_value = _dense_predictions(one_step, init, 0.03)["meta"]
    assert cmp.predictions["init"]["meta"][0] == pytest.approx(want, rel=1e-7)
    assert want != pytest.approx(one_step_value, rel=1e-3)  # the two objects differ here


@pytest.mark.parametrize(
    ("stable_row", "prediction", "error"),
    [
        pytest.param([1, 1, 0, 0], 0.15, 0.0, id="inside-bracket"),
        pytest.param([1, 1, 0, 0], 10.0, 1.0, id="one-decade-high"),
        pytest.param([1, 1, 0, 0], 0.01, 1.0, id="one-decade-low"),
        pytest.param([0, 0, 0, 0], 0.0, 0.0, id="nothing-stable-predicted-zero"),
        pytest.param([0, 0, 0, 0], 0.1, 1.0, id="nothing-stable-predicted-high"),
        pytest.param([1, 1, 1, 1], math.inf, 0.0, id="all-stable-predicted-inf"),
        pytest.param([1, 1, 0, 0], math.nan, math.nan, id="missing"),
    ],
)
def test_log10_error_convention(stable_row, prediction, error):
    betas = np.array([0.01, 0.1, 1.0, 10.0])
    bound = extract_boundary(np.array([0.1]), betas, np.array([stable_row], dtype=bool))
    got = log10_error(bound, np.array([prediction]), beta_min=betas[0])[0]
    if math.isnan(error):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(error, abs=1e-12)


def test_written_outputs_and_cli(small_sweep, tmp_path, capsys):
    path, result = small_sweep
    assert main(["compare", str(path), "--out", str(tmp_path), "--k", "20", "--quiet"]) == 0
    files = capsys.readouterr().out.split()
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["json", "md", "png"]
    record = json.loads((tmp_path / "small_compare.json").read_text())
    assert len(record["rows"]) == len(result.alphas)
    assert set(record["summary"]) == {"init", "trained"}
    assert record["config"] == result.config.to_dict()
    table = (tmp_path / "small_compare.md").read_text()
    assert table.count("\n| ") == len(result.alphas) + 1  # header + one row per alpha
    png = (tmp_path / "small_compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_compare_bad_input(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "none.npz"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no such result file" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["compare", "x.npz", "--out", str(tmp_path), "--points", "final"])
    assert exc.value.code == 2


def test_prediction_errors_from_comparison_rows() -> None:
    """Per prediction, the decades from the measured bracket: 0 inside it, the distance to the
    nearer end outside it; alphas without a bracket or a prediction are left out."""
    from mamlconv.experiments.analysis.comparison import prediction_errors

    def row(alpha, lo, hi, formula, meta):
        return {
            "alpha": alpha,
            "beta_lo": lo,
            "beta_hi": hi,
            "inside_grid": lo is not None and hi is not None,
            "predictions": {"init": {"formula": {"beta_c": formula}, "meta": {"beta_c": meta}}},
        }

    rows = [
        row(0.0, 1.0, 2.0, 1.5, 20.0),
        row(0.1, 1.0, 2.0, 100.0, None),
        row(0.2, None, None, 1.0, 1.0),
    ]
    errors = prediction_errors(rows)
    assert set(errors) == {"formula @ init", "meta @ init"}
    assert errors["formula @ init"] == {
        "median": pytest.approx(0.5 * np.log10(50)),
        "max": pytest.approx(np.log10(50)),
        "n_alphas": 2,
    }
    assert errors["meta @ init"] == {
        "median": pytest.approx(1.0),
        "max": pytest.approx(1.0),
        "n_alphas": 1,
    }


def test_mechanism_catapult_and_edge_of_stability(small_sweep, tmp_path):
    """compare --mechanism: the catapult ratio is the Fig. 4 edge times the meta-Hessian's top
    eigenvalue at init over 2 (that eigenvalue recomputed densely here); the retrained cells
    reproduce the sweep's final losses; each EoS product is beta times the meta-Hessian's top
    eigenvalue at the retrained point (dense, float64). Then the CLI's --reuse path."""
    from mamlconv.experiments.analysis.mechanism import mechanism
    from mamlconv.experiments.engine.loop import train_cells

    path, result = small_sweep
    mech = mechanism(result, cells_per_alpha=1, along=1, along_iters=(0, 15))
    problem = get_problem(result.config.problem, **result.config.problem_options)
    init, stream = initial_state(problem, result.config, dtype=torch.float64, device="cpu")
    tasks = stream.next()
    boundary = result.boundary().as_records()
    rows = [r for r in mech["rows"] if r["alpha"] > 0]
    for i, row in enumerate(rows):
        dense = dense_operator(problem.loss, init, tasks, operator="meta", alpha=row["alpha"])
        lam = float(torch.linalg.eigvalsh(dense)[-1])
        assert row["lambda_gov_init"] == pytest.approx(lam, rel=1e-6)
        lo = boundary[i]["beta_lo"]
        if lo is not None:
            assert row["catapult_ratio"]["lo"] == pytest.approx(lo * lam / 2, rel=1e-6)
            assert row["catapult"] == (lo > 2 / lam)
    for cell in mech["eos_cells"]:
        assert (
            cell["beta"]
            > 2 / rows[[r["alpha"] for r in rows].index(cell["alpha"])]["lambda_gov_init"]
        )
        assert cell["final_loss"] == pytest.approx(cell["sweep_final_loss"], rel=1e-9)
        run = train_cells(
            problem,
            result.config,
            np.array([cell["alpha"]]),
            np.array([cell["beta"]]),
            save_params=True,
        )
        theta = {k: torch.as_tensor(v[0]) for k, v in run.final_params.items()}
        dense = dense_operator(problem.loss, theta, tasks, operator="meta", alpha=cell["alpha"])
        lam_end = float(torch.linalg.eigvalsh(dense)[-1])
        assert cell["product"] == pytest.approx(cell["beta"] * lam_end, rel=1e-5)
    for t in mech["trajectories"]:
        assert t["iters"] == [0, 15] and len(t["product"]) == 2
    # the CLI: a plain compare, then --reuse adds the mechanism to its JSON and table
    assert main(["compare", str(path), "--out", str(tmp_path), "--k", "20", "--quiet"]) == 0
    reuse = tmp_path / "small_compare.json"
    out = tmp_path / "again"
    out.mkdir()
    assert (
        main(
            [
                "compare",
                str(path),
                "--out",
                str(out),
                "--reuse",
                str(reuse),
                "--cells-per-alpha",
                "1",
                "--along",
                "0",
                "--quiet",
            ]
        )
        == 0
    )
    record = json.loads((out / "small_compare.json").read_text())
    assert record["rows"] == json.loads(reuse.read_text())["rows"]
    assert {"rows", "eos_cells", "summary"} <= set(record["mechanism"])
    assert "## Mechanism of the Fig. 4 edge" in (out / "small_compare.md").read_text()
