"""Your own model: advised (alpha, beta), a swept alpha x beta map, Fig. 4 and predictions.

A small CNN with BatchNorm on synthetic 3-way few-shot tasks (each class a random prototype
image, each example a noisy copy of it), through the whole package in the lines of
``main`` marked "yours". Run it from the repository root:

    python examples/own_model.py             # about a minute on one CPU core
    python examples/own_model.py --smoke     # seconds (what CI runs)

The same problem from the command line (``make_problem`` is the factory):

    mamlconv advise --problem examples/own_model.py:make_problem
    mamlconv sweep --problem examples/own_model.py:make_problem --preset smoke --out s.npz
    mamlconv compare s.npz --out cmp
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WAYS, SHOTS, QUERY, SIDE, N_CLASSES = 3, 2, 4, 12, 20


def make_model(filters: int = 8) -> nn.Module:
    """Two conv -> BatchNorm -> ReLU -> max-pool blocks and a linear head (12 -> 6 -> 3)."""
    return nn.Sequential(
        nn.Conv2d(1, filters, 3, padding=1),
        nn.BatchNorm2d(filters),  # a stock BatchNorm: the adapter uses batch statistics
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3, padding=1),
        nn.BatchNorm2d(filters),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(filters * (SIDE // 4) ** 2, WAYS),
    )


# Class prototypes drawn once from their own generator (fixed data, not the run's randomness).
PROTOTYPES = torch.randn(N_CLASSES, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def sample_task(generator: torch.Generator):
    """One 3-way task: (x_support, y_support, x_query, y_query), all from ``generator``."""
    classes = torch.randperm(N_CLASSES, generator=generator)[:WAYS]

    def draw(k: int):
        clean = PROTOTYPES[classes].repeat_interleave(k, dim=0)
        noise = torch.randn(clean.shape, generator=generator)
        return clean + 0.8 * noise, torch.arange(WAYS).repeat_interleave(k)

    return (*draw(SHOTS), *draw(QUERY))


def make_problem():
    """The factory for ``--problem examples/own_model.py:make_problem``."""
    import mamlconv

    torch.manual_seed(0)
    return mamlconv.problem_from_module(make_model(), F.cross_entropy, sample_task, name="toycnn")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a seconds-long run (CI)")
    ap.add_argument("--out", type=Path, default=Path("own_model_out"), help="output folder")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    # smoke: a tiny grid and loose Lanczos tolerances, the same code path
    n_a, n_b, iters, tol, points = (
        (2, 3, 3, 1e-2, ("init",)) if args.smoke else (5, 8, 60, 1e-4, ("init", "trained"))
    )

    # --- yours: from an nn.Module and a sampler to advice, a map, Fig. 4 and predictions ---
    import mamlconv

    torch.manual_seed(0)  # your model's initial weights, as you would make them anyway
    model = make_model(4 if args.smoke else 8)  # <- your nn.Module
    problem = mamlconv.problem_from_module(model, F.cross_entropy, sample_task)
    advice = mamlconv.advise(problem, n_tasks=4, k=2, tol=tol)
    print(f"advised alpha* = {advice.alpha_star:.3g}, beta* = {advice.beta_star:.3g}")
    alphas = np.geomspace(advice.alpha_star / 10, advice.alpha_star * 3, n_a)
    betas = np.geomspace(advice.beta_star / 10, advice.beta_star * 30, n_b)
    result = mamlconv.sweep(
        problem, alphas, betas, iters=iters, tasks_per_batch=4, out=args.out / "sweep.npz"
    )
    edge = result.boundary()  # per alpha (0 first): [largest stable beta, next grid beta]
    for a, lo, hi in zip(edge.alphas, edge.beta_lo, edge.beta_hi, strict=True):
        print(f"alpha {a:.3g}: beta edge in [{lo:.3g}, {hi:.3g}]")  # nan: none stable
    figures = result.save_figures(args.out)  # Fig. 4 (PNG, PDF, JSON); result.plot(): a Figure
    cmp = mamlconv.compare(result, k=2, tol=tol, points=points, out=args.out)
    for name, beta_c in cmp.predictions["init"].items():  # formula, surrogate, meta
        print(f"predicted beta_c ({name}) per alpha: {np.array2string(beta_c, precision=3)}")
    # --- end of yours ---

    for path in [*figures, *cmp.files.values()]:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
