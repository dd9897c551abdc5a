"""mamlconv: checks, derivations and experiments for Takagi et al. (2019),
"On the conditions of MAML convergence".

Layers (each importable on its own; heavy imports stay inside them):

- ``mamlconv.theory``       SymPy derivations and the numeric thresholds alpha_c / beta_c
- ``mamlconv.numerics``     MAML steps, exact dynamics on quadratics, curvature spectra
- ``mamlconv.experiments``  batched MAML training sweeps on sinusoid, Omniglot, MiniImagenet
- ``mamlconv.paper_checks`` the claims audit (pytest)
- ``mamlconv.cli``          the ``mamlconv`` command, a thin layer over the above
- ``mamlconv.api``          the small Python API, also reachable as ``mamlconv.sweep`` etc.
"""

import logging

from mamlconv.util.version import __version__

# Library code reports progress and diagnostics through ``logging`` (one logger per module, all
# under "mamlconv"): quiet unless the application configures a handler, as the CLI does.
logging.getLogger(__name__).addHandler(logging.NullHandler())

MODELS = ("surrogate", "first_order", "exact")
"""The three MAML objects of ``docs/MATH.md``, by the names used everywhere in the package."""

# The Python API (docs/api.md), resolved on first use so that `import mamlconv` imports
# neither torch nor SymPy.
_API = {
    "thresholds": "mamlconv.api",
    "spectrum": "mamlconv.api",
    "advise": "mamlconv.api",
    "sweep": "mamlconv.api",
    "compare": "mamlconv.api",
    "load": "mamlconv.api",
    "SweepMap": "mamlconv.api",
    "problem_from_module": "mamlconv.experiments.problems.module_problem",
    "ModuleProblemError": "mamlconv.experiments.problems.module_problem",
}
__all__ = ["MODELS", "__version__", *_API]


def __getattr__(name: str):  # PEP 562: lazy attributes
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'mamlconv' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
