"""One MAML meta-gradient for one task, for the three MAML objects of docs/MATH.md.

For a task with support data s and query data q, inner learning rate alpha and k inner steps,
theta_0 = theta, theta_{j+1} = theta_j - alpha * grad L_s(theta_j) (paper Eq. 1):

- ``exact``       grad_theta L_q(theta_k): autodiff through the inner steps (Eq. 2-3, Finn et al.)
- ``first_order`` grad L_q evaluated at theta_k, the Jacobian of the inner steps dropped (FOMAML)
- ``surrogate``   (I - alpha H_s(theta)) grad L_q(theta), one step only: the paper's Eq. 4. With
                  s = q this is exactly grad [L - (alpha/2) g^T g] (Eq. 5).

Everything is a pure function of explicit arguments built from ``torch.func``, so the same code
serves float64 checks, ``vmap`` over tasks and over cells of an alpha x beta grid, and
Hessian-vector products of the meta-objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import grad, grad_and_value, jvp

from mamlconv.numerics.tasks import Params, TaskBatch
from mamlconv.numerics.variants import VARIANTS as VARIANTS  # re-exported; home: .variants
from mamlconv.numerics.variants import Variant, check_variant

LossFn = Callable[[Params, Tensor, Tensor], Tensor]


def adapt(
    params: Params, loss_fn: LossFn, x: Tensor, y: Tensor, *, alpha: float | Tensor, steps: int
) -> Params:
    """theta_k after k plain gradient steps of size alpha on loss_fn(., x, y) (Eq. 1)."""
    for _ in range(steps):
        g = grad(loss_fn)(params, x, y)
        params = {name: p - alpha * g[name] for name, p in params.items()}
    return params


def task_meta_gradient(
    params: Params,
    task: TaskBatch,
    *,
    loss_fn: LossFn,
    alpha: float | Tensor,
    steps: int = 1,
    variant: Variant = "exact",
    with_loss_pre: bool = True,
) -> tuple[Params, dict[str, Tensor]]:
    """Meta-gradient of one task (fields of ``task`` WITHOUT a task axis) and diagnostics.

    Returns ``(direction, aux)``: ``direction`` has the structure of ``params``; ``aux`` holds
    ``loss_post`` = L_q(theta_k) (the MAML training loss), ``loss_pre`` = L_q(theta) (only with
    ``with_loss_pre``: one more query forward pass, a diagnostic) and
    ``support_grad`` = grad L_s(theta) (for per-task gradient norms and inner products).
    """
    xs, ys, xq, yq = task

    if variant == "exact":

        def objective(p: Params) -> tuple[Tensor, tuple[Tensor, Params]]:
            # The first inner gradient is also the diagnostic grad L_s(theta): keep it as aux
            # instead of computing it a second time.
            first = grad(loss_fn)(p, xs, ys)
            adapted = {n: w - alpha * first[n] for n, w in p.items()}
            adapted = adapt(adapted, loss_fn, xs, ys, alpha=alpha, steps=steps - 1)
            loss_post = loss_fn(adapted, xq, yq)
            return loss_post, (loss_post, first)

        direction, (loss_post, support_grad) = grad(objective, has_aux=True)(params)
    elif variant == "first_order":
        support_grad = grad(loss_fn)(params, xs, ys)
        adapted = {n: p - alpha * support_grad[n] for n, p in params.items()}
        adapted = adapt(adapted, loss_fn, xs, ys, alpha=alpha, steps=steps - 1)
        direction, loss_post = grad_and_value(loss_fn)(adapted, xq, yq)
    elif variant == "surrogate":
        query_grad = grad(loss_fn)(params, xq, yq)

        def support_gradient(p: Params) -> Params:
            return grad(loss_fn)(p, xs, ys)

        # One forward-over-reverse product gives grad L_s and H_s @ grad L_q together.
        support_grad, hvp = jvp(support_gradient, (params,), (query_grad,))
        direction = {n: query_grad[n] - alpha * hvp[n] for n in params}
        adapted = {n: p - alpha * support_grad[n] for n, p in params.items()}
        loss_post = loss_fn(adapted, xq, yq)
    else:
        check_variant(variant, steps)
        raise AssertionError("unreachable")
    aux = {
        "loss_post": loss_post.detach(),
        "support_grad": {n: g.detach() for n, g in support_grad.items()},
    }
    if with_loss_pre:
        aux["loss_pre"] = loss_fn(params, xq, yq).detach()
    return {n: d.detach() for n, d in direction.items()}, aux


def meta_objective(
    params: Params,
    tasks: TaskBatch,
    *,
    loss_fn: LossFn,
    alpha: float | Tensor,
    steps: int = 1,
) -> Tensor:
    """Exact MAML objective: mean over tasks of L_q(theta_k), differentiable in params.

    ``tasks`` has a leading task axis. Its gradient is the mean ``exact`` meta-gradient; its
    Hessian is the exact meta-Hessian of docs/MATH.md section 8.
    """

    def one(task: TaskBatch) -> Tensor:
        xs, ys, xq, yq = task
        return loss_fn(adapt(params, loss_fn, xs, ys, alpha=alpha, steps=steps), xq, yq)

    return torch.func.vmap(one)(tasks).mean()
