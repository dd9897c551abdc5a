"""Benchmark: the batched MAML engine against the per-cell autograd loop (sinusoid, paper preset,
second order), in one process with the same number of torch threads.

Prints, for grids of 1, 16, 100 and 400 cells, the engine's cell-iterations per second, the
per-cell loop's (timed on one cell and a few iterations: its cost is per cell and per
iteration, nothing is shared between cells), their ratio, and the achieved FLOP/s of both
against a dense float32 matmul of this process (FLOPs counted by
``torch.utils.flop_counter.FlopCounterMode`` on one step, matmuls only). Then it times whole
``mamlconv sweep`` processes (start-up included): a 100-cell, 100-iteration grid of stable cells,
and with ``--paper`` the paper-size 20 x 20 x 500 grid (plus the alpha = 0 row).

    python benchmarks/sweep_bench.py [--threads 1] [--iters 20] [--loop-iters 3] [--paper]

Numbers depend on the machine and on what else runs on it: compare ratios measured in the same
run, not absolute times across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mamlconv.experiments.engine.loop import make_step, train_cells
from mamlconv.experiments.engine.reference import train_cell_loop
from mamlconv.experiments.engine.state import initial_state
from mamlconv.experiments.problems.registry import get_preset, get_problem
from mamlconv.experiments.sweep.chunks import default_chunk_size, plan_chunks

GRIDS = (1, 16, 100, 400)


def stable_cells(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n (alpha, beta) pairs inside the sinusoid's stable region (every cell runs every
    iteration, so the work is exactly n x iters cell-iterations)."""
    k = int(np.ceil(np.sqrt(n)))
    a, b = np.meshgrid(np.geomspace(1e-4, 1e-2, k), np.geomspace(1e-2, 0.1, k), indexing="ij")
    return a.ravel()[:n], b.ravel()[:n]


def matmul_flops_per_s(n: int = 1024, reps: int = 10) -> float:
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def step_flops(problem, config, n_cells: int) -> float:
    """Matmul FLOPs of one engine step on n_cells cells, per cell."""
    from torch.utils.flop_counter import FlopCounterMode

    params, stream = initial_state(problem, config, dtype=torch.float32, device="cpu")
    tasks = stream.next()
    stacked = {k: v.unsqueeze(0).repeat(n_cells, *([1] * v.dim())) for k, v in params.items()}
    step = make_step(problem, variant=config.variant, steps=config.steps)
    with FlopCounterMode(display=False) as counter:
        step(stacked, torch.full((n_cells,), 1e-3), tasks, need_direction=True, need_stats=False)
    return counter.get_total_flops() / n_cells


def loop_flops(problem, config) -> float:
    """Matmul FLOPs of one iteration of the per-cell loop."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_cell_loop(problem, config.replace(iters=1), alpha=1e-3, beta=1e-2, iters=1)
    return counter.get_total_flops() / 2  # iters=1 runs two evaluations, one update


def time_process(argv: list[str], threads: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.npz"
        cmd = [
            sys.executable,
            "-m",
            "mamlconv",
            "sweep",
            *argv,
            "--no-progress",
            "--threads",
            str(threads),
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        info = json.loads(out.with_suffix(".json").read_text())["run_info"]
    return wall, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20, help="engine iterations per grid")
    ap.add_argument("--loop-iters", type=int, default=3, help="per-cell loop iterations")
    ap.add_argument("--grids", type=str, default=",".join(map(str, GRIDS)))
    ap.add_argument("--paper", action="store_true", help="also time the 20x20x500 sweep")
    ap.add_argument("--workers", type=int, default=2, help="workers for the whole-process timings")
    ap.add_argument("--skip-process", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = get_preset("sinusoid", "paper").replace(device="cpu", chunk_size=None)
    problem = get_problem("sinusoid", **config.problem_options)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), cpus {os.cpu_count()}, "
        f"variant {config.variant}, {config.tasks_per_batch} tasks x "
        f"({config.problem_options['k_support']}+{config.problem_options['k_query']}) points"
    )

    dense = matmul_flops_per_s()
    print(f"dense 1024^3 float32 matmul: {dense / 1e9:.1f} GFLOP/s")

    # Per-cell loop: one cell, a few iterations (plus one loss evaluation), best of 2.
    loop_cfg = config.replace(iters=args.loop_iters)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        train_cell_loop(problem, loop_cfg, alpha=1e-3, beta=1e-2)
        times.append((time.perf_counter() - t0) / (args.loop_iters + 1))
    loop_s = min(times)
    lf = loop_flops(problem, config)
    print(
        f"per-cell loop: {loop_s * 1e3:.1f} ms per cell-iteration "
        f"({lf / 1e6:.1f} MFLOP, {lf / loop_s / 1e9:.2f} GFLOP/s = "
        f"{100 * lf / loop_s / dense:.1f}% of matmul)"
    )

    print(
        f"\n{'cells':>6} {'engine cell-it/s':>17} {'ms/cell-it':>11} {'loop cell-it/s':>15} "
        f"{'ratio':>7} {'engine GFLOP/s':>15} {'% matmul':>9}"
    )
    eng_cfg = config.replace(iters=args.iters, record_every=args.iters)
    chunk = default_chunk_size(eng_cfg)
    print(f"engine batches of {chunk} cell(s) (the sweep's default on a CPU)")
    for n in [int(g) for g in args.grids.split(",")]:
        a, b = stable_cells(n)
        train_cells(problem, eng_cfg.replace(iters=1), a[:1], b[:1])  # warm-up
        t0 = time.perf_counter()
        for cells in plan_chunks(np.arange(n), chunk):  # the sweep's own batching
            run = train_cells(problem, eng_cfg, a[cells], b[cells])
            assert not run.diverged.any(), "benchmark cells must all stay stable"
        wall = time.perf_counter() - t0
        cell_its = n * (args.iters + 1)
        per = wall / cell_its
        flops = step_flops(problem, config, min(n, chunk))
        print(
            f"{n:>6} {1 / per:>17.1f} {per * 1e3:>11.2f} {1 / loop_s:>15.1f} "
            f"{loop_s / per:>7.1f} {flops / per / 1e9:>15.2f} {100 * flops / per / dense:>8.1f}%"
        )

    if args.skip_process:
        return
    argv = [
        "sinusoid",
        "--preset",
        "paper",
        "--alphas",
        "1e-4:1e-2:10",
        "--betas",
        "1e-2:0.1:10",
        "--iters",
        "100",
        "--no-alpha-zero",
        "--save-params",
        "none",
    ]
    # One worker with the benchmark's threads, then one process per core (disjoint chunks),
    # which is how the sweep uses a multi-core CPU.
    for workers in sorted({1, args.workers}):
        wall, info = time_process([*argv, "--workers", str(workers)], args.threads)
        loop_equiv = info["cell_iterations"] * loop_s
        print(
            f"\nwhole process `mamlconv sweep --workers {workers}` 100 cells x 100 iterations: "
            f"{wall:.1f} s wall (sweep itself {info['wall_s']:.1f} s, "
            f"{info['cell_iterations']} cell-iterations); the loop would need "
            f"{loop_equiv:.0f} s: ratio {loop_equiv / wall:.1f}"
        )
    if args.paper:
        argv = ["sinusoid", "--preset", "paper", "--workers", str(args.workers)]
        wall, info = time_process(argv, 1)
        print(
            f"paper-size sweep 20x20x500 (+ alpha = 0 row), {args.workers} worker(s): "
            f"{wall:.1f} s wall, {info['cell_iterations']} cell-iterations"
        )


if __name__ == "__main__":
    main()
