"""Adam's analogue of the paper's meta-rate bound, for ``advise --measure --outer adam``.

Beyond the paper. Under SGD the outer step is stable while beta < 2 / lambda_max of the
meta-Hessian M (paper Eq. 14 on its model of M). Adam's step is beta m / (sqrt(v) + eps): Cohen
et al. (2022, "Adaptive Gradient Methods at the Edge of Stability", arXiv 2207.14484) show that
its linear stability is set by the *preconditioned* sharpness lambda_max(P^-1 M), P =
diag(sqrt(v) + eps), against (2 + 2 beta1) / ((1 - beta1) beta), which is 38 / beta for Adam's
default beta1 = 0.9. :func:`adam_sharpness` measures it at the initial point with the
preconditioner of Adam's first step and says which of the paper's conditions no longer apply.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mamlconv.numerics.tasks import Problem

ADAM_THRESHOLD = 38.0
"""Cohen et al. 2022 (arXiv 2207.14484, Sec. 3): Adam with momentum beta1 is linearly stable
while the preconditioned sharpness lambda_max(P^-1 H) < (2 + 2 beta1) / ((1 - beta1) eta),
38 / eta for beta1 = 0.9."""
ADAM_CONDITIONS = (
    "beta < 2/(lambda - alpha lambda^2) (Eq. 14) and the growth of beta_c as alpha -> 1/lambda "
    "no longer apply: they bound the SGD step beta * gradient, while Adam's step is "
    "beta * m/(sqrt(v) + eps), of size about beta per coordinate whatever the curvature; its "
    "linear-stability analogue is 38/beta on the preconditioned sharpness (Cohen et al. 2022), "
    "with a preconditioner that changes during training.",
    "alpha <= 1/lambda_max (Eq. 11) still applies: the inner step is still plain gradient descent.",
    "Adam's bounded step makes divergence slower and less sharp (oscillation rather than "
    "overflow), so an edge measured by a loss level is fuzzier than under SGD.",
)


def adam_sharpness(
    problem: Problem, params: Any, tasks: Any, *, alpha: float, steps: int, tol: float, seed: int
) -> dict[str, Any]:
    """Cohen et al.'s preconditioned sharpness at the initial point: lambda_max(P^-1 M) for the
    exact meta-Hessian M at ``alpha`` and Adam's first-step preconditioner P = diag(|g| + eps)
    (after one step the bias-corrected second moment is g^2), and 38 / it, Adam's analogue of
    the SGD bound 2 / lambda_max."""
    from mamlconv.experiments.engine.loop import ADAM_B1, ADAM_EPS
    from mamlconv.numerics.curvature import flatten, lanczos, n_params, task_matvec
    from mamlconv.numerics.maml import meta_objective

    p = {k: v.detach() for k, v in params.items()}

    def objective(q: Any) -> torch.Tensor:
        return meta_objective(q, tasks, loss_fn=problem.loss, alpha=alpha, steps=steps)

    g = flatten(torch.func.grad(objective)(p)).detach()
    inv_sqrt = (g.abs() + ADAM_EPS).rsqrt()
    meta_mv = task_matvec(problem.loss, p, tasks, operator="meta", alpha=alpha, steps=steps)

    def mv(v: torch.Tensor) -> torch.Tensor:
        return inv_sqrt * meta_mv(inv_sqrt * v)

    like = next(iter(p.values()))
    res = lanczos(mv, n_params(p), like=like, k=1, which="LA", tol=tol, seed=seed)
    lam = float(res.eigenvalues[0])
    threshold = (2 + 2 * ADAM_B1) / (1 - ADAM_B1)
    return {
        "alpha": alpha,
        "preconditioned_sharpness": lam,
        "threshold": threshold,
        "beta_c": threshold / lam if lam > 0 else math.inf,
        "source": "Cohen et al. 2022, arXiv 2207.14484: Adam stable while lambda_max(P^-1 H) "
        "< (2 + 2 beta1) / ((1 - beta1) beta) = 38 / beta; P = diag(|g| + eps) at the first step",
        "conditions_no_longer_apply": list(ADAM_CONDITIONS),
    }


__all__ = ["ADAM_CONDITIONS", "ADAM_THRESHOLD", "adam_sharpness"]
