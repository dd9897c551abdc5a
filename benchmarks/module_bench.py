"""The nn.Module adapter against hand-written ``Problem`` classes, per cell-iteration.

Two pairs, each computing the same numbers two ways in this process, same configuration,
tasks, threads and backend (``generic``):

- ``sinusoid``: :class:`~mamlconv.experiments.problems.sinusoid.SinusoidProblem` (a pure function
of a
  dict) against ``problem_from_module`` on ``nn.Sequential(Linear, ReLU, Linear, ReLU,
  Linear)`` with the same weights and the same task sampler;
- ``cnn``: the functional 4-block CNN of :mod:`mamlconv.experiments.problems.cnn` (hand-written
batch
  norm) against ``problem_from_module`` on its ``nn.Module`` twin
  (:class:`~mamlconv.experiments.problems.cnn.ConvNetModule`, stock ``BatchNorm2d``), on random
  images.

Each side trains the same stable cells for ``--iters`` meta-iterations (best of ``--repeat``
runs after a warm-up); the final losses of the two sides are compared, so the ratio is between
two runs of the same numbers. Target (issue 11): adapter / hand-written <= 1.3.

    python benchmarks/module_bench.py              # about a minute on one CPU core
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _pairs(filters: int, tasks: int):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from mamlconv.experiments.problems import cnn
    from mamlconv.experiments.problems.module_problem import problem_from_module
    from mamlconv.experiments.problems.sinusoid import SinusoidProblem
    from mamlconv.numerics.tasks import TaskBatch

    sin = SinusoidProblem()
    mlp = nn.Sequential(
        nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1)
    ).double()  # float64 weights hold the built-in draws exactly

    def sin_init(module, generator):  # the built-in's draws, so the tasks that follow agree
        w = sin.init_params(generator, dtype=torch.float64, device="cpu")
        for i, layer in enumerate((module[0], module[2], module[4])):
            layer.weight.copy_(w[f"w{i + 1}"].T)
            layer.bias.copy_(w[f"b{i + 1}"])

    def sin_batch(g, n):
        return tuple(sin.sample_tasks(g, n, dtype=torch.float64, device="cpu"))

    mod_sin = problem_from_module(
        mlp,
        lambda out, y: ((out - y) ** 2).mean(),
        sample_tasks=sin_batch,
        name="mlp",
        init=sin_init,
    )

    spec = cnn.ConvNetSpec(in_channels=1, image_size=28, filters=filters, n_classes=5)
    init = cnn.init_params(spec, torch.Generator().manual_seed(0), dtype=torch.float64)
    twin = cnn.ConvNetModule(spec).double().load_functional(init)

    def images(g, n):
        xs = torch.rand(n, 5, 1, 28, 28, generator=g, dtype=torch.float64)
        xq = torch.rand(n, 10, 1, 28, 28, generator=g, dtype=torch.float64)
        ys = torch.arange(5).expand(n, 5).contiguous()
        yq = torch.arange(5).repeat_interleave(2).expand(n, 10).contiguous()
        return xs, ys, xq, yq

    class HandCNN:
        name = "cnn"

        def init_params(self, generator, *, dtype, device):
            return {n: p.to(device=device, dtype=dtype) for n, p in init.items()}

        def loss(self, params, x, y):
            return cnn.loss(params, x, y)

        def sample_tasks(self, generator, n_tasks, *, dtype, device):
            return TaskBatch(*images(generator, n_tasks)).to(device, dtype)

    # the module's eps must match the functional batch norm's (1e-3, Finn et al.)
    mod_cnn = problem_from_module(twin, F.cross_entropy, sample_tasks=images, name="cnn-module")
    return {"sinusoid": (sin, mod_sin, 100), "cnn": (HandCNN(), mod_cnn, tasks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=10, help="meta-iterations per run")
    parser.add_argument("--cells", type=int, default=4, help="cells per batch")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per side (best)")
    parser.add_argument("--filters", type=int, default=16, help="CNN filters per block")
    parser.add_argument("--tasks", type=int, default=4, help="CNN tasks per meta-iteration")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import torch

    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.engine.loop import train_cells
    from mamlconv.util.provenance import describe

    torch.set_num_threads(args.threads)
    alphas = np.full(args.cells, 1e-2)
    betas = np.geomspace(1e-3, 1e-2, args.cells)
    record: dict = {"provenance": describe("cpu"), "args": vars(args) | {"json": None}}
    for name, (hand, module, tasks) in _pairs(args.filters, args.tasks).items():
        config = SweepConfig(
            problem=name,
            iters=args.iters,
            tasks_per_batch=tasks,
            pool_size=tasks,
            record_every=args.iters,
            alpha_zero_row=False,
            dtype="float32",
            device="cpu",
        )
        best, losses = {}, {}
        for side, problem in (("hand", hand), ("module", module)):
            train_cells(problem, config.replace(iters=1), alphas, betas, backend="generic")
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                run = train_cells(problem, config, alphas, betas, backend="generic")
                times.append(time.perf_counter() - t0)
            best[side] = min(times) / (args.cells * args.iters) * 1e3
            losses[side] = run.final_loss
        rel = float(np.max(np.abs(losses["module"] - losses["hand"]) / np.abs(losses["hand"])))
        ratio = best["module"] / best["hand"]
        print(
            f"{name}: hand-written {best['hand']:.3f} ms, module adapter {best['module']:.3f} ms "
            f"per cell-iteration; ratio {ratio:.2f}x (target <= 1.3); final losses agree to "
            f"{rel:.1e} relative"
        )
        record[name] = {"ms_per_cell_iter": best, "ratio": ratio, "max_rel_loss_diff": rel}
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
