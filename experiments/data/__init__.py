"""The data sets: locating, verifying, loading and importing Omniglot and MiniImagenet.

Modules:

- :mod:`.check`: ``mamlconv data check``: verify an installation's data files and decoded caches.
- :mod:`.integrity`: Cheap integrity checks for data files and their caches: stat-and-content keys,
  checksummed
- :mod:`.miniimagenet`: MiniImagenet: loading a split (JPEG bytes decoded once with Pillow into a
  memory-mapped,
- :mod:`.omniglot`: Omniglot: loading the shipped archive, the paper's train/test split of
  characters, and
- :mod:`.shards`: Data files split into shards with their own sha256, reassembled transparently on
  load.
- :mod:`.store`: Where the data files are and whether they are intact: the data roots, the table of
  shipped
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
    # store
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
    # omniglot
    "Omniglot",
    "load_omniglot",
    "OMNIGLOT_SCHEMES",
    "omniglot_split",
    "omniglot_arrays",
    "import_omniglot",
    # miniimagenet
    "MiniImagenetSplit",
    "decode_jpegs",
    "load_miniimagenet",
    "decoded_cache",
    "miniimagenet_arrays",
    "import_miniimagenet",
    # check
    "CheckResult",
    "check_installation",
    "check_decoded",
]
