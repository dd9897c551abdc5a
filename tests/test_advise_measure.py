"""Measured advice (``mamlconv.experiments.analysis.measured_advice``, ``advise --measure``).

On the quadratic problem of ``test_advisor`` (H = diag(lambda) for every task, T = 0) MAML's
outer step is linear, so its stability edges have closed forms independent of the engine:
gradient descent (alpha = 0) diverges exactly for beta > 2/lambda_max, exact MAML for beta >
2 / max_i lambda_i (1 - alpha lambda_i)^2 (docs/MATH.md Sec. 4). A finite horizon with a
divergence level only moves a measured edge up, by a growth factor that must reach the level
within the horizon, so every measured bracket must end above the closed form and start below
it times a small factor.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_advisor import EIGS, QuadraticProblem

from mamlconv.cli import main
from mamlconv.experiments.analysis.measured_advice import (
    GRID_SHAPE,
    Edge,
    Trial,
    _bracket,
    closest_prediction,
    measure,
)
from mamlconv.experiments.config import SweepConfig

ITERS = 60
LAM = np.asarray(EIGS)
SLACK = 1.08
"""A cell at beta = b_c (1 + d) grows its top mode by about (1 + 2d)^(2 ITERS); reaching the
level 1e3 from a loss of order 1 within 60 iterations needs d below about 0.03 at alpha = 0
(and less where the meta curvature is larger); 8 % is the allowance."""


def _config(**changes) -> SweepConfig:
    base = SweepConfig(
        problem="quadratic",
        variant="exact",
        betas=(0.01, 1.0),
        iters=ITERS,
        tasks_per_batch=3,
        pool_size=3,
        dtype="float64",
        device="cpu",
        divergence_level=1e3,
    )
    return base.replace(**changes)


def _exact_edge(alpha: float) -> float:
    return 2.0 / float(np.max(LAM * (1 - alpha * LAM) ** 2))


@pytest.fixture(scope="module")
def quadratic_advice():
    return measure(QuadraticProblem(), _config(), safety=0.5, tol=1e-8)


def test_measured_edges_match_closed_forms(quadratic_advice) -> None:
    adv = quadratic_advice
    assert adv.alpha_c_paper == pytest.approx(1 / LAM.max(), rel=1e-8)
    assert [e.alpha for e in adv.edges][0] == 0.0  # the alpha = 0 row first
    for edge in adv.edges:
        want = _exact_edge(edge.alpha)
        assert edge.lo is not None and math.isfinite(edge.hi), edge
        assert edge.hi >= want * (1 - 1e-12), (edge, want)  # below the edge nothing diverges
        assert edge.lo <= want * SLACK, (edge, want)
        assert edge.width_decades <= 0.15 + 1e-12
        assert not edge.non_monotone
    # alpha scan: alpha* is the largest ladder alpha stable at beta_scan; alpha_div is where
    # the closed-form edge falls to beta_scan (exact MAML: lambda_max (1 - alpha lambda)^2).
    scan = adv.beta_scan
    stable_ladder = [a for a in adv.alpha_ladder if _exact_edge(a) > scan * SLACK]
    assert adv.alpha_star == pytest.approx(max(stable_ladder))
    lam = LAM.max()
    alpha_true = (1 + math.sqrt(2 / (scan * lam))) / lam
    lo, hi = adv.alpha_div
    assert hi >= alpha_true * (1 - 1e-9) and lo <= alpha_true * SLACK
    assert math.log10(hi / lo) <= 0.1 + 1e-12
    # beta* is the safety factor below the largest beta measured stable at alpha*
    assert adv.beta_star == pytest.approx(0.5 * adv.edges[1].lo)
    assert adv.check is not None and adv.check.stable


def test_cost_is_counted_cell_by_cell(quadratic_advice) -> None:
    adv = quadratic_advice
    assert adv.cell_iterations == sum(t.cost for t in adv.trials)
    for t in adv.trials:
        assert t.cost == (ITERS if t.stable else t.diverged_at + 1)
    grid = GRID_SHAPE[0] * GRID_SHAPE[1] * ITERS
    assert adv.grid_fraction == pytest.approx(adv.cell_iterations / grid)
    assert adv.cell_iterations <= adv.budget + ITERS  # the search within budget, plus the check
    record = json.loads(json.dumps(adv.as_dict()))
    assert record["measured_edges"][0]["alpha"] == 0.0
    assert set(record["cost"]) >= {"cell_iterations", "seconds", "grid_fraction"}


def test_closest_prediction_is_exact_on_a_quadratic(quadratic_advice) -> None:
    """The meta prediction is the closed form here, so it is the closest, within the slack."""
    for edge, cand in zip(quadratic_advice.edges, quadratic_advice.predictions, strict=True):
        close = closest_prediction(edge, cand)
        assert abs(close["errors"]["meta"]) <= abs(close["log10_error"]) + 1e-9  # ties at 0
        assert abs(close["errors"]["meta"]) <= math.log10(SLACK) + 0.075


def test_budget_stops_the_search() -> None:
    adv = measure(QuadraticProblem(), _config(), budget=4 * ITERS, tol=1e-8, check=False)
    assert adv.cell_iterations <= 4 * ITERS
    assert any("budget reached" in n for n in adv.notes)


def test_non_monotone_column_keeps_the_bracket_below_the_first_divergence() -> None:
    trials = [
        Trial(0.0, b, s, -1 if s else 3, 1.0, 10)
        for b, s in ((0.1, True), (0.2, True), (0.4, False), (0.8, True), (1.6, False))
    ]
    lo, hi, above = _bracket(trials)
    assert (lo, hi, above) == (0.2, 0.4, (0.8,))
    edge = Edge(0.0, lo, hi, bool(above), above, 0.1, 1)
    assert edge.non_monotone and edge.width_decades == pytest.approx(math.log10(2))


def test_bad_arguments_are_one_line_errors(capsys) -> None:
    with pytest.raises(ValueError, match="budget"):
        measure(QuadraticProblem(), _config(), budget=ITERS)
    assert main(["advise", "sinusoid", "--budget", "100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--measure" in err[0]


def test_cli_measure_json(capsys) -> None:
    code = main(
        ["advise", "sinusoid", "--measure", "--iters", "8", "--tasks", "3", "--json", "--quiet"]
    )
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    edges = record["measured_edges"]
    assert edges[0]["alpha"] == 0.0 and all("lo" in e and "hi" in e for e in edges)
    assert record["cost"]["grid_fraction"] == pytest.approx(
        record["cost"]["cell_iterations"] / (400 * 8)
    )
    assert record["config"]["iters"] == 8 and record["recommendation"]["alpha"] >= 0


def test_api_measure_on_a_problem_object() -> None:
    import mamlconv

    adv = mamlconv.advise(QuadraticProblem(), measure=True, iters=20, n_tasks=3, budget=400)
    assert adv.iters == 20 and adv.edges[0].alpha == 0.0
    assert adv.edges[0].hi >= 2 / LAM.max() * (1 - 1e-6)  # float32: rounding only


def test_figure_is_drawn(quadratic_advice, tmp_path) -> None:
    from mamlconv.experiments.figures.advice import draw_measured_advice

    paths = draw_measured_advice(quadratic_advice.as_dict(), tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf", ".json"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_adam_analogue_is_the_closed_form_on_a_quadratic() -> None:
    """At alpha = 0 on the quadratic, M = diag(lambda) and Adam's first-step preconditioner is
    |g| + eps with g = -lambda * mean(y_query): lambda_max(P^-1 M) has a closed form."""
    import torch

    from mamlconv.experiments.analysis.adam_edge import adam_sharpness
    from mamlconv.experiments.engine.state import initial_state

    config = _config(outer="adam")
    problem = QuadraticProblem()
    params, stream = initial_state(problem, config, dtype=torch.float64, device="cpu")
    rec = adam_sharpness(problem, params, stream.pool, alpha=0.0, steps=1, tol=1e-10, seed=0)
    g = -LAM * stream.pool.y_query.mean(dim=(0, 1)).numpy()
    want = float(np.max(LAM / (np.abs(g) + 1e-8)))
    assert rec["preconditioned_sharpness"] == pytest.approx(want, rel=1e-6)
    assert rec["beta_c"] == pytest.approx(38.0 / want, rel=1e-6)
    adv = measure(problem, config, tol=1e-8, budget=40 * ITERS)
    assert adv.adam is not None and adv.adam["per_alpha"][0]["alpha"] == 0.0
    assert "log10_error" in adv.adam["per_alpha"][0]
