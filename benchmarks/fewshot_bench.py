"""Few-shot MAML cell-iterations per second, achieved TFLOP/s and peak memory, batched vs one
cell at a time (shared by ``omniglot_bench.py`` and ``miniimagenet_bench.py``).

Both sides run :func:`mamlconv.experiments.engine.loop.train_cells` in this process on the same
problem, configuration, tasks and threads; only the number of cells per call (and, on the
batched side, the opt-in speed options of :mod:`mamlconv.experiments.engine.deferred`) differs. The
cells
get stable learning rates (none diverges, so none is dropped mid-run) and the final losses of
the two sides are compared, so the ratio is between two runs of the same numbers.

FLOPs: :func:`mamlconv.experiments.engine.flops.count_step_flops` counts one cell-iteration (one
step
with meta-gradients) on the run's device; achieved TFLOP/s = that count x cells x iterations /
wall time. The time also holds the run's last evaluation and the recorded diagnostics, which
the count leaves out, so the figure slightly understates the rate of the counted work.
Memory (CUDA): ``torch.cuda.max_memory_allocated`` over the batched run minus what was
allocated before it; on a CPU the benchmark prints none (see
:mod:`mamlconv.experiments.engine.memory`).
float32 runs with TF32 off (``allow_tf32 = False`` for matmul and cuDNN): float32 means float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

PAPER_CELLS = (1, 8, 16, 32, 64)


def build_parser(problem: str, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{problem}_bench.py",
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cells", type=int, nargs="+", default=None, help="cells per call")
    parser.add_argument("--iters", type=int, default=2, help="meta-iterations per run")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per meta-iteration")
    parser.add_argument("--query", type=int, default=None, help="query images per class")
    parser.add_argument("--filters", type=int, default=None, help="filters per block")
    parser.add_argument("--paper", action="store_true", help="paper episode size")
    parser.add_argument("--variant", default="exact", choices=("exact", "first_order"))
    parser.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument(
        "--baseline-cells",
        type=int,
        default=8,
        help="time one cell at a time on at most this many of the cells (0: no baseline)",
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC episode images")
    parser.add_argument(
        "--check-every", type=int, default=1, help="host divergence check every k iterations"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"benchmark: error: {message}\n")
    return 2


def main(problem_name: str, doc: str, argv: list[str] | None = None) -> int:
    args = build_parser(problem_name, doc).parse_args(argv)
    if args.iters < 1 or args.check_every < 1 or args.baseline_cells < 0:
        return _fail(
            f"--iters {args.iters}, --check-every {args.check_every} must be >= 1 and "
            f"--baseline-cells {args.baseline_cells} >= 0"
        )
    if args.cells is not None and min(args.cells) < 1:
        return _fail(f"--cells {args.cells}: every entry must be >= 1")

    import torch

    from mamlconv.experiments.engine.flops import count_step_flops
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.experiments.engine.state import resolve_device
    from mamlconv.experiments.problems.registry import get_preset, get_problem
    from mamlconv.util.provenance import describe

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        return _fail(f"{exc} (use --device cpu)")
    on_cuda = device.startswith("cuda")
    paper = get_preset(problem_name, "paper")
    small = {"omniglot": (4, 5, 64), "miniimagenet": (2, 2, 32)}[problem_name]
    tasks = args.tasks or (paper.tasks_per_batch if args.paper else small[0])
    query = args.query or (paper.problem_options["query"] if args.paper else small[1])
    filters = args.filters or small[2]
    cells_list = args.cells or (list(PAPER_CELLS) if args.paper else [1, 2])
    options: dict[str, Any] = {**paper.problem_options, "query": query, "filters": filters}
    if problem_name == "miniimagenet" and not args.paper:
        options["split"] = "val"  # 16 classes decode in seconds; train has 64
    config = paper.replace(
        iters=args.iters,
        tasks_per_batch=tasks,
        pool_size=max(tasks, paper.pool_size),
        variant=args.variant,
        device=device,
        record_every=max(1, args.iters),
        alpha_zero_row=False,
    )
    baseline_problem = get_problem(problem_name, **options)
    problem = get_problem(problem_name, **options, channels_last=args.channels_last)
    speed = {"check_every": args.check_every, "compile": args.compile}
    print(
        f"{problem_name} {options['ways']}-way {options['shots']}-shot, query {query}, "
        f"{tasks} tasks, {config.steps} inner steps, {args.variant}, {filters} filters, "
        f"{args.iters} iterations, device {device}, {torch.get_num_threads()} thread(s), "
        f"options {dict(speed, channels_last=args.channels_last)}",
        flush=True,
    )

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    flops = count_step_flops(
        problem, config, n_cells=1, device=device, dtype=torch.float32
    )  # FLOPs do not depend on the cells (tested)
    per_cell_iter = flops["flops_per_cell"]
    print(f"one cell-iteration: {per_cell_iter / 1e9:.2f} GFLOP (FlopCounterMode, corrected)")
    warm = config.replace(iters=1)
    train_cells(baseline_problem, warm, np.array([0.01]), np.array([0.01]))
    sync()

    rows = []
    for n_cells in cells_list:
        alphas = np.geomspace(1e-3, 1e-2, n_cells)  # stable: far below the paper's boundary
        betas = np.full(n_cells, 1e-2)
        row: dict[str, Any] = {"cells": n_cells}
        try:
            if args.compile:  # compile outside the timed run
                train_cells(problem, warm, alphas, betas, **speed)
            sync()
            before = torch.cuda.memory_allocated() if on_cuda else 0
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            batched = train_cells(problem, config, alphas, betas, **speed)
            sync()
            t_batched = time.perf_counter() - t0
        except torch.cuda.OutOfMemoryError as exc:
            row["oom"] = str(exc).splitlines()[0]
            rows.append(row)
            print(f"cells {n_cells:3d}: out of memory ({row['oom']})", flush=True)
            torch.cuda.empty_cache()
            continue
        work = n_cells * args.iters
        row.update(
            batched_cell_iters_per_s=work / t_batched,
            batched_tflops=per_cell_iter * work / t_batched / 1e12,
            batched_s=t_batched,
            diverged=int(batched.diverged.sum()),
        )
        if on_cuda:
            peak = float(torch.cuda.max_memory_allocated() - before)
            row.update(peak_bytes=peak, peak_bytes_per_cell=peak / n_cells)
        n_base = min(n_cells, args.baseline_cells)
        if n_base:
            t0 = time.perf_counter()
            single = [
                train_cells(baseline_problem, config, alphas[c : c + 1], betas[c : c + 1])
                for c in range(n_base)
            ]
            sync()
            t_single = time.perf_counter() - t0
            loss_single = np.concatenate([r.final_loss for r in single])
            rate = n_base * args.iters / t_single
            row.update(
                per_cell_cell_iters_per_s=rate,
                per_cell_tflops=per_cell_iter * rate / 1e12,
                per_cell_cells_timed=n_base,
                ratio=row["batched_cell_iters_per_s"] / rate,
                max_final_loss_diff=float(
                    np.max(np.abs(batched.final_loss[:n_base] - loss_single))
                ),
            )
        rows.append(row)
        text = (
            f"cells {n_cells:3d}: batched {row['batched_cell_iters_per_s']:8.3f} cell-it/s "
            f"({row['batched_tflops']:.4g} TFLOP/s"
        )
        if on_cuda:
            text += (
                f", peak {row['peak_bytes'] / 2**30:.2f} GiB, "
                f"{row['peak_bytes_per_cell'] / 2**30:.3f} GiB/cell"
            )
        text += ")"
        if n_base:
            text += (
                f", one at a time {row['per_cell_cell_iters_per_s']:8.3f} cell-it/s "
                f"({row['per_cell_tflops']:.4g} TFLOP/s), ratio {row['ratio']:6.2f}x "
                f"(final losses differ by {row['max_final_loss_diff']:.2e})"
            )
        print(text, flush=True)

    record: dict[str, Any] = {
        "benchmark": f"{problem_name}_bench",
        "settings": {
            **vars(args),
            "json": None if args.json is None else str(args.json),
            "tasks": tasks,
            "query": query,
            "filters": filters,
            "problem_options": options,
            "tf32": False,
        },
        "config": config.to_dict(),
        "flops_per_cell_iteration": per_cell_iter,
        "flops_by_op": flops["by_op"],
        "rows": rows,
        "provenance": describe(device),
    }
    if on_cuda:
        from mamlconv.experiments.engine.memory import cuda_chunk_size

        free, total = torch.cuda.mem_get_info()
        record["device_memory"] = {"free_bytes": free, "total_bytes": total}
        record["memory_model_chunk"] = cuda_chunk_size(config)
        print(f"memory model: {record['memory_model_chunk']} cells per call fit this device")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0
