"""Plot helpers shared by the figure modules (matplotlib is imported only when called)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend unless MPLBACKEND chooses one."""
    import matplotlib

    if os.environ.get("MPLBACKEND") is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_cell_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges of a log-spaced axis for pcolormesh: geometric midpoints between centres,
    extended by half a step at both ends (one decade wide for a single centre)."""
    c = np.log10(np.asarray(centres, dtype=float))
    if c.size == 1:
        return 10.0 ** np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return 10.0 ** np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
