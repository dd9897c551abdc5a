"""Omniglot MAML meta-iterations per second: all cells in one batched call vs one cell at a time.

Both sides run :func:`mamlconv.experiments.engine.train_cells` in this process on the same
problem, configuration, tasks and threads; only the number of cells per call differs. The
cells get stable learning rates (no cell diverges, so none is dropped mid-run) and the final
losses of the two sides are compared, so the ratio is between two runs of the same numbers.

    python benchmarks/omniglot_bench.py --device cpu         # CPU: a reduced size, a minute
    python benchmarks/omniglot_bench.py --paper --device cuda  # the paper's episode size

The default episodes are reduced (8 tasks of 5-way 1-shot with 5 queries, 2 inner steps, 64
filters) so that a CPU run takes about a minute; ``--paper`` uses the paper preset's 32 tasks
and 15 queries.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[4], help="cells per grid")
    parser.add_argument("--iters", type=int, default=2, help="meta-iterations per run")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per meta-iteration")
    parser.add_argument("--query", type=int, default=None, help="query images per class")
    parser.add_argument("--paper", action="store_true", help="paper episode size (32 x 15)")
    parser.add_argument("--variant", default="exact", choices=("exact", "first_order"))
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import torch

    from mamlconv.experiments.engine import resolve_device, train_cells
    from mamlconv.experiments.problems import get_preset, get_problem
    from mamlconv.provenance import describe

    torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    paper = get_preset("omniglot", "paper")
    tasks = args.tasks or (paper.tasks_per_batch if args.paper else 8)
    query = args.query or (paper.problem_options["query"] if args.paper else 5)
    options = {**paper.problem_options, "query": query}
    config = paper.replace(
        iters=args.iters,
        tasks_per_batch=tasks,
        pool_size=max(tasks, paper.pool_size),
        variant=args.variant,
        device=device,
        record_every=max(1, args.iters),
        alpha_zero_row=False,
    )
    problem = get_problem("omniglot", **options)
    print(
        f"omniglot {options['ways']}-way {options['shots']}-shot, query {query}, {tasks} tasks, "
        f"{config.steps} inner steps, {args.variant}, {options['filters']} filters, "
        f"{args.iters} iterations, device {device}, {torch.get_num_threads()} thread(s)"
    )
    # warm-up (allocator, kernels, the data cache)
    train_cells(problem, config.replace(iters=1), np.array([0.05]), np.array([0.05]))

    rows = []
    for n_cells in args.cells:
        alphas = np.geomspace(1e-2, 1e-1, n_cells)  # stable: far below the paper's boundary
        betas = np.full(n_cells, 0.05)
        t0 = time.perf_counter()
        batched = train_cells(problem, config, alphas, betas)
        t_batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        single = [
            train_cells(problem, config, alphas[c : c + 1], betas[c : c + 1])
            for c in range(n_cells)
        ]
        t_single = time.perf_counter() - t0
        loss_single = np.concatenate([r.final_loss for r in single])
        diff = float(np.max(np.abs(batched.final_loss - loss_single)))
        work = n_cells * args.iters
        row = {
            "cells": n_cells,
            "batched_meta_iters_per_s": work / t_batched,
            "per_cell_meta_iters_per_s": work / t_single,
            "ratio": t_single / t_batched,
            "batched_s": t_batched,
            "per_cell_s": t_single,
            "max_final_loss_diff": diff,
            "diverged": int(batched.diverged.sum()),
        }
        rows.append(row)
        print(
            f"cells {n_cells:3d}: batched {row['batched_meta_iters_per_s']:8.3f} cell-it/s, "
            f"one at a time {row['per_cell_meta_iters_per_s']:8.3f} cell-it/s, "
            f"ratio {row['ratio']:6.2f}x  (final losses differ by {diff:.2e})",
            flush=True,
        )
    if args.json is not None:
        record = {
            "benchmark": "omniglot_bench",
            "settings": {**vars(args), "json": str(args.json), "tasks": tasks, "query": query},
            "rows": rows,
            "provenance": describe(device),
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
