"""Small helpers shared by the claim tests: set-ups through the package's own functions,
flattening, and log-log slopes. Nothing here computes a claim; it only prepares inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mamlconv.paper_checks.verdicts import ClaimAudit


def sinusoid_setup(
    audit: ClaimAudit, *, seed: int, n_tasks: int = 3, hidden: tuple[int, int] = (40, 40)
) -> tuple[Any, dict, Any]:
    """The package's sinusoid problem (MLP 1-h-h-1, ReLU) in float64 with tasks from ``seed``.

    Returns ``(problem, params, tasks)``; ``tasks`` has a leading task axis.
    """
    import torch

    sinusoid = audit.require("mamlconv.experiments.sinusoid", "SinusoidProblem")
    problem = sinusoid.SinusoidProblem(hidden=hidden)
    gen = torch.Generator().manual_seed(seed)
    params = problem.init_params(gen, dtype=torch.float64, device="cpu")
    tasks = problem.sample_tasks(gen, n_tasks, dtype=torch.float64, device="cpu")
    return problem, params, tasks


def one_task(tasks: Any, i: int) -> Any:
    """Task ``i`` of a batch WITHOUT the task axis (what ``task_meta_gradient`` takes)."""
    return type(tasks)(*(t[i] for t in tasks))


def flat(tree: dict) -> Any:
    """A parameter dict as one vector (insertion order)."""
    import torch

    return torch.cat([t.reshape(-1) for t in tree.values()])


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: the order p of y = O(x^p)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    return float(np.polyfit(lx, ly, 1)[0])


def identities_hold(
    builders: Sequence[Callable[[int], Any]], ns: Sequence[int] = (2, 3)
) -> dict[str, bool]:
    """``{'<label> (n=<n>)': holds}`` for theory Identity builders (exact SymPy simplification)."""
    out = {}
    for build in builders:
        for n in ns:
            ident = build(n)
            out[f"{ident.label} (n={n})"] = bool(ident.holds())
    return out
