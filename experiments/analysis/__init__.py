"""Measurement against prediction: numbers, no drawing.

Modules:

- :mod:`.advisor`: A learning-rate advisor: recommended (alpha, beta) for any problem at a given
  point.
- :mod:`.comparison`: Measured stability boundaries against three predictions of beta_c
  (docs/MATH.md section 8,
- :mod:`.edges`: Stability edges read from a sweep result: per alpha, the largest stable beta, and
  the
"""

from __future__ import annotations

from mamlconv.experiments.analysis.advisor import (
    ALPHA_FRACTIONS,
    CAVEAT,
    GOVERNING,
    SOURCES,
    Advice,
    Candidate,
    Verification,
    advise,
    verify,
)
from mamlconv.experiments.analysis.comparison import (
    LABELS,
    POINTS,
    PREDICTIONS,
    Comparison,
    PointSpectra,
    Prediction,
    compare,
    comparison_record,
    hessian_extremes,
    log10_error,
    markdown_table,
    point_spectra,
    predictions_from_json,
    top_meta_curvatures,
)
from mamlconv.experiments.analysis.edges import (
    boundary_summary,
)

__all__ = [
    # comparison
    "Prediction",
    "predictions_from_json",
    "PREDICTIONS",
    "POINTS",
    "LABELS",
    "PointSpectra",
    "Comparison",
    "log10_error",
    "hessian_extremes",
    "top_meta_curvatures",
    "point_spectra",
    "compare",
    "comparison_record",
    "markdown_table",
    # advisor
    "ALPHA_FRACTIONS",
    "CAVEAT",
    "GOVERNING",
    "SOURCES",
    "Advice",
    "Candidate",
    "Verification",
    "advise",
    "verify",
    # edges
    "boundary_summary",
]
