"""A learning-rate advisor: recommended (alpha, beta) for any problem at a given point.

Beyond the paper. The paper's guideline (abstract; Sec. 4.1) is "first, search for the largest
possible alpha; next, tune beta based on the chosen value of alpha", with alpha_c = 1/lambda_max
(Eq. 11) and beta_c(alpha) = 2 / max_i (lambda_i - alpha lambda_i^2) (Eq. 14). :func:`advise`
turns it into numbers for a user's own model and tasks, measuring every curvature it needs at
the given parameters with :func:`mamlconv.numerics.curvature.spectrum` (Lanczos on
Hessian-vector products) and every threshold with :mod:`mamlconv.theory.thresholds`:

1. the top-k eigenvalues of the task-mean Hessian H (pooled support + query data, the paper's
   same-data setting) and its smallest one; the paper's alpha_c = ``alpha_c(positive eigs,
   model='surrogate')`` (Eq. 11; negative eigenvalues, present away from a minimum, are left
   out as in :mod:`mamlconv.experiments.analysis.comparison`, since the paper's conditions are
   about minima);
2. candidate inner rates: ``ALPHA_FRACTIONS`` x alpha_c unless the caller gives ``alphas``;
3. at each candidate alpha, four predictions of beta_c(alpha), each labelled with its source:
   ``formula`` (paper Eq. 14 on H's eigenvalues), ``formula_variant`` (the variant's own
   quadratic curvature on H's eigenvalues: first order lambda(1 - alpha lambda)^K, exact
   lambda(1 - alpha lambda)^(2K); docs/MATH.md Sec. 4), ``surrogate`` (2 / top eigenvalue of the
   surrogate Hessian E[H - alpha(Tg + H^2)], Tg kept) and ``meta`` (2 / top eigenvalue of the
   exact meta-Hessian, the Hessian of E L_q(theta_K)); 2/lambda for a single top eigenvalue
   uses the conventions of ``thresholds.beta_c`` (inf when it is 0, 0 when it is negative);
4. the *governing* prediction is the one whose operator linearises the chosen variant's update:
   ``meta`` for exact MAML; ``surrogate`` for first-order MAML and the surrogate (the paper's
   object; docs/MATH.md Sec. 4: the two coincide on quadratics, one step);
5. the recommendation: alpha* is the largest candidate below the first candidate at which the
   governing prediction says nothing converges (beta_c = 0) and at which it gives a finite,
   positive beta_c; the margin below the paper's divergence alpha is the candidate grid's
   (at most 0.9 alpha_c by default); beta* = ``safety`` x beta_c_governing(alpha*).

Every number is a LOCAL, FIRST-ORDER-IN-TIME prediction: a linear stability bound of the
outer gradient step at the measured point (the spectra change as training moves theta; a
network's finite-horizon divergence edge is set by nonlinear dynamics too -- at the sinusoid
initialisation GD survives beta 5-7 times above 2/lambda_max,
experiments/results/sinusoid_NOTES.md). ``verify_iters > 0`` checks the advice by short real
training runs (:func:`mamlconv.experiments.engine.loop.train_cells`) from the same point on the same
tasks, at (alpha*, beta*) and at (alpha*, 2 beta_c), and reports whether the first stayed finite
and the second diverged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mamlconv.numerics.maml import check_variant
from mamlconv.numerics.tasks import Params, Problem, TaskBatch
from mamlconv.util.display import TableRepr

ALPHA_FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9)
"""Candidate inner rates as fractions of the paper's alpha_c = 1/lambda_max(H). Ours (the
paper gives no grid): alpha = 0 is plain gradient descent, the reference the paper compares
with; 0.9 keeps a 10 % margin below the alpha at which the paper's top mode turns flat."""

GOVERNING: dict[str, str] = {"exact": "meta", "first_order": "surrogate", "surrogate": "surrogate"}
"""The spectrum that linearises each variant's outer step (docs/MATH.md Sec. 1, 4 and 8)."""

PREDICTIONS: tuple[str, ...] = ("formula", "formula_variant", "surrogate", "meta")
SOURCES: dict[str, str] = {
    "formula": "paper Eq. 14 on the top eigenvalues of the task-mean Hessian H",
    "formula_variant": "the variant's quadratic curvature (docs/MATH.md Sec. 4) on H's eigenvalues",
    "surrogate": "2 / top eigenvalue of the surrogate Hessian E[H - alpha (Tg + H^2)] (App. A)",
    "meta": "2 / top eigenvalue of the exact meta-Hessian of E L_q(theta_K) (docs/MATH.md Sec. 8)",
}

VERIFY_DIVERGENCE_FACTOR = 1e3
"""Verification runs count as diverged once the MAML loss is non-finite or above this factor
times its value at the start (the sweeps' 1e3 is about 250 times the sinusoid's initial loss;
a relative level makes the rule independent of the user's loss scale)."""

CAVEAT = (
    "All predictions are local and first order in time: linear stability of one outer "
    "gradient step at the measured parameters, on the given tasks. They change as training "
    "moves the parameters, and a network's finite-horizon divergence edge is also set by "
    "nonlinear dynamics (loss spikes that lower the curvature), so treat beta_c as a local "
    "bound, not the edge of a whole run."
)


def _beta_from_top(lam: float) -> float:
    """2 / lambda for one top eigenvalue, with the conventions of ``thresholds.beta_c``
    (inf for 0, 0 for a negative one): at alpha = 0 every model's curvature is lambda itself."""
    from mamlconv.theory.thresholds import beta_c

    return float(beta_c([lam], 0.0, model="surrogate"))


def _json(x: Any) -> Any:
    """JSON-ready under the package's rule (:func:`mamlconv.util.files.jsonable`): inf as null with
    a ``<key>_status`` of "inf" / "-inf", NaN as null."""
    from mamlconv.util.files import jsonable

    return jsonable(x)


@dataclass(frozen=True)
class Candidate:
    """Predictions at one candidate inner rate (every beta_c labelled by its source)."""

    alpha: float
    fraction_of_alpha_c: float
    """alpha / paper alpha_c (NaN when alpha_c is not finite)."""
    surrogate_top: float
    """Top eigenvalue of the surrogate Hessian E[H - alpha (Tg + H^2)] at the point."""
    meta_top: float
    """Top eigenvalue of the exact meta-Hessian (K inner steps) at the point."""
    beta_c: dict[str, float]
    """Prediction name (``PREDICTIONS``) -> beta_c(alpha)."""
    binding_eigenvalue: float
    """The H eigenvalue that sets the paper formula's beta_c (NaN when none)."""

    def as_dict(self) -> dict[str, Any]:
        return _json(
            {
                "alpha": self.alpha,
                "fraction_of_alpha_c": self.fraction_of_alpha_c,
                "surrogate_top": self.surrogate_top,
                "meta_top": self.meta_top,
                "beta_c": dict(self.beta_c),
                "binding_eigenvalue": self.binding_eigenvalue,
            }
        )


@dataclass(frozen=True)
class Verification:
    """Short real training runs from the measured point on the same tasks."""

    iters: int
    divergence_level: float
    initial_loss: float
    runs: tuple[dict[str, Any], ...]
    """Two records: ``recommended`` (alpha*, beta*) and ``twice_beta_c`` (alpha*, 2 beta_c)."""

    @property
    def recommended_stable(self) -> bool:
        return not self.runs[0]["diverged"]

    @property
    def twice_beta_c_diverged(self) -> bool:
        return bool(self.runs[1]["diverged"])

    @property
    def passed(self) -> bool:
        return self.recommended_stable and self.twice_beta_c_diverged

    def as_dict(self) -> dict[str, Any]:
        return _json(
            {
                "iters": self.iters,
                "divergence_level": self.divergence_level,
                "initial_loss": self.initial_loss,
                "runs": [dict(r) for r in self.runs],
                "recommended_stable": self.recommended_stable,
                "twice_beta_c_diverged": self.twice_beta_c_diverged,
                "passed": self.passed,
            }
        )


@dataclass(frozen=True, repr=False)
class Advice(TableRepr):
    """Recommended (alpha*, beta*) with every number it came from (see module docstring).
    ``repr`` and Jupyter show a short table (:class:`mamlconv.util.display.TableRepr`)."""

    problem: str
    variant: str
    steps: int
    safety: float
    n_params: int
    n_tasks: int
    hessian_top: np.ndarray = field(repr=False)
    """Top-k eigenvalues of the task-mean H, descending."""
    hessian_min: float
    """Smallest eigenvalue of H (negative: the point is not a minimum)."""
    formula_complete: bool
    """True when the top-k hold every H eigenvalue that can set the formula's beta_c
    (lambda_k < lambda_max / 2; see :mod:`mamlconv.experiments.analysis.comparison`)."""
    alpha_c_paper: float
    """Paper Eq. 11, 1/lambda_max(H) over the positive eigenvalues."""
    alpha_c_variant: float
    """``thresholds.alpha_c`` for the variant's model (inf for exact MAML: no alpha_c at a
    minimum, docs/MATH.md Sec. 4)."""
    candidates: tuple[Candidate, ...]
    governing: str
    """``meta`` or ``surrogate``: the prediction that sets the recommendation."""
    alpha_divergence: float
    """First candidate alpha at which the governing prediction is beta_c = 0 (inf: none)."""
    alpha_star: float
    beta_c_star: float
    """Governing beta_c at alpha*."""
    beta_star: float
    """safety x beta_c_star."""
    beta_c_gd: float
    """Governing beta_c at alpha = 0 when alpha = 0 is a candidate (plain GD), else NaN."""
    alpha_best_beta: float
    """The admissible candidate with the largest governing beta_c (reported, not
    recommended: the paper's guideline takes the largest alpha)."""
    n_matvecs: int
    wall_s: float
    verification: Verification | None = None
    notes: tuple[str, ...] = ()

    def _display_title(self) -> str:
        return f"Advice for {self.problem} ({self.variant} MAML, {self.steps} inner step(s))"

    def _display_rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("alpha*", self.alpha_star),
            ("beta*", f"{self.beta_star:.4g} = {self.safety:g} x beta_c {self.beta_c_star:.4g}"),
            ("beta_c from", self.governing),
            ("alpha_c (paper, variant)", f"{self.alpha_c_paper:.4g}, {self.alpha_c_variant:.4g}"),
            ("H top eigenvalues", self.hessian_top),
            ("H smallest eigenvalue", self.hessian_min),
            ("candidates", f"{len(self.candidates)} alphas"),
            ("measured on", f"{self.n_params} parameters, {self.n_tasks} tasks"),
        ]
        if self.verification is not None:
            rows.append(("verified by training", self.verification.passed))
        rows += [("note", n) for n in self.notes]
        return rows

    @property
    def candidate_star(self) -> Candidate:
        return next(c for c in self.candidates if c.alpha == self.alpha_star)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record (inf as null plus ``<key>_status``, NaN as null)."""
        return _json(
            {
                "problem": self.problem,
                "variant": self.variant,
                "steps": self.steps,
                "safety": self.safety,
                "n_params": self.n_params,
                "n_tasks": self.n_tasks,
                "recommendation": {
                    "alpha": self.alpha_star,
                    "beta": self.beta_star,
                    "beta_c": self.beta_c_star,
                    "beta_c_source": self.governing,
                    "rule": (
                        "alpha: largest candidate below the governing prediction's divergence "
                        "alpha with a finite positive beta_c; beta: safety x beta_c(alpha)"
                    ),
                },
                "hessian": {
                    "top": self.hessian_top,
                    "min": self.hessian_min,
                    "formula_complete": self.formula_complete,
                    "is_minimum": self.hessian_min >= 0,
                },
                "alpha_c": {"paper": self.alpha_c_paper, "variant": self.alpha_c_variant},
                "alpha_divergence": self.alpha_divergence,
                "governing": self.governing,
                "beta_c_gd": self.beta_c_gd,
                "alpha_best_beta": self.alpha_best_beta,
                "sources": dict(SOURCES),
                "candidates": [c.as_dict() for c in self.candidates],
                "verification": None if self.verification is None else self.verification.as_dict(),
                "n_matvecs": self.n_matvecs,
                "wall_s": self.wall_s,
                "notes": list(self.notes),
            }
        )


def _candidate_alphas(alphas: Sequence[float] | None, alpha_c_paper: float) -> np.ndarray:
    if alphas is not None:
        arr = np.asarray(alphas, dtype=float).ravel()
        if arr.size == 0:
            raise ValueError("alphas must not be empty")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"alphas must be finite and >= 0, got {arr.tolist()}")
        return np.unique(arr)
    if not (0 < alpha_c_paper < math.inf):
        raise ValueError(
            f"the paper's alpha_c is {alpha_c_paper} at this point (no positive Hessian "
            "eigenvalue among the top k), so there is no default alpha grid; pass alphas"
        )
    return np.asarray([f * alpha_c_paper for f in ALPHA_FRACTIONS])


def _choose(candidates: Sequence[Candidate], governing: str) -> tuple[float, float, float]:
    """(alpha_divergence, alpha*, alpha of the largest beta_c) by the rule of the module
    docstring (alpha* NaN: no admissible candidate)."""
    alpha_div = math.inf
    for c in candidates:
        if c.beta_c[governing] == 0.0:
            alpha_div = c.alpha
            break
    usable = [c for c in candidates if c.alpha < alpha_div and 0 < c.beta_c[governing] < math.inf]
    if not usable:
        return alpha_div, math.nan, math.nan
    best = max(usable, key=lambda c: (c.beta_c[governing], c.alpha))
    return alpha_div, max(c.alpha for c in usable), best.alpha


class _FixedPoint:
    """The user's problem started at the given parameters on the given tasks (a task pool), so
    that the engine's ``train_cells`` verifies the advice at exactly the measured point."""

    def __init__(self, base: Problem, params: Params, tasks: TaskBatch) -> None:
        self.base, self.params, self.tasks = base, params, tasks
        self.name = getattr(base, "name", "problem")

    def init_params(
        self, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
    ) -> Params:
        return {
            k: v.detach().to(device=device, dtype=dtype).clone() for k, v in self.params.items()
        }

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return self.base.loss(params, x, y)

    def sample_tasks(
        self,
        generator: torch.Generator,
        n_tasks: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> TaskBatch:
        if n_tasks != self.tasks.n_tasks:
            raise AssertionError(f"asked for {n_tasks} tasks, hold {self.tasks.n_tasks}")
        return self.tasks.to(device, dtype)


def verify(
    problem: Problem,
    params: Params,
    tasks: TaskBatch,
    *,
    variant: str,
    steps: int,
    alpha: float,
    betas: tuple[float, float],
    iters: int,
    divergence_level: float | None = None,
    seed: int = 0,
) -> Verification:
    """Train from ``params`` on the fixed ``tasks`` (full batch, SGD outer step, the theory's
    setting) for ``iters`` iterations at (alpha, betas[0]) and (alpha, betas[1]), with
    :func:`mamlconv.experiments.engine.loop.train_cells`. ``divergence_level`` None: the initial
    MAML loss times ``VERIFY_DIVERGENCE_FACTOR``."""
    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.numerics.maml import meta_objective

    like = next(iter(params.values()))
    with torch.no_grad():
        loss0 = float(meta_objective(params, tasks, loss_fn=problem.loss, alpha=alpha, steps=steps))
    if divergence_level is None:
        scale = loss0 if math.isfinite(loss0) and loss0 > 0 else 1.0
        divergence_level = VERIFY_DIVERGENCE_FACTOR * scale
    n = tasks.n_tasks
    config = SweepConfig(
        problem=getattr(problem, "name", "problem"),
        variant=variant,
        alphas=(alpha,),
        betas=tuple(sorted(betas)),
        alpha_zero_row=False,
        iters=iters,
        tasks_per_batch=n,
        steps=steps,
        outer="sgd",  # the outer rule the linear stability bound is about (paper Sec. 3.2)
        divergence_level=divergence_level,
        task_source="pool",
        pool_size=n,
        record_every=iters,
        seed=seed,
        dtype="float64" if like.dtype == torch.float64 else "float32",
        device=str(like.device),
        save_params="none",
    )
    run = train_cells(
        _FixedPoint(problem, params, tasks),
        config,
        np.full(2, alpha),
        np.asarray(betas, dtype=float),
        backend="generic",
    )
    runs = []
    for i, label in enumerate(("recommended", "twice_beta_c")):
        diverged = bool(run.diverged_at[i] >= 0)
        runs.append(
            {
                "label": label,
                "alpha": float(alpha),
                "beta": float(betas[i]),
                "final_loss": float(run.final_loss[i]),
                "diverged": diverged,
                "diverged_at": int(run.diverged_at[i]) if diverged else None,
            }
        )
    return Verification(iters, float(divergence_level), loss0, tuple(runs))


def candidate_at(
    problem: Problem,
    params: Params,
    tasks: TaskBatch,
    a: float,
    positive: np.ndarray,
    a_c_paper: float,
    variant: str,
    steps: int,
    tol: float,
    seed: int,
) -> tuple[Candidate, int]:
    """The four predictions at one inner rate ``a`` (``positive``: H's positive top
    eigenvalues), and the Hessian-vector products the two meta spectra took."""
    from mamlconv.experiments.analysis.comparison import top_meta_curvatures
    from mamlconv.theory.thresholds import beta_c, binding_eigenvalue

    tops, n_products = top_meta_curvatures(
        problem, params, tasks, alpha=a, steps=steps, tol=tol, seed=seed
    )
    formula = formula_v = math.inf
    bind = math.nan
    if positive.size:
        formula = float(beta_c(positive, a, model="surrogate"))
        formula_v = float(beta_c(positive, a, model=variant, steps=steps))
        bind = float(binding_eigenvalue(positive, a, model="surrogate"))
    frac = a / a_c_paper if 0 < a_c_paper < math.inf else math.nan
    beta = {"formula": formula, "formula_variant": formula_v}
    beta |= {name: _beta_from_top(tops[name]) for name in ("surrogate", "meta")}
    cand = Candidate(a, frac, tops["surrogate"], tops["meta"], beta, bind)
    return cand, n_products


def advise(
    problem: Problem,
    params: Params,
    tasks: TaskBatch,
    *,
    variant: str = "exact",
    steps: int = 1,
    alphas: Sequence[float] | None = None,
    safety: float = 0.5,
    k: int = 5,
    seed: int = 0,
    verify_iters: int = 0,
    tol: float = 1e-6,
    divergence_level: float | None = None,
    progress: bool = False,
) -> Advice:
    """Recommend (alpha, beta) for MAML on ``problem`` at ``params`` with ``tasks``.

    ``variant`` exact | first_order | surrogate and ``steps`` (inner steps K) say which MAML is
    trained; ``alphas`` overrides the candidate grid (default ``ALPHA_FRACTIONS`` x alpha_c);
    ``safety`` in (0, 1] scales beta* = safety x beta_c(alpha*) (0.5 is ours: half the local
    bound); ``k`` H eigenvalues are measured (Lanczos ``tol``, start vector from ``seed``);
    ``verify_iters`` > 0 runs the check of :func:`verify` (``divergence_level`` as there).
    Spectra follow the dtype and device of ``params`` (use float64 for checks). See the module
    docstring for the rule and its caveats. ``progress``: report the spectra done and the time
    left (:class:`mamlconv.util.progress.Eta`).
    """
    from mamlconv.experiments.analysis.comparison import hessian_extremes
    from mamlconv.numerics.curvature import n_params
    from mamlconv.theory.thresholds import alpha_c
    from mamlconv.util.progress import Eta

    check_variant(variant, steps)
    if not (isinstance(safety, int | float) and 0 < safety <= 1):
        raise ValueError(f"safety must be in (0, 1], got {safety!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(verify_iters, bool) or not isinstance(verify_iters, int) or verify_iters < 0:
        raise ValueError(f"verify_iters must be an integer >= 0, got {verify_iters!r}")
    given = None if alphas is None else _candidate_alphas(alphas, math.nan)  # fail before work
    n = n_params(params)
    k = min(k, n)
    t0 = time.perf_counter()
    # Units: H's spectrum, one per candidate alpha, and the verification run (if any). The
    # default grid's size is known before alpha_c is: _candidate_alphas(None, 1.0).
    n_grid = len(given if given is not None else _candidate_alphas(None, 1.0))
    eta = Eta("advise", 1 + n_grid + (verify_iters > 0), unit="steps", enabled=progress)
    h_top, h_min, matvecs = hessian_extremes(problem, params, tasks, k=k, tol=tol, seed=seed)
    eta.advance(note="Hessian spectrum")
    h_min = min(h_min, float(h_top[-1]))
    positive = h_top[h_top > 0]
    formula_model = variant  # thresholds names its models as the variants
    if positive.size:
        a_c_paper = alpha_c(positive, model="surrogate")
        a_c_variant = alpha_c(positive, model=formula_model, steps=steps)
    else:
        a_c_paper = a_c_variant = math.inf
    grid = given if given is not None else _candidate_alphas(None, a_c_paper)

    candidates = []
    for a in grid:
        cand, n_products = candidate_at(
            problem, params, tasks, float(a), positive, a_c_paper, variant, steps, tol, seed
        )
        candidates.append(cand)
        matvecs += n_products
        eta.advance(note=f"alpha={float(a):.3g}")
    governing = GOVERNING[variant]
    alpha_div, alpha_star, alpha_best = _choose(candidates, governing)
    if math.isnan(alpha_star):
        raise ValueError(
            f"no candidate alpha gives a finite positive beta_c from the {governing} spectrum "
            f"(candidates {[c.alpha for c in candidates]}); pass other alphas"
        )
    star = next(c for c in candidates if c.alpha == alpha_star)
    beta_c_star = star.beta_c[governing]
    beta_star = safety * beta_c_star
    gd = next((c.beta_c[governing] for c in candidates if c.alpha == 0.0), math.nan)

    notes = [CAVEAT]
    if h_min < 0:
        notes.append(
            f"H has a negative eigenvalue ({h_min:.4g}): the point is not a minimum, the "
            "setting of the paper's conditions; the formula uses the positive eigenvalues only."
        )
    if positive.size and not (h_top.size and h_top[-1] < h_top[0] / 2):
        notes.append(
            f"the top {h_top.size} eigenvalues of H may not hold every mode that sets the "
            "formula's beta_c (lambda_k >= lambda_max / 2); raise k."
        )
    if variant == "exact":
        notes.append(
            "exact MAML has no alpha_c at a minimum (curvatures lambda(1 - alpha lambda)^(2K), "
            "docs/MATH.md Sec. 4); the candidate grid uses the paper's alpha_c as its scale."
        )
    if variant == "first_order" and steps > 1:
        notes.append(
            "the governing surrogate Hessian is the one-step object (paper Eq. 5); with K > 1 "
            "first-order steps compare it with formula_variant (lambda(1 - alpha lambda)^K)."
        )

    verification = None
    if verify_iters > 0:
        verification = verify(
            problem,
            params,
            tasks,
            variant=variant,
            steps=steps,
            alpha=alpha_star,
            betas=(beta_star, 2.0 * beta_c_star),
            iters=verify_iters,
            divergence_level=divergence_level,
            seed=seed,
        )
        eta.advance(note=f"verified by {verify_iters} iterations")
    eta.finish()
    return Advice(
        problem=getattr(problem, "name", type(problem).__name__),
        variant=variant,
        steps=steps,
        safety=float(safety),
        n_params=n,
        n_tasks=tasks.n_tasks,
        hessian_top=h_top,
        hessian_min=h_min,
        formula_complete=bool(h_top.size and h_top[-1] < h_top[0] / 2),
        alpha_c_paper=float(a_c_paper),
        alpha_c_variant=float(a_c_variant),
        candidates=tuple(candidates),
        governing=governing,
        alpha_divergence=float(alpha_div),
        alpha_star=float(alpha_star),
        beta_c_star=float(beta_c_star),
        beta_star=float(beta_star),
        beta_c_gd=float(gd),
        alpha_best_beta=float(alpha_best),
        n_matvecs=int(matvecs),
        wall_s=round(time.perf_counter() - t0, 3),
        verification=verification,
        notes=tuple(notes),
    )


__all__ = [
    "ALPHA_FRACTIONS",
    "CAVEAT",
    "GOVERNING",
    "PREDICTIONS",
    "SOURCES",
    "Advice",
    "Candidate",
    "Verification",
    "advise",
    "candidate_at",
    "verify",
]
