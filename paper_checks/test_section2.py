"""Claims of Section 2 (MAML as optimisation with a negative gradient penalty): S2-1 .. S2-7."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mamlconv.numerics import curvature, maml
from mamlconv.paper_checks.helpers import (
    flat,
    identities_hold,
    loglog_slope,
    one_task,
    sinusoid_setup,
)
from mamlconv.paper_checks.verdicts import ClaimAudit, fmt
from mamlconv.theory import gradient_penalty as gp


@pytest.mark.claim("S2-1")
def test_claim_S2_1_maml_update(audit: ClaimAudit) -> None:
    """Paper Eq. 1-2: theta'_tau = theta - alpha grad L_tau(theta), and
    theta <- theta - beta grad_theta sum_tau L_tau(theta'_tau).

    The package's exact meta-gradient (``numerics.maml.task_meta_gradient``, ``exact``) is
    compared in float64 with (a) central finite differences of the meta-objective along random
    directions and (b) a second autodiff route (``torch.autograd`` with ``create_graph``), and
    the mean over tasks with the gradient of ``meta_objective`` (Eq. 2 over a task batch).
    """
    problem, params, tasks = sinusoid_setup(audit, seed=11, n_tasks=3)
    alpha, loss_fn = 0.01, problem.loss

    dirs = [
        maml.task_meta_gradient(
            params, one_task(tasks, i), loss_fn=loss_fn, alpha=alpha, steps=1, variant="exact"
        )[0]
        for i in range(tasks.n_tasks)
    ]
    package = flat({n: torch.stack([d[n] for d in dirs]).mean(0) for n in params})

    # (b) a second autodiff route: plain torch.autograd through the inner step of Eq. 1.
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    total = 0.0
    for i in range(tasks.n_tasks):
        xs, ys, xq, yq = (t[i] for t in tasks)
        g = torch.autograd.grad(loss_fn(leaves, xs, ys), list(leaves.values()), create_graph=True)
        adapted = {n: p - alpha * gi for (n, p), gi in zip(leaves.items(), g, strict=True)}
        total = total + loss_fn(adapted, xq, yq)
    autograd = flat(
        dict(
            zip(
                leaves,
                torch.autograd.grad(total / tasks.n_tasks, list(leaves.values())),
                strict=True,
            )
        )
    )

    # Eq. 2 over the batch: the package's meta_objective, differentiated by torch.func.
    objective = maml.meta_objective
    via_objective = flat(
        torch.func.grad(lambda p: objective(p, tasks, loss_fn=loss_fn, alpha=alpha, steps=1))(
            params
        )
    )

    # (a) central finite differences along random unit directions, eps = 1e-6 in float64.
    gen = torch.Generator().manual_seed(5)
    eps, fd_errors = 1e-6, []
    for _ in range(6):
        u = torch.randn(package.numel(), generator=gen, dtype=torch.float64)
        u /= u.norm()
        shift, offset = {}, 0
        for n, p in params.items():
            shift[n] = u[offset : offset + p.numel()].reshape(p.shape)
            offset += p.numel()

        def f(s: float, shift=shift) -> float:
            moved = {n: p + s * shift[n] for n, p in params.items()}
            return float(objective(moved, tasks, loss_fn=loss_fn, alpha=alpha, steps=1))

        fd = (f(eps) - f(-eps)) / (2 * eps)
        fd_errors.append(abs(fd - float(package @ u)) / max(abs(fd), 1e-12))

    scale = float(package.norm())
    err_autograd = float((package - autograd).norm()) / scale
    err_objective = float((package - via_objective).norm()) / scale
    err_fd = max(fd_errors)
    assert err_autograd < 1e-12, err_autograd
    assert err_objective < 1e-12, err_objective
    assert err_fd < 1e-6, fd_errors
    audit.holds(
        key=f"rel. error vs autograd {fmt(err_autograd)}, vs finite diff. {fmt(err_fd)}",
        evidence={
            "model": "sinusoid MLP 1-40-40-1 (package), float64, 3 tasks, alpha = 0.01",
            "task_reduction": "mean over tasks (Eq. 2's sum up to 1/T, which beta absorbs)",
            "rel_error_second_autodiff": err_autograd,
            "rel_error_meta_objective_grad": err_objective,
            "rel_error_finite_differences_max": err_fd,
            "finite_difference_eps": eps,
            "tolerances": {"autodiff": 1e-12, "finite_differences": 1e-6},
        },
    )


def _penalty_setup(audit: ClaimAudit, *, seed: int):
    """One sinusoid task with the same data inside and outside (paper Sec. 2.2), float64."""
    problem, params, tasks = sinusoid_setup(audit, seed=seed, n_tasks=1)
    task = one_task(tasks.pooled(), 0)
    xs, ys = task.x_support, task.y_support

    def loss(p: dict) -> torch.Tensor:
        return problem.loss(p, xs, ys)

    return problem, params, task, loss


@pytest.mark.claim("S2-2")
def test_claim_S2_2_chain_rule(audit: ClaimAudit) -> None:
    """Paper Eq. 3: grad_theta L(theta') = grad_theta theta' dL/dtheta' = (I - alpha H) dL/dtheta'.

    Symbolic: ``theory.gradient_penalty.eq3_chain_rule`` derives the MAML gradient of a generic
    L (n = 2, 3) by SymPy's chain rule and compares it exactly with (I - alpha H) g(theta').
    Autodiff: on the sinusoid network (support != query), the package's exact meta-gradient
    equals (I - alpha H_s(theta)) grad L_q(theta') built from a Hessian-vector product.
    """
    symbolic = identities_hold([gp.eq3_chain_rule])
    assert all(symbolic.values()), symbolic

    problem, params, tasks = sinusoid_setup(audit, seed=21, n_tasks=2)
    alpha, errors = 0.05, []
    for i in range(tasks.n_tasks):
        xs, ys, xq, yq = one_task(tasks, i)
        exact, _ = maml.task_meta_gradient(
            params,
            one_task(tasks, i),
            loss_fn=problem.loss,
            alpha=alpha,
            steps=1,
            variant="exact",
        )
        adapted = maml.adapt(params, problem.loss, xs, ys, alpha=alpha, steps=1)
        g_query = torch.func.grad(problem.loss)(adapted, xq, yq)
        h_g = curvature.hvp(lambda p, xs=xs, ys=ys: problem.loss(p, xs, ys), params, g_query)
        eq3 = {n: g_query[n] - alpha * h_g[n] for n in params}
        errors.append(float((flat(exact) - flat(eq3)).norm() / flat(exact).norm()))
    err = max(errors)
    assert err < 1e-12, errors
    audit.holds(
        key=f"symbolic: exact (n=2,3); network rel. error {fmt(err)}",
        evidence={
            "symbolic_identities": symbolic,
            "network": "sinusoid MLP 1-40-40-1, float64, alpha = 0.05, 2 tasks, support != query",
            "rel_error_exact_vs_(I-aH)g(theta')": errors,
            "tolerance": 1e-12,
        },
    )


@pytest.mark.claim("S2-3")
def test_claim_S2_3_first_order_approximation(audit: ClaimAudit) -> None:
    """Paper Eq. 4: grad L(theta') ~ g(theta) - alpha H(theta) g(theta), assuming
    dL/dtheta' = g(theta) "since alpha is usually small".

    Checked against both MAML gradients it could approximate (same data inner and outer):
    exact MAML (Eq. 3, what the derivation starts from) and first-order MAML g(theta - alpha g).
    Symbolic: to first order exact MAML is g - 2 alpha H g (``exact_gradient_expansion``,
    correction factor derived by ``gradient_correction_factor``). Numeric: the error of
    g - alpha H g shrinks like alpha^p; p = 2 means an O(alpha^2) approximation, p = 1 that a
    first-order term is missing.
    """
    symbolic = identities_hold([gp.eq4_approximation, gp.exact_gradient_expansion])
    factor = {n: int(gp.gradient_correction_factor(n)) for n in (2, 3)}
    assert all(symbolic.values()), symbolic

    problem, params, task, loss = _penalty_setup(audit, seed=31)
    g = torch.func.grad(loss)(params)
    h_g = flat(curvature.hvp(loss, params, g))
    g = flat(g)
    alphas = np.geomspace(1e-5, 1e-3, 5)
    err = {"exact": [], "first_order": [], "exact_vs_g-2aHg": [], "surrogate_pkg": []}
    for a in alphas:
        d = {
            v: flat(
                maml.task_meta_gradient(
                    params, task, loss_fn=problem.loss, alpha=float(a), steps=1, variant=v
                )[0]
            )
            for v in ("exact", "first_order", "surrogate")
        }
        eq4 = g - a * h_g
        err["exact"].append(float((d["exact"] - eq4).norm()))
        err["first_order"].append(float((d["first_order"] - eq4).norm()))
        err["exact_vs_g-2aHg"].append(float((d["exact"] - (g - 2 * a * h_g)).norm()))
        err["surrogate_pkg"].append(float((d["surrogate"] - eq4).norm() / eq4.norm()))
    slopes = {k: loglog_slope(alphas, v) for k, v in err.items() if k != "surrogate_pkg"}
    missing_share = float(err["exact"][0] / (alphas[0] * h_g.norm()))
    assert max(err["surrogate_pkg"]) < 1e-12, err["surrogate_pkg"]
    assert factor == {2: 2, 3: 2}, factor
    assert abs(slopes["exact"] - 1) < 0.05 and abs(missing_share - 1) < 1e-2, (
        slopes,
        missing_share,
    )
    assert abs(slopes["first_order"] - 2) < 0.1, slopes
    assert abs(slopes["exact_vs_g-2aHg"] - 2) < 0.1, slopes
    audit.holds_for(
        "first-order MAML g(theta - alpha g): error O(alpha^2); as an approximation of exact "
        "MAML (Eq. 3) it keeps half the first-order correction (-alpha Hg of -2 alpha Hg)",
        key=(
            f"error order: vs first-order MAML alpha^{slopes['first_order']:.2f}, vs exact "
            f"alpha^{slopes['exact']:.2f} (missing term = {missing_share:.3f} x alpha|Hg|)"
        ),
        evidence={
            "symbolic_identities": symbolic,
            "derived_correction_factor_exact_over_eq4": factor,
            "alphas": alphas,
            "abs_error": err,
            "loglog_slopes": slopes,
            "exact_error_over_alpha_norm_Hg_at_smallest_alpha": missing_share,
            "network": "sinusoid MLP 1-40-40-1, float64, one task, support = query (20 points)",
        },
    )


@pytest.mark.claim("S2-4")
def test_claim_S2_4_gradient_of_squared_norm(audit: ClaimAudit) -> None:
    """Paper Sec. 2.2: "Because grad_theta (g(theta)^T g(theta)) = 2 H(theta) g(theta)".

    Symbolic for a generic L of n = 2 and 3 parameters (``gradient_of_squared_norm``), and on
    the sinusoid network: the autodiff gradient of g^T g against 2 H g from a Hessian-vector
    product.
    """
    symbolic = identities_hold([gp.gradient_of_squared_norm])
    assert all(symbolic.values()), symbolic
    problem, params, task, loss = _penalty_setup(audit, seed=41)

    def sq_norm(p: dict) -> torch.Tensor:
        return (flat(torch.func.grad(loss)(p)) ** 2).sum()

    lhs = flat(torch.func.grad(sq_norm)(params))
    rhs = 2 * flat(curvature.hvp(loss, params, torch.func.grad(loss)(params)))
    err = float((lhs - rhs).norm() / rhs.norm())
    assert err < 1e-12, err
    audit.holds(
        key=f"symbolic: exact (n=2,3); network rel. error {fmt(err)}",
        evidence={"symbolic_identities": symbolic, "network_rel_error": err, "tolerance": 1e-12},
    )


@pytest.mark.claim("S2-5")
def test_claim_S2_5_negative_gradient_penalty(audit: ClaimAudit) -> None:
    """Paper Eq. 5: L~(theta) ~ L(theta) - (alpha/2) g^T g: "a simplified MAML can be regarded as
    optimization with the negative gradient penalty".

    Two readings. (a) The direction of Eq. 4 is exactly the gradient of L - (alpha/2) g^T g, so
    the simplified MAML IS gradient descent on it: symbolic (``eq5_penalised_gradient``) and on
    the network (the package's ``surrogate`` direction against autodiff of the penalised loss).
    (b) L - (alpha/2) g^T g approximates the MAML loss L(theta - alpha g) to first order: the
    measured value error is (alpha/2) g^T g + O(alpha^2), i.e. the penalty is half the right one.
    """
    symbolic = identities_hold([gp.eq5_penalised_gradient])
    assert all(symbolic.values()), symbolic
    problem, params, task, loss = _penalty_setup(audit, seed=51)

    reading_a = []
    for a in (1e-3, 1e-2, 1e-1):

        def penalised(p: dict, a: float = a) -> torch.Tensor:
            g = flat(torch.func.grad(loss)(p))
            return loss(p) - a / 2 * (g * g).sum()

        auto = flat(torch.func.grad(penalised)(params))
        pkg = flat(
            maml.task_meta_gradient(
                params, task, loss_fn=problem.loss, alpha=a, steps=1, variant="surrogate"
            )[0]
        )
        reading_a.append(float((auto - pkg).norm() / auto.norm()))
    assert max(reading_a) < 1e-12, reading_a

    g = torch.func.grad(loss)(params)
    gg = float((flat(g) ** 2).sum())
    shares = []
    alphas = np.geomspace(1e-5, 1e-3, 5)
    for a in alphas:
        adapted = {n: p - a * g[n] for n, p in params.items()}
        value_error = float(loss(adapted)) - (float(loss(params)) - a / 2 * gg)
        shares.append(value_error / (-a / 2 * gg))  # -> 1: the whole Eq. 5 penalty again
    assert abs(shares[0] - 1) < 1e-2, shares
    audit.holds_for(
        "reading (a): the surrogate direction g - alpha Hg is exactly grad[L - (alpha/2) g^T g]; "
        "reading (b), L(theta - alpha g) ~ L - (alpha/2) g^T g, is off by a factor 2 (S2-6)",
        key=(
            f"(a) rel. error {fmt(max(reading_a))}; (b) missing value = "
            f"{shares[0]:.4f} x (alpha/2) g^T g at alpha = 1e-5"
        ),
        evidence={
            "symbolic_identities": symbolic,
            "reading_a_rel_error_by_alpha": dict(
                zip(["1e-3", "1e-2", "1e-1"], reading_a, strict=True)
            ),
            "reading_b_alphas": alphas,
            "reading_b_value_error_over_half_penalty": shares,
        },
    )


@pytest.mark.claim("S2-6")
def test_claim_S2_6_taylor_factor_two(audit: ClaimAudit) -> None:
    """Paper Eq. 6-7: L~(theta) = L(theta - alpha grad L) ~ L(theta) - alpha g^T g (Taylor),
    "It can also be interpreted as a Taylor series expansion of the MAML loss for the
    first-order term, up to scale" (the same as Eq. 5).

    Symbolic: Eq. 6-7 is the first-order Taylor polynomial (``eq6_7_taylor``); the ratio of
    its penalty to Eq. 5's is derived (``penalty_factor``). Numeric: the Taylor remainder of
    Eq. 7 on the network is O(alpha^2) and the measured factor (L - L(theta'))/((alpha/2) g^T g)
    tends to 2. "Up to scale" holds only as alpha -> 2 alpha: the two objectives are not
    proportional (no constant c gives L - alpha g^T g = c (L - alpha/2 g^T g)).
    """
    symbolic = identities_hold([gp.eq6_7_taylor])
    factor = {n: gp.penalty_factor(n) for n in (2, 3)}
    assert all(symbolic.values()), symbolic
    assert all(f == 2 for f in factor.values()), factor
    problem, params, task, loss = _penalty_setup(audit, seed=61)
    g = torch.func.grad(loss)(params)
    gg = float((flat(g) ** 2).sum())
    l0 = float(loss(params))
    alphas = np.geomspace(1e-5, 1e-3, 5)
    remainders, factors = [], []
    for a in alphas:
        la = float(loss({n: p - a * g[n] for n, p in params.items()}))
        remainders.append(abs(la - (l0 - a * gg)))
        factors.append((l0 - la) / (a / 2 * gg))
    order = loglog_slope(alphas, remainders)
    assert abs(order - 2) < 0.1, (order, remainders)
    assert abs(factors[0] - 2) < 1e-2, factors
    audit.holds_for(
        "Eq. 7 is the first-order Taylor polynomial of L(theta - alpha g); 'up to scale' means "
        "alpha -> 2 alpha (penalty twice Eq. 5's), not a rescaled objective",
        key=f"derived factor {factor[2]}; measured {factors[0]:.4f}; Taylor remainder "
        f"O(alpha^{order:.2f})",
        evidence={
            "symbolic_identities": symbolic,
            "derived_penalty_factor": {str(n): str(f) for n, f in factor.items()},
            "alphas": alphas,
            "measured_factor": factors,
            "taylor_remainder": remainders,
            "remainder_order": order,
        },
    )
