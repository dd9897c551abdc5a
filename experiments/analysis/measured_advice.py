"""Measured advice: the stability edges of the user's own problem from short real training runs.

Beyond the paper. :mod:`.advisor` predicts (alpha*, beta*) from curvature spectra at the initial
point: a local, first-order bound that sits well below a network's finite-horizon edge (the
sinusoid survives beta 5-7 times above 2/lambda_max). :func:`measure` replaces the predictions by
measurements at a stated cost, following the paper's guideline "first, search for the largest
possible alpha; next, tune beta":

1. **alpha scan.** At a small meta rate ``beta_scan`` (the preset's smallest beta, or a tenth of
   the predicted beta_c(0) when that is smaller), a binary search over a coarse ladder of inner
   rates (default ``ALPHA_LADDER`` x the paper's alpha_c = 1/lambda_max) finds the largest
   ladder alpha that trains the full horizon: that is alpha*. The bracket [alpha*, first
   diverged ladder alpha] is then bisected on log(alpha) to ``ALPHA_TARGET_DECADES``: its upper
   end is alpha_div (every beta >= beta_scan diverges there), its lower end the largest stable
   alpha measured. The search assumes stability is monotone in alpha at small beta.
2. **beta edges** at alpha = 0 and at alpha*: a ladder of ``ladder`` meta rates per round,
   trained together in one batched engine call (:func:`mamlconv.experiments.engine.loop.
   train_cells`, which drops a cell the iteration its loss crosses the divergence level),
   refined round by round inside the bracket [largest stable beta, smallest diverged beta]
   until it is at most ``target_decades`` wide. The first round is seeded by the governing
   prediction beta_c(alpha) of :mod:`.advisor` (from ``SEED_DECADES`` below to above it).
3. **the advice**: alpha* and beta* = ``safety`` x the largest beta measured stable at alpha*;
   per edge, which of the four predictions of :mod:`.advisor` came closest and by how much; a
   warning when a column is non-monotone in beta (a stable beta above a diverged one: the
   chaotic band of the sinusoid), with the conservative bracket below the first divergence.

Cost is counted in cell-iterations (a stable cell costs the horizon, a cell that diverged at
iteration t costs t + 1) against ``budget`` (default ``DEFAULT_GRID_FRACTION`` of a 20 x 20 grid
at the same horizon); a round that does not fit stops the search and says so. With
``outer='adam'`` the edge is measured the same way and reported beside Cohen et al.'s (2022,
arXiv 2207.14484) preconditioned-sharpness analogue 38 / lambda_max(P^-1 M) for Adam's default
momentum 0.9, where the paper's beta conditions no longer apply (``ADAM_CONDITIONS``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mamlconv.experiments.analysis.advisor import GOVERNING, PREDICTIONS, Candidate, candidate_at
from mamlconv.experiments.config import SweepConfig
from mamlconv.numerics.tasks import Problem
from mamlconv.util.files import jsonable

ALPHA_LADDER: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Default coarse inner-rate ladder, in units of the paper's alpha_c = 1/lambda_max(H) at the
initial point (ours: half-decade steps two decades below to one above the predicted alpha_c)."""
EXTEND = 3
"""Half-decade steps tried above the default ladder when its top trains stably (a ladder the
caller gives is the caller's range and is not extended)."""
ALPHA_TARGET_DECADES = 0.1
"""Width (decades) to which the alpha_div bracket is bisected."""
TARGET_DECADES = 0.15
"""Default width (decades) of a measured beta bracket: its geometric midpoint is then within
0.075 decades of any edge inside it."""
SEED_DECADES = (-0.25, 1.25)
"""The first beta round spans the governing prediction x 10^-0.25 to x 10^1.25: the measured
finite-horizon edges of the committed sweeps lie at or above the local linear bound."""
DEFAULT_GRID_FRACTION = 0.05
GRID_SHAPE = (20, 20)
"""The full grid the cost is compared with: 20 alphas x 20 betas (the paper preset's grid,
without its alpha = 0 row) at the same horizon."""


@dataclass(frozen=True)
class Trial:
    """One trained cell: stable means it never crossed the divergence level."""

    alpha: float
    beta: float
    stable: bool
    diverged_at: int
    final_loss: float
    cost: int
    """Cell-iterations it took (the horizon, or diverged_at + 1)."""
    initial_loss: float = math.nan
    """The MAML loss at iteration 0 (at alpha = 0: the plain loss at the initial point)."""


@dataclass(frozen=True)
class Edge:
    """The measured beta edge at one alpha: [lo, hi] = [largest stable beta below the first
    divergence, smallest diverged beta]; lo None: nothing stable was found (edge below the
    searched range); hi inf: nothing diverged (above it)."""

    alpha: float
    lo: float | None
    hi: float
    non_monotone: bool
    stable_above: tuple[float, ...]
    """Betas that trained stably above ``hi`` (the chaotic band)."""
    seed: float
    """The prediction the first round was centred on."""
    rounds: int

    @property
    def width_decades(self) -> float:
        if self.lo is None or not math.isfinite(self.hi):
            return math.inf
        return math.log10(self.hi / self.lo)

    @property
    def midpoint(self) -> float:
        if self.lo is None:
            return self.hi
        return self.lo if not math.isfinite(self.hi) else math.sqrt(self.lo * self.hi)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "alpha": self.alpha,
                "lo": self.lo,
                "hi": self.hi,
                "width_decades": self.width_decades,
                "non_monotone": self.non_monotone,
                "stable_above": list(self.stable_above),
                "seed": self.seed,
                "rounds": self.rounds,
            }
        )


def closest_prediction(edge: Edge, candidate: Candidate | None) -> dict[str, Any] | None:
    """Which prediction of beta_c came closest to the measured edge and by how much: signed
    log10(prediction / edge midpoint) per prediction (finite positive ones only)."""
    if candidate is None:
        return None
    errors = {}
    for name in PREDICTIONS:
        value = candidate.beta_c[name]
        if 0 < value < math.inf:
            errors[name] = math.log10(value / edge.midpoint)
    if not errors:
        return {"name": None, "log10_error": None, "errors": {}}
    best = min(errors, key=lambda n: abs(errors[n]))
    return {
        "name": best,
        "value": candidate.beta_c[best],
        "log10_error": errors[best],
        "errors": errors,
        "edge_is_bracketed": edge.lo is not None and math.isfinite(edge.hi),
    }


@dataclass(frozen=True)
class MeasuredAdvice:
    """What :func:`measure` found (see the module docstring); ``as_dict`` is the JSON record."""

    problem: str
    variant: str
    outer: str
    iters: int
    safety: float
    alpha_c_paper: float
    beta_scan: float
    alpha_ladder: tuple[float, ...]
    alpha_star: float
    alpha_div: tuple[float | None, float]
    """[largest stable alpha, alpha_div] at beta_scan; (x, inf): none of the ladder diverged."""
    beta_star: float
    edges: tuple[Edge, ...]
    """alpha = 0 first, then alpha*."""
    predictions: tuple[Candidate | None, ...]
    """The advisor's predictions at each edge's alpha."""
    trials: tuple[Trial, ...]
    cell_iterations: int
    seconds: float
    budget: int
    check: Trial | None
    adam: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    theory_seconds: float = 0.0
    learned_reference: float = math.nan
    """A cell *learned* when its final loss is below 0.9 of this (``criteria.learned``)."""

    def cell_learned(self, alpha: float, beta: float | None) -> bool | None:
        """Did the trained cell (alpha, beta) learn (None: no such cell)?"""
        from mamlconv.experiments.criteria import learned

        cell = next((t for t in self.trials if t.alpha == alpha and t.beta == beta), None)
        if cell is None:
            return None
        return bool(learned(final_loss=cell.final_loss, initial_loss=self.learned_reference))

    @property
    def grid_cell_iterations(self) -> int:
        return GRID_SHAPE[0] * GRID_SHAPE[1] * self.iters

    @property
    def grid_fraction(self) -> float:
        return self.cell_iterations / self.grid_cell_iterations

    @property
    def non_monotone(self) -> bool:
        return any(e.non_monotone for e in self.edges)

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "problem": self.problem,
                "variant": self.variant,
                "outer": self.outer,
                "iters": self.iters,
                "recommendation": {
                    "alpha": self.alpha_star,
                    "beta": self.beta_star,
                    "safety": self.safety,
                    "rule": (
                        "alpha*: largest ladder alpha that trains the horizon at beta_scan; "
                        "beta* = safety x the largest beta measured stable at alpha*"
                    ),
                },
                "measured_edges": [
                    e.as_dict() | {"lo_learned": self.cell_learned(e.alpha, e.lo)}
                    for e in self.edges
                ],
                "learned_reference": self.learned_reference,
                "check_learned": self.check
                and self.cell_learned(self.check.alpha, self.check.beta),
                "cost": {
                    "cell_iterations": self.cell_iterations,
                    "seconds": self.seconds,
                    "grid_fraction": self.grid_fraction,
                    "grid_cell_iterations": self.grid_cell_iterations,
                    "budget": self.budget,
                    "theory_seconds": self.theory_seconds,
                },
                "alpha_scan": {
                    "beta_scan": self.beta_scan,
                    "ladder": list(self.alpha_ladder),
                    "alpha_c_paper": self.alpha_c_paper,
                    "largest_stable_alpha": self.alpha_div[0],
                    "alpha_div": self.alpha_div[1],
                },
                "closest_prediction": [
                    closest_prediction(e, c)
                    for e, c in zip(self.edges, self.predictions, strict=True)
                ],
                "predictions": [None if c is None else c.as_dict() for c in self.predictions],
                "non_monotone": self.non_monotone,
                "check": None if self.check is None else self.check.__dict__,
                "adam": self.adam,
                "trials": [t.__dict__ for t in self.trials],
                "notes": list(self.notes),
            }
        )


@dataclass
class _Runner:
    """Trains cells in batches through the engine, remembers every result, counts the cost."""

    problem: Problem
    config: SweepConfig
    budget: int
    eta: Any
    backend: str = "auto"
    trials: dict[tuple[float, float], Trial] = field(default_factory=dict)
    spent: int = 0

    def fits(self, n_cells: int) -> int:
        """How many of ``n_cells`` new cells still fit the budget at full horizon."""
        return max(0, min(n_cells, (self.budget - self.spent) // self.config.iters))

    def run(self, pairs: Sequence[tuple[float, float]]) -> list[Trial]:
        from mamlconv.experiments.engine.loop import train_cells

        todo = sorted({(float(a), float(b)) for a, b in pairs} - set(self.trials))
        if todo:
            a = np.array([p[0] for p in todo])
            b = np.array([p[1] for p in todo])
            before, seen = self.spent, [0]

            def progress(t: int, n_active: int) -> None:
                seen[0] += n_active
                self.eta.advance(n_active, note=f"round of {len(todo)} cells, iteration {t}")

            run = train_cells(
                self.problem, self.config, a, b, backend=self.backend, progress=progress
            )
            for i, key in enumerate(todo):
                at = int(run.diverged_at[i])
                cost = self.config.iters if at < 0 else at + 1
                loss, loss0 = float(run.final_loss[i]), float(run.loss[i, 0])
                self.trials[key] = Trial(key[0], key[1], at < 0, at, loss, cost, loss0)
                self.spent += cost
            self.eta.advance(max(0, self.spent - before - seen[0]), note="round done")
        return [self.trials[(float(a), float(b))] for a, b in pairs]

    def at(self, alpha: float) -> list[Trial]:
        return sorted((t for t in self.trials.values() if t.alpha == alpha), key=lambda t: t.beta)


def _bracket(trials: list[Trial]) -> tuple[float | None, float, tuple[float, ...]]:
    """(largest stable beta below the first divergence, first diverged beta, stable betas
    above it) of one alpha's trials sorted by beta."""
    hi = next((t.beta for t in trials if not t.stable), math.inf)
    lo = max((t.beta for t in trials if t.stable and t.beta < hi), default=None)
    above = tuple(t.beta for t in trials if t.stable and t.beta > hi)
    return lo, hi, above


def beta_edge(
    runner: _Runner,
    alpha: float,
    seed: float,
    *,
    ladder: int,
    target_decades: float,
    beta_floor: float,
    beta_cap: float,
    notes: list[str],
) -> Edge:
    """The beta edge at ``alpha`` by ladders of ``ladder`` betas per batched round (see the
    module docstring); ``beta_floor`` / ``beta_cap`` end the search downwards / upwards."""
    lo_d, hi_d = SEED_DECADES
    first = [b for b in seed * np.logspace(lo_d, hi_d, ladder + 1) if beta_floor <= b <= beta_cap]
    step = (hi_d - lo_d) / ladder
    betas = first or [min(max(seed, beta_floor), beta_cap)]
    rounds = 0
    while betas:
        n = runner.fits(len(betas))
        if n < len(betas):
            notes.append(f"budget reached at alpha {alpha:.4g}: the bracket is left as measured")
            betas = list(np.asarray(betas)[np.linspace(0, len(betas) - 1, n).round().astype(int)])
            betas = sorted(set(betas))
        if not betas:
            break
        runner.run([(alpha, b) for b in betas])
        rounds += 1
        lo, hi, _ = _bracket(runner.at(alpha))
        tried = [t.beta for t in runner.at(alpha)]
        if not math.isfinite(hi):  # nothing diverged yet: go up
            top = max(tried)
            betas = [b for b in top * 10 ** (step * np.arange(1, ladder + 1)) if b <= beta_cap]
            if not betas and top < beta_cap:
                betas = [beta_cap]
        elif lo is None:  # nothing stable below the first divergence: go down
            bottom = min(tried)
            betas = [
                b for b in bottom * 10 ** (-step * np.arange(1, ladder + 1)) if b >= beta_floor
            ]
            if not betas and bottom > beta_floor:
                betas = [beta_floor]
        elif math.log10(hi / lo) > target_decades:
            betas = list(np.geomspace(lo, hi, ladder + 2)[1:-1])
        else:
            betas = []
    lo, hi, above = _bracket(runner.at(alpha))
    return Edge(alpha, lo, hi, bool(above), above, float(seed), rounds)


def alpha_scan(
    runner: _Runner, ladder: Sequence[float], beta_scan: float, notes: list[str], extend: int = 0
) -> tuple[float, tuple[float | None, float]]:
    """(alpha*, (largest stable alpha, alpha_div)) at ``beta_scan``: binary search over the
    ladder for its last stable alpha, then bisection on log(alpha) above it. ``extend``: when
    the ladder's top is stable, try up to that many half-decade steps above it."""
    ladder = sorted(float(a) for a in ladder if a > 0)
    lo_i, hi_i = -1, len(ladder)
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        if runner.fits(1) < 1:
            notes.append("budget reached during the alpha scan")
            break
        (trial,) = runner.run([(ladder[mid], beta_scan)])
        lo_i, hi_i = (mid, hi_i) if trial.stable else (lo_i, mid)
    for _ in range(extend if lo_i == len(ladder) - 1 else 0):
        if runner.fits(1) < 1:
            break
        ladder.append(ladder[-1] * 10**0.5)
        (trial,) = runner.run([(ladder[-1], beta_scan)])
        lo_i, hi_i = (lo_i + 1, hi_i + 1) if trial.stable else (lo_i, len(ladder) - 1)
        if not trial.stable:
            break
    alpha_star = ladder[lo_i] if lo_i >= 0 else 0.0
    if hi_i >= len(ladder):
        return alpha_star, (alpha_star, math.inf)
    lo, hi = (ladder[lo_i] if lo_i >= 0 else ladder[0] / 10), ladder[hi_i]
    stable_lo = ladder[lo_i] if lo_i >= 0 else None  # the largest alpha measured stable
    while math.log10(hi / lo) > ALPHA_TARGET_DECADES and runner.fits(1) >= 1:
        mid = math.sqrt(lo * hi)
        (trial,) = runner.run([(mid, beta_scan)])
        if trial.stable:
            lo = stable_lo = mid
        else:
            hi = mid
    if lo_i < 0:
        notes.append(
            f"no ladder alpha trains the horizon at beta {beta_scan:.3g}: alpha* = 0 (plain "
            "gradient descent on the joint loss)"
        )
    return alpha_star, (stable_lo, hi)


def measure(
    problem: Problem,
    config: SweepConfig,
    *,
    alphas: Sequence[float] | None = None,
    safety: float = 0.5,
    budget: int | None = None,
    ladder: int = 3,
    target_decades: float = TARGET_DECADES,
    beta_scan: float | None = None,
    k: int = 5,
    tol: float = 1e-4,
    check: bool = True,
    progress: bool = False,
    backend: str = "auto",
) -> MeasuredAdvice:
    """Measured (alpha*, beta*) for MAML on ``problem`` trained as ``config`` says (variant,
    inner steps, outer rule, horizon ``iters``, task source, seed, dtype, device, divergence
    level; its alpha and beta grids are not used, except ``betas[0]`` as the default
    ``beta_scan`` and ``betas[-1]`` as the scale of the search's upper limit). ``alphas``: the
    inner-rate ladder (default ``ALPHA_LADDER`` x alpha_c); ``budget``: cell-iterations (default
    ``DEFAULT_GRID_FRACTION`` of a ``GRID_SHAPE`` grid at the horizon); ``ladder``: betas per
    batched round; ``check``: train (alpha*, beta*) for the horizon once more and report it
    (counted in the cost). The predictions that seed the search are the advisor's, in float64
    with Lanczos tolerance ``tol`` and ``k`` Hessian eigenvalues. See the module docstring."""
    from mamlconv.experiments.analysis.adam_edge import adam_sharpness
    from mamlconv.experiments.analysis.comparison import hessian_extremes
    from mamlconv.experiments.criteria import learned_reference
    from mamlconv.experiments.engine.state import initial_state
    from mamlconv.theory.thresholds import alpha_c
    from mamlconv.util.progress import Eta

    if not (isinstance(safety, int | float) and 0 < safety <= 1):
        raise ValueError(f"safety must be in (0, 1], got {safety!r}")
    if isinstance(ladder, bool) or not isinstance(ladder, int) or ladder < 1:
        raise ValueError(f"ladder must be an integer >= 1, got {ladder!r}")
    if not (target_decades > 0):
        raise ValueError(f"target_decades must be > 0, got {target_decades!r}")
    grid = GRID_SHAPE[0] * GRID_SHAPE[1] * config.iters
    budget = int(round(DEFAULT_GRID_FRACTION * grid)) if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2 * config.iters:
        raise ValueError(
            f"budget must be an integer of at least two full runs ({2 * config.iters} "
            f"cell-iterations at {config.iters} iterations), got {budget!r}"
        )
    given = None
    if alphas is not None:
        given = sorted({float(a) for a in np.asarray(alphas, dtype=float).ravel() if a > 0})
        if not given or not all(math.isfinite(a) for a in given):
            raise ValueError(f"alphas must hold finite values > 0, got {list(alphas)}")
    config = config.replace(alpha_zero_row=False, save_params="none", record_every=config.iters)
    governing = GOVERNING[config.variant]
    notes: list[str] = []

    # -- the predictions that seed the search (float64, at the initial point, on a pool) ------
    t0 = time.perf_counter()
    theory_cfg = config.replace(task_source="pool", pool_size=config.tasks_per_batch)
    params64, stream = initial_state(problem, theory_cfg, dtype=torch.float64, device=config.device)
    assert stream.pool is not None
    pool = stream.pool
    h_top, _, _ = hessian_extremes(problem, params64, pool, k=k, tol=tol, seed=config.seed)
    positive = h_top[h_top > 0]
    a_c = float(alpha_c(positive, model="surrogate")) if positive.size else math.inf
    args = (positive, a_c, config.variant, config.steps, tol, config.seed)
    cand0, _ = candidate_at(problem, params64, pool, 0.0, *args)
    guess0 = cand0.beta_c[governing]
    adam: dict[float, dict[str, Any]] = {}

    def adam_at(a: float) -> float:  # Adam's analogue seeds an Adam search
        kw = {"alpha": a, "steps": config.steps, "tol": tol, "seed": config.seed}
        adam[a] = adam_sharpness(problem, params64, pool, **kw)
        return adam[a]["beta_c"]

    if config.outer == "adam":
        guess0 = adam_at(0.0)
    if not (0 < guess0 < math.inf):
        guess0 = 10 * config.betas[0]
        notes.append(f"no finite positive beta_c(0) prediction: the search starts at {guess0:g}")
    if given is None:
        if not (0 < a_c < math.inf):
            raise ValueError(
                "no positive Hessian eigenvalue at the initial point, so no default alpha "
                "ladder (alpha_c is not finite); pass alphas"
            )
        given = [f * a_c for f in ALPHA_LADDER]
    theory_s = time.perf_counter() - t0
    scan = min(config.betas[0], 0.1 * guess0) if beta_scan is None else float(beta_scan)
    cap = 100 * max(config.betas[-1], guess0)

    # -- the measurements ---------------------------------------------------------------
    t1 = time.perf_counter()
    eta = Eta("advise --measure", budget, unit="cell-iterations (budget)", enabled=progress)
    runner = _Runner(problem, config, budget, eta, backend=backend)
    a_star, a_div = alpha_scan(runner, given, scan, notes, extend=EXTEND if alphas is None else 0)
    opts = {"ladder": ladder, "target_decades": target_decades, "beta_cap": cap, "notes": notes}
    cand_star = None
    if a_star > 0:
        cand_star, _ = candidate_at(problem, params64, pool, a_star, *args)
        seed_star = adam_at(a_star) if config.outer == "adam" else cand_star.beta_c[governing]
        seed_star = seed_star if 0 < seed_star < math.inf else guess0
        edge_star = beta_edge(runner, a_star, seed_star, beta_floor=scan, **opts)
    edge0 = beta_edge(runner, 0.0, guess0, beta_floor=scan / 100, **opts)
    if a_star == 0:
        edge_star, cand_star = edge0, cand0
    lo_star = edge_star.lo
    if lo_star is None:
        notes.append(f"nothing trained stably at alpha* = {a_star:g}: beta* is not measured")
        beta_star = math.nan
    else:
        beta_star = safety * lo_star
    trial = None
    if check and math.isfinite(beta_star):
        (trial,) = runner.run([(a_star, beta_star)])
    for edge in (edge0, edge_star):
        if edge.non_monotone:
            notes.append(
                f"the edge at alpha {edge.alpha:.4g} is non-monotone in beta: stable at "
                f"{', '.join(f'{b:.3g}' for b in edge.stable_above)} above the divergence at "
                f"{edge.hi:.3g}; the bracket given is the one below the first divergence"
            )
    for edge in (edge0, edge_star) if adam else ():  # Adam's analogue against the measurement
        adam[edge.alpha]["log10_error"] = math.log10(adam[edge.alpha]["beta_c"] / edge.midpoint)
    adam_record = jsonable({"per_alpha": [adam[a] for a in sorted(adam)]}) if adam else None
    eta.finish()
    edges = (edge0, edge_star) if a_star > 0 else (edge0,)
    cands = (cand0, cand_star) if a_star > 0 else (cand0,)
    return MeasuredAdvice(
        problem=getattr(problem, "name", type(problem).__name__),
        variant=config.variant,
        outer=config.outer,
        iters=config.iters,
        safety=float(safety),
        alpha_c_paper=a_c,
        beta_scan=scan,
        alpha_ladder=tuple(given),
        alpha_star=a_star,
        alpha_div=a_div,
        beta_star=beta_star,
        edges=edges,
        predictions=cands,
        trials=tuple(sorted(runner.trials.values(), key=lambda t: (t.alpha, t.beta))),
        cell_iterations=runner.spent,
        seconds=round(time.perf_counter() - t1, 3),
        budget=budget,
        check=trial,
        adam=adam_record,
        notes=tuple(notes),
        theory_seconds=round(theory_s, 3),
        learned_reference=learned_reference(config.problem_options, losses0)
        if (losses0 := [t.initial_loss for t in runner.at(0.0)])
        else math.nan,
    )


__all__ = [
    "ALPHA_LADDER",
    "DEFAULT_GRID_FRACTION",
    "GRID_SHAPE",
    "TARGET_DECADES",
    "Edge",
    "MeasuredAdvice",
    "Trial",
    "alpha_scan",
    "beta_edge",
    "closest_prediction",
    "measure",
]
