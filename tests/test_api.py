"""The top-level Python API (``mamlconv.sweep`` etc.; issue 11) and the example users copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mamlconv

REPO = Path(__file__).resolve().parents[1]


def test_import_mamlconv_does_not_import_torch():
    code = (
        "import sys, mamlconv\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'sympy' not in sys.modules, 'sympy imported'\n"
        "assert callable(mamlconv.sweep) and 'torch' not in sys.modules\n"
        "print(sorted(n for n in dir(mamlconv) if not n.startswith('_')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in ("advise", "compare", "load", "problem_from_module", "spectrum", "sweep"):
        assert name in proc.stdout


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = mamlconv.nope


def test_thresholds_are_the_theory_layers():
    from mamlconv.theory.thresholds import alpha_c, beta_c

    eigs = [4.0, 1.0, 0.25]
    t = mamlconv.thresholds(eigs, [0.0, 0.1], model="surrogate")
    assert t.alpha_c == alpha_c(eigs, model="surrogate") == pytest.approx(0.25)
    np.testing.assert_array_equal(t.beta_c, beta_c(eigs, np.array([0.0, 0.1]), model="surrogate"))
    assert t.beta_c[0] == pytest.approx(2 / 4.0)  # alpha = 0: plain GD, 2 / lambda_max


def _task(g):
    xs, xq = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    w = torch.randn(2, 1, generator=g)
    return xs, xs @ w, xq, xq @ w


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 1))
    return mamlconv.problem_from_module(net, F.mse_loss, _task, name="apitiny")


def test_spectrum_matches_numerics_at_the_sweep_initial_point(problem):
    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.engine.state import initial_state
    from mamlconv.numerics.curvature import spectrum

    res = mamlconv.spectrum(problem, k=2, n_tasks=4, seed=3)
    cfg = SweepConfig(problem="x", task_source="pool", pool_size=4, tasks_per_batch=4, seed=3)
    params, stream = initial_state(problem, cfg, dtype=torch.float64, device="cpu")
    desired = spectrum(problem.loss, params, stream.pool, operator="hessian", k=2, seed=3)
    np.testing.assert_allclose(res.eigenvalues, desired.eigenvalues, rtol=1e-10)


def test_sweep_boundary_save_load_plot_compare(problem, tmp_path):
    alphas, betas = [0.01, 0.1], [0.01, 0.1, 1.0, 10.0, 100.0]
    result = mamlconv.sweep(
        problem, alphas, betas, iters=8, tasks_per_batch=4, device="cpu", out=tmp_path / "s.npz"
    )
    assert result.final_loss.shape == (2, 5) and result.alpha0_final_loss.shape == (5,)
    a, b = result.grid
    assert a[1, 0] == 0.1 and b[0, 4] == 100.0
    assert result.diverged.any() and (~result.diverged).any()
    edge = result.boundary()
    np.testing.assert_array_equal(edge.alphas, [0.0, 0.01, 0.1])  # the alpha = 0 row first
    for i, row in enumerate([result.result.alpha0["diverged_at"], *result.result.diverged_at]):
        stable = np.asarray(row) < 0
        top = np.flatnonzero(stable).max()
        assert edge.beta_lo[i] == betas[top]
        assert edge.beta_hi[i] == (betas[top + 1] if top + 1 < len(betas) else np.inf)
    again = mamlconv.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.final_loss, result.final_loss)
    copy = result.save(tmp_path / "copy.npz")
    assert mamlconv.load(copy).config == result.config
    paths = result.save_figures(tmp_path)
    png = [p for p in paths if p.suffix == ".png"]
    assert png and png[0].stat().st_size > 10_000
    cmp = mamlconv.compare(result, k=2, tol=1e-3, points=("init",), out=tmp_path / "cmp")
    assert set(cmp.predictions["init"]) == {"formula", "surrogate", "meta"}
    assert np.isfinite(cmp.predictions["init"]["meta"]).all()
    record = json.loads(cmp.files["json"].read_text())
    assert record["config"]["problem"] == "memory:apitiny"


def test_sweep_of_a_spec_records_it_and_compares_in_a_fresh_process(tmp_path):
    (tmp_path / "tinyprob.py").write_text(
        "import torch, torch.nn.functional as F\nfrom torch import nn\nimport mamlconv\n"
        "def task(g):\n    x = torch.randn(4, 2, generator=g)\n"
        "    return x, x[:, :1], x, x[:, :1]\n"
        "def make():\n    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))\n"
        "    return mamlconv.problem_from_module(net, F.mse_loss, task)\n"
    )
    spec = f"{tmp_path / 'tinyprob.py'}:make"
    result = mamlconv.sweep(
        spec, [0.1], [0.1, 1.0], iters=3, tasks_per_batch=2, device="cpu", out=tmp_path / "s.npz"
    )
    assert result.config.problem == spec
    code = (
        "import mamlconv\n"
        f"r = mamlconv.load({str(tmp_path / 's.npz')!r})\n"
        f"c = mamlconv.compare(r, k=1, tol=1e-2, points=('init',), problem={spec!r})\n"
        "print(sorted(c.predictions['init']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd="/",
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "['formula', 'meta', 'surrogate']" in proc.stdout


def test_in_memory_problem_refuses_worker_processes(problem):
    with pytest.raises(ValueError, match="workers=1"):
        mamlconv.sweep(problem, [0.1], [0.1], workers=2)


def test_example_runs_at_smoke_size(tmp_path):
    """The example users copy, end to end (advise, sweep, plot, compare) at smoke size."""
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "own_model.py"),
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert "advised alpha* =" in proc.stdout
    assert "alpha 0: beta edge in" in proc.stdout  # the alpha = 0 row of the boundary
    for name in ("sweep.npz", "sweep_fig4.png", "sweep_compare.png", "sweep_compare.md"):
        assert (tmp_path / name).is_file(), name


def test_two_problem_objects_of_one_name_get_two_keys():
    from mamlconv.experiments.problems.registry import get_problem, register_problem

    a = mamlconv.problem_from_module(nn.Linear(2, 1), F.mse_loss, _task, name="twin")
    b = mamlconv.problem_from_module(nn.Linear(2, 1), F.mse_loss, _task, name="twin")
    ka, kb = register_problem(a), register_problem(b)
    assert ka != kb and register_problem(a) == ka
    assert get_problem(ka) is a and get_problem(kb) is b


# --------------------------------------------------------------- notebook use
@pytest.fixture(scope="module")
def swept(problem, tmp_path_factory):
    out = tmp_path_factory.mktemp("swept") / "s.npz"
    return mamlconv.sweep(
        problem, [0.01, 0.1], [0.01, 0.1, 1.0, 10.0, 100.0], iters=8, tasks_per_batch=4,
        device="cpu", out=out,
    )  # fmt: skip


def test_plot_returns_a_figure_and_writes_no_file(swept, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in swept.path.parent.iterdir())
    fig = swept.plot()
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("α") and ax.get_ylabel().startswith("β")
    assert len(fig.axes) == 2 and "training loss" in fig.axes[1].get_ylabel()  # colour bar
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in swept.path.parent.iterdir()) == before
    import matplotlib.pyplot as plt

    fig2, axes = plt.subplots(1, 2)
    assert swept.plot(ax=axes[1]) is fig2 and axes[1].collections  # drawn into the given Axes
    plt.close(fig)
    plt.close(fig2)


def test_labelled_data_agrees_with_the_file_cell_for_cell(swept):
    pytest.importorskip("xarray", reason="the mamlconv[data] extra (CI installs it)")
    pytest.importorskip("pandas", reason="the mamlconv[data] extra (CI installs it)")
    with np.load(swept.path) as z:
        raw = {k: z[k] for k in z.files}
    ds = swept.to_xarray()
    assert ds.sizes == {"alpha": 3, "beta": 5}
    np.testing.assert_array_equal(ds["alpha"].values, [0.0, *raw["alphas"]])
    np.testing.assert_array_equal(ds["beta"].values, raw["betas"])
    want_loss = np.vstack([raw["alpha0_final_loss"][None], raw["final_loss"]])
    want_div = np.vstack([raw["alpha0_diverged_at"][None], raw["diverged_at"]])
    np.testing.assert_array_equal(ds["final_loss"].values, want_loss)
    np.testing.assert_array_equal(ds["diverged_at"].values, want_div)
    np.testing.assert_array_equal(ds["diverged"].values, want_div >= 0)
    assert ds["learned"].dtype == bool and not (ds["learned"] & ds["diverged"]).any()
    assert ds["alpha0_row"].sel(alpha=0.0).all() and not ds["alpha0_row"].sel(alpha=0.1).any()
    assert json.loads(ds.attrs["config_json"]) == swept.config.to_dict()
    assert json.loads(ds.attrs["provenance_json"]) == swept.result.provenance
    assert ds.attrs["problem"] == "memory:apitiny"
    df = swept.to_dataframe()
    assert len(df) == want_loss.size
    assert {"alpha", "beta", "final_loss", "diverged_at", "diverged", "learned"} <= set(df)
    for i, a in enumerate(ds["alpha"].values):
        for j, b in enumerate(raw["betas"]):
            row = df[(df.alpha == a) & (df.beta == b)]
            assert len(row) == 1
            assert row.final_loss.iloc[0] == want_loss[i, j] or np.isnan(want_loss[i, j])
            assert row.diverged_at.iloc[0] == want_div[i, j]
    assert df.attrs["config_json"] == ds.attrs["config_json"]


@pytest.mark.parametrize("module", ["xarray", "pandas"])
def test_without_the_data_extra_the_error_names_it(swept, module):
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"  # as if not installed
        "import mamlconv\n"
        "from mamlconv.errors import MamlconvError\n"
        f"m = mamlconv.load({str(swept.path)!r})\n"
        "try:\n"
        f"    m.{'to_xarray' if module == 'xarray' else 'to_dataframe'}()\n"
        "except MamlconvError as exc:\n"
        "    print('ERR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("ERR") and module in line and "pip install 'mamlconv[data]'" in line
    assert "\n" not in line


def test_reprs_are_short_tables(swept):
    text = repr(swept)
    assert text.startswith("SweepMap: memory:apitiny, 2 alphas x 5 betas")
    assert len(text) < 1500 and "largest stable beta" in text and "diverged" in text
    assert all(len(line) < 120 for line in text.splitlines())
    html = swept._repr_html_()
    assert html.startswith("<table>") and "largest stable beta" in html


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"betas": "0.1"}, "betas must be a 1-D sequence of numbers"),
        ({"alphas": 0.1}, "alphas must be a 1-D sequence of numbers"),
        ({"betas": []}, "betas is empty"),
        ({"betas": [0.1, "x"]}, "betas must hold numbers only"),
        ({"betas": [0.0, 1.0]}, "betas must be finite and > 0, got 0.0"),
        ({"alphas": [-1.0]}, "alphas must be finite and >= 0, got -1.0"),
    ],
)
def test_sweep_argument_errors_name_the_argument(problem, kwargs, needle):
    from mamlconv.errors import UsageError

    args = {"alphas": [0.01], "betas": [0.1], **kwargs}
    with pytest.raises(UsageError, match=needle):
        mamlconv.sweep(problem, args["alphas"], args["betas"], iters=2)


def test_advice_and_comparison_reprs_are_short_tables(problem, swept):
    advice = mamlconv.advise(problem, n_tasks=4, k=2, tol=1e-3)
    text = repr(advice)
    assert text.startswith("Advice for apitiny (exact MAML") and len(text) < 1500
    assert f"{advice.alpha_star:.4g}" in text and "beta_c from" in text
    assert advice._repr_html_().startswith("<table>")
    cmp = mamlconv.compare(swept, k=2, tol=1e-3, points=("init",))
    text = repr(cmp)
    assert text.startswith("Comparison: measured beta edge vs predictions, 2 alphas")
    assert "meta @ init" in text and "formula @ init" in text and len(text) < 1500
    assert cmp._repr_html_().startswith("<table>")
