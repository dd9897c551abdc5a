"""Benchmark: the Ray backend against local worker processes on the same sweep.

A 100-cell x 100-iteration sinusoid sweep (paper preset, 10 x 10 cells of the stable corner, so
every cell runs every iteration: 10,000 cell-iterations), run

- locally with ``workers=2`` (``mamlconv sweep --workers 2``; its process start included, as a
  user pays it), and
- on a local Ray instance with 2 CPUs (``--backend ray``, one CPU per task, so two chunks at a
  time), started once before the timings (a cluster is up before a sweep is sent to it; the
  start-up is printed separately),

alternating the two ``--repeats`` times, for each chunk size of ``--chunk-sizes`` (``default``:
the sweep's own choice). Prints the wall times, the ratio ray / local (the Ray overhead; issue
13 asks for at most 1.15 at the default chunk size), each wall time over its ideal (the chunks'
own compute time, summed, over 2 workers: what is lost to start-up, scheduling and stragglers)
and the round-trip cost of an empty Ray task
(the scheduling overhead per chunk that the cost model in docs/cluster.md uses). Checks that the
two results are equal, array for array.

    python benchmarks/ray_bench.py [--repeats 3] [--chunk-sizes default,10] [--iters 100]

Numbers depend on the machine and its load: compare the ratios of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mamlconv.experiments.problems.registry import get_preset
from mamlconv.experiments.sweep import ray_backend
from mamlconv.experiments.sweep.chunks import default_chunk_size
from mamlconv.experiments.sweep.run import run_sweep


def bench_config(iters: int, chunk_size: int | None):
    return get_preset("sinusoid", "paper").replace(
        alphas=tuple(np.geomspace(1e-4, 1e-2, 10)),
        betas=tuple(np.geomspace(1e-2, 0.1, 10)),
        alpha_zero_row=False,
        iters=iters,
        chunk_size=chunk_size,
        device="cpu",
        save_params="none",
    )


def empty_task_ms(ray, n: int = 200) -> float:
    """Milliseconds per empty task, submitted all at once and gathered (throughput)."""
    f = ray.remote(num_cpus=1)(_nothing)
    ray.get([f.remote() for _ in range(10)])
    t0 = time.perf_counter()
    ray.get([f.remote() for _ in range(n)])
    return 1e3 * (time.perf_counter() - t0) / n


def ideal(result) -> float:
    """The sweep's chunk compute time spread perfectly over 2 workers (its lower bound)."""
    return sum(c["wall_s"] for c in result.run_info["chunks"]) / 2


def _nothing() -> None:
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--chunk-sizes", default="default,10")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ray = ray_backend.start_local(num_cpus=2)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray_backend.wait_for_workers(ray, 2, timeout=600)
    t_warm = time.perf_counter() - t0
    print(f"ray start-up: {t_start:.1f} s to start, {t_warm:.1f} s until 2 workers imported torch")
    print(f"empty Ray task: {empty_task_ms(ray):.2f} ms per task (round trip, 2 CPUs)")
    options = ray_backend.RayOptions()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for spec in args.chunk_sizes.split(","):
                cfg = bench_config(args.iters, None if spec == "default" else int(spec))
                size = default_chunk_size(cfg)
                n_chunks = -(-100 // size)
                local_t, ray_t, local_o, ray_o = [], [], [], []
                for r in range(args.repeats):
                    loc = run_sweep(cfg, Path(tmp, f"l{r}.npz"), workers=2, progress=False)
                    rem = run_sweep(cfg, Path(tmp, f"r{r}.npz"), progress=False, ray=options)
                    np.testing.assert_array_equal(loc.final_loss, rem.final_loss)
                    np.testing.assert_array_equal(loc.diverged_at, rem.diverged_at)
                    for name, v in loc.trajectories.items():
                        np.testing.assert_array_equal(v, rem.trajectories[name], err_msg=name)
                    local_t.append(loc.run_info["wall_s"])
                    ray_t.append(rem.run_info["wall_s"])
                    local_o.append(local_t[-1] / ideal(loc))
                    ray_o.append(ray_t[-1] / ideal(rem))
                    print(
                        f"  chunk size {size} ({n_chunks} chunks), repeat {r + 1}: "
                        f"--workers 2 {local_t[-1]:.2f} s ({local_o[-1]:.3f} x ideal), "
                        f"ray {ray_t[-1]:.2f} s ({ray_o[-1]:.3f} x ideal)",
                        flush=True,
                    )
                ratio = statistics.median(ray_t) / statistics.median(local_t)
                best = min(ray_t) / min(local_t)
                print(
                    f"chunk size {size} ({n_chunks} chunks of 100 cells x {args.iters} iters): "
                    f"median --workers 2 {statistics.median(local_t):.2f} s, "
                    f"ray {statistics.median(ray_t):.2f} s; ray / local = {ratio:.3f} "
                    f"(best of each: {best:.3f}); wall / ideal: --workers 2 "
                    f"{statistics.median(local_o):.3f}, ray {statistics.median(ray_o):.3f}; "
                    "results equal",
                    flush=True,
                )
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
