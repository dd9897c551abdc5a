"""The hand-batched step backend for the ReLU MLP of sinusoid regression and one inner step.

The support gradient is written out layer by layer, and the adapted forward pass uses
``a' W' = a' W - alpha (a' a_s^T) dz_s`` (the adapted weight of a task is W - alpha a_s^T dz_s),
so no per-task adapted weight matrix is ever built: only (query x support) Gram matrices. For
``exact`` and ``first_order`` the backward pass through all of this is written out too
(:func:`_mlp_meta_gradient`, with fused in-place products; tested against autograd through the
same forward); ``surrogate`` uses autograd over the cell-stacked tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mamlconv.experiments.engine.step import StepFn, StepOut, _pair_stats
from mamlconv.numerics.tasks import Params, Problem, TaskBatch


def _lin(a: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """a @ w + b per cell. a: (C, T, n, i), or (T, n, i) shared by the cells; w: (C, i, o);
    b: (C, o) -> (C, T, n, o). Bias and product fused (baddbmm / addcmul)."""
    c, i, o = w.shape
    if a.dim() == 3:
        t, n, _ = a.shape
        if i == 1:  # the sinusoid input layer: an outer product, one fused elementwise op
            return torch.addcmul(b[:, None, None, :], a[None], w[:, None, :, :])
        a = a.expand(c, t, n, i)
    else:
        _, t, n, _ = a.shape
    return torch.baddbmm(b[:, None, :], a.reshape(c, t * n, i), w).view(c, t, n, o)


def _back(dz: Tensor, w: Tensor) -> Tensor:
    """dz @ w^T per cell: (C, T, n, o), (C, i, o) -> (C, T, n, i)."""
    c, t, n, o = dz.shape
    return torch.bmm(dz.reshape(c, t * n, o), w.transpose(1, 2)).view(c, t, n, w.shape[1])


def _gram(a: Tensor, b: Tensor) -> Tensor:
    """a @ b^T over the point axes: (C|., T, n, i), (C|., T, m, i) -> (C, T, n, m).

    One bmm over the flattened (cell, task) batch on a transposed *view* of b (torch.matmul
    would copy the transposed operand of a 4-d product)."""
    if a.dim() == 3 and b.dim() == 3:  # both shared by the cells (the input layer)
        return torch.bmm(a, b.transpose(1, 2))
    c = a.shape[0] if a.dim() == 4 else b.shape[0]
    t, n, i = a.shape[-3:]
    m = b.shape[-2]
    a3 = a.expand(c, t, n, i).reshape(c * t, n, i)
    b3 = b.expand(c, t, m, i).reshape(c * t, m, i)
    return torch.bmm(a3, b3.transpose(1, 2)).view(c, t, n, m)


def _mlp_pass(
    params: Params, n_layers: int, x: Tensor, y: Tensor
) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """Forward and hand-written backward of the ReLU MLP with MSE loss, for every cell and task.

    Returns the layer inputs a_l (a_0 = x, shared), the pre-activation gradients
    dz_l = dL/dz_l and the per-(cell, task) losses (C, T). With z_l = a_l W_l + b_l the task's
    gradient is dL/dW_l = a_l^T dz_l, dL/db_l = sum_n dz_l (never formed per task here).
    """
    acts: list[Tensor] = [x]
    pre: list[Tensor] = []
    a = x
    for layer in range(1, n_layers + 1):
        z = _lin(a, params[f"w{layer}"], params[f"b{layer}"])
        pre.append(z)
        if layer < n_layers:
            a = torch.relu(z)
            acts.append(a)
    err = pre[-1] - y  # (C, T, n, 1); y broadcasts over cells
    loss = (err * err).mean(dim=(2, 3))
    dz = err * (2.0 / err.shape[2] / err.shape[3])  # d mean((f - y)^2) / d f
    deltas = [dz]
    for layer in range(n_layers, 1, -1):
        # relu' is a constant mask: its derivative is zero, as in autograd's own relu backward.
        # Detaching the mask's argument spares autograd building and adding those zeros.
        mask_arg = pre[layer - 2].detach()
        dz = torch.ops.aten.threshold_backward(_back(dz, params[f"w{layer}"]), mask_arg, 0)
        deltas.append(dz)
    deltas.reverse()
    return acts, deltas, loss


def _adapted_query_loss(
    params: Params,
    n_layers: int,
    alpha: Tensor,
    support_acts: list[Tensor],
    support_deltas: list[Tensor],
    xq: Tensor,
    yq: Tensor,
) -> Tensor:
    """L_q(theta - alpha grad L_s(theta)) per (cell, task) without forming adapted weights.

    Layer l of the adapted net: a' (W - alpha a_s^T dz_s) + (b - alpha sum_n dz_s)
    = a' W + b + K dz_s with the (nq x ns) kernel K = -alpha (a' a_s^T + 1).
    """
    neg_alpha = -alpha[:, None, None, None]
    a = xq
    for layer in range(1, n_layers + 1):
        kernel = torch.addcmul(neg_alpha, _gram(a, support_acts[layer - 1]), neg_alpha)
        z = _lin(a, params[f"w{layer}"], params[f"b{layer}"])
        c, t, n, o = z.shape
        dz_s = support_deltas[layer - 1]
        z = torch.baddbmm(
            z.view(c * t, n, o), kernel.reshape(c * t, n, -1), dz_s.reshape(c * t, -1, o)
        ).view(c, t, n, o)
        a = torch.relu(z) if layer < n_layers else z
    err = a - yq
    return (err * err).mean(dim=(2, 3))


def _flat(t: Tensor, c: int) -> Tensor:
    """(C|., T, n, k) -> (C, T*n, k), broadcasting a tensor shared by the cells."""
    t = t.expand(c, *t.shape[-3:]) if t.dim() == 3 else t
    return t.reshape(c, -1, t.shape[-1])


def _bt(t: Tensor, c: int) -> Tensor:
    """(C|., T, n, k) -> (C*T, n, k): one small matrix per (cell, task)."""
    t = t.expand(c, *t.shape[-3:]) if t.dim() == 3 else t
    return t.reshape(-1, *t.shape[-2:])


def _mlp_meta_gradient(
    params: Params,
    n_layers: int,
    alpha: Tensor,
    tasks: TaskBatch,
    *,
    second_order: bool,
) -> tuple[Params, Tensor, list[Tensor], list[Tensor]]:
    """Exact (``second_order``) or first-order MAML meta-gradient of every cell, by hand.

    Forward: the support pass of :func:`_mlp_pass` and the adapted query pass of
    :func:`_adapted_query_loss` (U_l = P_l W_l + b_l + K_l dz_s,l with K_l = -alpha
    (P_l A_s,l^T + 1), P_{l+1} = relu(U_l)). Backward, written out (J = mean_tau L_q):

    - query: Ubar_L = dJ/dU_L; Wbar_l += P_l^T Ubar_l; Kbar_l = Ubar_l dz_s,l^T;
      Pbar_l = Ubar_l W_l^T - alpha Kbar_l A_s,l; Ubar_{l-1} = Pbar_l * relu'(U_{l-1});
    - second order only, through the support gradient dz_s: dzbar_s,l = K_l^T Ubar_l,
      Abar_s,l = -alpha Kbar_l^T P_l; then back through dz_s,l = (dz_s,l+1 W_{l+1}^T) * relu'
      (W_{l+1} gets t_l^T dz_s,l+1 with t_l = dzbar_s,l * relu'), through
      dz_s,L = (2/n)(f - y) and through the support forward pass.

    First order drops the second group: the gradient of L_q at the adapted point (FOMAML).
    The ReLU masks are constants (their derivative is zero, as in autograd). Checked against
    autograd, the generic torch.func backend and the per-task loop in tests/test_engine.py.
    Returns (direction, per-(cell, task) query losses, support activations, support deltas).
    """
    xs, ys, xq, yq = tasks
    w = [params[f"w{l}"] for l in range(1, n_layers + 1)]
    b = [params[f"b{l}"] for l in range(1, n_layers + 1)]
    c = w[0].shape[0]
    a_s, dz_s, _ = _mlp_pass(params, n_layers, xs, ys)
    neg_alpha = -alpha[:, None, None, None]
    # adapted query forward, keeping what the backward needs
    p_in: list[Tensor] = []  # P_l, the input of layer l
    kern: list[Tensor] = []  # K_l
    a = xq
    for l in range(n_layers):
        p_in.append(a)
        k = torch.addcmul(neg_alpha, _gram(a, a_s[l]), neg_alpha)
        kern.append(k)
        z = _lin(a, w[l], b[l])
        cz, t, n, o = z.shape
        z.view(cz * t, n, o).baddbmm_(_bt(k, c), _bt(dz_s[l], c))  # in place: z is ours
        a = torch.relu(z) if l < n_layers - 1 else z
    err = a - yq
    loss = (err * err).mean(dim=(2, 3))  # (C, T)
    n_tasks = err.shape[1]
    u_bar = err * (2.0 / (err.shape[2] * err.shape[3] * n_tasks))
    w_bar = [torch.zeros_like(x) for x in w]
    b_bar = [torch.zeros_like(x) for x in b]
    dz_bar: list[Tensor | None] = [None] * n_layers
    a_bar: list[Tensor | None] = [None] * n_layers
    for l in range(n_layers - 1, -1, -1):
        cu, t, n, o = u_bar.shape
        w_bar[l].baddbmm_(_flat(p_in[l], c).transpose(1, 2), _flat(u_bar, c))
        b_bar[l] = b_bar[l] + u_bar.sum((1, 2))
        u3 = u_bar.reshape(cu * t, n, o)
        if second_order:
            dz_bar[l] = torch.bmm(_bt(kern[l], c).transpose(1, 2), u3).view(c, t, -1, o)
        if l == 0:
            break  # the input layer's inputs (x) are data
        k_bar = torch.bmm(u3, _bt(dz_s[l], c).transpose(1, 2))  # (C*T, nq, ns)
        k_bar = (k_bar.view(c, t, n, -1) * neg_alpha).view(c * t, n, -1)  # -alpha Kbar_l
        p_bar = _back(u_bar, w[l])
        p_bar.view(c * t, n, -1).baddbmm_(k_bar, _bt(a_s[l], c))
        if second_order:
            a_bar[l] = torch.bmm(k_bar.transpose(1, 2), _bt(p_in[l], c)).view(
                c, t, -1, w[l].shape[1]
            )
        u_bar = torch.ops.aten.threshold_backward(p_bar, p_in[l], 0)
    if second_order:
        # through dz_s,l = (dz_s,l+1 W_{l+1}^T) * relu'(Z_s,l)   (relu'(Z_s,l) = [A_s,l+1 > 0])
        for l in range(n_layers - 1):
            t_l = torch.ops.aten.threshold_backward(dz_bar[l], a_s[l + 1], 0)
            cz, t, n, i = t_l.shape
            t_flat = t_l.reshape(c, t * n, i)
            w_bar[l + 1].baddbmm_(t_flat.transpose(1, 2), _flat(dz_s[l + 1], c))
            _flat(dz_bar[l + 1], c).baddbmm_(t_flat, w[l + 1])  # in place (a view of ours)
        # through dz_s,L = (2/n)(f - y): the support output's gradient
        z_bar = dz_bar[n_layers - 1] * (2.0 / (ys.shape[-2] * ys.shape[-1]))
        for l in range(n_layers - 1, -1, -1):
            cz, t, n, o = z_bar.shape
            w_bar[l].baddbmm_(_flat(a_s[l], c).transpose(1, 2), _flat(z_bar, c))
            b_bar[l] = b_bar[l] + z_bar.sum((1, 2))
            if l == 0:
                break
            total = a_bar[l]
            _flat(total, c).baddbmm_(_flat(z_bar, c), w[l].transpose(1, 2))
            z_bar = torch.ops.aten.threshold_backward(total, a_s[l], 0)
    direction = {}
    for l in range(n_layers):
        direction[f"w{l + 1}"] = w_bar[l]
        direction[f"b{l + 1}"] = b_bar[l]
    return direction, loss, a_s, dz_s


def _layer_task_stats(acts: list[Tensor], deltas: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Per-task squared gradient norms (C, T) and |sum_tau g_tau|^2 (C,) by Gram matrices:
    |a^T dz|_F^2 = sum_ij (a a^T)_ij (dz dz^T)_ij."""
    sq = None
    total = None
    for a, dz in zip(acts, deltas, strict=True):
        bias_g = dz.sum(2)  # (C, T, o)
        layer_sq = (_gram(a, a) * _gram(dz, dz)).sum((2, 3)) + (bias_g * bias_g).sum(2)
        c, t, n, o = dz.shape
        a_full = a.expand(c, *a.shape[-3:]) if a.dim() == 3 else a
        w_sum = torch.bmm(a_full.reshape(c, t * n, -1).transpose(1, 2), dz.reshape(c, t * n, o))
        b_sum = bias_g.sum(1)
        layer_total = (w_sum * w_sum).sum((1, 2)) + (b_sum * b_sum).sum(1)
        sq = layer_sq if sq is None else sq + layer_sq
        total = layer_total if total is None else total + layer_total
    assert sq is not None and total is not None
    return sq, total


def make_mlp_step(problem: Problem, *, variant: str, steps: int) -> StepFn:
    """The hand-batched backend for the ReLU MLP of ``SinusoidProblem`` (one inner step)."""
    from mamlconv.experiments.problems.sinusoid import SinusoidProblem

    if not isinstance(problem, SinusoidProblem):
        raise ValueError(f"the mlp backend needs the sinusoid MLP, got {problem.name!r}")
    if steps != 1:
        raise ValueError(f"the mlp backend takes one inner step, got steps={steps}")
    n_layers = len(problem.widths) - 1

    def step(
        params: Params, alphas: Tensor, tasks: TaskBatch, *, need_direction: bool, need_stats: bool
    ) -> StepOut:
        xs, ys, xq, yq = tasks
        names = list(params)
        if variant != "surrogate" and need_direction:
            with torch.no_grad():
                direction, per_task, s_acts, s_deltas = _mlp_meta_gradient(
                    params, n_layers, alphas, tasks, second_order=variant == "exact"
                )
            loss_pre = grad_norm = grad_inner = None
            if need_stats:
                with torch.no_grad():
                    loss_pre = _mlp_pass(params, n_layers, xq, yq)[2].mean(1)
                    grad_norm, grad_inner = _pair_stats(*_layer_task_stats(s_acts, s_deltas))
            direction = {n: direction[n] for n in names}
            return StepOut(direction, per_task.mean(1), loss_pre, grad_norm, grad_inner)
        with torch.enable_grad():
            leaves = {n: p.detach().requires_grad_(need_direction) for n, p in params.items()}
            second_order = need_direction and variant in ("exact", "surrogate")
            with torch.set_grad_enabled(second_order):
                s_acts, s_deltas, _ = _mlp_pass(leaves, n_layers, xs, ys)
            loss_pre = None
            if variant == "surrogate":
                with torch.set_grad_enabled(need_direction):
                    q_acts, q_deltas, q_loss = _mlp_pass(leaves, n_layers, xq, yq)
                # <grad L_s, sg(grad L_q)> per (cell, task), by Gram matrices of the two sets.
                inner = 0.0
                for a_s, dz_s, a_q, dz_q in zip(s_acts, s_deltas, q_acts, q_deltas, strict=True):
                    a_q, dz_q = a_q.detach(), dz_q.detach()
                    inner = inner + (_gram(a_s, a_q) * _gram(dz_s, dz_q)).sum((2, 3))
                    inner = inner + (dz_s.sum(2) * dz_q.sum(2)).sum(2)
                objective = q_loss - alphas[:, None] * inner
                loss_pre = q_loss.detach().mean(1)
                with torch.no_grad():
                    loss_post = _adapted_query_loss(
                        leaves, n_layers, alphas, s_acts, s_deltas, xq, yq
                    ).mean(1)
            else:
                with torch.set_grad_enabled(need_direction):
                    per_task = _adapted_query_loss(
                        leaves, n_layers, alphas, s_acts, s_deltas, xq, yq
                    )
                objective = per_task
                loss_post = per_task.detach().mean(1)
            direction = None
            if need_direction:
                grads = torch.autograd.grad(objective.mean(1).sum(), [leaves[n] for n in names])
                direction = dict(zip(names, grads, strict=True))
        grad_norm = grad_inner = None
        if need_stats:
            with torch.no_grad():
                if loss_pre is None:
                    loss_pre = _mlp_pass(params, n_layers, xq, yq)[2].mean(1)
                detached = [t.detach() for t in s_acts], [t.detach() for t in s_deltas]
                grad_norm, grad_inner = _pair_stats(*_layer_task_stats(*detached))
        return StepOut(direction, loss_post, loss_pre, grad_norm, grad_inner)

    return step
