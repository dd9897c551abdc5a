"""Peak memory per cell at the paper episode shape, and the chunk it allows.

Measures the memory model of :mod:`mamlconv.experiments.engine.memory`
(:func:`~mamlconv.experiments.engine.memory.measure_model`) with ``--tasks`` tasks on this
machine's CPU (or CUDA), scales it to the paper's tasks per meta-step and prints the number
of cells per call that fits in ``--free-gib`` of free memory.

    python benchmarks/memory_model.py [--problem omniglot] [--tasks 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="memory_model.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="omniglot", choices=("omniglot", "miniimagenet"))
    parser.add_argument("--tasks", type=int, default=1, help="tasks per step to measure with")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--variant", default="exact", choices=("exact", "first_order"))
    parser.add_argument("--free-gib", type=float, default=139.0, help="free device memory")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        sys.stderr.write(f"memory_model: error: --tasks {args.tasks} must be >= 1\n")
        return 2
    if not args.free_gib > 0:
        sys.stderr.write(f"memory_model: error: --free-gib {args.free_gib} must be > 0\n")
        return 2

    from mamlconv.experiments.engine.memory import SAFETY, measure_model
    from mamlconv.experiments.problems.registry import get_preset

    paper = get_preset(args.problem, "paper")
    config = paper.replace(
        tasks_per_batch=args.tasks, pool_size=args.tasks, device=args.device, variant=args.variant
    )
    model = measure_model(config, (1, 2))
    full = model.scaled(paper.tasks_per_batch)
    gib = 2**30
    print(
        f"{args.problem} paper episode, {args.variant}, {args.device}: measured with "
        f"{args.tasks} task(s): base {model.base_bytes / gib:.3f} GiB + "
        f"{model.per_cell_bytes / gib:.3f} GiB per cell; at {paper.tasks_per_batch} tasks "
        f"{full.per_cell_bytes / gib:.2f} GiB per cell -> {full.chunk_size(args.free_gib * gib)} "
        f"cells per call in {args.free_gib:g} GiB (safety {SAFETY})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
