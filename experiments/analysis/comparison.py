"""Measured stability boundaries against three predictions of beta_c (docs/MATH.md section 8,
claim X-5).

For a sweep result, at a parameter point theta and inner rate alpha:

- ``formula``: the paper's Eq. 14-15 on the spectrum of the task-mean Hessian H(theta),
  beta_c = 2 / max_i (lambda_i - alpha lambda_i^2) over the positive lambda_i, and 0 once
  alpha > 1/lambda_max (Eq. 11), via :func:`mamlconv.theory.thresholds.beta_c`
  (``model='surrogate'``). Negative eigenvalues (theta is not a minimum) are left out, as the
  paper's condition is about minima; their smallest is reported.
- ``surrogate``: 2 / lambda_max of the surrogate Hessian E[H - alpha (Tg + H^2)] (Eq. 8 with the
  Tg term kept, tasks not simultaneously diagonalisable).
- ``meta``: 2 / lambda_max of the exact meta-Hessian, the Hessian of E_tau L_q(theta - alpha
  grad L_s(theta)) -- the linearisation of exact (second-order) MAML's gradient step.

Each is evaluated at two points: ``init`` (the sweep's initial parameters; one spectrum of H,
one surrogate and one meta spectrum per alpha) and ``trained`` (per alpha row, the final
parameters of the row's best non-diverged cell, saved by the sweep). Spectra come from
:func:`mamlconv.numerics.curvature.spectrum` (Lanczos on Hessian-vector products, float64) on
the sweep's first task batch (the whole pool for ``task_source='pool'``): H and the surrogate on
each task's pooled support + query data, the meta-Hessian adapting on support and evaluating on
query data, as the training does.

The formula needs every positive eigenvalue that can maximise lambda (1 - alpha lambda); with the
top-k eigenvalues that is guaranteed when lambda_k < lambda_max / 2 (lambda (1 - alpha lambda)
increases up to 1/(2 alpha) >= lambda_max / 2 for every alpha <= 1/lambda_max); the output says
per point whether the top-k were enough (``formula_complete``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mamlconv.experiments.sweep.results import SweepResult
from mamlconv.numerics.boundary import Boundary
from mamlconv.util.display import TableRepr
from mamlconv.util.files import jsonable, read_json


@dataclass(frozen=True)
class Prediction:
    """One predicted beta_c(alpha) curve; ``beta_c`` may hold 0 (nothing converges), inf
    (everything converges) and NaN (no prediction at that alpha)."""

    label: str
    alphas: np.ndarray
    beta_c: np.ndarray
    point: str = "init"
    """``init`` curves are drawn as lines, any other point (``trained``) as open markers."""
    kind: str | None = None
    """``formula``, ``surrogate`` or ``meta`` (compare's predictions: fixed colours), or None."""


def row_predictions(rows: list[dict[str, Any]]) -> list[Prediction]:
    """Every prediction curve of a comparison's ``rows`` (:func:`comparison_record`), one per
    point and prediction, ``null`` beta_c as NaN."""
    alphas = np.array([r["alpha"] for r in rows], dtype=float)
    out = []
    first = rows[0].get("predictions", {}) if rows else {}
    for point, names in first.items():
        for name in names:
            values = [r["predictions"][point][name]["beta_c"] for r in rows]
            beta = np.array([math.nan if v is None else v for v in values], dtype=float)
            out.append(Prediction(f"{LABELS.get(name, name)} ({point})", alphas, beta, point, name))
    return out


def prediction_errors(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Per prediction (``"<name> @ <point>"``) of a comparison's ``rows``: the median and largest
    log10 error against the measured bracket (:meth:`Boundary.log10_error`) over the alphas that
    have both a measured bracket and a prediction, and how many those are; predictions with no
    such alpha are left out."""
    measured = Boundary.from_records(rows)
    errors: dict[str, dict[str, float | int]] = {}
    for pred in row_predictions(rows):
        err = measured.log10_error(pred.beta_c)
        ok = err[~np.isnan(err) & ~np.isnan(measured.beta_lo)]
        if ok.size:
            errors[f"{pred.kind} @ {pred.point}"] = {
                "median": float(np.median(ok)),
                "max": float(ok.max()),
                "n_alphas": int(ok.size),
            }
    return errors


def predictions_from_json(path: str | os.PathLike[str]) -> list[Prediction]:
    """Prediction curves from a file: a ``mamlconv compare`` JSON (its ``rows``, every point and
    prediction), or ``{"predictions": [{"label", "alpha": [...], "beta_c": [...]}, ...]}``
    (``null`` entries are missing; non-finite values follow the package's JSON rule, see
    ``docs/engine.md``). ValueError on any other layout."""
    record = read_json(path)
    if isinstance(record, dict) and "rows" in record:
        return row_predictions(record["rows"])
    if isinstance(record, dict) and isinstance(record.get("predictions"), list):
        out = []
        for i, series in enumerate(record["predictions"]):
            try:
                alphas = np.array(series["alpha"], dtype=float)
                beta = np.array(
                    [math.nan if v is None else v for v in series["beta_c"]], dtype=float
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"{path}: predictions[{i}] needs alpha and beta_c lists: {exc}"
                ) from None
            if alphas.shape != beta.shape:
                raise ValueError(f"{path}: predictions[{i}]: alpha and beta_c differ in length")
            label = str(series.get("label", f"prediction {i + 1}"))
            out.append(Prediction(label, alphas, beta, str(series.get("point", "init"))))
        return out
    raise ValueError(
        f"{path}: not a prediction file (expected a `mamlconv compare` JSON with 'rows', or "
        "{'predictions': [{'label', 'alpha', 'beta_c'}, ...]})"
    )


PREDICTIONS: tuple[str, ...] = ("formula", "surrogate", "meta")


POINTS: tuple[str, ...] = ("init", "trained")


LABELS = {
    "formula": "paper formula on H",
    "surrogate": "surrogate Hessian",
    "meta": "exact meta-Hessian",
}


@dataclass
class PointSpectra:
    """Spectral quantities at one parameter point (float64)."""

    hessian_top: np.ndarray
    """Top-k eigenvalues of the task-mean H, descending."""
    hessian_min: float
    """Smallest eigenvalue of H (negative: not a minimum)."""
    surrogate_max: dict[float, float] = field(default_factory=dict)
    meta_max: dict[float, float] = field(default_factory=dict)
    n_matvecs: int = 0

    @property
    def lambda_max(self) -> float:
        return float(self.hessian_top[0])

    @property
    def formula_complete(self) -> bool:
        return bool(self.hessian_top.size and self.hessian_top[-1] < self.lambda_max / 2)


@dataclass(repr=False)
class Comparison(TableRepr):
    """Per alpha row: the measured bracket and each prediction at each point. ``repr`` and
    Jupyter show a short table (:class:`mamlconv.util.display.TableRepr`)."""

    alphas: np.ndarray
    boundary: Boundary
    predictions: dict[str, dict[str, np.ndarray]]
    """predictions[point][name] -> beta_c per alpha (NaN where the point is missing)."""
    errors: dict[str, dict[str, np.ndarray]]
    """Decades between prediction and measured bracket (0 inside it)."""
    spectra: dict[str, Any]
    alpha0: dict[str, Any]
    trained_cells: list[dict[str, Any]]

    def _display_title(self) -> str:
        return f"Comparison: measured beta edge vs predictions, {len(self.alphas)} alphas"

    def _display_rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("alphas", np.asarray(self.alphas)),
            ("measured edge (beta_lo)", np.asarray(self.boundary.beta_lo)),
        ]
        for point, preds in self.summary().items():
            for name, s in preds.items():
                rows.append(
                    (
                        f"{name} @ {point}",
                        f"median {s['median_log10_error']:.3g} dec., max "
                        f"{s['max_log10_error']:.3g} dec., {s['n_within_bracket']} of "
                        f"{s['n_alphas']} alphas inside the bracket",
                    )
                )
        return rows

    def summary(self) -> dict[str, dict[str, dict[str, float | int]]]:
        """Per point and prediction: median and max |log10 error| over the alphas with a
        finite error, and how many alphas that is."""
        out: dict[str, dict[str, dict[str, float | int]]] = {}
        for point, preds in self.errors.items():
            out[point] = {}
            for name, err in preds.items():
                ok = ~np.isnan(err)  # inf (a prediction of 0 or inf, off the bracket) counts
                out[point][name] = {
                    "median_log10_error": float(np.median(err[ok])) if ok.any() else math.nan,
                    "max_log10_error": float(np.max(err[ok])) if ok.any() else math.nan,
                    "n_alphas": int(ok.sum()),
                    "n_within_bracket": int((err[ok] == 0).sum()),
                }
        return out


def log10_error(boundary: Boundary, beta: np.ndarray, *, beta_min: float) -> np.ndarray:
    """Decades from each prediction to the measured bracket (0 inside it), as
    ``Boundary.log10_error``, and also for a column where every cell diverged: its edge lies
    in [0, beta_min], so the error is how far the prediction lies above beta_min (a prediction
    of 0 -- "nothing converges" -- is then exact). NaN where the prediction is missing."""
    beta = np.asarray(beta, dtype=float)
    err = boundary.log10_error(beta)
    none_stable = np.isnan(boundary.beta_lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        below_grid = np.maximum(np.log10(beta / beta_min), 0.0)
    err = np.where(none_stable, below_grid, err)
    return np.where(np.isnan(beta), np.nan, err)


def _beta_from_lambda(lam: float) -> float:
    """2 / lambda for a positive top curvature; inf when none is positive."""
    return 2.0 / lam if lam > 0 else math.inf


def hessian_extremes(
    problem: Any, params: dict[str, Any], tasks: Any, *, k: int, tol: float, seed: int = 0
) -> tuple[np.ndarray, float, int]:
    """Top-k eigenvalues of the task-mean H (descending), its smallest eigenvalue, and the
    number of Hessian-vector products spent."""
    from mamlconv.numerics.curvature import spectrum

    top = spectrum(
        problem.loss, params, tasks, operator="hessian", k=k, which="LA", tol=tol, seed=seed
    )
    # Only reported (is theta a minimum?), never used in a prediction: a loose tolerance.
    low = spectrum(
        problem.loss,
        params,
        tasks,
        operator="hessian",
        k=1,
        which="SA",
        tol=max(tol, 1e-2),
        seed=seed,
    )
    h_top = np.sort(np.asarray(top.eigenvalues, dtype=float))[::-1]
    return h_top, float(low.eigenvalues[0]), top.n_matvecs + low.n_matvecs


def top_meta_curvatures(
    problem: Any,
    params: dict[str, Any],
    tasks: Any,
    *,
    alpha: float,
    steps: int,
    tol: float,
    seed: int = 0,
) -> tuple[dict[str, float], int]:
    """Largest eigenvalue of the surrogate Hessian (one step, as the paper) and of the exact
    meta-Hessian with ``steps`` inner steps at ``alpha``; and the products spent."""
    from mamlconv.numerics.curvature import spectrum

    tops, matvecs = {}, 0
    for op in ("surrogate", "meta"):
        r = spectrum(
            problem.loss,
            params,
            tasks,
            operator=op,
            alpha=float(alpha),
            steps=steps if op == "meta" else 1,
            k=1,
            which="LA",
            tol=tol,
            seed=seed,
        )
        tops[op] = float(r.eigenvalues[0])
        matvecs += r.n_matvecs
    return tops, matvecs


def point_spectra(
    problem: Any,
    params: dict[str, Any],
    tasks: Any,
    *,
    alphas: np.ndarray,
    steps: int = 1,
    k: int,
    tol: float,
    seed: int = 0,
    tick: Callable[[], None] | None = None,
) -> PointSpectra:
    """H's top-k and smallest eigenvalue, and the surrogate / meta top eigenvalue per alpha.

    ``tick()`` is called after H's spectrum and after each alpha (1 + len(alphas) times)."""
    h_top, h_min, matvecs = hessian_extremes(problem, params, tasks, k=k, tol=tol, seed=seed)
    sp = PointSpectra(h_top, h_min, n_matvecs=matvecs)
    if tick is not None:
        tick()
    for a in np.asarray(alphas, dtype=float):
        tops, n = top_meta_curvatures(
            problem, params, tasks, alpha=float(a), steps=steps, tol=tol, seed=seed
        )
        sp.surrogate_max[float(a)] = tops["surrogate"]
        sp.meta_max[float(a)] = tops["meta"]
        sp.n_matvecs += n
        if tick is not None:
            tick()
    return sp


def _predict(sp: PointSpectra, alpha: float) -> dict[str, float]:
    from mamlconv.theory.thresholds import beta_c

    positive = sp.hessian_top[sp.hessian_top > 0]
    formula = float(beta_c(positive, alpha, model="surrogate")) if positive.size else math.inf
    return {
        "formula": formula,
        "surrogate": _beta_from_lambda(sp.surrogate_max[float(alpha)]),
        "meta": _beta_from_lambda(sp.meta_max[float(alpha)]),
    }


def compare(
    result: SweepResult,
    *,
    points: tuple[str, ...] = POINTS,
    k: int = 30,
    tol: float = 1e-4,
    device: str = "cpu",
    progress: bool = False,
) -> Comparison:
    """Spectra at the requested points and the predictions against the measured boundary.

    ``progress``: report spectra done and the time left (:class:`mamlconv.util.progress.Eta`)."""
    import torch

    from mamlconv.experiments.engine.state import initial_state
    from mamlconv.experiments.problems.registry import get_problem
    from mamlconv.util.progress import Eta

    bad = set(points) - set(POINTS)
    if bad:
        raise ValueError(f"points must be among {POINTS}, got {sorted(bad)}")
    config = result.config.replace(device=device)
    problem = get_problem(config.problem, **config.problem_options)
    init, stream = initial_state(problem, config, dtype=torch.float64, device=device)
    tasks = stream.next()
    alphas = np.asarray(result.alphas, dtype=float)
    n = alphas.size
    boundary = result.boundary()
    predictions = {p: {name: np.full(n, np.nan) for name in PREDICTIONS} for p in points}
    spectra: dict[str, Any] = {}
    trained_cells: list[dict[str, Any]] = []

    # Units: one Lanczos spectrum of H, then one per alpha (surrogate and meta tops), per point.
    total = (1 + n if "init" in points else 0) + (2 * n if "trained" in points else 0)
    eta = Eta("compare", total, unit="spectra", enabled=progress)
    if "init" in points:
        sp = point_spectra(
            problem,
            init,
            tasks,
            alphas=alphas,
            steps=config.steps,
            k=k,
            tol=tol,
            tick=lambda: eta.advance(note="at init"),
        )
        spectra["init"] = _spectra_record(sp)
        for i, a in enumerate(alphas):
            for name, value in _predict(sp, a).items():
                predictions["init"][name][i] = value
    if "trained" in points:
        spectra["trained"] = []
        for i, a in enumerate(alphas):
            theta = result.trained_params(i)
            if theta is None:
                spectra["trained"].append(None)
                trained_cells.append({"alpha": float(a), "beta": None})
                eta.advance(2, note=f"alpha={a:.3g} learned nothing")
                continue
            j = int(result.best_beta_index[i])  # type: ignore[index]
            trained_cells.append(
                {
                    "alpha": float(a),
                    "beta": float(result.betas[j]),
                    "final_loss": float(result.final_loss[i, j]),
                }
            )
            params = {
                name: torch.as_tensor(np.asarray(v), dtype=torch.float64, device=device)
                for name, v in theta.items()
            }
            sp = point_spectra(
                problem,
                params,
                tasks,
                alphas=np.array([a]),
                steps=config.steps,
                k=k,
                tol=tol,
                tick=lambda a=a: eta.advance(note=f"trained point of alpha={a:.3g}"),
            )
            spectra["trained"].append(_spectra_record(sp))
            for name, value in _predict(sp, a).items():
                predictions["trained"][name][i] = value
    eta.finish()
    errors = {
        p: {name: log10_error(boundary, v, beta_min=result.betas[0]) for name, v in preds.items()}
        for p, preds in predictions.items()
    }
    alpha0: dict[str, Any] = {}
    b0 = result.alpha0_boundary()
    if b0 is not None:
        alpha0["measured"] = b0.as_records()[0]
    if "init" in spectra:
        alpha0["gd_prediction_init"] = 2.0 / spectra["init"]["hessian_top"][0]
    return Comparison(alphas, boundary, predictions, errors, spectra, alpha0, trained_cells)


def _spectra_record(sp: PointSpectra) -> dict[str, Any]:
    return {
        "hessian_top": [float(x) for x in sp.hessian_top],
        "hessian_min": sp.hessian_min,
        "alpha_c_formula": 1.0 / sp.lambda_max if sp.lambda_max > 0 else math.inf,
        "formula_complete": sp.formula_complete,
        "surrogate_lambda_max": {repr(a): v for a, v in sp.surrogate_max.items()},
        "meta_lambda_max": {repr(a): v for a, v in sp.meta_max.items()},
        "n_matvecs": sp.n_matvecs,
    }


def comparison_record(cmp: Comparison, result: SweepResult, source: str) -> dict[str, Any]:
    rows = []
    for i, rec in enumerate(cmp.boundary.as_records()):
        rec["predictions"] = {
            p: {
                name: {"beta_c": cmp.predictions[p][name][i], "log10_error": cmp.errors[p][name][i]}
                for name in PREDICTIONS
            }
            for p in cmp.predictions
        }
        rows.append(rec)
    return _json(
        {
            "result": source,
            "config": result.config.to_dict(),
            "sweep_provenance": result.provenance,
            "rows": rows,
            "alpha0": cmp.alpha0,
            "trained_cells": cmp.trained_cells,
            "spectra": cmp.spectra,
            "summary": cmp.summary(),
        }
    )


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if math.isinf(x):
        return "∞"
    return f"{x:.3g}"


def markdown_table(
    cmp: Comparison, result: SweepResult, recheck: dict[str, Any] | None = None
) -> str:
    """Per alpha: measured bracket (and its re-check) and each prediction with its log10
    error in brackets."""
    cfg = result.config
    cols = [(p, name) for p in cmp.predictions for name in PREDICTIONS]
    head = ["alpha", "measured beta edge [lo, hi]"]
    if recheck is not None:
        head.append(f"re-check ({recheck['recheck']['dtype']}, seed {recheck['recheck']['seed']})")
    head += [f"{LABELS[n]} @ {p}" for p, n in cols]
    lines = [
        f"# {cfg.problem} / {cfg.variant}: measured beta edge vs predictions",
        "",
        f"{cfg.iters} iterations, {cfg.tasks_per_batch} tasks, outer {cfg.outer}, "
        f"{cfg.dtype}, divergence level {cfg.divergence_level:g}; a cell is stable when it did "
        "not diverge. Each prediction is beta_c with, in brackets, its distance in decades "
        "from the measured bracket (0: inside).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    b = cmp.boundary
    for i, a in enumerate(cmp.alphas):
        lo, hi = b.beta_lo[i], b.beta_hi[i]
        meas = f"[{_fmt(lo)}, {_fmt(hi)}]" + ("" if b.inside_grid[i] else " (outside grid)")
        cells = [f"{_fmt(cmp.predictions[p][n][i])} ({_fmt(cmp.errors[p][n][i])})" for p, n in cols]
        extra = []
        if recheck is not None:
            r = recheck["boundary"][i]
            lo_r = math.nan if r["beta_lo"] is None else r["beta_lo"]
            extra.append(f"[{_fmt(lo_r)}, {_fmt(r['beta_hi'])}]" + (" moved" if r["moved"] else ""))
        lines.append("| " + " | ".join([f"{a:.3g}", meas, *extra, *cells]) + " |")
    lines += [""]
    if cmp.predictions:
        lines += ["Median (max) log10 error over alphas with a prediction:", ""]
    for p, preds in cmp.summary().items():
        for n, s in preds.items():
            lines.append(
                f"- {LABELS[n]} @ {p}: {_fmt(s['median_log10_error'])} "
                f"({_fmt(s['max_log10_error'])}), {s['n_within_bracket']}/{s['n_alphas']} "
                "inside the bracket"
            )
    if cmp.alpha0:
        m = cmp.alpha0.get("measured")
        if m is not None:
            gd = cmp.alpha0.get("gd_prediction_init")
            lines.append(
                f"- alpha = 0 row (joint training): edge [{_fmt(m['beta_lo'])}, "
                f"{_fmt(m['beta_hi'])}]"
                + ("" if gd is None else f"; GD's 2/lambda_max(H) at init: {_fmt(gd)}")
            )
    return "\n".join(lines) + "\n"


def _json(value: Any) -> Any:
    """JSON-ready comparison values under the package's rule (:func:`mamlconv.util.files.jsonable`):
    inf as null with a ``_status`` field, NaN as null; :func:`mamlconv.util.files.read_json` reads
    them back."""
    return jsonable(value)
