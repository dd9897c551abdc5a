"""The experiments layer: MAML trained for real, many (alpha, beta) cells at once, on the
sinusoid, Omniglot and MiniImagenet problems of the paper's Section 4 (or a user's own
``nn.Module``), and what is read from the trained grids: stability edges, the readings of the
claims the paper leaves open, the comparison with the predicted beta_c, and the figures. It
stands on :mod:`mamlconv.numerics` (steps, tasks, curvature) and :mod:`mamlconv.theory`
(thresholds). This ``__init__`` imports nothing (tests/test_layers.py checks it): import the
module you need. Its parts, in data-flow order; each may import the ones above it, never one
below (tests/test_layers.py enforces the order):

- :mod:`.config`: :class:`~mamlconv.experiments.config.SweepConfig`, everything that decides
  the numbers of one alpha x beta sweep.
- :mod:`.criteria`: the post-hoc cell criteria (diverged, learned, dead units) and a result's
  stability masks.
- :mod:`.data`: the data sets: locating, verifying, sharding, loading and importing Omniglot
  and MiniImagenet.
- :mod:`.problems`: the problems a sweep trains (sinusoid, the few-shot CNN, a user's module)
  and the registry from a name or spec to one.
- :mod:`.engine`: the batched MAML trainer (state, the two step backends, the loop) and its
  reference loop, GPU options, memory and FLOP models.
- :mod:`.sweep`: alpha x beta sweeps: chunks, local or Ray executors, the files and locks, the
  result file, edge bisection, size estimates.
- :mod:`.readings`: the reading matrix of the settings the paper leaves open, and the
  resumable runs of its readings (sinusoid, few-shot).
- :mod:`.analysis`: measurement against prediction, numbers only: stability edges, the
  comparison with the predicted beta_c, the learning-rate advisor.
- :mod:`.figures`: the paper's Figs. 1, 4 and 5, the comparison figure and the reading maps.
- ``results/``: the shipped result files and their notes (data, not code).
- ``gpu/``: the shell scripts of a run on the GPU machine (``env.sh``, the few-shot matrix).
"""
