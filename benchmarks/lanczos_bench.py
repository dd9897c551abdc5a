"""Top-5 Hessian eigenvalues of the sinusoid MLP (1-40-40-1 ReLU, 1761 parameters; paper
Section 4.1) three ways, in one process, float64 on CPU, one thread:

- dense: ``torch.func.hessian`` of the flattened loss + ``numpy.linalg.eigh`` (the reference);
- Lanczos: ``mamlconv.numerics.curvature.spectrum`` (ARPACK ``eigsh`` on Hessian-vector products);
- power iteration with deflation (PyHessian's method and defaults: tol 1e-3, 100 iterations).

Eigenvalues by largest magnitude (``LM``, what power iteration finds) for all three; Lanczos is
also run for the largest algebraic ones (``LA``). Prints time, HVP count, worst relative error
against dense, and the ratios. Usage: ``python benchmarks/lanczos_bench.py [--tasks 10]
[--points 10] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from mamlconv.numerics import curvature as cv
from mamlconv.numerics.tasks import Params, TaskBatch


def relu_mlp_loss(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ params["w1"] + params["b1"])
    h = torch.relu(h @ params["w2"] + params["b2"])
    return torch.mean((h @ params["w3"] + params["b3"] - y) ** 2)


def init_params(seed: int) -> Params:
    """PyTorch's default Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), float64."""
    g = torch.Generator().manual_seed(seed)
    p = {}
    for i, (a, b) in enumerate([(1, 40), (40, 40), (40, 1)], 1):
        bound = 1 / math.sqrt(a)
        p[f"w{i}"] = (2 * torch.rand(a, b, generator=g, dtype=torch.float64) - 1) * bound
        p[f"b{i}"] = (2 * torch.rand(b, generator=g, dtype=torch.float64) - 1) * bound
    return p


def sinusoid_tasks(n_tasks: int, n_points: int, seed: int) -> TaskBatch:
    """Amplitude U[0.1, 5], phase U[0, pi], x U[-5, 5] (paper Section 4.1)."""
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)

    amp, phase = u(0.1, 5.0, n_tasks, 1, 1), u(0.0, math.pi, n_tasks, 1, 1)
    xs, xq = u(-5, 5, n_tasks, n_points, 1), u(-5, 5, n_tasks, n_points, 1)
    return TaskBatch(xs, amp * torch.sin(xs + phase), xq, amp * torch.sin(xq + phase))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--points", type=int, default=10, help="support (= query) points per task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = init_params(args.seed)
    tasks = sinusoid_tasks(args.tasks, args.points, args.seed + 1)
    n, k = cv.n_params(params), args.k
    print(
        f"sinusoid MLP 1-40-40-1 ReLU: {n} parameters; {args.tasks} tasks x "
        f"{2 * args.points} pooled points; top-{k}; float64, 1 thread"
    )

    # Dense reference (the mean over tasks of each task's Hessian on its pooled data).
    t0, c0 = time.perf_counter(), time.process_time()
    dense = cv.dense_operator(relu_mlp_loss, params, tasks, operator="hessian")
    all_vals = np.linalg.eigvalsh(dense.numpy())
    t_dense, c_dense = time.perf_counter() - t0, time.process_time() - c0
    ref = {
        "LM": all_vals[np.argsort(-np.abs(all_vals))][:k],
        "LA": np.sort(all_vals)[::-1][:k],
    }

    mv = cv.task_matvec(relu_mlp_loss, params, tasks, operator="hessian")
    like = params["w1"]
    mv(torch.zeros(n, dtype=torch.float64))  # warm-up, not counted
    rows = []
    cpu = {}
    for which in ("LM", "LA"):
        t0, c0 = time.perf_counter(), time.process_time()
        res = cv.lanczos(mv, n, like=like, k=k, which=which, tol=1e-8, seed=args.seed)
        rows.append((f"lanczos {which}", time.perf_counter() - t0, res, ref[which]))
        cpu[f"lanczos {which}"] = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    res = cv.power_iteration(mv, n, like=like, k=k, tol=1e-3, max_iter=100, seed=args.seed)
    rows.append(("power+deflation", time.perf_counter() - t0, res, ref["LM"]))
    cpu["power+deflation"] = time.process_time() - c0

    # "rel err" compares the i-th value found with the i-th reference value (a method that
    # misses or reorders an eigenvalue is wrong there); "top-1" is the largest alone.
    head = f"{'method':<18}{'wall s':>8}{'cpu s':>8}{'HVPs':>7}{'max rel err':>13}{'top-1 err':>11}"
    print(f"\n{head}{'max residual':>14}")
    print(
        f"{'dense eigh':<18}{t_dense:>8.3f}{c_dense:>8.3f}{'-':>7}{0.0:>13.1e}{0.0:>11.1e}{'-':>14}"
    )
    errs = {}
    for name, t, res, want in rows:
        rel = np.abs(res.eigenvalues - want) / np.abs(want)
        errs[name] = float(rel.max())
        print(
            f"{name:<18}{t:>8.3f}{cpu[name]:>8.3f}{res.n_matvecs:>7d}{rel.max():>13.1e}"
            f"{rel[0]:>11.1e}{res.residuals.max():>14.1e}"
        )
    print("\nreference top-5 (LM):", np.array2string(ref["LM"], precision=6))
    print("power iteration     :", np.array2string(rows[2][2].eigenvalues, precision=6))
    print("lanczos LM          :", np.array2string(rows[0][2].eigenvalues, precision=6))

    t_lz, n_lz = rows[0][1], rows[0][2].n_matvecs
    t_pw, n_pw = rows[2][1], rows[2][2].n_matvecs
    print("\nratios (same process):")
    print(f"  dense wall / lanczos wall          {t_dense / t_lz:8.2f}")
    print(f"  dense cpu / lanczos cpu            {c_dense / cpu['lanczos LM']:8.2f}")
    print(f"  power wall / lanczos wall          {t_pw / t_lz:8.2f}")
    print(f"  power cpu / lanczos cpu            {cpu['power+deflation'] / cpu['lanczos LM']:8.2f}")
    print(f"  power HVPs / lanczos HVPs          {n_pw / n_lz:8.2f}")
    ratio = errs["power+deflation"] / max(errs["lanczos LM"], 1e-300)
    print(f"  power error / lanczos error        {ratio:8.2e}")


if __name__ == "__main__":
    main()
