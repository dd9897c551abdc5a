"""Omniglot MAML cell-iterations per second, TFLOP/s and peak memory: batched vs one at a time.

    python benchmarks/omniglot_bench.py --device cpu                  # CPU: a reduced size
    python benchmarks/omniglot_bench.py --paper --device cuda --json out.json
    python benchmarks/omniglot_bench.py --paper --device cuda --check-every 10 --channels-last

``--paper`` is the paper's episode size (5-way 1-shot, 15 queries, 32 tasks, 2 inner steps,
64 filters) at 1, 8, 16, 32 and 64 batched cells; the default is reduced (4 tasks, 5 queries,
1 and 2 cells) so that a CPU run takes about a minute. What is measured and how: see
``benchmarks/fewshot_bench.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fewshot_bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main("omniglot", __doc__))
