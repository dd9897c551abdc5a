"""The one home of the post-hoc cell criteria: diverged, learned, dead units.

A cell is judged after training from its loss at iteration 0, its running maximum and its final
value (:attr:`mamlconv.experiments.engine.loop.CellRun.max_loss`), so changing a criterion never
needs a rerun. :func:`criteria` gives the stability masks of a sweep result (diverged, and for
classification learned) that the Fig. 4 panels and the comparison draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ABSOLUTE_LEVEL = 1e3
"""The absolute divergence level: the package's sweep default (SweepConfig.divergence_level),
about 250 times the sinusoid loss at initialisation."""


RELATIVE_FACTOR = 10.0
"""The relative divergence criterion: the running maximum exceeds this many times the loss at
iteration 0 (a blow-up relative to the start, whatever the loss's scale)."""


LEARNED_FRACTION = 0.9
"""A non-diverged cell *learned* when its final loss is below this fraction of the run's
reference loss, the plain loss at the initial parameters (:func:`reference_loss`). A network
that collapsed to a constant-like output keeps about that loss (final / initial 1.0-1.05 at the
edge of the committed 20 x 20 sinusoid sweep), while joint training's floor on the sinusoid
family is about 0.78 of it (no single function fits tasks of random phase), so 0.9 separates
the two without calling alpha = 0 a failure to learn. Applied when results are read
(:func:`load_run`), so changing it never needs a rerun."""


def diverged(criterion: str, *, max_loss, initial_loss) -> np.ndarray:
    """Post-hoc divergence from the running maximum and the loss at iteration 0.

    ``nonfinite``: max is NaN/inf; ``absolute``: or max > ABSOLUTE_LEVEL; ``relative``: or
    max > RELATIVE_FACTOR * initial loss.
    """
    m = np.asarray(max_loss, dtype=float)
    init = np.asarray(initial_loss, dtype=float)
    bad = ~np.isfinite(m)
    with np.errstate(invalid="ignore"):
        if criterion == "nonfinite":
            return bad
        if criterion == "absolute":
            return bad | (m > ABSOLUTE_LEVEL)
        if criterion == "relative":
            return bad | ~np.isfinite(init) | (m > RELATIVE_FACTOR * init)
    raise ValueError(f"unknown criterion {criterion!r} (known: nonfinite, absolute, relative)")


def reference_loss(alphas: np.ndarray, initial_loss: np.ndarray) -> float:
    """The collapse reference of a run: the plain loss at the initial parameters, i.e. the
    alpha = 0 row's loss at iteration 0 (every cell starts from the same parameters and first
    task batch). The initial networks output nearly a constant, so a cell that ends near this
    loss has not learned; a MAML cell's own loss at iteration 0 is no reference (at large
    alpha one inner step from the initial point can multiply it)."""
    rows = np.asarray(alphas) == 0
    base = np.asarray(initial_loss, dtype=float)[rows] if rows.any() else np.asarray(initial_loss)
    return float(np.nanmedian(base))


def chance_loss(ways: int) -> float:
    """The cross-entropy of a uniform guess over ``ways`` classes, ln(ways): the reference of
    :func:`learned` for classification (a network stuck at chance level keeps about it)."""
    return math.log(ways)


def learned_reference(problem_options: Mapping[str, Any], initial_loss) -> float:
    """The reference of :func:`learned` for a run: :func:`chance_loss` for a classification
    problem (its options carry ``ways``), else the plain loss at the initial parameters (the
    median of ``initial_loss``, the reference row's losses at iteration 0)."""
    ways = problem_options.get("ways")
    if ways:
        return chance_loss(int(ways))
    return float(np.nanmedian(np.asarray(initial_loss, dtype=float)))


def learned(*, final_loss, initial_loss) -> np.ndarray:
    """The one "learned" rule: final loss < LEARNED_FRACTION * reference (both finite).

    ``initial_loss`` is the reference: :func:`reference_loss` (the plain loss at the initial
    parameters) for regression reading runs, :func:`chance_loss` for classification."""
    f = np.asarray(final_loss, dtype=float)
    i = np.asarray(initial_loss, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(f) & np.isfinite(i) & (f < LEARNED_FRACTION * i)


def dead_fraction_mlp(params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Per cell: the fraction of hidden ReLU units whose pre-activation is <= 0 on every input.

    ``params``: cell-stacked MLP weights (``w1 (C, 1, h)``, ``b1 (C, h)``, ...); ``x``: the
    inputs (N, 1) of the task data. A dead unit passes no signal and gets no gradient on that
    data; a network with every last-layer unit dead outputs a constant. NaN for a cell with
    non-finite parameters.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    n_layers = sum(1 for k in params if k.startswith("w"))
    cells = params["w1"].shape[0]
    dead_total = np.zeros(cells)
    units = 0
    a = np.broadcast_to(x, (cells, *x.shape))
    for layer in range(1, n_layers):
        w, b = params[f"w{layer}"], params[f"b{layer}"]
        with np.errstate(all="ignore"):
            z = np.einsum("cni,cio->cno", a, w) + b[:, None, :]
        dead_total += (z <= 0).all(axis=1).sum(axis=1)
        units += z.shape[2]
        a = np.maximum(z, 0.0)
    finite = np.all(
        [np.isfinite(p.reshape(cells, -1)).all(axis=1) for p in params.values()], axis=0
    )
    return np.where(finite, dead_total / units, np.nan)


DEFAULT_CRITERION = "diverged"


@dataclass(frozen=True)
class Criterion:
    """Which cells count as stable: a mask over the grid and one over the alpha = 0 row."""

    name: str
    description: str
    """What a blank cell means, for the colour bar."""
    stable: np.ndarray
    """(n_alpha, n_beta) bool."""
    stable0: np.ndarray | None
    """(n_beta,) bool for the alpha = 0 row, None when the sweep has no such row."""


def criteria(result: Any) -> dict[str, Criterion]:
    """The stability criteria a :class:`~mamlconv.experiments.sweep.results.SweepResult` supports.

    ``diverged`` (every result): stable = not diverged within the run, the sweep's own record
    (non-finite loss, or loss above ``config.divergence_level``) -- the paper's "the area with no
    color represents the diverged losses". ``learned`` (classification results, which carry
    ``ways``): stable = not diverged and :func:`learned` against :func:`chance_loss`.
    """
    cfg = result.config
    div0 = None if result.alpha0 is None else np.asarray(result.alpha0["diverged_at"]) >= 0
    out = {
        "diverged": Criterion(
            "diverged",
            f"blank: diverged (non-finite or loss > {cfg.divergence_level:g})",
            ~result.diverged,
            None if div0 is None else ~div0,
        )
    }
    ways = cfg.problem_options.get("ways")
    if ways:
        chance = learned_reference(cfg.problem_options, ())
        ok = ~result.diverged & learned(final_loss=result.final_loss, initial_loss=chance)
        ok0 = (
            None
            if div0 is None
            else ~div0 & learned(final_loss=result.alpha0["final_loss"], initial_loss=chance)
        )
        out["learned"] = Criterion(
            "learned",
            f"blank: diverged or not learned (loss >= {LEARNED_FRACTION * chance:.3g} = "
            f"{LEARNED_FRACTION:g} ln {ways})",
            ok,
            ok0,
        )
    return out


def get_criterion(result: Any, name: str | None) -> Criterion:
    """The criterion called ``name`` (None: the default); ValueError naming the choices."""
    available = criteria(result)
    name = name or DEFAULT_CRITERION
    if name not in available:
        raise ValueError(
            f"unknown criterion {name!r} for this result; choose one of {sorted(available)}"
        )
    return available[name]
