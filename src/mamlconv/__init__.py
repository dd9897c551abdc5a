"""mamlconv: checks, derivations and experiments for Takagi et al. (2019),
"On the conditions of MAML convergence".

Layers, lowest first; a layer imports only itself and the layers listed before it, never one
listed after it (tests/test_layers.py enforces the order), and heavy imports stay inside them:

- ``mamlconv.errors``, ``mamlconv.util``  the base layer: the error types, result files,
  progress, provenance, plot helpers; imports nothing above it
- ``mamlconv.theory``       SymPy derivations and the numeric thresholds alpha_c / beta_c
- ``mamlconv.numerics``     MAML steps, exact dynamics on quadratics, curvature spectra
- ``mamlconv.experiments``  batched MAML training sweeps on sinusoid, Omniglot, MiniImagenet,
  in subpackages by data flow: data, problems, engine, sweep, readings, analysis, figures
- ``mamlconv.paper_checks`` the claims audit (pytest) and its judging rules
- ``mamlconv.api``          the small Python API, also reachable as ``mamlconv.sweep`` etc.
- ``mamlconv.cli``          the ``mamlconv`` command, a thin layer over the above
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
    "local_stability": "mamlconv.api",
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
