"""How a result object shows itself in a terminal and in a notebook: a titled two-column table.

A class mixes in :class:`TableRepr` and says what to show in ``_display_title()`` and
``_display_rows()`` (label, value pairs); ``repr(obj)`` is then a short aligned text table and
``obj._repr_html_()`` (Jupyter's hook) the same as an HTML table. Values are shown compactly:
floats to 4 significant digits, arrays by shape and range, long text cut with an ellipsis, so
that no repr runs to thousands of characters. ``text_table`` and ``html_table`` are the two
renderings, for objects that cannot inherit the mixin.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

VALUE_WIDTH = 72


def show(value: Any, width: int = VALUE_WIDTH) -> str:
    """One value as a short line of text."""
    if isinstance(value, bool | np.bool_):
        text = str(bool(value))
    elif isinstance(value, float | np.floating):
        v = float(value)
        text = f"{v:.4g}" if math.isfinite(v) else str(v)
    elif isinstance(value, np.ndarray):
        finite = value[np.isfinite(value)] if value.dtype.kind == "f" else value
        if value.size <= 6:
            text = "[" + ", ".join(show(v, 12) for v in value.ravel()) + "]"
        elif finite.size:
            text = f"array {value.shape}, {show(finite.min())} .. {show(finite.max())}"
        else:
            text = f"array {value.shape}, no finite value"
    elif isinstance(value, list | tuple) and len(value) > 6:
        text = f"{len(value)} items: " + ", ".join(show(v, 12) for v in value[:3]) + ", …"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v, 16) for v in value) + "]"
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def text_table(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    """``title`` then one ``label  value`` line per row, labels aligned."""
    w = max((len(k) for k, _ in rows), default=0)
    return "\n".join([title, *(f"  {k:<{w}}  {show(v)}" for k, v in rows)])


def html_table(title: str, rows: Sequence[tuple[str, Any]]) -> str:
    """The same as an HTML table with a caption (for Jupyter's ``_repr_html_``)."""
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(show(v))}</td></tr>"
        for k, v in rows
    )
    return (
        f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>"
        f"{body}</table>"
    )


class TableRepr:
    """Mixin: a readable ``repr`` and ``_repr_html_`` from ``_display_title`` and
    ``_display_rows``."""

    def _display_title(self) -> str:
        return type(self).__name__

    def _display_rows(self) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return text_table(self._display_title(), self._display_rows())

    def _repr_html_(self) -> str:
        return html_table(self._display_title(), self._display_rows())
