"""mamlconv: checks, derivations and experiments for Takagi et al. (2019),
"On the conditions of MAML convergence".

Layers (each importable on its own; heavy imports stay inside them):

- ``mamlconv.theory``       SymPy derivations and the numeric thresholds alpha_c / beta_c
- ``mamlconv.numerics``     MAML steps, exact dynamics on quadratics, curvature spectra
- ``mamlconv.experiments``  batched MAML training sweeps on sinusoid, Omniglot, MiniImagenet
- ``mamlconv.paper_checks`` the claims audit (pytest)
- ``mamlconv.cli``          the ``mamlconv`` command, a thin layer over the above
"""

import logging
from importlib.metadata import PackageNotFoundError, version

# Library code reports progress and diagnostics through ``logging`` (one logger per module, all
# under "mamlconv"): quiet unless the application configures a handler, as the CLI does.
logging.getLogger(__name__).addHandler(logging.NullHandler())

try:
    __version__ = version("mamlconv")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

MODELS = ("surrogate", "first_order", "exact")
"""The three MAML objects of ``docs/MATH.md``, by the names used everywhere in the package."""
