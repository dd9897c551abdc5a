"""Plot helpers shared by the figure modules (matplotlib is imported only when called)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.util.files import atomic_write_text, dumps


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


def save_figure(fig: Any, out_dir: Path, name: str, record: dict[str, Any]) -> list[Path]:
    """Write ``<name>.png``, ``<name>.pdf`` and ``<name>.json`` (the record, strict JSON under
    the package's rule, :func:`mamlconv.util.files.jsonable`) into ``out_dir``; returns the
    paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf", out_dir / f"{name}.json"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    if fig.get_layout_engine() is not None:
        fig.set_layout_engine("none")  # laid out for the PNG; the PDF keeps it (a fifth faster)
    # A fixed creation date keeps the PDF bytes reproducible.
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})
    atomic_write_text(paths[2], dumps(record))
    return paths
