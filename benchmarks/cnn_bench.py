"""MAML on convolutional networks on a CPU: mamlconv against a plain per-task loop and
learn2learn, on the same episodes, interleaved, one thread.

Problems (exact second-order MAML, float32, one SGD outer step per cell-iteration):

- ``omniglot``: the paper's episode (5-way 1-shot, 15 queries per class, 64 filters, 2 inner
  steps) at 8 and 32 tasks per meta-step, one cell per call (the sweep's CPU chunk);
- ``own_model``: the CNN with BatchNorm of ``examples/own_model.py`` through
  ``problem_from_module``, as the example sweeps it (4 tasks, 1 inner step), 16 cells per call
  (the sweep's CPU chunk for a user's problem).

Sides, each doing the same work on the same parameters and tasks:

- ``mamlconv``: the engine's step as ``train_cells`` builds it on a CPU (``auto``: the
  ``grouped`` backend, :mod:`mamlconv.experiments.engine.grouped`), then the SGD update;
- ``loop``: per cell and per task, ``torch.autograd.grad(..., create_graph=True)`` through
  the network with stock ``nn`` layers (native batch norm; for Omniglot the ``ConvNetModule``
  twin of the functional CNN) via ``torch.func.functional_call``, then ``torch.optim.SGD``;
- ``learn2learn``: ``l2l.algorithms.MAML(module).clone().adapt(loss)`` per task, then
  ``torch.optim.SGD`` (skipped, saying so, when learn2learn is not installed);
- ``generic`` (``--generic``): the vmapped torch.func backend, the engine's previous default
  (not at 32 Omniglot tasks, where one call takes about a minute).

Before timing, the float64 meta-gradients of ``mamlconv`` (and of ``learn2learn``) are
compared with the loop's on the same parameters and tasks (largest difference relative to the
largest entry). Each side is timed ``--repeat`` times, interleaved (side A, B, C, A, B, C,
...), best taken: seconds per cell-iteration, GFLOP/s (the loop's FLOPs of one cell-iteration,
counted by :func:`mamlconv.experiments.engine.flops.counter`, over the time), the peak memory
of one call (resident high-water mark above the start, glibc mmap threshold 64 KiB so freed
buffers return to the kernel: :func:`mamlconv.experiments.engine.memory.peak_bytes`), and the
ratio of each side's time to mamlconv's. The load average is printed beside the numbers (the
machine may be shared; compare ratios, not absolute times).

    python benchmarks/cnn_bench.py                     # everything (minutes on one core)
    python benchmarks/cnn_bench.py --only own_model --repeat 5
    python benchmarks/cnn_bench.py --json experiments/results/cnn_bench_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CASES = {  # name: (problem, tasks per meta-step, inner steps, cells per call)
    "omniglot-8": ("omniglot", 8, 2, 1),
    "omniglot-32": ("omniglot", 32, 2, 1),
    "own_model": ("own_model", 4, 1, 16),
}
ALPHA, BETA = 0.05, 0.01
SLOW_GENERIC = ("omniglot-32",)  # cases whose generic side --generic skips


def _reexec_with_mmap_threshold() -> None:
    """Peak memory needs freed tensor buffers handed back to the kernel (see memory.py)."""
    from mamlconv.experiments.engine.memory import MMAP_THRESHOLD

    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != str(MMAP_THRESHOLD):
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
        env["MALLOC_TRIM_THRESHOLD_"] = "0"
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _problem(name: str):
    """(problem, stock nn.Module of the same network, {functional name: module name}, loss)."""
    import torch.nn.functional as F

    if name == "omniglot":
        from mamlconv.experiments.problems import cnn
        from mamlconv.experiments.problems.registry import get_problem

        problem = get_problem("omniglot", ways=5, shots=1, query=15, filters=64)
        module = cnn.ConvNetModule(problem.spec)
        by_param = {id(p): n for n, p in module.named_parameters()}
        names = {f: by_param[id(p)] for f, p in module.functional_names().items()}
        return problem, module, names, F.cross_entropy
    sys.path.insert(0, str(REPO / "examples"))
    import own_model

    problem = own_model.make_problem()
    module = problem.module
    return problem, module, {n: n for n in problem.trainable}, problem.loss_fn


class Sides:
    """The sides of one case, on shared tasks and initial parameters."""

    def __init__(self, case: str, dtype: Any, *, tasks: int | None = None) -> None:
        import torch

        from mamlconv.experiments.config import SweepConfig
        from mamlconv.experiments.engine.state import initial_state

        problem_name, n_tasks, steps, cells = CASES[case]
        self.problem, self.module, self.names, self.loss_fn = _problem(problem_name)
        self.module = self.module.to(dtype)
        self.steps, self.cells = steps, cells
        self.n_tasks = tasks or n_tasks
        config = SweepConfig(
            problem="bench",
            tasks_per_batch=self.n_tasks,
            pool_size=self.n_tasks,
            steps=steps,
            task_source="fresh",
        )
        self.init, stream = initial_state(self.problem, config, dtype=dtype, device="cpu")
        self.tasks = stream.next()
        self.dtype = dtype
        self.torch = torch

    # -- the sides: each returns the meta-gradients (one dict per cell) of one iteration ----

    def mamlconv(self, backend: str = "auto") -> list[dict]:
        from mamlconv.experiments.engine.loop import make_step

        torch = self.torch
        step = make_step(
            self.problem, variant="exact", steps=self.steps, backend=backend, device="cpu"
        )
        params = {
            n: p.unsqueeze(0).repeat(self.cells, *([1] * p.dim())) for n, p in self.init.items()
        }
        alphas = torch.full((self.cells,), ALPHA, dtype=self.dtype)
        out = step(params, alphas, self.tasks, need_direction=True, need_stats=False)
        new = {n: p - BETA * out.direction[n] for n, p in params.items()}  # the SGD update
        del new
        return [{n: d[c] for n, d in out.direction.items()} for c in range(self.cells)]

    def generic(self) -> list[dict]:
        return self.mamlconv("generic")

    def loop(self) -> list[dict]:
        torch = self.torch
        from torch.func import functional_call

        names = list(self.init)
        results = []
        for _ in range(self.cells):
            leaves = [self.init[n].clone().requires_grad_(True) for n in names]
            opt = torch.optim.SGD(leaves, lr=BETA)

            def loss(ps, x, y, names=names):
                weights = {self.names[n]: p for n, p in zip(names, ps, strict=True)}
                return self.loss_fn(functional_call(self.module, weights, (x,)), y)

            grads = [torch.zeros_like(p) for p in leaves]
            for i in range(self.n_tasks):
                xs, ys, xq, yq = (f[i] for f in self.tasks)
                fast = leaves
                for _ in range(self.steps):
                    g = torch.autograd.grad(loss(fast, xs, ys), fast, create_graph=True)
                    fast = [f - ALPHA * gi for f, gi in zip(fast, g, strict=True)]
                d = torch.autograd.grad(loss(fast, xq, yq), leaves)
                for acc, di in zip(grads, d, strict=True):
                    acc += di / self.n_tasks
            for p, g in zip(leaves, grads, strict=True):
                p.grad = g
            opt.step()
            results.append(dict(zip(names, grads, strict=True)))
        return results

    def learn2learn(self) -> list[dict]:
        import learn2learn as l2l

        torch = self.torch
        names = list(self.init)
        results = []
        for _ in range(self.cells):
            module = self._loaded_module()
            maml = l2l.algorithms.MAML(module, lr=ALPHA, first_order=False)
            opt = torch.optim.SGD(maml.parameters(), lr=BETA)
            opt.zero_grad()
            for i in range(self.n_tasks):
                xs, ys, xq, yq = (f[i] for f in self.tasks)
                learner = maml.clone()
                for _ in range(self.steps):
                    learner.adapt(self.loss_fn(learner(xs), ys))
                (self.loss_fn(learner(xq), yq) / self.n_tasks).backward()
            params = dict(module.named_parameters())
            results.append({n: params[self.names[n]].grad.clone() for n in names})
            opt.step()
        return results

    def _loaded_module(self):
        import copy

        module = copy.deepcopy(self.module)
        with self.torch.no_grad():
            params = dict(module.named_parameters())
            for n, value in self.init.items():
                params[self.names[n]].copy_(value)
        return module


def _rel_diff(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for da, db in zip(a, b, strict=True):
        top = max(float(v.abs().max()) for v in db.values())
        worst = max(worst, max(float((da[n] - db[n]).abs().max()) for n in db) / top)
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", choices=tuple(CASES), default=list(CASES))
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per side (best)")
    ap.add_argument("--generic", action="store_true", help="also time the vmapped backend")
    ap.add_argument("--check-tasks", type=int, default=2, help="tasks of the float64 check")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    _reexec_with_mmap_threshold()

    import torch

    from mamlconv.experiments.engine.flops import counter
    from mamlconv.experiments.engine.loop import auto_backend
    from mamlconv.experiments.engine.memory import peak_bytes
    from mamlconv.util.files import dumps
    from mamlconv.util.provenance import describe

    torch.set_num_threads(1)
    try:
        import learn2learn  # noqa: F401

        have_l2l = True
    except ImportError:
        have_l2l = False
        print("learn2learn is not installed: its side is skipped (the loop is the baseline)")
    sides = ["mamlconv", "loop", *(["learn2learn"] if have_l2l else [])]
    sides += ["generic"] if args.generic else []
    record: dict[str, Any] = {
        "benchmark": "cnn_bench",
        "args": {**vars(args), "json": None if args.json is None else str(args.json)},
        "learn2learn": have_l2l,
        "provenance": describe("cpu"),
        "cases": {},
    }
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()}", flush=True)
    for case in args.only:
        sides_here = [s for s in sides if not (s == "generic" and case in SLOW_GENERIC)]
        if len(sides_here) < len(sides):
            print(f"{case}: generic not timed (about a minute a call on one core)")
        check = Sides(case, torch.float64, tasks=args.check_tasks)
        reference = check.loop()
        diffs = {s: _rel_diff(getattr(check, s)(), reference) for s in sides_here if s != "loop"}
        del check
        bench = Sides(case, torch.float32)
        backend = auto_backend(bench.problem, variant="exact", steps=bench.steps, device="cpu")
        mode = counter()
        with mode:
            bench.loop()
        flops = mode.get_total_flops() / bench.cells  # one cell-iteration
        best = {s: float("inf") for s in sides_here}
        peaks = {s: peak_bytes(getattr(bench, s)) for s in sides_here}  # also the warm-up
        load_before = os.getloadavg()
        for _ in range(args.repeat):
            for s in sides_here:
                t0 = time.perf_counter()
                getattr(bench, s)()
                best[s] = min(best[s], (time.perf_counter() - t0) / bench.cells)
        load_after = os.getloadavg()
        problem_name, n_tasks, steps, cells = CASES[case]
        print(
            f"\n{case}: {n_tasks} tasks, {steps} inner step(s), exact MAML, {cells} cell(s) per "
            f"call, mamlconv backend {backend!r}, {flops / 1e9:.2f} GFLOP per cell-iteration; "
            f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}"
        )
        rows = {}
        for s in sides_here:
            rows[s] = {
                "s_per_cell_iteration": best[s],
                "gflop_per_s": flops / best[s] / 1e9,
                "peak_bytes": peaks[s],
                "time_over_mamlconv": best[s] / best["mamlconv"],
                "float64_rel_diff_vs_loop": diffs.get(s, 0.0),
            }
            r = rows[s]
            print(
                f"  {s:>11}: {r['s_per_cell_iteration']:8.3f} s/cell-it  "
                f"{r['gflop_per_s']:6.2f} GFLOP/s  peak {r['peak_bytes'] / 2**20:8.1f} MiB  "
                f"{r['time_over_mamlconv']:5.2f}x mamlconv's time"
                + (f"  (float64 meta-gradient vs loop {diffs[s]:.1e})" if s in diffs else "")
            )
        record["cases"][case] = {
            "problem": problem_name,
            "tasks": n_tasks,
            "inner_steps": steps,
            "cells_per_call": cells,
            "backend": backend,
            "flops_per_cell_iteration": flops,
            "load_average": [load_before, load_after],
            "sides": rows,
        }
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(dumps(record) + "\n")  # strict JSON (docs/engine.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
