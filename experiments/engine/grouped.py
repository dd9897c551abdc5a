"""The ``grouped`` step backend: a cell's tasks as channel groups of native kernels,
differentiated by plain autograd; for convolutional networks on a CPU.

A convolutional network of known layers (:func:`layer_plan`: ``Conv2d``, ``BatchNorm2d`` with
batch statistics, ``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``Flatten``, ``Linear``) runs for G
(cell, task) pairs at once with activations laid out (examples, G * channels, h, w):

- a convolution is one ``conv2d`` with ``groups = G`` and the G pairs' weights stacked (one
  pair's weights are its cell's theta for the first inner step, its own adapted weights after);
- batch norm is one native ``batch_norm`` over that tensor, whose per-channel statistics over
  (examples, h, w) are exactly each task's own statistics (one group of channels per task);
- ReLU and pooling act on each channel alone; ``Flatten`` gives (examples, G, features) and a
  linear layer is one batched product over the G pairs.

The inner steps are ``torch.autograd.grad(..., create_graph=True)`` on the stacked weights (the
loss of the step is the sum over pairs of each pair's loss, so the gradient with respect to a
pair's weights is that pair's own gradient), and the meta-gradient comes from the query losses
through them into the cell's theta (:func:`make_grouped_step`): exact second-order MAML as the
per-task loop of :mod:`.reference` computes it, with every elementwise operation a native
kernel (batch norm's first and second derivatives included) instead of the long chains that
nested ``grad`` under ``vmap`` builds (:mod:`.generic`). No kernel combines two groups, and no
call holds two cells.

The query loss at the shared theta (``loss_pre``, a diagnostic) is computed only when the loop
records diagnostics. ``first_order`` detaches the inner gradients; ``surrogate`` is left to
:mod:`.generic`. Tested against the per-task loop and the generic backend in float64
(``tests/test_grouped.py``); what it gains is measured by ``benchmarks/cnn_bench.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mamlconv.experiments.engine.step import StepFn, StepOut, _pair_stats
from mamlconv.numerics.tasks import Params, Problem, TaskBatch

VARIANTS = ("exact", "first_order")


@dataclass(frozen=True)
class Layer:
    """One layer of a plan: ``kind`` in conv, bn, relu, maxpool, avgpool, flatten, linear;
    ``weight``/``bias`` name parameters (None: none); ``options`` the layer's settings."""

    kind: str
    weight: str | None = None
    bias: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    def opt(self, key: str) -> Any:
        return dict(self.options)[key]


@dataclass(frozen=True)
class Plan:
    """The layers of a network and the loss of one pair's outputs (``loss(outputs, y)``)."""

    layers: tuple[Layer, ...]
    loss: Any


_CNN_CONV = (("kernel_size", 3), ("stride", 1), ("padding", 1))  # cnn.py's 'same' 3x3


def _cnn_plan(spec: Any) -> Plan:
    from mamlconv.experiments.problems import cnn

    layers: list[Layer] = []
    for b in range(spec.blocks):
        layers += [
            Layer(
                "conv", f"conv{b}.weight", None, (("kernel_size", 3), ("stride", 1), ("padding", 1))
            ),
            Layer("bn", f"bn{b}.weight", f"bn{b}.bias", (("eps", cnn.BN_EPS),)),
            Layer("relu"),
            Layer("maxpool", options=(("kernel", 2), ("stride", 2), ("padding", 0))),
        ]
    layers += [Layer("flatten"), Layer("linear", "head.weight", "head.bias")]
    return Plan(tuple(layers), _cross_entropy)


def _cross_entropy(outputs: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(outputs, y)


def _module_plan(problem: Any) -> Plan | None:
    """The plan of a ``problem_from_module`` problem, or None when a layer is not supported."""
    from torch import nn

    module = problem.module
    trainable = set(problem.trainable)
    if set(dict(module.named_parameters())) != trainable:
        return None  # frozen parameters: not supported here
    if any(True for _ in module.named_buffers()):
        return None
    leaves = [(n, m) for n, m in module.named_modules() if not list(m.children())]
    if not leaves or any(
        not isinstance(m, nn.Sequential) for n, m in module.named_modules() if list(m.children())
    ):
        return None
    layers: list[Layer] = []

    def name(prefix: str, p: str, m: nn.Module) -> str | None:
        if getattr(m, p, None) is None:
            return None
        return f"{prefix}.{p}" if prefix else p

    for prefix, m in leaves:
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                return None
            opts = (
                ("kernel_size", m.kernel_size),
                ("stride", m.stride),
                ("padding", m.padding),
                ("dilation", m.dilation),
            )
            layers.append(Layer("conv", name(prefix, "weight", m), name(prefix, "bias", m), opts))
        elif isinstance(m, nn.BatchNorm2d):
            if m.track_running_stats:
                return None
            layers.append(
                Layer("bn", name(prefix, "weight", m), name(prefix, "bias", m), (("eps", m.eps),))
            )
        elif isinstance(m, nn.ReLU):
            layers.append(Layer("relu"))
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
            if getattr(m, "ceil_mode", False) or getattr(m, "dilation", 1) not in (1, (1, 1)):
                return None
            if isinstance(m, nn.AvgPool2d) and (
                not m.count_include_pad or m.divisor_override is not None
            ):
                return None
            kind = "maxpool" if isinstance(m, nn.MaxPool2d) else "avgpool"
            opts = (("kernel", m.kernel_size), ("stride", m.stride), ("padding", m.padding))
            layers.append(Layer(kind, options=opts))
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                return None
            layers.append(Layer("flatten"))
        elif isinstance(m, nn.Linear):
            layers.append(Layer("linear", name(prefix, "weight", m), name(prefix, "bias", m)))
        else:
            return None
    kinds = [layer.kind for layer in layers]
    if "conv" not in kinds or "flatten" not in kinds:
        return None
    flat = kinds.index("flatten")
    image_kinds = {"conv", "bn", "relu", "maxpool", "avgpool"}
    if not set(kinds[:flat]) <= image_kinds or not set(kinds[flat + 1 :]) <= {"linear", "relu"}:
        return None
    return Plan(tuple(layers), problem.loss_fn)


def layer_plan(problem: Problem) -> Plan | None:
    """The grouped plan of ``problem``'s network, or None when this backend does not apply:
    the few-shot CNN of :mod:`mamlconv.experiments.problems.cnn`, or a ``problem_from_module``
    network that is a ``Sequential`` of the supported layers (convolutions and pooling before
    one ``Flatten``, linear layers and ReLU after it; no buffers, no frozen parameters)."""
    from mamlconv.experiments.problems.fewshot import FewShotProblem
    from mamlconv.experiments.problems.module_problem import ModuleProblem

    plan = None
    if isinstance(problem, FewShotProblem):
        plan = _cnn_plan(problem.spec)
    elif isinstance(problem, ModuleProblem):
        plan = _module_plan(problem)
    return None if plan is None else Plan(_rewrite(plan.layers), plan.loss)


def _rewrite(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Two rewrites that are exact in real arithmetic and save passes over the largest tensors:

    - a first convolution followed by batch norm, on the data, becomes one affine convolution
      (``conv_bn``, see :func:`_conv_bn_weights`);
    - ReLU followed by max-pooling becomes max-pooling followed by ReLU (both are monotone, so
      max(relu(x)) = relu(max(x)), and the ReLU then acts on a quarter of the values).
    """
    out = list(layers)
    if len(out) >= 2 and out[0].kind == "conv" and out[1].kind == "bn":
        conv, bn = out[0], out[1]
        options = (*conv.options, ("eps", bn.opt("eps")), ("bn", (bn.weight, bn.bias)))
        out[:2] = [Layer("conv_bn", conv.weight, None, options)]
    i = 0
    while i < len(out) - 1:
        if out[i].kind == "relu" and out[i + 1].kind == "maxpool":
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return tuple(out)


class Patches(NamedTuple):
    """The convolution patches of each task's images for a leading ``conv_bn`` layer:
    ``rows`` (T, examples x positions, D + 1) in (example, row, column) order, D = channels x
    kernel area (zero padding included), a last column of ones; their ``mean`` (T, D) and
    biased covariance
    ``cov`` (T, D, D), and the output side ``(h, w)``."""

    rows: Tensor
    mean: Tensor
    cov: Tensor
    side: tuple[int, int]


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _patches(layer: Layer, x: Tensor) -> Patches:
    """:class:`Patches` of the images ``x`` (T, examples, channels, h, w)."""
    t, n, _c, height, width = x.shape
    kernel, stride = _pair(layer.opt("kernel_size")), _pair(layer.opt("stride"))
    padding, dilation = _pair(layer.opt("padding")), _pair(dict(layer.options).get("dilation", 1))
    side = tuple(
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, p, d, k, s in zip((height, width), padding, dilation, kernel, stride, strict=True)
    )
    cols = F.unfold(x.flatten(0, 1), kernel, dilation=dilation, padding=padding, stride=stride)
    d, positions = cols.shape[1:]  # (T * N, D, L)
    # rows with a last column of ones: the bias joins the weights in one product
    rows = torch.ones(t, n, positions, d + 1, dtype=x.dtype, device=x.device)
    rows[..., :d] = cols.view(t, n, d, positions).transpose(2, 3)
    rows = rows.view(t, n * positions, d + 1)
    mean = rows[..., :d].mean(1)
    centred = rows[..., :d] - mean[:, None, :]
    cov = torch.bmm(centred.transpose(1, 2), centred) / rows.shape[1]
    return Patches(rows, mean, cov, (int(side[0]), int(side[1])))


def _conv_bn_weights(layer: Layer, weights: Params, patches: Patches) -> tuple[Tensor, Tensor]:
    """Weight and bias of the affine convolution equal to batch norm of a convolution of data.

    Output channel c of the convolution is w_c . p (+ bias) over patches p with mean m and
    covariance S, so its batch mean is w_c . m (+ bias) and its biased variance w_c' S w_c; batch
    norm then gives gamma_c (w_c . (p - m)) / sqrt(w_c' S w_c + eps) + beta_c: a convolution
    with weight s_c w_c, s_c = gamma_c / sqrt(w_c' S w_c + eps), and bias beta_c - s_c w_c . m
    (the convolution's own bias cancels). The largest activation of the network is then
    written once, and normalised, shifted and differentiated by no elementwise pass at all.
    It is written as one product of the patch rows with the weights, whose result is the
    channels-last layout (examples, h, w, channels) in which the pooling, batch norm and
    convolutions after it run fastest on a CPU.
    """
    w = weights[layer.weight]  # (G, out, in, k, k)
    gamma_name, beta_name = layer.opt("bn")
    mean, cov = patches.mean, patches.cov
    flat = w.flatten(2)  # (G, out, D)
    var = (torch.bmm(flat, cov) * flat).sum(2)  # (G, out)
    scale = torch.rsqrt(var + layer.opt("eps"))
    if gamma_name is not None:
        scale = scale * weights[gamma_name]
    shift = -scale * torch.bmm(flat, mean[:, :, None]).squeeze(2)
    if beta_name is not None:
        shift = shift + weights[beta_name]
    return w * scale[:, :, None, None, None], shift


def _forward(
    plan: Plan,
    weights: Params,
    x: Tensor,
    groups: int,
    patches: Patches | None = None,
) -> Tensor:
    """Outputs (G, examples, out) of G pairs; ``x`` (examples, G * channels, h, w);
    ``weights[name]`` holds the G pairs' values stacked (G, *shape); ``patches`` the pairs'
    patches for a leading ``conv_bn`` layer (which then replaces ``x``)."""
    h = x
    for layer in plan.layers:
        w = None if layer.weight is None else weights[layer.weight]
        b = None if layer.bias is None else weights[layer.bias]
        if layer.kind == "conv_bn":
            assert patches is not None
            w, b = _conv_bn_weights(layer, weights, patches)
            affine = torch.cat([w.flatten(2), b[:, :, None]], dim=2)  # (G, out, D + 1)
            out = torch.bmm(patches.rows, affine.transpose(1, 2))
            n = x.shape[0]
            height, width = patches.side
            out = out.view(groups, n, height, width, -1)  # (G, N, h, w, out)
            if groups > 1:
                out = out.permute(1, 2, 3, 0, 4).reshape(n, height, width, -1)
            else:
                out = out.view(n, height, width, -1)
            h = out.permute(0, 3, 1, 2)  # (N, G * out, h, w), channels-last memory
        elif layer.kind == "conv":
            assert w is not None
            h = F.conv2d(
                h,
                w.flatten(0, 1),
                None if b is None else b.flatten(),
                stride=layer.opt("stride"),
                padding=layer.opt("padding"),
                dilation=dict(layer.options).get("dilation", 1),
                groups=groups,
            )
        elif layer.kind == "bn":
            h = F.batch_norm(
                h,
                None,
                None,
                None if w is None else w.flatten(),
                None if b is None else b.flatten(),
                training=True,
                eps=layer.opt("eps"),
            )
        elif layer.kind == "relu":
            h = F.relu(h)
        elif layer.kind == "maxpool":
            h = F.max_pool2d(h, layer.opt("kernel"), layer.opt("stride"), layer.opt("padding"))
        elif layer.kind == "avgpool":
            h = F.avg_pool2d(h, layer.opt("kernel"), layer.opt("stride"), layer.opt("padding"))
        elif layer.kind == "flatten":
            n = h.shape[0]
            h = h.reshape(n, groups, -1).transpose(0, 1)  # (G, examples, features)
        else:  # linear: one product per pair
            assert w is not None
            h = torch.bmm(h, w.transpose(1, 2))
            if b is not None:
                h = h + b[:, None, :]
    return h


def _group_losses(plan: Plan, outputs: Tensor, y: Tensor) -> Tensor:
    """(G,) each pair's loss ``plan.loss(outputs[g], y[g])``."""
    if plan.loss in (_cross_entropy, F.cross_entropy) and not y.is_floating_point():
        # class labels: one native call for all pairs
        g, n, k = outputs.shape
        per = F.cross_entropy(outputs.reshape(g * n, k), y.reshape(g * n), reduction="none")
        return per.view(g, n).mean(1)
    return torch.stack([plan.loss(outputs[i], y[i]) for i in range(outputs.shape[0])])


def _images(x: Tensor) -> Tensor:
    """(G, examples, channels, h, w) -> (examples, G * channels, h, w)."""
    g, n, c, h, w = x.shape
    return x.transpose(0, 1).reshape(n, g * c, h, w)


CACHE_BYTES = 4 << 20
"""Bytes of the first convolution's output that one call may hold, (pairs per call) x (one
pair's output on that call's set): the elementwise kernels (pooling, ReLU, batch norm and
their derivatives) run from cache below it and from memory above it. Measured on the paper's
Omniglot episode (``benchmarks/cnn_bench.py`` and single-step timings): its query activation,
15 MB a task, runs fastest one task at a time (two at a time was slower by a quarter); its
1 MB support activations fastest about four at a time; the 55 kB query activation of
``examples/own_model.py`` with all of a cell's tasks in one call."""


def pairs_per_call(plan: Plan, params: Params, x: Tensor, *, n_pairs: int) -> int:
    """How many (cell, task) pairs one call runs on the set ``x`` (tasks, examples, channels,
    h, w): as many as keep the first convolution's output within :data:`CACHE_BYTES` (at least
    1, at most ``n_pairs``)."""
    first = next(layer for layer in plan.layers if layer.kind in ("conv", "conv_bn"))
    n, _c, height, width = x.shape[1:]
    stride = first.opt("stride")
    stride = stride if isinstance(stride, tuple) else (stride, stride)
    weight = params[first.weight]  # (cells, out, in, k, k)
    per_pair = n * weight.shape[1] * (height // stride[0]) * (width // stride[1])
    per_pair *= weight.element_size()
    return int(max(1, min(n_pairs, CACHE_BYTES // max(per_pair, 1))))


def _stack(params: Params, cells: Tensor) -> Params:
    return {n: p.index_select(0, cells) for n, p in params.items()}


def _grad(outputs: Any, inputs: list[Tensor], **kwargs: Any) -> list[Tensor]:
    """``torch.autograd.grad`` with zeros for inputs the outputs do not depend on (the bias of
    a convolution folded into batch norm, whose derivative is exactly zero)."""
    grads = torch.autograd.grad(outputs, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True)]


def make_grouped_step(
    problem: Problem,
    *,
    variant: str,
    steps: int,
    support_pairs: int | None = None,
    query_pairs: int | None = None,
) -> StepFn:
    """The grouped step backend for ``problem`` (``layer_plan`` must not be None).

    One call runs in two phases. The inner steps of ``support_pairs`` (cell, task) pairs run in
    one grouped graph (kept for the second-order backward); the adapted weights are then handed,
    ``query_pairs`` pairs at a time, to a query pass that needs no graph of higher order: the
    gradient ``q`` of each pair's query loss with respect to its adapted weights, after which the
    query's activations are freed. One backward of the adapted weights, weighted by ``q``,
    through the support graph gives the meta-gradient (the chain rule, exactly as one backward
    through everything; first order stops at ``q``). Both sizes default to
    :func:`pairs_per_call` on their set, at most one cell's tasks: a call never mixes cells, so
    a cell's numbers do not depend on the other cells of the batch. The numbers do not depend
    on the sizes beyond rounding.
    """
    plan = layer_plan(problem)
    if plan is None:
        raise ValueError(f"the grouped backend does not apply to problem {problem.name!r}")
    if variant not in VARIANTS:
        raise ValueError(f"the grouped backend computes {VARIANTS}, not {variant!r}")
    second_order = variant == "exact"
    fused = plan.layers[0].kind == "conv_bn"

    def step(
        params: Params, alphas: Tensor, tasks: TaskBatch, *, need_direction: bool, need_stats: bool
    ) -> StepOut:
        n_cells, n_tasks = alphas.shape[0], tasks.n_tasks
        n_pairs = n_cells * n_tasks
        # calls never mix cells, and their sizes depend on the tasks only: a cell's numbers do
        # not depend on which other cells share the batch (bit for bit)
        per_support = min(
            n_tasks,
            support_pairs or pairs_per_call(plan, params, tasks.x_support, n_pairs=n_tasks),
        )
        per_query = min(
            n_tasks, query_pairs or pairs_per_call(plan, params, tasks.x_query, n_pairs=n_tasks)
        )
        names = list(params)
        device = alphas.device
        direction = {n: torch.zeros_like(p) for n, p in params.items()} if need_direction else None
        loss_post = torch.zeros(n_pairs, dtype=alphas.dtype, device=device)
        loss_pre = torch.zeros(n_pairs, dtype=alphas.dtype, device=device) if need_stats else None
        sq = torch.zeros(n_pairs, dtype=alphas.dtype, device=device)
        cell_sum: Tensor | None = None
        track = need_direction and second_order  # keep the support graph for the backward

        def patches(x: Tensor) -> Patches | None:
            # made per call, just before use: they stay in cache, and memory stays per call
            return _patches(plan.layers[0], x) if fused else None

        starts = [c * n_tasks + t for c in range(n_cells) for t in range(0, n_tasks, per_support)]
        for p0 in starts:
            idx = torch.arange(p0, min(p0 + per_support, (p0 // n_tasks + 1) * n_tasks))
            idx = idx.to(device)
            cells, task_idx = idx // n_tasks, idx % n_tasks
            c0, c1 = int(cells[0]), int(cells[-1]) + 1
            g = idx.numel()
            xs, ys = _images(tasks.x_support[task_idx]), tasks.y_support[task_idx]
            mom_s = patches(tasks.x_support[task_idx])
            with torch.enable_grad():
                # phase 1: the inner steps of g pairs in one grouped graph
                theta = {n: p[c0:c1].detach().requires_grad_(track) for n, p in params.items()}
                fast = _stack(theta, cells - c0)
                if not track:
                    fast = {n: f.detach().requires_grad_(True) for n, f in fast.items()}
                lr = alphas[cells]
                for k in range(steps):
                    support = _group_losses(plan, _forward(plan, fast, xs, g, mom_s), ys).sum()
                    grads = _grad(support, [fast[n] for n in names], create_graph=track)
                    if k == 0 and need_stats:
                        flat = torch.cat([gr.detach().flatten(1) for gr in grads], dim=1)
                        sq[idx] = (flat * flat).sum(1)
                        if cell_sum is None:
                            cell_sum = torch.zeros(
                                n_cells, flat.shape[1], dtype=flat.dtype, device=device
                            )
                        cell_sum.index_add_(0, cells, flat)
                    fast = {
                        n: fast[n] - lr.view(-1, *([1] * (gr.dim() - 1))) * gr
                        for n, gr in zip(names, grads, strict=True)
                    }
                    if not track:  # first order, or no meta-gradient wanted
                        fast = {n: f.detach().requires_grad_(True) for n, f in fast.items()}
                # phase 2: the query pass, a few pairs at a time, down to the adapted weights
                q_grads: dict[str, list[Tensor]] = {n: [] for n in names}
                for j0 in range(0, g, per_query):
                    j = torch.arange(j0, min(j0 + per_query, g), device=device)
                    tk = task_idx[j]
                    xq, yq = _images(tasks.x_query[tk]), tasks.y_query[tk]
                    mom_q = patches(tasks.x_query[tk])
                    leaf = {
                        n: f.detach()[j].requires_grad_(need_direction) for n, f in fast.items()
                    }
                    per_pair = _group_losses(plan, _forward(plan, leaf, xq, j.numel(), mom_q), yq)
                    loss_post[idx[j]] = per_pair.detach()
                    if need_direction:
                        qs = _grad(per_pair.sum() / n_tasks, [leaf[n] for n in names])
                        for n, q in zip(names, qs, strict=True):
                            q_grads[n].append(q)
                    if loss_pre is not None:
                        with torch.no_grad():
                            start = _stack(params, cells[j])
                            pre = _forward(plan, start, xq, j.numel(), mom_q)
                            loss_pre[idx[j]] = _group_losses(plan, pre, yq)
                if direction is not None:
                    q_all = {n: torch.cat(q_grads[n]) for n in names}
                    if second_order:  # back through the inner steps, weighted by q
                        grads = _grad(
                            [fast[n] for n in names],
                            [theta[n] for n in names],
                            grad_outputs=[q_all[n] for n in names],
                        )
                        for n, gr in zip(names, grads, strict=True):
                            direction[n][c0:c1] += gr
                    else:  # first order: the query gradient at the adapted point
                        for n in names:
                            direction[n].index_add_(0, cells, q_all[n])
        grad_norm = grad_inner = None
        if need_stats:
            assert cell_sum is not None
            grad_norm, grad_inner = _pair_stats(
                sq.view(n_cells, n_tasks), (cell_sum * cell_sum).sum(1)
            )
        return StepOut(
            direction,
            loss_post.view(n_cells, n_tasks).mean(1),
            None if loss_pre is None else loss_pre.view(n_cells, n_tasks).mean(1),
            grad_norm,
            grad_inner,
        )

    return step
