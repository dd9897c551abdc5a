"""Fig. 1 and Fig. 5 (sinusoid training): files written, and the plotted numbers checked
against independent autograd computations at the initial point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mamlconv.experiments import criteria, figures
from mamlconv.experiments.analysis import edges
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems.registry import get_problem
from mamlconv.util.plotting import pyplot


def _init_and_pool(config_dict: dict) -> tuple[object, dict, object]:
    config = SweepConfig.from_dict(config_dict)
    problem = get_problem(config.problem, **config.problem_options)
    params, stream = initial_state(problem, config, dtype=torch.float64, device="cpu")
    assert stream.pool is not None
    return problem, params, stream.pool


def _support_grads(problem, params, pool) -> list[torch.Tensor]:
    """Per-task support gradients with plain autograd, one task at a time (no torch.func)."""
    leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    grads = []
    for t in range(pool.n_tasks):
        loss = problem.loss(leaves, pool.x_support[t], pool.y_support[t])
        g = torch.autograd.grad(loss, list(leaves.values()))
        grads.append(torch.cat([x.flatten() for x in g]))
    return grads


def _check_files(paths, name):
    assert [p.name for p in paths] == [f"{name}.png", f"{name}.pdf", f"{name}.json"]
    with Image.open(paths[0]) as img:
        assert img.size[0] > 800 and img.size[1] > 200
    assert paths[1].read_bytes().startswith(b"%PDF")
    return json.loads(paths[2].read_text())


def test_fig1_numbers_at_init_match_autograd(tmp_path):
    paths = figures.fig1(tmp_path, iters=6, device="cpu", seed=3, tasks=5)
    record = _check_files(paths, "fig1")
    assert record["iters"] == 6 and record["paper_iters"] == 50_000
    assert "6 iterations" in record["what_ran"]
    assert record["config"]["outer"] == "adam" and record["beta"] == 1e-3
    assert record["alphas"] == [0.0, 1e-2]
    norms = np.array(record["grad_norm"], dtype=float)  # (cells, records)
    inner = np.array(record["grad_inner"], dtype=float)
    assert norms.shape == (2, len(record["record_iters"]))
    # Both cells start at the same point on the same tasks.
    np.testing.assert_allclose(norms[0, 0], norms[1, 0], rtol=1e-6)

    problem, params, pool = _init_and_pool(record["config"])
    grads = _support_grads(problem, params, pool)
    expected_norm = np.mean([float(g.norm()) for g in grads])
    pairs = [float(grads[i] @ grads[j]) for i in range(5) for j in range(5) if i != j]
    np.testing.assert_allclose(norms[0, 0], expected_norm, rtol=1e-5)  # float32 training
    np.testing.assert_allclose(inner[0, 0], np.mean(pairs), rtol=1e-4)
    # After a few Adam steps the two runs differ (alpha = 1e-2 vs 0).
    assert norms[0, -1] != norms[1, -1]


def _power_iteration_h2(problem, params, pool, iters: int = 500) -> float:
    """Largest eigenvalue of E_tau H_tau^2 on pooled data: power iteration on autograd HVPs."""
    pooled = pool.pooled()
    leaves = [p.clone().requires_grad_(True) for p in params.values()]
    names = list(params)

    def hvp(t: int, v: torch.Tensor) -> torch.Tensor:
        loss = problem.loss(
            dict(zip(names, leaves, strict=True)), pooled.x_support[t], pooled.y_support[t]
        )
        g = torch.cat([x.flatten() for x in torch.autograd.grad(loss, leaves, create_graph=True)])
        hv = torch.autograd.grad(g @ v, leaves)
        return torch.cat([x.flatten() for x in hv])

    def matvec(v):
        return sum(hvp(t, hvp(t, v)) for t in range(pool.n_tasks)) / pool.n_tasks

    v = torch.randn(
        sum(p.numel() for p in leaves),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    v = v / v.norm()
    lam = 0.0
    for _ in range(iters):
        w = matvec(v)
        new = float(v @ w)
        v = w / w.norm()
        if abs(new - lam) <= 1e-13 * abs(new):
            break
        lam = new
    return new


def test_fig5_writes_files_and_h2_matches_power_iteration(tmp_path):
    paths = figures.fig5(
        tmp_path, iters=2, device="cpu", seed=1, n_checkpoints=2, n_probes=4, tasks=3
    )
    record = _check_files(paths, "fig5")
    assert [c["iteration"] for c in record["checkpoints"]] == [0, 1, 2]
    assert record["alpha"] == record["beta"] == 1e-3
    assert record["config"]["outer"] == "sgd" and record["config"]["pool_size"] == 3
    first = record["checkpoints"][0]
    for op in ("tg", "h2", "tg_plus_h2"):
        vals = first[op]["eigenvalues"]
        assert len(vals) == 2 and vals[0] >= vals[1]
        assert max(first[op]["residuals"]) < 1e-4 * abs(vals[0])
    assert first["h2"]["eigenvalues"][1] > 0  # H^2 is positive semi-definite
    # Weyl: lambda_max(Tg + H^2) <= lambda_max(Tg) + lambda_max(H^2)
    lam = {op: first[op]["eigenvalues"][0] for op in ("tg", "h2", "tg_plus_h2")}
    assert lam["tg_plus_h2"] <= lam["tg"] + lam["h2"] + 1e-8 * abs(lam["h2"])

    problem, params, pool = _init_and_pool(record["config"])
    expected = _power_iteration_h2(problem, params, pool)
    np.testing.assert_allclose(first["h2"]["eigenvalues"][0], expected, rtol=1e-6)
    summary = record["summary"]
    assert summary["iteration"] == 2
    np.testing.assert_allclose(
        summary["ratio_frobenius_tg_over_h2"],
        record["checkpoints"][-1]["frobenius"]["tg"]["estimate"]
        / record["checkpoints"][-1]["frobenius"]["h2"]["estimate"],
    )


@pytest.mark.parametrize(
    ("iters", "n", "expected"),
    [(1, 8, [0, 1]), (10, 3, [0, 1, 3, 10]), (50_000, 8, None)],
    ids=["one", "ten", "paper"],
)
def test_checkpoints(iters, n, expected):
    pts = figures.checkpoints(iters, n=n)
    assert pts[0] == 0 and pts[-1] == iters and pts == sorted(set(pts))
    if expected is not None:
        assert pts == expected
    else:
        assert 8 <= len(pts) <= 9


def test_cli_figure_fig1(tmp_path, capsys):
    from mamlconv.cli import main

    assert main(["figure", "fig1", "--iters", "3", "--device", "cpu", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / f"fig1.{ext}") for ext in ("png", "pdf", "json")]
    assert json.loads((tmp_path / "fig1.json").read_text())["config"]["pool_size"] == 100


# ------------------------------------------------------------------------------ Fig. 4b/4c


def _result(stable: np.ndarray, stable0: np.ndarray):
    """A synthetic SweepResult: 3 alphas x 4 betas, stable cells given, alpha = 0 row too."""
    from mamlconv.experiments.sweep.results import SweepResult

    config = figures.figure1._sinusoid_config(
        alphas=(0.01, 0.1, 1.0), betas=(0.1, 1.0, 10.0, 100.0), iters=5, record_every=5
    )
    div = np.where(stable, -1, 3).astype(np.int64)
    loss = np.where(stable, 0.5, 1e4)
    return SweepResult(
        config=config,
        alphas=np.array(config.alphas),
        betas=np.array(config.betas),
        record_iters=config.record_iters,
        final_loss=loss,
        diverged_at=div,
        trajectories={},
        alpha0={
            "final_loss": np.where(stable0, 0.5, 1e4),
            "diverged_at": np.where(stable0, -1, 2).astype(np.int64),
        },
    )


T, F = True, False
FIG4_CASES = {
    # the edge moves right as alpha grows, alpha = 1 still has a stable cell: holds
    "holds": ([[T, F, F, F], [T, T, F, F], [T, T, T, F]], [T, F, F, F], True, 1.0, 10.0),
    # every alpha near the divergence has an edge two cells below alpha = 0's: fails
    "fails": ([[T, T, T, F], [T, F, F, F], [T, F, F, F]], [T, T, T, F], False, 1.0, 0.1),
    # the best near edge equals alpha = 0's, within TIE_CELLS: undecided
    "tie": ([[T, T, F, F], [T, T, F, F], [T, F, F, F]], [T, T, F, F], None, 1.0, 1.0),
    # one cell above alpha = 0's edge is within the grid's resolution: undecided
    "one cell above": ([[T, F, F, F], [T, T, F, F], [T, F, F, F]], [T, F, F, F], None, 1.0, 1.0),
    # the only row within a decade of the divergence alpha (the last stable one) decides,
    # not the smaller alpha with the larger edge
    "near rows only": (
        [[T, T, T, F], [T, F, F, F], [F, F, F, F]],
        [T, F, F, F],
        None,
        0.1,
        0.1,
    ),
    # alpha = 0 stable over the whole grid, no alpha better: undecided
    "undecided": ([[T, T, T, T], [T, T, T, T], [F, F, F, F]], [T, T, T, T], None, 0.1, 100.0),
}


@pytest.mark.parametrize("case", list(FIG4_CASES), ids=list(FIG4_CASES))
def test_boundary_summary_verdicts(case):
    stable, stable0, verdict, alpha_c, best = FIG4_CASES[case]
    summary = edges.boundary_summary(_result(np.array(stable), np.array(stable0)))
    assert summary["claim_holds"] is verdict
    assert summary["alpha_c_estimate"] == alpha_c
    assert summary["beta_stable_max_near_alpha_c"] == best
    per = summary["per_alpha"]
    assert [row["alpha"] for row in per] == [0.01, 0.1, 1.0]
    assert per[0]["beta_stable_max"] == max(
        b for b, s in zip((0.1, 1.0, 10.0, 100.0), stable[0], strict=True) if s
    )


def test_fig4_fewshot_draws_a_saved_result(tmp_path):
    from mamlconv.experiments.sweep.results import save_result

    stable, stable0, *_ = FIG4_CASES["holds"]
    path = save_result(_result(np.array(stable), np.array(stable0)), tmp_path / "r.npz")
    paths = figures.fig4(path, tmp_path / "fig")
    record = _check_files(paths, "r_fig4")
    assert record["summary"]["claim_holds"] is True
    assert record["summary"]["alpha0_beta_stable_max"] == 0.1


def test_boundary_summary_separates_learning_from_chance_level():
    stable, stable0, *_ = FIG4_CASES["holds"]
    res = _result(np.array(stable), np.array(stable0))
    res.config = res.config.replace(problem_options={"ways": 5})
    chance = np.log(5)
    # alpha row 1: stable at beta 0.1 and 1, but only beta 0.1 learned; row 2 stuck at chance.
    res.final_loss = np.where(res.diverged_at < 0, chance, 1e4)
    res.final_loss[1, 0] = 0.5
    res.final_loss[0, 0] = criteria.LEARNED_FRACTION * chance + 1e-9  # not below the learned level
    summary = edges.boundary_summary(res)
    assert summary["chance_loss"] == pytest.approx(chance)
    learned = [row["beta_learned_max"] for row in summary["per_alpha"]]
    assert learned == [None, 0.1, None]
    assert summary["n_stable_at_chance"] == int(np.array(stable).sum()) - 1


# ------------------------------------------------------------------------ Fig. 4, one style


def _saved(tmp_path, case="holds"):
    from mamlconv.experiments.sweep.results import save_result

    stable, stable0, *_ = FIG4_CASES[case]
    return save_result(_result(np.array(stable), np.array(stable0)), tmp_path / "r.npz")


def _panel(result, **kwargs):
    from mamlconv.experiments.figures import figure4 as fig4

    plt = fig4.pyplot()
    fig, ax = plt.subplots()
    crit = fig4.get_criterion(result, None)
    mesh = fig4.draw_panel(
        ax, result, criterion=crit, norm=fig4.loss_norm((result, crit.stable)), **kwargs
    )
    return plt, fig, ax, mesh


def test_fig4_orientation_blank_cells_and_alpha0_edge():
    """alpha on x, beta on y, log-log; unstable cells masked; the dashed line on the cell
    boundary between the alpha = 0 row's largest stable beta (0.1) and the next (1.0)."""
    stable, stable0, *_ = FIG4_CASES["holds"]
    res = _result(np.array(stable), np.array(stable0))
    plt, fig, ax, mesh = _panel(res)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lo, hi = ax.get_xlim()
    assert lo < 0.01 < 1.0 < hi and ax.get_ylim()[0] < 0.1 < 100.0 < ax.get_ylim()[1]
    values = np.ma.getmaskarray(mesh.get_array()).reshape(4, 3)  # (beta, alpha) after .T
    np.testing.assert_array_equal(values, ~np.array(stable).T)
    (dashed,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    np.testing.assert_allclose(dashed.get_ydata(), [np.sqrt(0.1 * 1.0)] * 2)
    assert "[0.1, 1]" in dashed.get_label()
    plt.close(fig)


def test_fig4_predictions_of_zero_are_a_symbol_not_a_value():
    from mamlconv.experiments.analysis.comparison import Prediction

    stable, stable0, *_ = FIG4_CASES["holds"]
    res = _result(np.array(stable), np.array(stable0))
    pred = Prediction("p", np.array([0.01, 0.1, 1.0]), np.array([0.5, 0.0, np.inf]), "init")
    plt, fig, ax, _ = _panel(res, predictions=[pred])
    curve = next(ln for ln in ax.get_lines() if ln.get_label() == "p")
    ydata = np.asarray(curve.get_ydata(), dtype=float)
    assert ydata[0] == 0.5 and np.isnan(ydata[1:]).all()  # no value drawn for 0 or inf
    (zero,) = [ln for ln in ax.get_lines() if ln.get_marker() == "X"]
    assert list(zero.get_xdata()) == [0.1] and "nothing converges" in zero.get_label()
    assert zero.get_transform() != ax.transData  # placed on the axis, not at a beta value
    (top,) = [ln for ln in ax.get_lines() if "every β" in ln.get_label()]
    assert list(top.get_xdata()) == [1.0]
    plt.close(fig)


def test_fig4_writes_files_with_strict_json_and_the_learned_criterion(tmp_path):
    from mamlconv.experiments.figures import figure4 as fig4
    from mamlconv.experiments.sweep.results import save_result

    stable, stable0, *_ = FIG4_CASES["holds"]
    res = _result(np.array(stable), np.array(stable0))
    res.config = res.config.replace(problem_options={"ways": 5})
    res.final_loss[2, 2] = 1.5  # stable but at chance level (0.9 ln 5 = 1.45)
    path = save_result(res, tmp_path / "c.npz")
    assert set(criteria.criteria(res)) == {"diverged", "learned"}
    paths = fig4.fig4(path, tmp_path / "f", criterion="learned")
    text = paths[2].read_text()
    record = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert record["criterion"]["name"] == "learned"
    assert [r["beta_stable_max"] for r in record["summary"]["per_alpha"]] == [0.1, 1.0, 1.0]
    with pytest.raises(ValueError, match="choose one of"):
        fig4.get_criterion(res, "nope")


def test_compare_figure_titles_say_what_is_drawn():
    from mamlconv.experiments.analysis.comparison import Prediction
    from mamlconv.experiments.figures.comparison import comparison_figure

    stable, stable0, *_ = FIG4_CASES["holds"]
    res = _result(np.array(stable), np.array(stable0))
    alphas = np.array(res.alphas)
    plt = pyplot()
    fig = comparison_figure([], res)
    texts = [fig._suptitle.get_text()] + [ax.get_title() for ax in fig.axes]
    assert not any("clipped" in t or "predictions" in t for t in texts), texts
    plt.close(fig)
    curves = [
        Prediction(f"{n} ({p})", alphas, np.array([0.1, 1.0, 0.0]), p, n)
        for p in ("init", "trained")
        for n in ("formula", "surrogate", "meta")
    ]
    fig = comparison_figure(curves, res)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2  # one panel per point: at most 3 predictions on each
    for ax in panels:
        labels = [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        assert sum(lab.endswith(("(init)", "(trained)")) for lab in labels) == 3
    plt.close(fig)


def test_fig5_legend_shows_lines_not_error_bar_glyphs():
    from matplotlib.container import ErrorbarContainer
    from matplotlib.lines import Line2D

    records = [
        {
            "frobenius": {
                op: {"estimate": v, "stderr": 0.01 * v} for op, v in (("tg", 1.0), ("h2", 50.0))
            }
        }
        for _ in range(3)
    ]
    plt = pyplot()
    fig, ax = plt.subplots()
    names = {"tg": "Tg", "h2": "H²"}
    figures.frobenius_panel(
        ax,
        np.array([1, 10, 100]),
        records,
        n_probes=7,
        styles={"tg": "-o", "h2": "-s"},
        names=names,
    )
    handles, labels = ax.get_legend_handles_labels()
    assert labels == ["Tg", "H²"]
    assert all(isinstance(h, Line2D) for h in handles)
    assert not any(isinstance(h, ErrorbarContainer) for h in handles)
    assert "1%" in ax.get_title() and "7 probes" in ax.get_title()
    plt.close(fig)


# ------------------------------------------------------------------- mamlconv figure (CLI)


@pytest.mark.parametrize("name", ["4", "fig4", "Fig. 4", "FIG4", "fig.4", "figure 4"])
def test_cli_figure_names_and_fig4(tmp_path, capsys, name):
    from mamlconv.cli import main

    path = _saved(tmp_path)
    assert main(["figure", name, str(path), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "o" / f"r_fig4.{ext}") for ext in ("png", "pdf", "json")]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["figure", "6"], "'6'"),
        (["figure", "fig"], "'fig'"),
        (["figure", "fig4"], "needs a sweep result"),
        (["figure", "fig4", "missing.npz"], "missing.npz"),
        (["figure", "fig2", "RESULT.npz"], "only for fig4"),
        (["figure", "fig4", "{r}", "--criterion", "learned"], "choose one of ['diverged']"),
        (["figure", "fig4", "{r}", "--overlay", "{r}"], "not a prediction file"),
        (["figure", "fig1", "--device", "cuda:7"], "cuda:7"),
    ],
)
def test_cli_figure_bad_input_is_one_line(tmp_path, capsys, argv, needle):
    from mamlconv.cli import main

    path = _saved(tmp_path)
    json_path = tmp_path / "r.json"  # the sweep's sidecar: valid JSON, no predictions
    argv = [a.format(r=path) for a in argv]
    if "--overlay" in argv:
        argv[-1] = str(json_path)
    try:
        code = main([*argv, "--out", str(tmp_path / "o")])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err


def test_fig5_redraws_from_its_record_without_training(tmp_path):
    from mamlconv.util.files import dumps

    def checkpoint(t: int) -> dict:
        ops = {op: {"eigenvalues": [10.0 * (t + 1), 5.0]} for op in ("tg", "h2", "tg_plus_h2")}
        frob = {
            op: {"estimate": 3.0 * (t + 1), "stderr": 0.1, "method": "hutchinson", "n_probes": 9}
            for op in ("tg", "h2")
        }
        return {"iteration": t, "maml_loss": 1.0, **ops, "frobenius": frob}

    record = {"iters": 4, "config": {"seed": 2}, "checkpoints": [checkpoint(t) for t in (0, 2, 4)]}
    path = tmp_path / "fig5.json"
    path.write_text(dumps(record))
    before = path.read_text()
    pngs = figures.redraw_fig5(path)
    assert [p.name for p in pngs] == ["fig5.png", "fig5.pdf"]
    with Image.open(pngs[0]) as img:
        assert img.size[0] > 800
    assert path.read_text() == before


def test_fig4_from_a_result_file_does_not_import_torch(tmp_path):
    """`mamlconv figure 4 RESULT.npz` reads a file and draws a heat map: no torch (whose import
    alone takes seconds) anywhere in the chain, in a fresh process."""
    result = Path(__file__).resolve().parents[1] / "experiments/results/sinusoid_exact_paper.npz"
    code = (
        "import sys\n"
        "from mamlconv.cli import main\n"
        f"rc = main(['figure', '4', {str(result)!r}, '--out', {str(tmp_path)!r}])\n"
        "print('RC', rc, 'TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "RC 0 TORCH False", out.stdout + out.stderr
    assert (tmp_path / "sinusoid_exact_paper_fig4.png").stat().st_size > 10_000


def test_reading_maps_stand_alone():
    """One colour scale with its colour bar, labelled axes on every panel, and every title and
    tick label inside the figure (nothing cut off at the size the report shows it)."""
    folder = Path(__file__).resolve().parents[1] / "experiments/results/readings"
    if not list(folder.glob("sinusoid_*_seed*.json")):
        pytest.skip("no committed reading runs")
    fig = figures.reading_maps_figure(folder)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    panels = [ax for ax in fig.axes if ax.get_title()]
    bars = [ax for ax in fig.axes if "final training loss" in ax.get_ylabel()]
    assert len(panels) == 8 and len(bars) == 1
    norms = {(im.norm.vmin, im.norm.vmax) for ax in panels for im in ax.get_images()}
    assert len(norms) == 1  # one scale for every panel
    for ax in panels:
        assert ax.get_xlabel().startswith("α") and ax.get_ylabel().startswith("β")
        texts = [ax.title, *ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label]
        for text in texts:
            ext = text.get_window_extent(renderer)
            assert box.x0 - 1 <= ext.x0 and ext.x1 <= box.x1 + 1, text.get_text()
            assert box.y0 - 1 <= ext.y0 and ext.y1 <= box.y1 + 1, text.get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_fig1_redraws_from_its_record_with_labelled_axes(tmp_path):
    """The committed fig1.json redraws without training; every panel has both axis labels."""
    import shutil

    from mamlconv.experiments.figures import figure1
    from mamlconv.util.files import read_json

    committed = Path(__file__).resolve().parents[1] / "experiments/results/fig1.json"
    shutil.copy(committed, tmp_path / "fig1.json")
    paths = figure1.redraw_fig1(tmp_path / "fig1.json")
    assert [p.name for p in paths] == ["fig1.png", "fig1.pdf"]
    assert all(p.stat().st_size > 10_000 for p in paths)
    rec = read_json(committed)
    fig = figure1.fig1_figure(rec["record_iters"], rec["grad_norm"], rec["grad_inner"],
                              rec["loss"], iters=rec["iters"], seed=0)  # fmt: skip
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    import matplotlib.pyplot as plt

    plt.close(fig)
