"""Measurement against prediction, numbers only (drawing is in
:mod:`mamlconv.experiments.figures`): the stability edges read from a sweep result, the
measured edge against three predictions of beta_c at a parameter point (claim X-5,
``mamlconv compare``), and the learning-rate advisor that turns the paper's guideline into
(alpha, beta) for a user's problem (``mamlconv advise``).

Modules, in data-flow order:

- :mod:`.edges`: per alpha the largest stable beta of a result, and the edge near the
  divergence alpha against the alpha = 0 edge.
- :mod:`.comparison`: the measured boundary against the formula, the meta-Hessian and the
  surrogate predictions of beta_c (docs/MATH.md section 8), with their spectra and tables.
- :mod:`.advisor`: recommended (alpha, beta) at a given point from the measured curvatures,
  optionally verified by short training runs.
- :mod:`.measured_advice`: the edges measured instead (``advise --measure``): alpha scan and
  bisection, batched beta ladders at alpha = 0 and alpha*, within a cell-iteration budget.
- :mod:`.adam_edge`: Adam's analogue of the meta-rate bound, 38 / lambda_max(P^-1 M) (Cohen et
  al. 2022), for the measured advice of an Adam outer loop.
- :mod:`.stationary`: theta*(alpha), a stationary point of a variant's outer update found in
  float64 (an optimiser, then Newton) and certified (||F||, the Jacobian's spectrum, flat
  directions).
- :mod:`.local`: the paper's conditions in their own regime: every prediction of the local beta
  edge at theta*(alpha) against the edge measured with the real outer update (``mamlconv local``).
- :mod:`.mechanism`: what sets the Fig. 4 edge: catapult ratio and edge-of-stability product
  beside the measured and the local edge (``mamlconv compare --mechanism``).
"""

from __future__ import annotations

from mamlconv.util.lazy import lazy_exports

_EXPORTS = {
    "ALPHA_FRACTIONS": ".advisor",
    "CAVEAT": ".advisor",
    "GOVERNING": ".advisor",
    "SOURCES": ".advisor",
    "Advice": ".advisor",
    "Candidate": ".advisor",
    "Verification": ".advisor",
    "advise": ".advisor",
    "verify": ".advisor",
    "LABELS": ".comparison",
    "POINTS": ".comparison",
    "PREDICTIONS": ".comparison",
    "Comparison": ".comparison",
    "PointSpectra": ".comparison",
    "Prediction": ".comparison",
    "compare": ".comparison",
    "comparison_record": ".comparison",
    "hessian_extremes": ".comparison",
    "log10_error": ".comparison",
    "markdown_table": ".comparison",
    "point_spectra": ".comparison",
    "predictions_from_json": ".comparison",
    "top_meta_curvatures": ".comparison",
    "boundary_summary": ".edges",
    "Edge": ".measured_advice",
    "MeasuredAdvice": ".measured_advice",
    "measure": ".measured_advice",
}
"""Where each public name lives; imported on first use (:mod:`mamlconv.util.lazy`), so that
importing this package imports none of its modules' dependencies (torch among them)."""
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)  # the public names are the lazy map's keys
