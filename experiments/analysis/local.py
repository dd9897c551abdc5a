"""The paper's conditions in their own regime: local stability of MAML's outer update at a
stationary point theta*(alpha) (docs/MATH.md "Two regimes"; claims X-6, X-7; ``mamlconv local``).

Per alpha: theta*(alpha) and its certificate (:mod:`.stationary`), the predictions of the local
beta edge from every operator the package has, and the edge MEASURED by running the variant's
real outer update (the engine's step, :func:`mamlconv.experiments.engine.loop.make_step`) from
theta* plus a small perturbation and bisecting beta.

Predictions (beta_c, at theta*):

- ``formula``: the paper's Eq. 14-15 on the top eigenvalues of the task-mean H (pooled support +
  query data, as ``mamlconv compare``); 0 once alpha > 1/lambda_max;
- ``surrogate``: 2 / lambda_max of E[H - alpha (Tg + H^2)] (pooled data);
- ``h_minus_alpha_h2``: 2 / lambda_max of E[H - alpha H^2] (the surrogate without Tg, Eq. 9);
- ``meta``: 2 / lambda_max of the exact meta-Hessian (Lanczos on Hessian-vector products);
- ``jacobian``: from the eigenvalues mu of the Jacobian of the variant's own direction F at
  theta* (dense, :func:`.stationary.certify`): stable iff |1 - beta mu| < 1 for every non-flat mu
  (exact MAML: the meta-Hessian by a second route; first order: complex mu);
- ``closed_form`` (linear regression only): 2 / max lambda (1 - alpha lambda)^2 (exact) or
  Eq. 15 (first order) on the closed-form Hessian (:func:`mamlconv.theory.thresholds.beta_c`).

``governing`` names the prediction that linearises the variant's update: ``meta`` for exact MAML,
``jacobian`` for first order.

Measured edge: every cell starts at theta*(alpha) + delta, ||delta|| = ``perturbation`` *
max(1, ||theta*||) along one seeded random direction, and runs the outer update for at most
``horizon`` steps, watching r_t = ||F(theta_t)|| (flat directions add nothing to it). A cell is
unstable when r_t exceeds ``GROWTH`` * r_0 (or is not finite), stable when r_t falls below
``DECAY`` * r_0, else judged at the horizon by whether r grew over the second half. beta is
bisected in log space (:func:`mamlconv.numerics.boundary.bisect_boundary`) until the bracket is
``resolution`` decades wide.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mamlconv.experiments.analysis.stationary import (
    FLAT_RTOL,
    GRAD_RTOL,
    UpdateField,
    certify,
    describe_point,
    find_stationary,
    jacobian_beta_c,
    to_flat,
)
from mamlconv.numerics.curvature import lanczos, n_params, spectrum, task_matvec, unflatten
from mamlconv.numerics.tasks import Params, TaskBatch
from mamlconv.util.files import jsonable

LOCAL_PREDICTIONS: tuple[str, ...] = (
    "formula",
    "surrogate",
    "h_minus_alpha_h2",
    "meta",
    "jacobian",
    "closed_form",
)
LOCAL_LABELS = {
    "formula": "paper formula on H(theta*)",
    "surrogate": "H - alpha(Tg + H^2)",
    "h_minus_alpha_h2": "H - alpha H^2",
    "meta": "exact meta-Hessian",
    "jacobian": "Jacobian of the update",
    "closed_form": "closed form",
}
GOVERNING = {"exact": "meta", "first_order": "jacobian"}

GROWTH = 1e4
DECAY = 1e-6
DEFAULT_RESOLUTION = 0.005
"""Bracket width in decades (half the issue's 0.01 decades)."""


@dataclass
class LocalRow:
    alpha: float
    certified: bool
    point: dict[str, Any]
    predictions: dict[str, float]
    governing: str
    measured: dict[str, float] | None = None
    errors: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    theta: torch.Tensor | None = None
    eigenvalues: np.ndarray | None = None
    measured_status: str = "measured"

    def record(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "certified": self.certified,
            "grad_norm": self.point["grad_norm"],
            "grad_norm_start": self.point["grad_norm_start"],
            "relative_grad_norm": self.point["relative_grad_norm"],
            "lambda_min": self.point["lambda_min"],
            "n_flat": self.point["n_flat"],
            "predictions": dict(self.predictions),
            "governing": self.governing,
            "measured": self.measured,
            "measured_status": self.measured_status,
            "log10_error": dict(self.errors),
            "certificate": self.point,
            "seconds": dict(self.seconds),
        }


def _beta(lam: float) -> float:
    return 2.0 / lam if lam > 0 else math.inf


def predictions_at(
    loss_fn: Any,
    params: Params,
    tasks: TaskBatch,
    *,
    alpha: float,
    steps: int,
    eigenvalues: np.ndarray,
    k: int = 30,
    tol: float = 1e-8,
) -> dict[str, float]:
    """Every operator's beta_c at ``params`` (module list; ``closed_form`` is the caller's)."""
    from mamlconv.theory.thresholds import beta_c

    n = n_params(params)
    like = next(iter(params.values()))
    kk = min(k, n)
    top = spectrum(loss_fn, params, tasks, operator="hessian", k=kk, which="LA", tol=tol)
    positive = np.sort(np.asarray(top.eigenvalues, dtype=float))[::-1]
    positive = positive[positive > 0]
    formula = float(beta_c(positive, alpha, model="surrogate")) if positive.size else math.inf
    out = {"formula": formula}
    sur = spectrum(loss_fn, params, tasks, operator="surrogate", alpha=alpha, k=1, tol=tol)
    out["surrogate"] = _beta(float(sur.eigenvalues[0]))
    h_mv = task_matvec(loss_fn, params, tasks, operator="hessian")
    h2_mv = task_matvec(loss_fn, params, tasks, operator="h2")
    res = lanczos(lambda v: h_mv(v) - alpha * h2_mv(v), n, like=like, k=1, tol=tol)
    out["h_minus_alpha_h2"] = _beta(float(res.eigenvalues[0]))
    meta = spectrum(loss_fn, params, tasks, operator="meta", alpha=alpha, steps=steps, k=1, tol=tol)
    out["meta"] = _beta(float(meta.eigenvalues[0]))
    out["jacobian"] = jacobian_beta_c(eigenvalues)
    out["hessian_lambda_max"] = float(positive[0]) if positive.size else 0.0
    return out


def _stack(thetas: list[torch.Tensor], like: Params) -> Params:
    flat = torch.stack(thetas)
    out, i = {}, 0
    for name, p in like.items():
        out[name] = flat[:, i : i + p.numel()].reshape(len(thetas), *p.shape)
        i += p.numel()
    return out


def stability_runner(
    problem: Any,
    tasks: TaskBatch,
    like: Params,
    thetas: dict[float, torch.Tensor],
    *,
    variant: str,
    steps: int,
    perturbation: float,
    horizon: int,
    seed: int,
) -> Any:
    """``is_stable(alphas, betas)`` for :func:`bisect_boundary`: each (alpha, beta) pair runs the
    real outer update from theta*(alpha) + delta (module text)."""
    from mamlconv.experiments.engine.loop import make_step

    step = make_step(problem, variant=variant, steps=steps)
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    n = next(iter(thetas.values())).numel()
    u = torch.randn(n, generator=gen, dtype=torch.float64)
    u = (u / torch.linalg.vector_norm(u)).to(next(iter(thetas.values())))
    runs = {"cells": 0, "steps": 0}

    def is_stable(alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
        starts = []
        for a in alphas:
            th = thetas[float(a)]
            scale = perturbation * max(1.0, float(torch.linalg.vector_norm(th)))
            starts.append(th + scale * u)
        params = _stack(starts, like)
        cells = len(starts)
        alpha_t = torch.as_tensor(np.asarray(alphas, dtype=float)).to(u)
        beta_t = torch.as_tensor(np.asarray(betas, dtype=float)).to(u)
        decided = np.zeros(cells, dtype=bool)
        stable = np.zeros(cells, dtype=bool)
        history = np.full((cells, horizon + 1), np.nan)
        active = torch.arange(cells)
        r0 = np.full(cells, np.nan)
        for t in range(horizon + 1):
            out = step(params, alpha_t, tasks, need_direction=True, need_stats=False)
            direction = out.direction
            r = torch.sqrt(sum((d.flatten(1) ** 2).sum(1) for d in direction.values()))
            r_np = r.detach().cpu().double().numpy()
            idx = active.numpy()
            history[idx, t] = r_np
            if t == 0:
                r0[idx] = r_np
            base = r0[idx]
            grow = ~np.isfinite(r_np) | (r_np > GROWTH * base)
            fall = np.isfinite(r_np) & (r_np < DECAY * base)
            done = grow | fall
            stable[idx[fall]] = True
            decided[idx[done]] = True
            runs["steps"] += int(idx.size)
            if t == horizon or done.all():
                break
            keep = ~done
            if not keep.all():
                kt = torch.from_numpy(keep)
                params = {k: v[kt] for k, v in params.items()}
                direction = {k: v[kt] for k, v in direction.items()}
                alpha_t, beta_t, active = alpha_t[kt], beta_t[kt], active[kt]
            b = beta_t
            params = {
                k: v - b.reshape((-1,) + (1,) * (v.dim() - 1)) * direction[k]
                for k, v in params.items()
            }
        for c in np.flatnonzero(~decided):
            h = history[c]
            h = h[np.isfinite(h)]
            half = h[h.size // 2] if h.size else np.inf
            stable[c] = bool(h.size and h[-1] <= half)
        runs["cells"] += cells
        return stable

    is_stable.runs = runs  # type: ignore[attr-defined]
    return is_stable


def measure_edges(
    is_stable: Any,
    alphas: np.ndarray,
    centres: np.ndarray,
    *,
    resolution: float = DEFAULT_RESOLUTION,
) -> dict[float, dict[str, float] | None]:
    """Bisected local edge per alpha: first within a factor 2 of ``centres`` (the governing
    predictions), then, where the edge is not there, over [1e-6, 1e3] times it (1 where the
    prediction is 0 or inf); None where even the low end is unstable."""
    from mamlconv.numerics.boundary import bisect_boundary

    rtol = 10.0**resolution - 1.0
    out: dict[float, dict[str, float] | None] = {}
    if not alphas.size:
        return out
    c = np.where(np.isfinite(centres) & (centres > 0), centres, 1.0)
    # Asymmetric ends, so that no midpoint falls exactly on the prediction.
    first = bisect_boundary(is_stable, alphas, beta_min=c / 2.3, beta_max=c * 1.9, rtol=rtol)
    redo = []
    for i, a in enumerate(alphas):
        if first.inside_range[i]:
            out[float(a)] = {"lo": float(first.beta_lo[i]), "hi": float(first.beta_hi[i])}
        else:
            redo.append(i)
    if redo:
        idx = np.array(redo)
        wide = bisect_boundary(
            is_stable, alphas[idx], beta_min=c[idx] * 1e-6, beta_max=c[idx] * 1e3, rtol=rtol
        )
        for j, i in enumerate(idx):
            a = float(alphas[i])
            if wide.inside_range[j]:
                out[a] = {"lo": float(wide.beta_lo[j]), "hi": float(wide.beta_hi[j])}
            elif wide.stable_at_max[j]:
                out[a] = {"lo": float(c[i] * 1e3), "hi": math.inf}
            else:
                out[a] = None
    return out


def decades_off(prediction: float, measured: dict[str, float] | None) -> float:
    """|log10(prediction / bracket centre)|; for no stable beta: 0 when the prediction is 0,
    else inf; inf for a prediction of 0 or inf against a bracket; NaN for no prediction."""
    if prediction is None or (isinstance(prediction, float) and math.isnan(prediction)):
        return math.nan
    if measured is None:
        return 0.0 if prediction == 0 else math.inf
    if not math.isfinite(measured["hi"]):
        return 0.0 if prediction >= measured["lo"] else math.log10(measured["lo"] / prediction)
    if prediction <= 0 or not math.isfinite(prediction):
        return math.inf
    return abs(math.log10(prediction / math.sqrt(measured["lo"] * measured["hi"])))


@dataclass
class LocalStudy:
    problem: str
    variant: str
    seed: int
    rows: list[LocalRow]
    config: dict[str, Any]
    seconds: float
    runs: dict[str, int]

    def record(self) -> dict[str, Any]:
        return jsonable(
            {
                "problem": self.problem,
                "variant": self.variant,
                "seed": self.seed,
                "config": self.config,
                "rows": [r.record() for r in self.rows],
                "summary": self.summary(),
                "seconds": self.seconds,
                "outer_update_runs": self.runs,
            }
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_alphas": len(self.rows)}
        out["n_certified"] = sum(r.certified for r in self.rows)
        errs: dict[str, list[float]] = {}
        for r in self.rows:
            if not r.certified:
                continue
            for name, e in r.errors.items():
                errs.setdefault(name, []).append(e)
        out["log10_error_certified"] = {
            name: {"median": float(np.median(v)), "max": float(np.max(v)), "n": len(v)}
            for name, v in errs.items()
        }
        out["seconds_per_alpha"] = self.seconds / max(len(self.rows), 1)
        return out


def local_stability(
    problem: Any,
    alphas: Any,
    *,
    tasks: TaskBatch,
    init: Params,
    variant: str = "exact",
    steps: int = 1,
    seed: int = 0,
    name: str = "",
    optimiser_iters: int = 3000,
    newton_iters: int = 300,
    perturbation: float = 1e-6,
    horizon: int = 1000,
    resolution: float = DEFAULT_RESOLUTION,
    k: int = 30,
    closed_form: Any = None,
    flat_rtol: float = FLAT_RTOL,
    grad_rtol: float = GRAD_RTOL,
    measure_uncertified: bool = False,
    newton_start_rtol: float | None = None,
    lbfgs_iters: int | None = None,
    saddle_free: bool | None = None,
    log: Any = None,
) -> LocalStudy:
    """Per alpha: theta*(alpha) from ``init`` (float64), its certificate, every prediction and
    the measured local edge (module text). ``closed_form(alpha) -> beta_c`` adds the
    ``closed_form`` prediction (linear regression)."""
    start = time.perf_counter()
    alphas = np.asarray(alphas, dtype=float).ravel()
    if alphas.size == 0 or np.any(~np.isfinite(alphas)) or np.any(alphas < 0):
        raise ValueError(f"alphas must be finite and >= 0, got {alphas.tolist()}")
    like = {n_: v.detach().to(torch.float64) for n_, v in init.items()}
    theta0 = to_flat(like)
    governing = GOVERNING[variant]
    smooth = bool(getattr(problem, "smooth", False))  # twice differentiable: L-BFGS + SFN
    lbfgs_iters = (20000 if smooth else 0) if lbfgs_iters is None else int(lbfgs_iters)
    saddle_free = smooth if saddle_free is None else bool(saddle_free)
    rows: list[LocalRow] = []
    for a in alphas:
        t0 = time.perf_counter()
        field_ = UpdateField(problem.loss, tasks, like, float(a), variant, steps)
        point = find_stationary(
            field_,
            theta0,
            optimiser_iters=optimiser_iters,
            newton_iters=newton_iters,
            flat_rtol=flat_rtol,
            newton_start_rtol=newton_start_rtol,
            lbfgs_iters=lbfgs_iters,
            saddle_free=saddle_free,
            grad_rtol=grad_rtol,
            log=log,
        )
        t1 = time.perf_counter()
        cert = certify(field_, point, flat_rtol=flat_rtol, grad_rtol=grad_rtol)
        t2 = time.perf_counter()
        params = unflatten(point.theta, like)
        preds = predictions_at(
            problem.loss,
            params,
            tasks,
            alpha=float(a),
            steps=steps,
            eigenvalues=cert.eigenvalues,
            k=k,
        )
        if closed_form is not None:
            preds["closed_form"] = float(closed_form(float(a)))
        t3 = time.perf_counter()
        row = LocalRow(
            alpha=float(a),
            certified=cert.certified,
            point=describe_point(point, cert),
            predictions=preds,
            governing=governing,
            seconds={"search": t1 - t0, "certificate": t2 - t1, "predictions": t3 - t2},
            theta=point.theta,
            eigenvalues=cert.eigenvalues,
        )
        rows.append(row)
        if log is not None:
            log(
                f"alpha={a:.4g}: ||F|| {point.grad_norm:.3g} (start {point.grad_norm_start:.3g}), "
                f"lambda_min {cert.lambda_min:.3g}, {cert.n_flat} flat, certified "
                f"{cert.certified}, governing beta_c {preds[governing]:.4g} "
                f"({t3 - t0:.0f} s)"
            )
    # The measured edge of every alpha, in one bisection (the cells of all alphas batched).
    t4 = time.perf_counter()
    thetas = {r.alpha: r.theta for r in rows}
    is_stable = stability_runner(
        problem,
        tasks,
        like,
        thetas,
        variant=variant,
        steps=steps,
        perturbation=perturbation,
        horizon=horizon,
        seed=seed,
    )
    # Only where theta* is stationary to round-off (a minimum or not: past alpha_c first order's
    # fixed point repels, and "no stable beta" is then the measurement): elsewhere theta* + delta
    # is not near a fixed point, and growth or decay of ||F|| says nothing about the local edge.
    measured_rows = [r for r in rows if r.point["stationary"] or measure_uncertified]
    centres = np.array([r.predictions[governing] for r in measured_rows])
    edges = measure_edges(
        is_stable, np.array([r.alpha for r in measured_rows]), centres, resolution=resolution
    )
    share = (time.perf_counter() - t4) / max(len(rows), 1)
    for r in rows:
        r.measured = edges.get(r.alpha)
        r.measured_status = (
            "measured" if r.alpha in edges else "not measured: theta* not stationary"
        )
        if r.measured_status == "measured":
            r.errors = {
                n_: decades_off(v, r.measured)
                for n_, v in r.predictions.items()
                if n_ in LOCAL_LABELS
            }
        r.seconds["measured_share"] = share
    config = {
        "variant": variant,
        "steps": steps,
        "optimiser_iters": optimiser_iters,
        "newton_iters": newton_iters,
        "perturbation": perturbation,
        "horizon": horizon,
        "resolution_decades": resolution,
        "k": k,
        "flat_rtol": flat_rtol,
        "grad_rtol": grad_rtol,
        "measure_uncertified": measure_uncertified,
        "newton_start_rtol": newton_start_rtol,
        "lbfgs_iters": lbfgs_iters,
        "saddle_free": saddle_free,
        "growth": GROWTH,
        "decay": DECAY,
        "n_params": int(theta0.numel()),
        "n_tasks": int(tasks.n_tasks),
    }
    return LocalStudy(
        name, variant, seed, rows, config, time.perf_counter() - start, dict(is_stable.runs)
    )


@dataclass(frozen=True)
class LinRegLocal:
    """Appendix C's linear regression as a problem of the engine (parameters of shape (1,), so
    the engine's per-cell statistics apply), with its closed forms."""

    loss_fn: Any
    name: str = "linreg"

    def loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(params, x, y)


def linreg_setup(
    data: Any, *, convention: str = "mse", theta0: tuple[float, float] = (0.0, 0.0), variant: str
) -> tuple[LinRegLocal, Params, TaskBatch, Any, np.ndarray]:
    """(problem, theta_0, the one task, closed_form(alpha), the Hessian's eigenvalues) for
    :func:`local_stability` on linear regression: the closed form is 2 / max lambda (1 -
    alpha lambda)^2 (exact) or Eq. 15 (first order) on the constant Hessian."""
    from mamlconv.numerics.losses import linreg_hessian, linreg_loss_fn
    from mamlconv.theory.thresholds import beta_c

    lam = np.linalg.eigvalsh(linreg_hessian(data.x, convention=convention).cpu().numpy())
    init = {
        "w": torch.tensor([float(theta0[0])], dtype=torch.float64),
        "c": torch.tensor([float(theta0[1])], dtype=torch.float64),
    }

    def closed_form(alpha: float) -> float:
        return float(beta_c(lam, alpha, model=variant))

    problem = LinRegLocal(linreg_loss_fn(convention))
    return problem, init, data.task_batch(), closed_form, lam


def problem_setup(
    name: str, *, preset: str | None = None, seed: int = 0, n_tasks: int | None = None
) -> tuple[Any, Params, TaskBatch, Any]:
    """(problem, float64 initial parameters, the fixed task pool, config) as a sweep of
    ``preset`` with ``seed`` starts from. The local analysis needs one fixed objective, so the
    tasks are a pool used whole at every step (``n_tasks`` of them, default the preset's)."""
    from mamlconv.experiments.engine.state import initial_state
    from mamlconv.experiments.problems.registry import get_preset, get_problem

    if preset is None:
        preset = "smoke" if name in ("omniglot", "miniimagenet") else "paper"
    cfg = get_preset(name, preset)
    size = int(n_tasks or (cfg.pool_size if cfg.task_source == "pool" else cfg.tasks_per_batch))
    cfg = cfg.replace(
        seed=int(seed), task_source="pool", pool_size=size, tasks_per_batch=size, device="cpu"
    )
    problem = get_problem(cfg.problem, **cfg.problem_options)
    init, stream = initial_state(problem, cfg, dtype=torch.float64, device="cpu")
    return problem, init, stream.next(), cfg


__all__ = [
    "LOCAL_PREDICTIONS",
    "LOCAL_LABELS",
    "GOVERNING",
    "LocalRow",
    "LocalStudy",
    "predictions_at",
    "stability_runner",
    "measure_edges",
    "decades_off",
    "local_stability",
    "linreg_setup",
    "problem_setup",
    "LinRegLocal",
    "SmoothSinusoid",
    "smooth_sinusoid",
]


@dataclass(frozen=True)
class SmoothSinusoid:
    """The sinusoid tasks and MLP of :mod:`mamlconv.experiments.problems.sinusoid` with tanh in
    place of ReLU: a twice-differentiable network, the setting the paper's Taylor expansions
    assume (a ReLU network's update jumps across its activation kinks, docs/MATH.md "Two
    regimes"). A composition, not a subclass, so that the engine uses its generic step and not
    the ReLU MLP backend. Spec: ``mamlconv.experiments.analysis.local:smooth_sinusoid``."""

    base: Any
    name: str = "sinusoid-tanh"
    smooth: bool = True

    def init_params(self, generator: torch.Generator, *, dtype: torch.dtype, device: Any) -> Params:
        return self.base.init_params(generator, dtype=dtype, device=device)

    def sample_tasks(
        self, generator: torch.Generator, n_tasks: int, *, dtype: torch.dtype, device: Any
    ) -> TaskBatch:
        return self.base.sample_tasks(generator, n_tasks, dtype=dtype, device=device)

    def residuals(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Prediction minus target per point (the loss is their mean square)."""
        h = torch.tanh(x @ params["w1"] + params["b1"])
        h = torch.tanh(h @ params["w2"] + params["b2"])
        return h @ params["w3"] + params["b3"] - y

    def loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (self.residuals(params, x, y) ** 2).mean()


def smooth_sinusoid(**options: Any) -> SmoothSinusoid:
    """Factory of :class:`SmoothSinusoid` (options as :class:`SinusoidProblem`'s)."""
    from mamlconv.experiments.problems.sinusoid import SinusoidProblem

    return SmoothSinusoid(SinusoidProblem(**options))
