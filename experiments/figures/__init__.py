"""The paper's figures and the package's own: numbers in (a sweep result, a comparison, trained
checkpoints), a matplotlib Figure and its PNG/PDF/JSON files out (``mamlconv figure``,
``mamlconv compare``). Matplotlib is imported only when a figure is drawn
(:mod:`mamlconv.util.plotting`).

Modules, in data-flow order:

- :mod:`.figure1`: Fig. 1 (Section 2.2): per-task gradient norms and inner products along
  training, joint training against MAML.
- :mod:`.figure4`: Fig. 4 for any sweep result: the final loss over the alpha x beta grid,
  diverged cells blank, the alpha = 0 edge dashed; one style for every panel
  (``panel_figure``: a Figure in memory, ``fig4``: its files).
- :mod:`.figure5`: Fig. 5 (Appendix B): the top eigenvalues of Tg, H^2 and Tg + H^2 and their
  Frobenius norms at checkpoints along training.
- :mod:`.comparison`: the figure and files of ``mamlconv compare``: a Fig. 4 panel with the
  predicted beta_c(alpha) curves over it.
- :mod:`.local`: the figure and table of ``mamlconv local``: beta_c(alpha) predicted and
  measured at theta*(alpha), the Fig. 4 edge of the same problem beside it.
- :mod:`.advice`: the figure of ``advise --measure``: the cells trained, the measured edges
  and the predictions at their alphas.
- :mod:`.reading_maps`: one Fig. 4-style heat map per run reading of the sinusoid reading
  matrix, in one figure with one colour scale and colour bar.
"""

from __future__ import annotations

from mamlconv.util.lazy import lazy_exports

_EXPORTS = {
    "advice_figure": ".advice",
    "draw_measured_advice": ".advice",
    "comparison_figure": ".comparison",
    "draw_comparison": ".comparison",
    "heatmap": ".comparison",
    "prediction_curves": ".comparison",
    "write_comparison": ".comparison",
    "FIG1_ALPHAS": ".figure1",
    "FIG1_BETA": ".figure1",
    "FIG1_DEFAULT_ITERS": ".figure1",
    "PAPER_ITERS": ".figure1",
    "fig1": ".figure1",
    "fig1_data": ".figure1",
    "fig1_records": ".figure1",
    "truncate_fig1": ".figure1",
    "colorbar": ".figure4",
    "describe_run": ".figure4",
    "draw_panel": ".figure4",
    "fig4": ".figure4",
    "panel_figure": ".figure4",
    "loss_norm": ".figure4",
    "FIG5_ALPHA": ".figure5",
    "FIG5_BETA": ".figure5",
    "FIG5_DEFAULT_ITERS": ".figure5",
    "checkpoints": ".figure5",
    "curvature_at": ".figure5",
    "fig5": ".figure5",
    "fig5_data": ".figure5",
    "fig5_figure": ".figure5",
    "frobenius_panel": ".figure5",
    "redraw_fig5": ".figure5",
    "plot_reading_maps": ".reading_maps",
    "reading_maps_figure": ".reading_maps",
}
"""Where each public name lives; imported on first use (:mod:`mamlconv.util.lazy`), so that
importing this package imports none of its modules' dependencies (torch among them)."""
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)  # the public names are the lazy map's keys
