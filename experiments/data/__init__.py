"""The data sets: where Omniglot and MiniImagenet live on this machine, whether their files are
intact, and how they are loaded (arrays and the paper's splits) or rebuilt from the official
downloads. A problem of :mod:`mamlconv.experiments.problems.fewshot` asks here for its arrays;
every failure the user can fix is a one-line :class:`~mamlconv.experiments.data.store.DataError`.

Modules, in data-flow order:

- :mod:`.integrity`: cheap integrity checks: stat-and-content file keys, checksummed decoded
  arrays, clean-up of temporary files left by killed writers.
- :mod:`.store`: the data roots (``MAMLCONV_DATA``), the table of shipped files, sha256
  verification remembered per file version, the cache folder, the ``.npz`` writer.
- :mod:`.shards`: data files split into sha256-checked shards (for the 64 MiB transfer limit),
  reassembled on load; ``mamlconv data shard``.
- :mod:`.omniglot`: the Omniglot archive, the paper's train/test split of characters, and its
  byte-for-byte import from the official zips.
- :mod:`.miniimagenet`: a MiniImagenet split (JPEGs decoded once into a memory-mapped cache)
  and its import from the Ravi & Larochelle JPEGs and CSVs.
- :mod:`.check`: ``mamlconv data check``: verify an installation's data files and decoded caches.
"""

from __future__ import annotations

from mamlconv.experiments.data.check import (
    CheckResult,
    check_decoded,
    check_installation,
)
from mamlconv.experiments.data.miniimagenet import (
    MiniImagenetSplit,
    decode_jpegs,
    decoded_cache,
    import_miniimagenet,
    load_miniimagenet,
    miniimagenet_arrays,
)
from mamlconv.experiments.data.omniglot import (
    OMNIGLOT_SCHEMES,
    Omniglot,
    import_omniglot,
    load_omniglot,
    omniglot_arrays,
    omniglot_split,
)
from mamlconv.experiments.data.store import (
    CACHE_ENV,
    DATA_ENV,
    DEFAULT_DATA_ROOTS,
    IMPORT_HINT,
    MINIIMAGENET_SPLITS,
    OMNIGLOT_SPLIT_NAMES,
    SHIPPED,
    USER_DATA_ROOT,
    DataError,
    FileSpec,
    cache_dir,
    candidate_roots,
    dataset_file,
    describe_lookup,
    locate,
    sha256_file,
    verify_file,
    write_npz,
)

__all__ = [
    # store: where the files are and whether they are intact
    "DATA_ENV",
    "CACHE_ENV",
    "USER_DATA_ROOT",
    "DEFAULT_DATA_ROOTS",
    "IMPORT_HINT",
    "MINIIMAGENET_SPLITS",
    "OMNIGLOT_SPLIT_NAMES",
    "DataError",
    "FileSpec",
    "SHIPPED",
    "candidate_roots",
    "describe_lookup",
    "locate",
    "cache_dir",
    "sha256_file",
    "verify_file",
    "dataset_file",
    "write_npz",
    # omniglot: loading, the paper's split, the import from the official zips
    "Omniglot",
    "load_omniglot",
    "OMNIGLOT_SCHEMES",
    "omniglot_split",
    "omniglot_arrays",
    "import_omniglot",
    # miniimagenet: loading through the decoded cache, the import from the JPEGs
    "MiniImagenetSplit",
    "decode_jpegs",
    "load_miniimagenet",
    "decoded_cache",
    "miniimagenet_arrays",
    "import_miniimagenet",
    # check: ``mamlconv data check``
    "CheckResult",
    "check_installation",
    "check_decoded",
]
