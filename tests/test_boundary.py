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
