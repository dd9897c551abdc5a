"""Several tasks: the task-mean surrogate Hessian and the extended version's sufficient condition.

With tasks tau = 1..m (same data inner and outer, one step), the surrogate objective is the task
mean of L_tau - (alpha/2) g_tau^T g_tau, so its Hessian is the task mean of
H_tau - alpha (T_tau g_tau + H_tau^2) (App. A per task; derived here for generic L_tau). The H_tau
need not commute, so the spectrum of the mean is not a function of the tasks' spectra: beta_c
must come from the spectrum of the mean (docs/MATH.md fact 7).

The extended version (OpenReview r1e8qpVKPS) states Eq. 15 for "every eigenvalue of every task".
What it guarantees, for quadratic tasks (T_tau = 0, so the mean surrogate Hessian is
M = mean_tau (A_tau - alpha A_tau^2) everywhere) or wherever the T_tau g_tau terms are neglected:
if alpha <= 1/lambda for every eigenvalue lambda > 0 of every task, each A_tau - alpha A_tau^2 is
positive semi-definite, hence so is their mean M (a minimum); and because lambda_max is convex,
lambda_max(M) <= max_tau lambda_max(A_tau - alpha A_tau^2) = max_{tau,i} (lambda_tau,i -
alpha lambda_tau,i^2), so beta < 2 / max_{tau,i}(...) implies beta < 2 / lambda_max(M): gradient
descent on the mean surrogate is locally stable. It is only SUFFICIENT: :func:`noncommuting_example`
gives tasks for which both the true alpha_c and the true beta_c of the mean are larger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sympy as sp

from mamlconv.theory.conditions import eq15
from mamlconv.theory.generic import (
    Identity,
    generic_loss,
    gradient_symbols,
    hessian_symbols,
    jacobian,
    third_derivative_contracted,
)
from mamlconv.theory.quadratic import meta_jacobian, mode_curvature
from mamlconv.theory.symbols import alpha, lam, lam_pos


def _task_name(tau: int) -> str:
    return f"L{tau + 1}"


def mean_surrogate_hessian(n: int, tasks: int) -> sp.Matrix:
    """grad^2 of (1/m) sum_tau [L_tau - (alpha/2) g_tau^T g_tau], generic L_tau, derived."""
    if tasks < 1:
        raise ValueError(f"tasks must be >= 1, got {tasks!r}")
    objective = sp.Integer(0)
    theta = None
    for tau in range(tasks):
        L, theta = generic_loss(n, _task_name(tau))
        g = gradient_symbols(n, _task_name(tau))
        objective += L - alpha / 2 * (g.T * g)[0, 0]
    objective = objective / tasks
    gradient = jacobian(sp.Matrix([objective]), theta).T
    return jacobian(gradient, theta).applyfunc(sp.expand)


def mean_surrogate_hessian_identity(n: int, tasks: int) -> Identity:
    """The multi-task surrogate Hessian is the mean of H_tau - alpha (T_tau g_tau + H_tau^2)."""
    stated = sp.zeros(n, n)
    for tau in range(tasks):
        H = hessian_symbols(n, _task_name(tau))
        stated += H - alpha * (third_derivative_contracted(n, _task_name(tau)) + H * H)
    return Identity(
        "App. A, m tasks",
        "the Hessian of the task-mean surrogate is the mean of "
        "H_tau - alpha (T_tau g_tau + H_tau^2)",
        mean_surrogate_hessian(n, tasks),
        stated / tasks,
        n,
    )


def quadratic_mean_meta_jacobian(matrices: Sequence[sp.Matrix], *, model: str) -> sp.Matrix:
    """Task mean of the derived meta-Jacobians of quadratic tasks L_tau = 1/2 v^T A_tau v.

    For the surrogate this is M = mean_tau (A_tau - alpha A_tau^2) (checked in the tests).
    """
    if not matrices:
        raise ValueError("need at least one task matrix")
    total = sum((meta_jacobian(model, A) for A in matrices), sp.zeros(*matrices[0].shape))
    return (total / len(matrices)).applyfunc(sp.expand)


def sufficient_condition(task_eigenvalues: Sequence[Sequence[sp.Expr]]) -> sp.Boolean:
    """Eq. 15 for every eigenvalue of every task (extended version), as one SymPy condition.

    ``task_eigenvalues[tau]`` are the positive eigenvalues of H_tau (numbers or positive
    symbols). Returns And over (tau, i) of alpha <= 1/lambda and beta < 2/(lambda - alpha
    lambda^2): sufficient, not necessary, for a minimum and local stability of the task mean.
    """
    clauses = []
    for tau, eigs in enumerate(task_eigenvalues):
        for value in eigs:
            value = sp.sympify(value)
            if value.is_positive is False:
                raise ValueError(f"task {tau}: eigenvalue {value} must be positive")
            clauses.append(eq15("surrogate").subs(lam_pos, value))
    return sp.And(*clauses)


def sufficient_beta_bound(task_eigenvalues: Sequence[Sequence[sp.Expr]]) -> sp.Expr:
    """2 / max_{tau,i} (lambda_tau,i - alpha lambda_tau,i^2): the per-task beta bound (in alpha)."""
    c = mode_curvature("surrogate")
    return 2 / sp.Max(*[c.subs(lam, sp.sympify(x)) for eigs in task_eigenvalues for x in eigs])


class NoncommutingExample(NamedTuple):
    """Two 2x2 tasks with equal spectra {4, 1} and eigenbases 45 degrees apart."""

    matrices: tuple[sp.Matrix, sp.Matrix]
    mean_hessian: sp.Matrix  # M(alpha) = mean (A - alpha A^2)
    alpha_c_per_task: sp.Expr  # 1/4, from every eigenvalue of every task
    alpha_c_mean: sp.Expr  # largest alpha with M(alpha) positive semi-definite
    alpha_value: sp.Expr  # the alpha at which the betas below are taken
    beta_c_per_task: sp.Expr  # the sufficient bound at alpha_value
    beta_c_mean: sp.Expr  # 2 / lambda_max(M(alpha_value)), the true local threshold


def noncommuting_example(alpha_value: sp.Expr | float | None = None) -> NoncommutingExample:
    """Exact (rational / surd) comparison of the sufficient condition with the mean's spectrum.

    At alpha = 1/8: per-task bound beta < 1, true beta_c = 64/(46 + 9 sqrt 2) ~ 1.090; per-task
    alpha_c = 1/4 while the mean stays positive semi-definite up to a larger alpha.
    """
    alpha_value = sp.Rational(1, 8) if alpha_value is None else sp.nsimplify(alpha_value)
    A1 = sp.diag(4, 1)
    A2 = sp.Matrix([[sp.Rational(5, 2), sp.Rational(3, 2)], [sp.Rational(3, 2), sp.Rational(5, 2)]])
    M = quadratic_mean_meta_jacobian([A1, A2], model="surrogate")
    eigs = [list(A.eigenvals()) for A in (A1, A2)]
    alpha_c_task = sp.Min(*[1 / x for e in eigs for x in e if x > 0])
    a = sp.Symbol("a", positive=True)
    # M(alpha) is PSD until its smallest eigenvalue reaches 0, i.e. the first root of det M.
    roots = sp.solve(sp.Eq(M.subs(alpha, a).det(), 0), a)
    alpha_c_mean = min((r for r in roots if r.is_positive), key=lambda r: float(r))
    top = max(M.subs(alpha, alpha_value).eigenvals(), key=lambda e: float(e))
    return NoncommutingExample(
        (A1, A2),
        M,
        alpha_c_task,
        sp.nsimplify(alpha_c_mean),
        alpha_value,
        sp.simplify(sufficient_beta_bound(eigs).subs(alpha, alpha_value)),
        sp.radsimp(2 / top),
    )
