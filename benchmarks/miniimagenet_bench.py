"""MiniImagenet MAML cell-iterations per second, TFLOP/s and peak memory: batched vs one at a
time (the twin of ``omniglot_bench.py``).

    python benchmarks/miniimagenet_bench.py --device cpu              # CPU: val split, reduced
    python benchmarks/miniimagenet_bench.py --paper --device cuda --json out.json

``--paper`` is the paper's episode size (5-way 1-shot, 15 queries, 4 tasks, 2 inner steps, 32
filters, train split) at 1, 8, 16, 32 and 64 batched cells; the default is reduced (val split,
2 tasks, 2 queries, 1 and 2 cells). What is measured and how: see ``benchmarks/fewshot_bench.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fewshot_bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main("miniimagenet", __doc__))
