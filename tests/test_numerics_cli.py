"""``mamlconv linreg`` and ``mamlconv figure`` (fig2, fig3), run in-process through the real
dispatcher at tiny sizes, plus one subprocess smoke run of the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mamlconv.cli import main

SMALL = ["--alphas", "1e-3:9e-2:4", "--betas", "5e-3:9:6", "--iters", "80"]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["linreg", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one object on one line
    return json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


def test_linreg_json_keys_shapes_and_theory(capsys: pytest.CaptureFixture[str]) -> None:
    from mamlconv.theory.thresholds import alpha_c, beta_c

    obj = run_json(capsys, "--model", "all", *SMALL)
    assert set(obj) >= {"hessian_eigs", "alpha_c", "alphas", "betas", "models", "config"}
    np.testing.assert_allclose(obj["alphas"], np.geomspace(1e-3, 9e-2, 4))
    np.testing.assert_allclose(obj["betas"], np.geomspace(5e-3, 9, 6))
    eigs = obj["hessian_eigs"]
    assert len(eigs) == 2 and eigs[0] < eigs[1]
    assert obj["alpha_c"] == pytest.approx(1 / eigs[1], rel=1e-12)  # Eq. 15
    assert list(obj["models"]) == ["surrogate", "first_order", "exact"]
    for name, m in obj["models"].items():
        for key in ("final_loss_post", "final_loss_pre", "converged"):
            assert np.array(m[key], dtype=object).shape == (4, 6), key
        # converged = finite and post-adaptation loss below the threshold
        post = np.array([[np.nan if v is None else v for v in row] for row in m["final_loss_post"]])
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(
                np.array(m["converged"]), np.isfinite(post) & (post < 1e-2)
            )
        assert len(m["boundary"]) == 4
        assert isinstance(m["alphas_theory_unstable_but_converged"], list)
        assert m["max_log10_error"] is None or m["max_log10_error"] >= 0
        theory = beta_c(eigs, obj["alphas"], model=name)
        for row, bc in zip(m["boundary"], theory, strict=True):
            assert set(row) >= {"beta_lo", "beta_hi", "beta_c_theory", "log10_error", "inside_grid"}
            if np.isfinite(bc):
                assert row["beta_c_theory"] == pytest.approx(bc, rel=1e-12)
        if name == "exact":
            assert m["alpha_c"] is None  # no alpha_c for exact MAML (docs/MATH.md 4)
        else:
            assert m["alpha_c"] == pytest.approx(alpha_c(eigs, model=name))
    assert obj["config"]["iters"] == 80 and obj["config"]["seed"] == 0


def test_linreg_defaults_are_appendix_c() -> None:
    """Parser defaults: 500 iterations, alpha in [1e-5, 9e-2], beta in [5e-3, 9], theta0 = 0."""
    import mamlconv
    from mamlconv.cli import build_parser
    from mamlconv.numerics.linreg import MODELS, paper_alphas, paper_betas

    assert MODELS == mamlconv.MODELS
    args = build_parser().parse_args(["linreg"])
    assert args.iters == 500 and args.threshold == 1e-2 and args.theta0 == (0.0, 0.0)
    assert args.model == "all" and args.loss == "mse" and args.alphas is None
    assert paper_alphas()[0] == 1e-5 and paper_alphas()[-1] == pytest.approx(9e-2)
    assert paper_betas()[0] == 5e-3 and paper_betas()[-1] == pytest.approx(9.0)


def test_half_mse_doubles_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    mse = run_json(capsys, "--model", "surrogate", *SMALL)
    half = run_json(capsys, "--model", "surrogate", "--loss", "half_mse", *SMALL)
    np.testing.assert_allclose(np.array(mse["hessian_eigs"]), 2 * np.array(half["hessian_eigs"]))
    assert half["alpha_c"] == pytest.approx(2 * mse["alpha_c"])


@pytest.mark.parametrize("fmt", ["json", "csv", "csv-header"])
def test_linreg_reads_data_file(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.linspace(-5, 5, 21)
    y = 2.0 * x + 1.0
    path = tmp_path / ("d.json" if fmt == "json" else "d.csv")
    if fmt == "json":
        path.write_text(json.dumps({"x": x.tolist(), "y": y.tolist()}))
    else:
        head = "x,y\n" if fmt == "csv-header" else ""
        path.write_text(head + "".join(f"{a},{b}\n" for a, b in zip(x, y, strict=True)))
    obj = run_json(capsys, "--model", "exact", "--data", str(path), *SMALL)
    # Hessian of mse: 2 [[mean x^2, mean x], [mean x, 1]] for these x (mean 0)
    np.testing.assert_allclose(sorted(obj["hessian_eigs"]), sorted([2.0, 2 * np.mean(x**2)]))
    assert obj["config"]["n_points"] == 21 and obj["config"]["seed"] is None


BAD = [
    pytest.param(["--alphas", "1:0.1:3"], "--alphas", id="alphas-order"),
    pytest.param(["--betas", "0:1:3"], "--betas", id="betas-zero"),
    pytest.param(["--theta0", "1"], "--theta0", id="theta0"),
    pytest.param(["--iters", "-1"], "--iters", id="iters"),
    pytest.param(["--threshold", "0"], "--threshold", id="threshold"),
    pytest.param(["--model", "fomaml"], "--model", id="model"),
    pytest.param(["--loss", "l1"], "--loss", id="loss"),
    pytest.param(["--n-points", "1"], "--n-points", id="n-points"),
    pytest.param(["--data", "/nonexistent/file.csv"], "nonexistent", id="data-missing"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD)
def test_linreg_bad_input_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["linreg", *argv])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        pytest.param('{"x": [1, 2]}', "'x', 'y'", id="json-missing-y"),
        pytest.param('{"x": [1, 2], "y": [1]}', "same length", id="json-length"),
        pytest.param("1,2\n3,foo\n", "line 2", id="csv-bad-row"),
        pytest.param("{not json", "not valid JSON", id="json-broken"),
    ],
)
def test_linreg_bad_data_file(
    content: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    assert main(["linreg", "--data", str(path), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_linreg_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "maps.png"
    assert main(["linreg", "--model", "surrogate", *SMALL, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "alpha_c (Eq. 15" in out and "[surrogate]" in out
    assert plot.stat().st_size > 10_000
    from PIL import Image

    with Image.open(plot) as im:
        assert im.size[0] > 500


def test_figure_fig2_and_fig3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["figure", "fig2", "--out", str(tmp_path)]) == 0
    assert main(["figure", "fig3", "--out", str(tmp_path), "--iters", "40"]) == 0
    printed = capsys.readouterr().out.split()
    for stem in ("fig2", "fig3"):
        for ext in ("png", "pdf"):
            path = tmp_path / f"{stem}.{ext}"
            assert str(path) in printed and path.stat().st_size > 5_000
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_figure_with_a_module_missing_is_a_bug_not_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken installation is never turned into a quiet "not available": exit 1, one line."""
    import mamlconv.experiments

    monkeypatch.delattr(mamlconv.experiments, "figures", raising=False)
    monkeypatch.setitem(sys.modules, "mamlconv.experiments.figures", None)
    assert main(["figure", "fig1", "--out", str(tmp_path), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and "internal error" in err and "mamlconv.experiments.figures" in err
    )


def test_entry_point_smoke(tmp_path: Path) -> None:
    """The installed console script, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "mamlconv", "linreg", "--model", "first_order", *SMALL, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "first_order" in json.loads(proc.stdout)["models"]
