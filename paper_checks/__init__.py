"""The claims audit of Takagi et al. (2019): ``pytest --pyargs mamlconv.paper_checks``.

One test per row of docs/CLAIMS.md (:mod:`mamlconv.paper_checks.claims`), each recording one verdict
(:mod:`mamlconv.paper_checks.verdicts`) through the ``audit`` fixture of
:mod:`mamlconv.paper_checks.plugin`; :mod:`mamlconv.paper_checks.report` writes the report
(Markdown, JSON, one HTML page) and :mod:`mamlconv.paper_checks.summary` its first screen: the
findings in words and, per claim, the kind of finding and a one-line reason.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path


def results_dir() -> Path:
    """The committed result files: ``MAMLCONV_RESULTS`` if set, else experiments/results/."""
    override = os.environ.get("MAMLCONV_RESULTS")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("mamlconv.experiments")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("mamlconv.experiments is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "results"
