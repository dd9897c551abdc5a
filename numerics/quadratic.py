"""Closed-form MAML updates on quadratic losses (docs/MATH.md section 4).

For a support loss ``L_s = 1/2 (theta - c_s)^T A_s (theta - c_s)`` and a query loss ``L_q`` of the
same form, the inner steps are linear: ``theta_k = c_s + P (theta - c_s)`` with
``P = (I - alpha A_s)^k``. The three meta-gradient directions (docs/MATH.md table) are then

- ``exact``       ``P^T A_q (theta_k - c_q)``                    (autodiff through the steps)
- ``first_order`` ``A_q (theta_k - c_q)``                        (Jacobian P dropped)
- ``surrogate``   ``(I - alpha A_s) A_q (theta - c_q)``          (paper Eq. 4, one step)

With one task and the same data inside and outside (``A_s = A_q = A``, ``c_s = c_q = c``) the
direction is ``D (theta - c)`` with ``D`` = ``P A P`` (exact), ``A P`` (first order) and
``(I - alpha A) A`` (surrogate), so outer gradient descent is ``v <- (I - beta D) v``, with
curvatures ``lambda (1 - alpha lambda)^(2k)``, ``lambda (1 - alpha lambda)^k`` and
``lambda (1 - alpha lambda)``.
These closed forms are the independent reference for the autodiff code in ``numerics.maml`` and
the fast engine of ``numerics.dynamics.run_cells_quadratic``.

Every function broadcasts over a leading shape of ``alpha`` (scalar or a tensor of shape (n,)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mamlconv.numerics.maml import Variant, check_variant


def _alpha(alpha: float | Tensor, like: Tensor) -> Tensor:
    a = torch.as_tensor(alpha, dtype=like.dtype, device=like.device)
    return a[..., None, None]  # (..., 1, 1) against (d, d)


def inner_jacobian(a_support: Tensor, *, alpha: float | Tensor, steps: int) -> Tensor:
    """``P = (I - alpha A_s)^k``, the Jacobian of k inner steps; shape alpha.shape + (d, d)."""
    eye = torch.eye(a_support.shape[-1], dtype=a_support.dtype, device=a_support.device)
    one_step = eye - _alpha(alpha, a_support) * a_support
    return torch.linalg.matrix_power(one_step, steps)


def direction_matrix(
    hessian: Tensor, *, alpha: float | Tensor, steps: int = 1, model: Variant
) -> Tensor:
    """``D`` with meta-gradient ``D (theta - c)`` for one task, same data inside and outside.

    exact ``P A P``, first_order ``A P``, surrogate ``(I - alpha A) A`` with ``P = (I - alpha A)^k``
    (docs/MATH.md section 4; the exact-MAML form is the paper's Eq. 3 on a quadratic).
    """
    check_variant(model, steps)
    p = inner_jacobian(hessian, alpha=alpha, steps=steps)
    if model == "exact":
        return p @ hessian @ p
    if model == "first_order":
        return hessian @ p
    return p @ hessian  # surrogate, steps == 1: (I - alpha A) A


def update_matrix(
    hessian: Tensor, *, alpha: float | Tensor, beta: float | Tensor, steps: int = 1, model: Variant
) -> Tensor:
    """One outer step ``v <- (I - beta D) v`` on ``v = theta - c`` (alpha, beta broadcast)."""
    d = direction_matrix(hessian, alpha=alpha, steps=steps, model=model)
    eye = torch.eye(hessian.shape[-1], dtype=hessian.dtype, device=hessian.device)
    b = torch.as_tensor(beta, dtype=hessian.dtype, device=hessian.device)[..., None, None]
    return eye - b * d


def meta_direction(
    theta: Tensor,
    *,
    a_support: Tensor,
    c_support: Tensor,
    a_query: Tensor,
    c_query: Tensor,
    alpha: float | Tensor,
    steps: int = 1,
    model: Variant,
) -> Tensor:
    """Closed-form meta-gradient for quadratic support and query losses (module docstring).

    ``theta`` has shape (d,) or alpha.shape + (d,).
    """
    check_variant(model, steps)
    p = inner_jacobian(a_support, alpha=alpha, steps=steps)
    adapted = c_support + (p @ (theta - c_support)[..., None])[..., 0]
    if model == "exact":
        inner = (a_query @ (adapted - c_query)[..., None])[..., 0]
        return (p.transpose(-1, -2) @ inner[..., None])[..., 0]
    if model == "first_order":
        return (a_query @ (adapted - c_query)[..., None])[..., 0]
    q_grad = (theta - c_query) @ a_query.transpose(-1, -2)
    eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
    return ((eye - _alpha(alpha, a_support) * a_support) @ q_grad[..., None])[..., 0]


def spectral_radius(matrix: Tensor) -> Tensor:
    """Largest |eigenvalue| of (a batch of) square matrices."""
    return torch.linalg.eigvals(matrix).abs().amax(dim=-1)
