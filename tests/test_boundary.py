"""numerics.boundary: grid edges, prediction errors in decades, and the bisection."""

from __future__ import annotations

import numpy as np
import pytest

from mamlconv.numerics.boundary import bisect_boundary, classify, extract_boundary

BETAS = np.array([0.1, 0.2, 0.4, 0.8, 1.6])

# (id, stable row, expected beta_lo, expected beta_hi, inside_grid, monotone)
EDGE_CASES = [
    ("edge-inside", [1, 1, 1, 0, 0], 0.4, 0.8, True, True),
    ("none-stable", [0, 0, 0, 0, 0], np.nan, 0.1, False, True),
    ("all-stable", [1, 1, 1, 1, 1], 1.6, np.inf, False, True),
    ("slow-at-small-beta", [0, 1, 1, 0, 0], 0.4, 0.8, True, False),
    ("isolated-stable-cell", [1, 0, 0, 1, 0], 0.8, 1.6, True, False),
]


@pytest.mark.parametrize(
    "row, lo, hi, inside, monotone", [c[1:] for c in EDGE_CASES], ids=[c[0] for c in EDGE_CASES]
)
def test_extract_boundary_cases(row, lo, hi, inside, monotone) -> None:
    b = extract_boundary(np.array([0.01]), BETAS, np.array([row], dtype=bool))
    np.testing.assert_equal(b.beta_lo[0], lo)
    np.testing.assert_equal(b.beta_hi[0], hi)
    assert bool(b.inside_grid[0]) is inside
    assert bool(b.monotone[0]) is monotone


def test_log10_error_is_zero_inside_and_distance_outside() -> None:
    b = extract_boundary(np.array([0.0, 0.0, 0.0]), BETAS, np.array([[1, 1, 1, 0, 0]] * 3, bool))
    err = b.log10_error(np.array([0.5, 4.0, 0.04]))
    np.testing.assert_allclose(err, [0.0, np.log10(4.0 / 0.8), np.log10(0.4 / 0.04)], rtol=1e-12)


def test_extract_boundary_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="expected"):
        extract_boundary(np.array([0.1, 0.2]), BETAS, np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="increasing"):
        extract_boundary(np.array([0.1]), BETAS[::-1], np.ones((1, 5), bool))


def test_classify_treats_nonfinite_as_not_converged() -> None:
    got = classify(np.array([1e-3, 2e-2, np.nan, np.inf, -np.inf]), threshold=1e-2)
    np.testing.assert_array_equal(got, [True, False, False, False, False])


def test_bisection_finds_a_known_edge_and_flags_out_of_range_columns() -> None:
    # Independent reference: stability iff beta < 1 / alpha (edges 10, 2, 0.5 and 0.002).
    alphas = np.array([0.1, 0.5, 2.0, 500.0, 1e-3])
    calls = []

    def is_stable(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        calls.append(a.size)
        return b < 1.0 / a

    res = bisect_boundary(is_stable, alphas, beta_min=0.01, beta_max=100.0, rtol=1e-3)
    edge = 1.0 / alphas
    inside = res.inside_range
    np.testing.assert_array_equal(inside, [True, True, True, False, False])
    assert np.all(res.beta_lo[inside] < edge[inside])
    assert np.all(res.beta_hi[inside] >= edge[inside])
    assert np.all(res.beta_hi[inside] / res.beta_lo[inside] <= 1 + 1e-3)
    assert res.n_runs == sum(calls) < 5 * 40  # a 40-point grid per column would cost 200 runs

    b = res.as_boundary()
    # alpha = 500: the edge (0.002) lies below the range -> (NaN, beta_min]
    assert np.isnan(b.beta_lo[3]) and b.beta_hi[3] == 0.01
    # alpha = 1e-3: the edge (1000) lies above the range -> [beta_max, inf)
    assert b.beta_lo[4] == 100.0 and np.isinf(b.beta_hi[4])


# ------------------------------------------------------- near the divergence alpha vs alpha = 0
def test_near_divergence_rows_one_decade_below_the_divergence_alpha() -> None:
    from mamlconv.numerics.boundary import near_divergence_rows

    alphas = np.array([0.0, 1e-3, 1e-2, 0.03, 0.1, 0.2, 0.35, 0.6, 0.9])
    has = np.array([True, True, True, True, True, True, True, False, False])
    rule = near_divergence_rows(alphas, has)
    # alpha_div = 0.6: the stable rows with alpha >= 0.06
    assert rule == {"alpha_div": 0.6, "last_stable": 6, "near": [4, 5, 6]}
    # the decade is inclusive: alpha_div = 0.1 takes alpha = 0.01 in
    has = np.array([True, True, True, True, False, False, False, False, False])
    assert near_divergence_rows(alphas, has)["near"] == [2, 3]
    # the last row stable: the decade below the last stable alpha, no divergence alpha
    rule = near_divergence_rows(alphas, np.ones(9, dtype=bool))
    assert rule["alpha_div"] is None and rule["near"] == [4, 5, 6, 7, 8]
    # a grid coarser than a decade: the last stable row is the nearest
    rule = near_divergence_rows(np.array([1e-3, 1e-1, 1.0]), np.array([True, False, False]))
    assert rule == {"alpha_div": 0.1, "last_stable": 0, "near": [0]}
    # alpha = 0 alone stable: nothing is near
    assert near_divergence_rows(alphas, np.eye(9, dtype=bool)[0])["near"] == []
    # a 2-D mask reads per row
    grid = np.zeros((3, 4), dtype=bool)
    grid[0, :2] = grid[1, 0] = True
    assert near_divergence_rows(np.array([0.01, 0.1, 1.0]), grid)["near"] == [1]


@pytest.mark.parametrize(
    ("margin", "outcome"),
    [(-3, "below"), (-2, "below"), (-1, "tie"), (0, "tie"), (1, "tie"), (2, "above")],
)
def test_edge_outcome_ties_within_one_cell(margin: int, outcome: str) -> None:
    from mamlconv.numerics.boundary import TIE_CELLS, edge_outcome

    assert TIE_CELLS == 1
    assert edge_outcome(margin) == outcome


def test_near_edge_vs_reference_counts_cells_and_names_undecided() -> None:
    from mamlconv.numerics.boundary import near_edge_vs_reference

    alphas, betas = np.array([0.01, 0.1, 1.0]), np.array([0.1, 1.0, 10.0, 100.0])
    stable = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
    out = near_edge_vs_reference(alphas, betas, stable, np.array([1, 0, 0, 0], dtype=bool))
    assert (out["alpha_div"], out["alpha_near"], out["margin_cells"]) == (1.0, 0.1, 2)
    assert out["outcome"] == "above"
    # the reference stable up to the largest beta: undecided, the near edge still reported
    out = near_edge_vs_reference(alphas, betas, stable, np.ones(4, dtype=bool))
    assert out["outcome"] == "undecided" and out["edge_near"] == 10.0
    # the counted population empty near the divergence alpha (alpha_div from `divergence`)
    counted = stable.copy()
    counted[1] = False
    out = near_edge_vs_reference(
        alphas, betas, counted, np.array([1, 0, 0, 0], dtype=bool), divergence=stable
    )
    assert out["outcome"] == "undecided" and "near the divergence" in out["why"]


def test_boundary_from_records_reads_back_what_as_records_wrote() -> None:
    """Through the package's strict JSON (inf as null), the boundary is the same."""
    import json

    from mamlconv.numerics.boundary import Boundary, extract_boundary
    from mamlconv.util.files import dumps

    alphas, betas = np.array([0.0, 0.1, 0.5]), np.array([0.1, 1.0, 10.0])
    stable = np.array([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)
    b = extract_boundary(alphas, betas, stable)
    back = Boundary.from_records(json.loads(dumps(b.as_records())))
    for name in ("alphas", "beta_lo", "beta_hi", "inside_grid", "monotone"):
        np.testing.assert_array_equal(getattr(back, name), getattr(b, name))
