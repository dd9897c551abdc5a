"""Empirical stability boundaries from alpha x beta grids, and a bisection that finds them
with far fewer runs (docs/MATH.md, "Empirical thresholds").

Conventions: grids are alpha-major arrays of shape (n_alpha, n_beta); ``betas`` ascend. A cell
is *stable* when the caller's criterion says so (linear regression: finite and below the loss
threshold, as Fig. 3; network sweeps: not diverged, as Fig. 4). The measured boundary of an
alpha column is the bracket [largest stable beta, the next beta of the grid]; the bracket's
width in decades is the error bar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

PAPER_LOSS_THRESHOLD = 1e-2
"""Fig. 3 of the paper colours cells by final training loss below / above 1e-2."""


def classify(final_loss: np.ndarray, *, threshold: float = PAPER_LOSS_THRESHOLD) -> np.ndarray:
    """Converged cells: finite final loss strictly below ``threshold``."""
    loss = np.asarray(final_loss, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(loss) & (loss < threshold)


@dataclass(frozen=True)
class Boundary:
    """Per-alpha upper edge of the stable region; every field has shape (n_alpha,).

    ``beta_lo`` is the largest stable beta of the column (NaN when none is stable),
    ``beta_hi`` the next grid beta (inf when the largest grid beta is stable).
    ``inside_grid`` is False when the edge is not bracketed by two grid points.
    ``monotone`` is False when some beta below ``beta_lo`` is not stable (a column that is
    slow at small beta, or a chaotic edge): the bracket is still the upper edge.
    """

    alphas: np.ndarray
    beta_lo: np.ndarray
    beta_hi: np.ndarray
    inside_grid: np.ndarray
    monotone: np.ndarray

    @property
    def beta_mid(self) -> np.ndarray:
        """Geometric centre of the bracket (NaN when not bracketed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mid = np.sqrt(self.beta_lo * self.beta_hi)
        return np.where(self.inside_grid, mid, np.nan)

    @property
    def width_decades(self) -> np.ndarray:
        """log10(beta_hi / beta_lo): the error bar of the measured edge."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.inside_grid, np.log10(self.beta_hi / self.beta_lo), np.nan)

    def log10_error(self, beta_theory: np.ndarray) -> np.ndarray:
        """Decades between a prediction and the bracket: 0 inside it, else distance to it."""
        theory = np.asarray(beta_theory, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            below = np.log10(self.beta_lo / theory)  # > 0 when the prediction is too low
            above = np.log10(theory / self.beta_hi)  # > 0 when the prediction is too high
        err = np.maximum(np.maximum(below, above), 0.0)
        both_inf = np.isinf(theory) & np.isinf(self.beta_hi)
        return np.where(both_inf, 0.0, np.where(np.isnan(self.beta_lo), np.nan, err))

    @classmethod
    def from_records(cls, rows: list[dict]) -> Boundary:
        """The boundary that :meth:`as_records` wrote, read back from its rows (a ``beta_lo``
        of None is NaN, a ``beta_hi`` of None is inf: strict JSON has no inf; a row without
        ``monotone`` counts as monotone)."""

        def column(name: str, missing: float) -> np.ndarray:
            return np.array([missing if r[name] is None else r[name] for r in rows], dtype=float)

        return cls(
            np.array([r["alpha"] for r in rows], dtype=float),
            column("beta_lo", np.nan),
            column("beta_hi", np.inf),
            np.array([bool(r["inside_grid"]) for r in rows]),
            np.array([bool(r.get("monotone", True)) for r in rows]),
        )

    def as_records(self, beta_theory: np.ndarray | None = None) -> list[dict]:
        """One JSON-ready dict per alpha (inf as float('inf'), missing as None)."""
        rows = []
        errs = None if beta_theory is None else self.log10_error(beta_theory)
        for i, a in enumerate(self.alphas):
            row = {
                "alpha": float(a),
                "beta_lo": _json_float(self.beta_lo[i]),
                "beta_hi": _json_float(self.beta_hi[i]),
                "inside_grid": bool(self.inside_grid[i]),
                "monotone": bool(self.monotone[i]),
            }
            if beta_theory is not None:
                row["beta_c_theory"] = _json_float(np.asarray(beta_theory, dtype=float)[i])
                row["log10_error"] = _json_float(errs[i])
            rows.append(row)
        return rows


def _json_float(x: float) -> float | None:
    x = float(x)
    return None if np.isnan(x) else x


def largest_stable(stable: np.ndarray) -> np.ndarray:
    """Index of the largest stable beta per row of an (n_alpha, n_beta) mask (-1 when none)."""
    stable = np.asarray(stable, dtype=bool)
    top = stable.shape[1] - 1 - np.argmax(stable[:, ::-1], axis=1)
    return np.where(stable.any(axis=1), top, -1)


def extract_boundary(alphas: np.ndarray, betas: np.ndarray, stable: np.ndarray) -> Boundary:
    """Upper edge of the stable cells per alpha column of an (n_alpha, n_beta) grid."""
    alphas = np.asarray(alphas, dtype=float)
    betas = np.asarray(betas, dtype=float)
    stable = np.asarray(stable, dtype=bool)
    if stable.shape != (alphas.size, betas.size):
        raise ValueError(
            f"stable has shape {stable.shape}, expected (n_alpha, n_beta) = "
            f"({alphas.size}, {betas.size})"
        )
    if np.any(np.diff(betas) <= 0):
        raise ValueError("betas must be strictly increasing")
    n_beta = betas.size
    any_stable = stable.any(axis=1)
    top = np.maximum(largest_stable(stable), 0)  # 0 where none, masked below
    beta_lo = np.where(any_stable, betas[top], np.nan)
    has_next = any_stable & (top < n_beta - 1)
    beta_hi = np.where(has_next, betas[np.minimum(top + 1, n_beta - 1)], np.inf)
    beta_hi = np.where(any_stable, beta_hi, betas[0])
    below = np.arange(n_beta)[None, :] <= top[:, None]
    monotone = np.where(any_stable, np.all(stable | ~below, axis=1), True)
    return Boundary(alphas, beta_lo, beta_hi, has_next, monotone)


@dataclass(frozen=True)
class BisectionResult:
    """Per-alpha bracket [beta_lo, beta_hi] of the stability edge found by bisection."""

    alphas: np.ndarray
    beta_lo: np.ndarray
    beta_hi: np.ndarray
    inside_range: np.ndarray
    stable_at_max: np.ndarray
    n_rounds: int
    n_runs: int

    def as_boundary(self) -> Boundary:
        """The brackets in the grid convention of :class:`Boundary`: an edge above the
        searched range is [beta_max, inf); one below it is (NaN, beta_min]."""
        above = ~self.inside_range & self.stable_at_max
        below = ~self.inside_range & ~self.stable_at_max
        return Boundary(
            self.alphas,
            np.where(below, np.nan, np.where(above, self.beta_hi, self.beta_lo)),
            np.where(above, np.inf, np.where(below, self.beta_lo, self.beta_hi)),
            self.inside_range.copy(),
            np.ones_like(self.inside_range),
        )


def bisect_boundary(
    is_stable: Callable[[np.ndarray, np.ndarray], np.ndarray],
    alphas: np.ndarray,
    *,
    beta_min: float | np.ndarray,
    beta_max: float | np.ndarray,
    rtol: float = 1e-2,
    max_rounds: int = 60,
) -> BisectionResult:
    """Bisect log(beta) for every alpha at once.

    ``is_stable(alphas, betas)`` runs one training per (alphas[i], betas[i]) pair (vectorised
    by the caller) and returns a boolean array. The search assumes stability is monotone in
    beta near the edge. It first checks the ends: a column stable at ``beta_max`` or unstable
    at ``beta_min`` is flagged ``inside_range=False`` and left alone. Stops when every bracket
    satisfies beta_hi / beta_lo <= 1 + rtol. ``beta_min`` and ``beta_max`` are one range for
    every alpha, or one per alpha (e.g. each column's grid bracket).
    """
    alphas = np.asarray(alphas, dtype=float)
    n = alphas.size
    lo = np.broadcast_to(np.asarray(beta_min, dtype=float), (n,)).copy()
    hi = np.broadcast_to(np.asarray(beta_max, dtype=float), (n,)).copy()
    if not (np.all(lo > 0) and np.all(lo < hi)):
        raise ValueError(f"need 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
    if rtol <= 0:
        raise ValueError(f"rtol must be > 0, got {rtol}")
    ends = is_stable(np.concatenate([alphas, alphas]), np.concatenate([lo, hi]))
    ends = np.asarray(ends, dtype=bool)
    inside = ends[:n] & ~ends[n:]
    n_runs = 2 * n
    rounds = 0
    while rounds < max_rounds:
        active = inside & (hi / lo > 1 + rtol)
        if not active.any():
            break
        mid = np.sqrt(lo[active] * hi[active])
        ok = np.asarray(is_stable(alphas[active], mid), dtype=bool)
        n_runs += int(active.sum())
        idx = np.flatnonzero(active)
        lo[idx[ok]] = mid[ok]
        hi[idx[~ok]] = mid[~ok]
        rounds += 1
    return BisectionResult(alphas, lo, hi, inside, ends[n:].copy(), rounds, n_runs)


# ------------------------------------------------------- near the divergence alpha vs alpha = 0
TIE_CELLS = 1
"""Two grid edges differ when their largest stable betas are more than this many grid cells
apart: a float32 edge is fuzzy by about one grid cell (docs/engine.md), so a margin of at most
one cell is within the grid's resolution."""


def near_divergence_rows(alphas: np.ndarray, stable: np.ndarray) -> dict[str, object]:
    """The rows that read "alpha close to the value above which the losses diverge" (Fig. 4).

    ``alphas`` ascend; ``stable`` is (n_alpha, n_beta) or per row (n_alpha,). Rows with
    alpha <= 0 are the reference, never near. The divergence alpha ``alpha_div`` is the first grid
    alpha above ``last_stable``, the last row with alpha > 0 and a stable cell (None when that is
    the last grid row). ``near``: the rows with alpha > 0, a stable cell and
    alpha >= alpha_div / 10 (one decade below; the last stable alpha / 10 when alpha_div is
    None), and always ``last_stable`` itself (the nearest row when the grid is coarser than a
    decade there). No stable row: last_stable None, near [].
    """
    alphas = np.asarray(alphas, dtype=float)
    stable = np.asarray(stable, dtype=bool)
    has = (stable.any(axis=1) if stable.ndim == 2 else stable) & (alphas > 0)
    rows = np.flatnonzero(has)
    if rows.size == 0:
        return {"alpha_div": None, "last_stable": None, "near": []}
    last = int(rows.max())
    alpha_div = float(alphas[last + 1]) if last + 1 < alphas.size else None
    top = alpha_div if alpha_div is not None else float(alphas[last])
    near = sorted({int(i) for i in rows if alphas[i] >= top / 10} | {last})
    return {"alpha_div": alpha_div, "last_stable": last, "near": near}


def edge_outcome(margin_cells: int, tie_cells: int = TIE_CELLS) -> str:
    """'above' when an edge is more than ``tie_cells`` grid cells above the reference edge,
    'below' when more than that below, else 'tie' (within the grid's resolution)."""
    if margin_cells > tie_cells:
        return "above"
    if margin_cells < -tie_cells:
        return "below"
    return "tie"


def near_edge_vs_reference(
    alphas: np.ndarray,
    betas: np.ndarray,
    stable: np.ndarray,
    stable0: np.ndarray,
    *,
    divergence: np.ndarray | None = None,
) -> dict[str, object]:
    """Fig. 4's claim on one grid: is the edge near the divergence alpha above the reference's?

    ``stable`` (n_alpha, n_beta) says which cells count (not diverged, or also learned);
    ``stable0`` (n_beta,) the same for the reference row (alpha = 0). The divergence alpha and
    the near rows come from ``divergence`` (the not-diverged mask; default ``stable``), see
    :func:`near_divergence_rows`; of those, the rows with a cell in ``stable`` are compared.
    The edge of a row is its largest stable beta; the best near row's edge against the
    reference's, in grid cells, is :func:`edge_outcome`. ``outcome`` is 'undecided' (with
    ``why``) when no near row has a counted cell or the reference edge is not inside the grid.
    """
    alphas = np.asarray(alphas, dtype=float)
    betas = np.asarray(betas, dtype=float)
    top = largest_stable(stable)
    top0 = int(largest_stable(np.asarray(stable0, dtype=bool)[None, :])[0])
    rule = near_divergence_rows(alphas, stable if divergence is None else divergence)
    out: dict[str, object] = {
        "alpha_div": rule["alpha_div"],
        "alpha_last_stable": None
        if rule["last_stable"] is None
        else float(alphas[rule["last_stable"]]),
        "edge_per_alpha": {
            f"{a:.4g}": (None if t < 0 else float(betas[t]))
            for a, t in zip(alphas, top, strict=True)
        },
        "edge_reference": None if top0 < 0 else float(betas[top0]),
    }
    near = [i for i in rule["near"] if top[i] >= 0]
    if not near:
        out.update(outcome="undecided", why="no such cell near the divergence alpha")
        return out
    best = max(near, key=lambda i: top[i])
    out.update(alpha_near=float(alphas[best]), edge_near=float(betas[top[best]]))
    if top0 < 0 or top0 == betas.size - 1:
        out.update(outcome="undecided", why="no reference edge inside the grid")
        return out
    margin = int(top[best] - top0)
    out.update(margin_cells=margin, outcome=edge_outcome(margin))
    return out
