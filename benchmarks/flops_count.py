"""GFLOP per cell-iteration of the few-shot problems at the paper presets.

Counted on the CPU for one task by :func:`mamlconv.experiments.engine.flops.count_step_flops`
and multiplied by the tasks per meta-step (the count is linear in the tasks:
tests/test_gpuprep.py).

    python benchmarks/flops_count.py [--problems omniglot,miniimagenet] [--variant exact]
"""

from __future__ import annotations

import argparse
import sys

PROBLEMS = ("omniglot", "miniimagenet")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flops_count.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", default=",".join(PROBLEMS), help="comma list")
    parser.add_argument("--variant", default="exact", choices=("exact", "first_order"))
    args = parser.parse_args(argv)
    names = [p for p in args.problems.split(",") if p]
    bad = [p for p in names if p not in PROBLEMS]
    if bad or not names:
        sys.stderr.write(
            f"flops_count: error: --problems {args.problems!r}: omniglot or miniimagenet\n"
        )
        return 2

    from mamlconv.experiments.engine.flops import count_step_flops
    from mamlconv.experiments.problems.registry import get_preset, get_problem

    for name in names:
        paper = get_preset(name, "paper")
        config = paper.replace(tasks_per_batch=1, pool_size=1, device="cpu", variant=args.variant)
        count = count_step_flops(get_problem(name, **paper.problem_options), config)
        total = count["flops"] * paper.tasks_per_batch
        print(
            f"{name} paper, {args.variant}: {count['flops'] / 1e9:.2f} GFLOP per task x "
            f"{paper.tasks_per_batch} tasks = {total / 1e9:.1f} GFLOP per cell-iteration"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
