"""The base layer: files, progress, provenance and plotting helpers. It imports nothing else of
mamlconv but :mod:`mamlconv.errors`.

Modules:

- :mod:`.files`: Writing result files, shared by every layer: strict JSON from NumPy/torch values,
  and
- :mod:`.plotting`: Plot helpers shared by the figure modules (matplotlib is imported only when
  called).
- :mod:`.progress`: Progress with an estimated time to completion, for commands that run longer than
  a moment.
- :mod:`.provenance`: What a result file records about how it was made: versions, commit, device,
  time.
"""
