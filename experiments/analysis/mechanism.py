"""What sets the finite-horizon edge of Fig. 4 (``mamlconv compare --mechanism``; claim X-8;
docs/MATH.md "Two regimes").

Two signatures of gradient descent at large steps on networks, set beside the measured edge:

- the catapult ratio (Lewkowycz et al. 2020, arXiv 2003.02218): per alpha, the measured edge
  times lambda_gov(init) / 2, where lambda_gov = 2 / beta_c(governing operator at the initial
  point) -- the meta-Hessian's top eigenvalue for exact MAML, the first-order Jacobian's
  effective curvature for first-order MAML. Above 1, training survives steps the quadratic
  model at the start calls unstable;
- the edge-of-stability product (Cohen et al. 2021, arXiv 2103.00065): for the stable cells with
  beta above the initial prediction, beta times the governing sharpness at the END of training
  (cells retrained with the sweep's own configuration, their final losses checked against the
  sweep's), and, for a few cells per alpha, along training. Gradient descent at the edge of
  stability holds the product near 2; it "holds" here when it lies within a factor
  :data:`EOS_FACTOR` of 2.

The local edge at theta*(alpha) (:mod:`.local`, ``mamlconv local``) is put beside both where a
local result of the same variant is given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mamlconv.experiments.analysis.stationary import UpdateField, to_flat
from mamlconv.numerics.curvature import spectrum

EOS_FACTOR = 1.5
"""The edge-of-stability product beta * lambda_gov(end) holds when it lies in [2/1.5, 2 * 1.5]."""


def governing_curvature(
    problem: Any,
    params: dict[str, torch.Tensor],
    tasks: Any,
    *,
    alpha: float,
    variant: str,
    steps: int = 1,
    tol: float = 1e-4,
) -> float:
    """lambda_gov, the sharpness of the operator that linearises the variant's update at
    ``params``: exact, the meta-Hessian's largest eigenvalue (Lanczos); first order, max
    |mu|^2 / Re mu over the first-order Jacobian's eigenvalues of largest modulus (ARPACK)
    with Re mu > 0, so that 2 / lambda_gov is the beta those modes allow."""
    if variant == "exact":
        r = spectrum(
            problem.loss, params, tasks, operator="meta", alpha=alpha, steps=steps, k=1, tol=tol
        )
        return float(r.eigenvalues[0])
    from scipy.sparse.linalg import LinearOperator, eigs

    like = {k: v.detach().to(torch.float64) for k, v in params.items()}
    field = UpdateField(problem.loss, tasks, like, float(alpha), "first_order", steps)
    theta = to_flat(like)
    mv = field.jacobian_matvec(theta)
    n = theta.numel()

    def apply(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(np.real(v)).reshape(-1), dtype=theta.dtype)
        return mv(t).detach().double().numpy()

    if n <= 50:  # ARPACK needs k < n - 1: a small model's Jacobian is diagonalised densely
        mu = np.linalg.eigvals(field.dense_jacobian(theta))
    else:
        op = LinearOperator((n, n), matvec=apply, dtype=np.float64)
        v0 = np.random.default_rng(0).standard_normal(n)
        mu = eigs(op, k=4, which="LM", tol=tol, v0=v0)[0]
    # Sharpness, as for gradient descent: the modes that limit beta (Re mu > 0; each needs
    # beta < 2 Re mu / |mu|^2); a mode with Re mu <= 0 is an escape direction away from a
    # minimum, not a limit on beta, and is left out here (the local regime's certificate is
    # where it counts).
    limiting = mu[mu.real > 0]
    if not limiting.size:
        return 0.0
    return float(np.max(np.abs(limiting) ** 2 / limiting.real))


def _tasks_and_init(result: Any) -> tuple[Any, Any, Any]:
    from mamlconv.experiments.engine.state import initial_state
    from mamlconv.experiments.problems.registry import get_problem

    config = result.config.replace(device="cpu")
    problem = get_problem(config.problem, **config.problem_options)
    init, stream = initial_state(problem, config, dtype=torch.float64, device="cpu")
    return problem, init, stream.next()


def _as_params(theta: dict[str, np.ndarray], index: int | None = None) -> dict[str, torch.Tensor]:
    return {
        k: torch.as_tensor(np.asarray(v if index is None else v[index]), dtype=torch.float64)
        for k, v in theta.items()
    }


def _local_edges(local_records: list[dict[str, Any]], alpha: float) -> list[dict[str, Any]]:
    out = []
    for rec in local_records:
        for r in rec["rows"]:
            a = r["alpha"]
            near = a == alpha if alpha == 0 or a == 0 else abs(math.log10(a / alpha)) <= 0.1
            if near:
                out.append(
                    {
                        "seed": rec.get("seed"),
                        "alpha": a,
                        "measured": r["measured"],
                        "certified": r["certified"],
                        "governing_prediction": r["predictions"][r["governing"]],
                    }
                )
    return out


def mechanism(
    result: Any,
    record: dict[str, Any] | None = None,
    *,
    cells_per_alpha: int = 3,
    along: int = 4,
    along_iters: tuple[int, ...] = (0, 50, 100, 200, 300, 500),
    tol: float = 1e-4,
    local_records: tuple[dict[str, Any], ...] = (),
    retrain_dtype: str = "float64",
    log: Any = None,
) -> dict[str, Any]:
    """Catapult ratio per alpha, edge-of-stability products, local edges (module text).

    ``record``: a ``mamlconv compare`` record of the same sweep whose init meta-Hessian tops are
    reused (exact MAML); ``along`` alphas get a trajectory of products at ``along_iters``."""
    from mamlconv.experiments.engine.loop import train_cells

    # float32 edges are chaotic (docs/engine.md): a cell retrained in another batch can end
    # elsewhere, or diverge; the retraining runs in float64 and a retrained cell that diverges
    # is reported, not used.
    train_config = result.config.replace(dtype=retrain_dtype)
    variant = result.config.variant
    steps = result.config.steps
    problem, init, tasks = _tasks_and_init(result)
    alphas = np.asarray(result.alphas, dtype=float)
    betas = np.asarray(result.betas, dtype=float)
    boundary = result.boundary()
    stable = np.asarray(result.stable, dtype=bool)
    reuse = {}
    if record is not None and variant == "exact":
        reuse = record.get("spectra", {}).get("init", {}).get("meta_lambda_max", {}) or {}

    def curvature(params: Any, alpha: float) -> float:
        """lambda_max of the governing operator at ``params`` on the fixed tasks."""
        return governing_curvature(
            problem, params, tasks, alpha=alpha, variant=variant, steps=steps, tol=tol
        )

    rows: list[dict[str, Any]] = []
    cells_a, cells_b = [], []
    a0 = result.alpha0_boundary()
    columns = [(0.0, None)] if a0 is not None else []
    columns += [(float(a), i) for i, a in enumerate(alphas)]
    for a, i in columns:
        if i is not None and repr(a) in reuse and reuse[repr(a)] is not None:
            lam = float(reuse[repr(a)])
        else:
            lam = curvature(init, a)
        b_gov = 2.0 / lam if lam > 0 else math.inf
        edge = (a0 if i is None else boundary).as_records()[0 if i is None else i]
        lo, hi = edge["beta_lo"], edge["beta_hi"]
        row = {
            "alpha": a,
            "fig4_edge": {"lo": lo, "hi": hi, "inside_grid": edge["inside_grid"]},
            "lambda_gov_init": lam,
            "beta_c_gov_init": b_gov,
            "catapult_ratio": None
            if lo is None
            else {"lo": lo * lam / 2, "hi": (hi if hi is not None else math.inf) * lam / 2},
            "catapult": None if lo is None else bool(lo > b_gov),
            "local": _local_edges(list(local_records), a),
            "eos_cells": [],
        }
        rows.append(row)
        if i is not None:
            above = np.flatnonzero(stable[i] & (betas > b_gov))
            for j in above[::-1][:cells_per_alpha]:
                cells_a.append(i)
                cells_b.append(int(j))
        if log is not None:
            log(f"alpha={a:.3g}: lambda_gov(init) {lam:.4g}, catapult {row['catapult_ratio']}")
    eos: list[dict[str, Any]] = []
    not_reproduced: list[dict[str, Any]] = []
    if cells_a:
        run = train_cells(problem, train_config, alphas[cells_a], betas[cells_b], save_params=True)
        for c, (i, j) in enumerate(zip(cells_a, cells_b, strict=True)):
            if run.diverged[c]:
                not_reproduced.append(
                    {
                        "alpha": float(alphas[i]),
                        "beta": float(betas[j]),
                        "diverged_at": int(run.diverged_at[c]),
                    }
                )
                continue
            params = _as_params(run.final_params, c)
            lam_end = curvature(params, float(alphas[i]))
            product = float(betas[j] * lam_end)
            cell = {
                "alpha": float(alphas[i]),
                "beta": float(betas[j]),
                "lambda_gov_end": lam_end,
                "product": product,
                "holds": bool(2 / EOS_FACTOR <= product <= 2 * EOS_FACTOR),
                "final_loss": float(run.final_loss[c]),
                "sweep_final_loss": float(result.final_loss[i, j]),
            }
            eos.append(cell)
            rows[[r["alpha"] for r in rows].index(float(alphas[i]))]["eos_cells"].append(cell)
            if log is not None:
                log(f"cell alpha={alphas[i]:.3g} beta={betas[j]:.3g}: product {product:.3g}")
    trajectories = []
    with_cells = sorted({i for i in cells_a})
    if along and with_cells:
        pick = [
            with_cells[k]
            for k in np.linspace(0, len(with_cells) - 1, min(along, len(with_cells)))
            .round()
            .astype(int)
        ]
        for i in dict.fromkeys(pick):
            j = max(jj for ii, jj in zip(cells_a, cells_b, strict=True) if ii == i)
            products = []
            for t in along_iters:
                if t == 0:
                    params = init
                else:
                    run = train_cells(
                        problem,
                        train_config.replace(iters=int(t)),
                        alphas[[i]],
                        betas[[j]],
                        save_params=True,
                    )
                    if run.diverged[0]:
                        products.append(None)
                        continue
                    params = _as_params(run.final_params, 0)
                lam_t = curvature(params, float(alphas[i]))
                products.append(float(betas[j] * lam_t))
            trajectories.append(
                {
                    "alpha": float(alphas[i]),
                    "beta": float(betas[j]),
                    "iters": list(along_iters),
                    "product": products,
                }
            )
            if log is not None:
                log(f"along alpha={alphas[i]:.3g} beta={betas[j]:.3g}: {products}")
    cat = [r["catapult"] for r in rows if r["catapult"] is not None]
    held = [c["holds"] for c in eos]
    summary = {
        "governing": "meta" if variant == "exact" else "jacobian",
        "catapult_fraction": float(np.mean(cat)) if cat else None,
        "n_catapult_columns": len(cat),
        "catapult_ratio_median_lo": float(
            np.median([r["catapult_ratio"]["lo"] for r in rows if r["catapult_ratio"]])
        )
        if cat
        else None,
        "eos_fraction": float(np.mean(held)) if held else None,
        "n_eos_cells": len(held),
        "eos_product_median": float(np.median([c["product"] for c in eos])) if eos else None,
        "eos_band": [2 / EOS_FACTOR, 2 * EOS_FACTOR],
        "retrain_max_rel_loss_diff": float(
            max(
                abs(c["final_loss"] - c["sweep_final_loss"])
                / max(abs(c["sweep_final_loss"]), 1e-30)
                for c in eos
            )
        )
        if eos
        else None,
    }
    summary["retrain_dtype"] = retrain_dtype
    summary["n_retrained"] = len(cells_a)
    summary["n_retrain_diverged"] = len(not_reproduced)
    return {
        "rows": rows,
        "eos_cells": eos,
        "not_reproduced": not_reproduced,
        "trajectories": trajectories,
        "summary": summary,
    }


def mechanism_markdown(mech: dict[str, Any]) -> str:
    """The mechanism section of a comparison's Markdown table."""

    def f(x: Any) -> str:
        if x is None:
            return "–"
        if isinstance(x, float) and math.isinf(x):
            return "∞"
        return f"{x:.3g}"

    s = mech["summary"]
    lines = [
        "",
        "## Mechanism of the Fig. 4 edge (catapult, edge of stability) and the local edge",
        "",
        f"Governing operator: {s['governing']}. Catapult ratio = Fig. 4 edge x lambda_gov(init)/2 "
        "(> 1: training survives steps above the quadratic bound at the start). EoS product = "
        "beta x lambda_gov at the end of training, for the stable cells above the init "
        f"prediction (holds within [{f(s['eos_band'][0])}, {f(s['eos_band'][1])}]).",
        "",
        "| alpha | Fig. 4 edge | beta_c gov @ init | catapult ratio | local edge at theta*(alpha) "
        "| EoS products (beta: product) |",
        "|---|---|---|---|---|---|",
    ]
    for r in mech["rows"]:
        e = r["fig4_edge"]
        cr = r["catapult_ratio"]
        loc = (
            "; ".join(
                (
                    "none stable"
                    if x["measured"] is None
                    else f"[{f(x['measured']['lo'])}, {f(x['measured']['hi'])}]"
                )
                + ("" if x["certified"] else " (not certified)")
                + f" seed {x['seed']}"
                for x in r["local"]
            )
            or "–"
        )
        cells = ", ".join(f"{c['beta']:.3g}: {c['product']:.3g}" for c in r["eos_cells"]) or "–"
        lines.append(
            f"| {r['alpha']:.3g} | [{f(e['lo'])}, {f(e['hi'])}] | {f(r['beta_c_gov_init'])} | "
            + ("–" if cr is None else f"[{f(cr['lo'])}, {f(cr['hi'])}]")
            + f" | {loc} | {cells} |"
        )
    lines += [
        "",
        f"- catapult (edge above the init prediction): {f(s['catapult_fraction'])} of "
        f"{s['n_catapult_columns']} columns; median ratio (lower end) "
        f"{f(s['catapult_ratio_median_lo'])}",
        f"- edge of stability (product within the band): {f(s['eos_fraction'])} of "
        f"{s['n_eos_cells']} cells; median product {f(s['eos_product_median'])}; cells retrained "
        f"in {s.get('retrain_dtype')}: {s.get('n_retrained')}, of which "
        f"{s.get('n_retrain_diverged')} diverged (float32 edges are chaotic) and are left out; "
        f"largest relative difference of a retrained final loss from the sweep's: "
        f"{f(s['retrain_max_rel_loss_diff'])}",
    ]
    for t in mech["trajectories"]:
        prods = ", ".join(f"{it}: {f(p)}" for it, p in zip(t["iters"], t["product"], strict=True))
        lines.append(f"- along training, alpha {t['alpha']:.3g}, beta {t['beta']:.3g}: {prods}")
    return "\n".join(lines) + "\n"
