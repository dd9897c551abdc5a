"""The base layer: the small helpers every other layer shares (result files, progress reports,
provenance records, plot helpers, the version). It imports nothing else of mamlconv but
:mod:`mamlconv.errors`, which stands beside it in the base layer, and this ``__init__`` imports
nothing at all: import the module you need (``from mamlconv.util.files import dumps``).

Modules:

- :mod:`.version`: the installed version, ``__version__`` (``0+unknown`` in a never-installed tree).
- :mod:`.provenance`: what a result file records about how it was made (versions, commit,
  device, time).
- :mod:`.files`: strict JSON from NumPy/torch values and atomic writes of result files.
- :mod:`.progress`: progress reports with an estimated time to completion, through ``logging``;
  :func:`~mamlconv.util.progress.show_on_stderr` prints them for the command line.
- :mod:`.plotting`: matplotlib on demand (``pyplot``), log-scale cell edges and ``save_figure``.
- :mod:`.devices`: how a device is written (``auto``, ``cpu``, ``cuda``, ``cuda:N``), torch-free.
- :mod:`.threads`: the one rule for torch's threads in heavy calls (default 1,
  ``MAMLCONV_THREADS``), applied by the command line and, call by call, by the Python API.
- :mod:`.display`: how result objects show themselves (``repr`` and Jupyter's ``_repr_html_``
  as a short titled table): the ``TableRepr`` mixin, ``text_table``, ``html_table``.
- :mod:`.lazy`: package attributes imported on first use (PEP 562), so that a package's
  ``__init__`` does not import its modules' heavy dependencies.
- :mod:`.html_page`: a Markdown report as one self-contained HTML page, figures embedded.
"""
