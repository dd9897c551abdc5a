"""A user's ``nn.Module``, loss and task sampler as a :class:`~mamlconv.numerics.tasks.Problem`.

:func:`problem_from_module` is the bridge from the code a MAML user already has (an
``nn.Module``, a loss ``loss_fn(outputs, targets)`` and a sampler of support/query batches) to
every function of the package that takes a ``Problem``: sweeps, spectra, the advisor, compare.

The functional model. One task's loss is

    L(theta; x, y) = loss_fn(f(x; theta, b), y)

with ``f`` the module evaluated by ``torch.func.functional_call`` on the trainable parameters
``theta`` (those with ``requires_grad``) and the constants ``b`` (buffers and frozen parameters,
cast to the dtype and device of ``theta``). ``x`` holds ONE task's examples (no task axis), so
``torch.func.grad``/``jvp``/``vmap`` over tasks and cells apply as for the built-in problems.

BatchNorm, the MAML way. Finn et al.'s code (and learn2learn's examples, which build their CNNs
with ``track_running_stats=False``) normalise with the statistics of the batch passed in: one
task's support set in the inner loop, its query set in the outer loss; running statistics are
never used nor updated. The adapter works on a private copy of the module in which every
normalisation layer with running statistics (``BatchNorm*d``, ``InstanceNorm*d`` with
``track_running_stats=True``) is switched to ``track_running_stats=False`` and loses its
running buffers, so it computes batch statistics in training and evaluation alike and mutates
nothing. The user's module is never modified.

Refused up front (one line naming the layer and the fix): uninitialised lazy layers, dropout
with p > 0 in training mode (random numbers make the loss a random function, and
``torch.func.vmap`` refuses them), any other layer whose forward pass writes to a buffer
(found by running one forward pass and watching each buffer's version counter), a forward
pass that gives two outputs on one input (state kept in plain attributes, random numbers),
outputs whose shape broadcasts against real-valued targets, a sampler that ignores its
generator (equal seeds must give equal tasks, another seed other tasks), NaN or inf in the
task data (checked on every batch) and a non-finite loss at the initial parameters.

Initial parameters. ``init='current'`` (default): the module's weights as they are when the
problem is built (what a user holds after constructing or loading a model); every seed starts
from them. ``init='reset'``: every seed re-initialises a copy with each layer's own
``reset_parameters()``, its random numbers drawn from a seed taken from the run's generator
inside ``torch.random.fork_rng``, so the global RNG is left exactly as it was. A callable
``init(module, generator)`` re-initialises a fresh copy in place (e.g. with
``torch.nn.init.*_(..., generator=generator)``).

Samplers. ``sample_task(generator) -> (x_support, y_support, x_query, y_query)`` for one task
(the adapter calls it once per task and stacks), or ``sample_tasks(generator, n_tasks)``
returning the same four with a leading task axis. Tensors (or arrays) of any dtype; floating
ones are cast to the run's dtype, integer labels kept.

learn2learn / higher. Pass the inner module: ``problem_from_module(maml.module, ...)`` for
``maml = l2l.algorithms.MAML(model, lr=...)``; with higher, pass the ``nn.Module`` given to
``higher.innerloop_ctx``. The adapter does its own inner loop (the sweep's alpha).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from mamlconv.errors import ProblemError
from mamlconv.numerics.tasks import Params, TaskBatch

InitFn = Callable[[nn.Module, torch.Generator], None]
TaskSampler = Callable[[torch.Generator], Sequence[Any]]
BatchSampler = Callable[[torch.Generator, int], Sequence[Any]]
FIELDS = ("x_support", "y_support", "x_query", "y_query")
INITS = ("current", "reset")


class ModuleProblemError(ProblemError, ValueError):
    """A model, loss or sampler the adapter cannot use; the message is one line with the fix."""


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def _as_tensor(value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ModuleProblemError(
            f"{what} is a {type(value).__name__}, not a tensor or array"
        ) from None


def _four(out: Any, who: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not isinstance(out, Sequence) or isinstance(out, str | bytes) or len(out) != 4:
        got = f"{len(out)} items" if isinstance(out, Sequence) else type(out).__name__
        raise ModuleProblemError(
            f"{who} must return (x_support, y_support, x_query, y_query), got {got}"
        )
    return tuple(_as_tensor(v, f"{who}'s {f}") for v, f in zip(out, FIELDS, strict=True))  # type: ignore[return-value]


def _check_pairs(ts: Sequence[Tensor], who: str, *, axis: int) -> None:
    """Support x and y (and query x and y) hold as many examples; support and query inputs
    (and targets) have the same per-example shape."""
    xs, ys, xq, yq = ts
    for x, y, part in ((xs, ys, "support"), (xq, yq, "query")):
        if x.dim() <= axis or y.dim() <= axis or x.shape[axis] != y.shape[axis]:
            raise ModuleProblemError(
                f"{who}: x_{part} {_shape(x)} and y_{part} {_shape(y)} disagree on the number "
                f"of examples (axis {axis}); return one target per input"
            )
    if xs.shape[axis + 1 :] != xq.shape[axis + 1 :] or ys.shape[axis + 1 :] != yq.shape[axis + 1 :]:
        raise ModuleProblemError(
            f"{who}: support {_shape(xs)}/{_shape(ys)} and query {_shape(xq)}/{_shape(yq)} "
            "examples differ in shape; the model sees both"
        )


def _norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from torch.nn.modules.batchnorm import _NormBase

    return [(n, m) for n, m in model.named_modules() if isinstance(m, _NormBase)]


def functional_copy(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` whose normalisation layers use batch statistics only.

    Refuses (ModuleProblemError naming the layer and the fix) what cannot be functional: lazy
    layers not yet initialised and dropout with p > 0 in training mode.
    """
    from torch.nn.modules.dropout import _DropoutNd
    from torch.nn.modules.lazy import LazyModuleMixin

    if not isinstance(model, nn.Module):
        raise ModuleProblemError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, m in model.named_modules():
        label = f"layer {name or '<root>'!r} ({type(m).__name__})"
        if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params():
            raise ModuleProblemError(
                f"{label} is lazy and not initialised; run one forward pass on a batch first"
            )
        if isinstance(m, _DropoutNd | nn.AlphaDropout) and m.training and m.p > 0:
            raise ModuleProblemError(
                f"{label} draws random numbers (p={m.p}): the MAML loss must be deterministic; "
                f"set p=0 or call .eval() on that layer before building the problem"
            )
    work = copy.deepcopy(model).to("cpu")
    for _, m in _norm_layers(work):
        if getattr(m, "track_running_stats", False):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
    return work


class ModuleProblem:
    """``Problem`` protocol over an ``nn.Module`` (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        *,
        sample_task: TaskSampler | None = None,
        sample_tasks: BatchSampler | None = None,
        name: str | None = None,
        init: str | InitFn = "current",
        check: bool = True,
    ) -> None:
        if (sample_task is None) == (sample_tasks is None):
            raise ModuleProblemError(
                "give exactly one sampler: sample_task(generator) for one task, or "
                "sample_tasks(generator, n_tasks) for a batch"
            )
        sampler = sample_task if sample_task is not None else sample_tasks
        if not callable(sampler):
            raise ModuleProblemError(f"the sampler must be callable, got {type(sampler).__name__}")
        if not callable(loss_fn):
            raise ModuleProblemError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if not (callable(init) or init in INITS):
            raise ModuleProblemError(f"init must be one of {INITS} or a callable, got {init!r}")
        self.module = functional_copy(model)
        self.loss_fn = _forward_mode_safe(loss_fn)
        self._sample_task = sample_task
        self._sample_tasks = sample_tasks
        self.init = init
        self.name = name or type(model).__name__.lower()
        self.trainable = [n for n, p in self.module.named_parameters() if p.requires_grad]
        if not self.trainable:
            raise ModuleProblemError("the model has no parameter with requires_grad=True")
        self._initial = self._trainable_of(self.module)
        self._constants_cpu = {
            n: p.detach() for n, p in self.module.named_parameters() if not p.requires_grad
        }
        self._constants_cpu.update({n: b.detach() for n, b in self.module.named_buffers()})
        self._constants: dict[tuple[torch.dtype, str], Params] = {}
        if check:
            self.check()

    # -- Problem protocol -------------------------------------------------------------------

    def init_params(
        self, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
    ) -> Params:
        """The trainable parameters to start from (see ``init`` in the module docstring)."""
        if self.init == "current":
            values = self._initial
        else:
            fresh = copy.deepcopy(self.module)
            if self.init == "reset":
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                with torch.random.fork_rng(devices=[]):  # global RNG restored on exit
                    torch.manual_seed(seed)
                    for m in fresh.modules():
                        reset = getattr(m, "reset_parameters", None)
                        if callable(reset):
                            reset()
            else:
                with torch.no_grad():
                    self.init(fresh, generator)  # type: ignore[operator]
            values = self._trainable_of(fresh)
        return {n: v.to(device=device, dtype=dtype) for n, v in values.items()}

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        """loss_fn(f(x; params, constants), y) for ONE task (no task axis)."""
        like = next(iter(params.values()))
        outputs = functional_call(
            self.module, {**params, **self.constants(like.dtype, like.device)}, (x,)
        )
        return self.loss_fn(outputs, y)

    def sample_tasks(
        self,
        generator: torch.Generator,
        n_tasks: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> TaskBatch:
        """``n_tasks`` tasks from the user's sampler, stacked, checked, cast and moved."""
        if self._sample_tasks is not None:
            ts = _four(self._sample_tasks(generator, n_tasks), "sample_tasks")
            for t, f in zip(ts, FIELDS, strict=True):
                if t.dim() == 0 or t.shape[0] != n_tasks:
                    raise ModuleProblemError(
                        f"sample_tasks(generator, {n_tasks}) returned {f} of shape {_shape(t)}; "
                        f"the first axis must be the {n_tasks} tasks"
                    )
            _check_pairs(ts, "sample_tasks", axis=1)
            _check_finite(ts, "sample_tasks", stacked=True)
            return TaskBatch(*ts).to(device, dtype)
        assert self._sample_task is not None
        tasks = [_four(self._sample_task(generator), "sample_task") for _ in range(n_tasks)]
        _check_pairs(tasks[0], "sample_task", axis=0)
        for i, task in enumerate(tasks[1:], start=1):
            for t, t0, f in zip(task, tasks[0], FIELDS, strict=True):
                if t.shape != t0.shape:
                    raise ModuleProblemError(
                        f"sample_task: task {i} has {f} of shape {_shape(t)} but task 0 "
                        f"{_shape(t0)}; tasks are stacked, so every task needs the same shapes"
                    )
        stacked = tuple(torch.stack([task[k] for task in tasks]) for k in range(4))
        _check_finite(stacked, "sample_task", stacked=True)
        return TaskBatch(*stacked).to(device, dtype)

    # -- helpers ----------------------------------------------------------------------------

    def _trainable_of(self, module: nn.Module) -> Params:
        named = dict(module.named_parameters())
        return {n: named[n].detach().clone() for n in self.trainable}

    def constants(self, dtype: torch.dtype, device: torch.device | str) -> Params:
        """Buffers and frozen parameters, floating ones cast to ``dtype``, on ``device``."""
        key = (dtype, str(device))
        if key not in self._constants:
            self._constants[key] = {
                n: c.to(device=device, dtype=dtype) if c.is_floating_point() else c.to(device)
                for n, c in self._constants_cpu.items()
            }
        return self._constants[key]

    def n_params(self) -> int:
        return sum(v.numel() for v in self._initial.values())

    def check(self) -> None:
        """Sample two tasks, run the model and the loss once and differentiate it; raise
        ModuleProblemError (one line, with the fix) on mismatched shapes, a non-scalar loss, a
        layer that writes to a buffer, or a forward pass torch.func cannot transform."""
        tasks = self._check_sampler_uses_generator()
        params = self.init_params(
            torch.Generator().manual_seed(0), dtype=torch.float64, device="cpu"
        )
        self._check_buffers_untouched(params, tasks.x_support[0])
        x, y = tasks.x_support[0], tasks.y_support[0]
        self._check_forward(params, x, y)
        try:
            out = self.loss(params, x, y)
        except ModuleProblemError:
            raise
        except Exception as exc:  # the user's model or loss: report it in one line
            raise ModuleProblemError(
                f"the model or loss_fn failed on one task's support set (x {_shape(x)}, "
                f"y {_shape(y)}): {type(exc).__name__}: {_first_line(exc)}"
            ) from None
        if not isinstance(out, Tensor) or out.dim() != 0:
            shape = _shape(out) if isinstance(out, Tensor) else type(out).__name__
            raise ModuleProblemError(
                f"loss_fn returned {shape}, not a scalar; reduce it over the task's examples "
                "(e.g. reduction='mean')"
            )
        if not out.is_floating_point():
            raise ModuleProblemError(f"loss_fn returned dtype {out.dtype}, not a float")
        if not torch.isfinite(out):
            raise ModuleProblemError(
                f"the loss at the initial parameters is {out.item()} on task 0's support set "
                "(x_support, y_support): not finite before any training; check the model's "
                "initial weights and the loss"
            )
        try:
            torch.func.vmap(torch.func.grad(self.loss), in_dims=(None, 0, 0))(
                params, tasks.x_support, tasks.y_support
            )
        except Exception as exc:
            raise ModuleProblemError(
                f"torch.func cannot differentiate the model over a batch of tasks: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from None
        try:  # a Hessian-vector product (forward over reverse), as the spectra take
            torch.func.jvp(lambda p: torch.func.grad(self.loss)(p, x, y), (params,), (params,))
        except Exception as exc:
            raise ModuleProblemError(
                "torch.func cannot take Hessian-vector products of the loss (jvp of grad): "
                f"{type(exc).__name__}: {_first_line(exc)}; write loss_fn from elementary "
                "operations (e.g. ((outputs - targets) ** 2).mean())"
            ) from None

    def _check_sampler_uses_generator(self) -> TaskBatch:
        """Equal generators give equal tasks, another seed other tasks: a sampler that draws
        from a module-level generator or torch's global RNG would make ``--seed`` meaningless
        and the tasks depend on the chunking. Returns the tasks of seed 0."""

        def draw(seed: int) -> TaskBatch:
            gen = torch.Generator().manual_seed(seed)
            return self.sample_tasks(gen, 2, dtype=torch.float64, device="cpu")

        def same(a: TaskBatch, b: TaskBatch) -> bool:
            return all(
                u.shape == v.shape and torch.equal(u, v)
                for u, v in zip(a, b, strict=True)  # type: ignore[call-overload]
            )

        first, again, other = draw(0), draw(0), draw(1)
        fix = (
            "draw every random number from the generator it is given (e.g. "
            "torch.rand(..., generator=generator)), never from torch's global RNG or a "
            "generator of your own"
        )
        if not same(first, again):
            raise ModuleProblemError(
                "the sampler gave different tasks for two generators with the same seed: it "
                f"ignores its generator; {fix}"
            )
        if same(first, other):
            raise ModuleProblemError(
                "the sampler gave the same tasks for generators of seeds 0 and 1: it ignores "
                f"its generator, so --seed would change nothing; {fix}"
            )
        return first

    def _check_forward(self, params: Params, x: Tensor, y: Tensor) -> None:
        """The model's output on one support set: the same twice (a forward pass that keeps
        state or draws random numbers is refused), and of the targets' shape where the targets
        are real numbers (a loss such as F.mse_loss would broadcast (10, 1) outputs against
        (10,) targets to a (10, 10) loss without a word)."""
        constants = self.constants(torch.float64, "cpu")
        try:
            with torch.no_grad():
                first = functional_call(self.module, {**params, **constants}, (x,))
                second = functional_call(self.module, {**params, **constants}, (x,))
        except Exception:
            return  # reported by the loss check, in one line
        if not isinstance(first, Tensor) or not isinstance(second, Tensor):
            return
        if first.shape != second.shape or not torch.equal(first, second):
            raise ModuleProblemError(
                "the model's forward pass gave different outputs on the same input twice: it "
                "changes its own state or draws random numbers; make forward a function of its "
                "input and parameters (no attribute updated in forward, no dropout in training)"
            )
        if not y.is_floating_point() or first.shape == y.shape:
            return
        try:
            joint = torch.broadcast_shapes(first.shape, y.shape)
        except RuntimeError:
            return  # the loss reports it
        if joint != first.shape or joint != y.shape:
            raise ModuleProblemError(
                f"the model outputs {_shape(first)} for targets {_shape(y)}: a loss on them "
                f"broadcasts to {tuple(joint)}, pairing every output with every target; return "
                f"targets of the outputs' shape (e.g. y.reshape{_shape(first)})"
            )

    def _check_buffers_untouched(self, params: Params, x: Tensor) -> None:
        """One forward pass with every buffer's version counter watched, layer by layer."""
        module = copy.deepcopy(self.module).to(torch.float64)
        with torch.no_grad():
            for n, p in module.named_parameters():
                if n in params:
                    p.copy_(params[n])
        changed: list[str] = []

        def watch(name: str, m: nn.Module) -> None:
            before: dict[str, int] = {}

            def pre(_m: nn.Module, _inp: Any) -> None:
                before.update({b: t._version for b, t in m.named_buffers(recurse=False)})

            def post(_m: nn.Module, _inp: Any, _out: Any) -> None:
                for b, t in m.named_buffers(recurse=False):
                    if t._version != before.get(b, t._version):
                        changed.append(
                            f"layer {name or '<root>'!r} ({type(m).__name__}) buffer {b!r}"
                        )

            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)

        for name, m in module.named_modules():
            watch(name, m)
        try:
            with torch.no_grad():
                module(x)
        except Exception:
            return  # reported with the loss check, in one line
        if changed:
            raise ModuleProblemError(
                f"{changed[0]} is written during the forward pass (module state that cannot be "
                "made functional); make the layer stateless in training (for a normalisation "
                "layer: track_running_stats=False) or register the value as a constant"
            )


def _check_finite(ts: Sequence[Tensor], who: str, *, stacked: bool) -> None:
    """NaN or inf in the task data is an error naming the task and the tensor (it would
    otherwise be reported as a diverged cell)."""
    for t, f in zip(ts, FIELDS, strict=True):
        if not t.is_floating_point() and not t.is_complex():
            continue
        bad = ~torch.isfinite(t)
        if bad.any():
            where = torch.nonzero(bad)[0].tolist()
            task = f"task {where[0]}'s " if stacked else ""
            value = t[tuple(where)].item()
            raise ModuleProblemError(
                f"{who}: {task}{f} holds {value} at index {tuple(where[1:] if stacked else where)}"
                ": task data must be finite (a NaN or inf would be reported as a divergence)"
            )


def _squared_error(outputs: Tensor, targets: Tensor) -> Tensor:
    """mean (outputs - targets)^2, what ``F.mse_loss`` computes with ``reduction='mean'``."""
    return ((outputs - targets) ** 2).mean()


def _forward_mode_safe(loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable:
    """``F.mse_loss`` (and ``nn.MSELoss()``) fail under ``jvp`` of ``grad`` in torch 2.x
    ("ZeroTensors are immutable"), which every Hessian-vector product needs; the same mean
    squared error written out has no such problem."""
    if loss_fn is F.mse_loss or (isinstance(loss_fn, nn.MSELoss) and loss_fn.reduction == "mean"):
        return _squared_error
    return loss_fn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def problem_from_module(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    sample_task: TaskSampler | None = None,
    *,
    sample_tasks: BatchSampler | None = None,
    name: str | None = None,
    init: str | InitFn = "current",
    check: bool = True,
) -> ModuleProblem:
    """A ``Problem`` from an ``nn.Module``, a loss ``loss_fn(outputs, targets)`` and a sampler.

    ``sample_task(generator)`` returns one task's ``(x_support, y_support, x_query, y_query)``
    (the adapter stacks tasks); or give ``sample_tasks(generator, n_tasks)`` returning them
    with a leading task axis. ``init``: ``'current'`` (the module's weights now, the default),
    ``'reset'`` (each layer's ``reset_parameters`` per seed, global RNG untouched) or a callable
    ``init(module, generator)``. ``check`` runs the model once on two sampled tasks and raises
    :class:`ModuleProblemError` (one line) on a bad sampler, loss or layer. See the module
    docstring for BatchNorm and for learn2learn / higher models.
    """
    return ModuleProblem(
        model,
        loss_fn,
        sample_task=sample_task,
        sample_tasks=sample_tasks,
        name=name,
        init=init,
        check=check,
    )
