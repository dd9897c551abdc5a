"""The paper's figures: tables in, Figure out.

Modules:

- :mod:`.comparison`: The comparison figure and files of ``mamlconv compare``: the Fig. 4 panel of a
  sweep with
- :mod:`.figure1`: Fig. 1 (Section 2.2): the per-task gradient norm (norm per task, then the task
  average) and
- :mod:`.figure4`: Fig. 4 for any sweep result: final training loss over the alpha x beta grid, one
  style.
- :mod:`.figure5`: Fig. 5 (Appendix B): the largest and second-largest eigenvalues of Tg, H^2 and Tg
  + H^2 and
- :mod:`.reading_maps`: One Fig. 4-style heat map per run reading of the sinusoid reading matrix, in
  one figure.
"""

from __future__ import annotations

from mamlconv.experiments.figures.comparison import (
    comparison_figure,
    draw_comparison,
    heatmap,
    prediction_curves,
    write_comparison,
)
from mamlconv.experiments.figures.figure1 import (
    FIG1_ALPHAS,
    FIG1_BETA,
    FIG1_DEFAULT_ITERS,
    PAPER_ITERS,
    fig1,
    fig1_data,
    fig1_records,
    truncate_fig1,
)
from mamlconv.experiments.figures.figure4 import (
    colorbar,
    describe_run,
    draw_panel,
    fig4,
    loss_norm,
)
from mamlconv.experiments.figures.figure5 import (
    FIG5_ALPHA,
    FIG5_BETA,
    FIG5_DEFAULT_ITERS,
    checkpoints,
    curvature_at,
    fig5,
    fig5_data,
    fig5_figure,
    frobenius_panel,
    redraw_fig5,
)
from mamlconv.experiments.figures.reading_maps import (
    plot_reading_maps,
)

__all__ = [
    # figure1
    "truncate_fig1",
    "fig1_records",
    "PAPER_ITERS",
    "FIG1_DEFAULT_ITERS",
    "FIG1_ALPHAS",
    "FIG1_BETA",
    "fig1_data",
    "fig1",
    # figure4
    "loss_norm",
    "draw_panel",
    "colorbar",
    "describe_run",
    "fig4",
    # figure5
    "FIG5_DEFAULT_ITERS",
    "FIG5_ALPHA",
    "FIG5_BETA",
    "checkpoints",
    "curvature_at",
    "fig5_data",
    "frobenius_panel",
    "fig5_figure",
    "redraw_fig5",
    "fig5",
    # comparison
    "prediction_curves",
    "heatmap",
    "draw_comparison",
    "comparison_figure",
    "write_comparison",
    # reading_maps
    "plot_reading_maps",
]
