"""Curvature spectra of any loss of a parameter dict, matrix-free (docs/MATH.md sections 1, 7, 8;
paper Section 3, Appendix A and Appendix B / Fig. 5).

Operators (all symmetric; ``tasks`` has a leading task axis; ``L_tau(theta) = loss_fn(theta,
x_tau, y_tau)`` on the task's POOLED support + query data, the paper's same-data setting, for all
but ``meta``):

=============== ===================================================== =========================
name            matrix                                                paper
=============== ===================================================== =========================
``hessian``     E_tau H_tau                                           Section 3, H
``h2``          E_tau H_tau^2                                         App. B, H^2
``tg``          E_tau T_tau g_tau   (T_tau g_tau)_ij = sum_k T_ijk g_k App. B, Tg
``tg_plus_h2``  E_tau (T_tau g_tau + H_tau^2)                         App. B, Tg + H^2
``surrogate``   E_tau [H_tau - alpha (T_tau g_tau + H_tau^2)]         Eq. 8 / App. A, H tilde
``meta``        Hessian of E_tau L_q,tau(theta_k), theta_k = k inner  docs/MATH.md section 8 (exact
                steps on the support data                             MAML's meta-Hessian)
=============== ===================================================== =========================

Products are built from ``torch.func``: ``Hv`` forward-over-reverse (``jvp`` of ``grad``),
``(Tg)v`` = the derivative of ``Hv`` along ``g`` (``jvp`` of that), ``vmap`` over tasks. Each has
an independent dense twin (:func:`dense_operator`, ``torch.func.hessian``/``jacfwd`` of the
flattened loss, or the Hessian of the surrogate loss ``L - (alpha/2) g^T g``) for small models.
Eigenvalues come from Lanczos (``scipy.sparse.linalg.eigsh`` on a ``LinearOperator``), with
residuals ``||M v - lambda v||``; :func:`power_iteration` with deflation (PyHessian's method,
Yao et al. 2020) is kept as the baseline of ``benchmarks/lanczos_bench.py``.
The computation follows the device and dtype of ``params`` (float64 on CPU for checks; float32
on CUDA works too); the Lanczos driver itself runs in float64 NumPy on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, hessian, jacfwd, jvp, vmap

from mamlconv.numerics.maml import LossFn, meta_objective
from mamlconv.numerics.tasks import Params, TaskBatch

Operator = Literal["hessian", "surrogate", "meta", "tg", "h2", "tg_plus_h2"]
OPERATORS: tuple[Operator, ...] = ("hessian", "surrogate", "meta", "tg", "h2", "tg_plus_h2")
Which = Literal["LA", "SA", "LM"]
WHICH: tuple[Which, ...] = ("LA", "SA", "LM")
MatVec = Callable[[Tensor], Tensor]

DENSE_FALLBACK_LIMIT = 2000
"""Largest operator that :func:`lanczos` diagonalises densely when ARPACK cannot."""

DENSE_FROBENIUS_LIMIT = 600
"""Up to this many parameters ``frobenius_norms(method='auto')`` builds the dense matrix
(n products, exact); above it, Hutchinson's estimator with its standard error."""


# ---------------------------------------------------------------------------------------------
# Parameter dicts <-> flat vectors
# ---------------------------------------------------------------------------------------------


def flatten(params: Params) -> Tensor:
    """All parameters as one vector, in the dict's order."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(vec: Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten` for the shapes of ``like``."""
    out, i = {}, 0
    for name, p in like.items():
        out[name] = vec[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    return out


def n_params(params: Params) -> int:
    return sum(p.numel() for p in params.values())


# ---------------------------------------------------------------------------------------------
# Products for one loss
# ---------------------------------------------------------------------------------------------


def hvp(f: Callable[[Params], Tensor], params: Params, v: Params) -> Params:
    """``H v`` with ``H = nabla^2 f(params)``, forward-over-reverse (``jvp`` of ``grad``)."""
    return jvp(grad(f), (params,), (v,))[1]


def tgv(f: Callable[[Params], Tensor], params: Params, v: Params) -> Params:
    """``(T g) v`` with ``T = nabla^3 f``, ``g = nabla f`` at params: the derivative of ``H v``
    along ``g`` (T is symmetric, so the contraction order does not matter)."""
    g = grad(f)(params)
    return jvp(lambda p: hvp(f, p, v), (params,), (g,))[1]


def _pooled(tasks: TaskBatch) -> tuple[Tensor, Tensor]:
    pooled = tasks.pooled()
    return pooled.x_support, pooled.y_support


def _add(a: Params, b: Params, s: float | Tensor = 1.0) -> Params:
    return {k: a[k] + s * b[k] for k in a}


def task_matvec(
    loss_fn: LossFn,
    params: Params,
    tasks: TaskBatch,
    *,
    operator: Operator,
    alpha: float = 0.0,
    steps: int = 1,
) -> MatVec:
    """A torch function ``flat v -> flat (M v)`` for the operator ``M`` (module table).

    The result is ``vmap``-able over a batch of vectors (used for dense matrices from products).
    """
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    params = {k: v.detach() for k, v in params.items()}

    if operator == "meta":

        def meta_loss(p: Params) -> Tensor:
            return meta_objective(p, tasks, loss_fn=loss_fn, alpha=alpha, steps=steps)

        def meta_mv(vec: Tensor) -> Tensor:
            return flatten(hvp(meta_loss, params, unflatten(vec, params)))

        return meta_mv

    xs, ys = _pooled(tasks)

    def per_task(x: Tensor, y: Tensor, v: Params) -> Params:
        def f(p: Params) -> Tensor:
            return loss_fn(p, x, y)

        if operator == "hessian":
            return hvp(f, params, v)
        if operator == "tg":
            return tgv(f, params, v)
        hv = hvp(f, params, v)
        h2v = hvp(f, params, hv)
        if operator == "h2":
            return h2v
        tg_h2 = _add(tgv(f, params, v), h2v)
        if operator == "tg_plus_h2":
            return tg_h2
        return _add(hv, tg_h2, -alpha)  # surrogate: H - alpha (Tg + H^2), Appendix A

    def mv(vec: Tensor) -> Tensor:
        v = unflatten(vec, params)
        out = vmap(per_task, in_dims=(0, 0, None))(xs, ys, v)
        return flatten({k: t.mean(0) for k, t in out.items()})

    return mv


# ---------------------------------------------------------------------------------------------
# Dense references (independent routes, small models only)
# ---------------------------------------------------------------------------------------------


def dense_operator(
    loss_fn: LossFn,
    params: Params,
    tasks: TaskBatch,
    *,
    operator: Operator,
    alpha: float = 0.0,
    steps: int = 1,
) -> Tensor:
    """The operator as a dense (n, n) matrix WITHOUT Hessian-vector products: ``torch.func.hessian``
    of the flattened losses, ``jacfwd`` of it for T (an (n, n, n) tensor: keep n below ~150), the
    Hessian of the surrogate loss ``L - (alpha/2) g^T g`` (paper Eq. 5) for ``surrogate`` and of
    ``meta_objective`` for ``meta``. The reference the matrix-free code is tested against."""
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    params = {k: v.detach() for k, v in params.items()}
    flat0 = flatten(params)
    if operator == "meta":

        def meta_flat(w: Tensor) -> Tensor:
            return meta_objective(
                unflatten(w, params), tasks, loss_fn=loss_fn, alpha=alpha, steps=steps
            )

        return hessian(meta_flat)(flat0)

    xs, ys = _pooled(tasks)
    mats = []
    for t in range(xs.shape[0]):

        def f(w: Tensor, x: Tensor = xs[t], y: Tensor = ys[t]) -> Tensor:
            return loss_fn(unflatten(w, params), x, y)

        if operator == "surrogate":

            def surrogate(w: Tensor, f: Callable[[Tensor], Tensor] = f) -> Tensor:
                g = grad(f)(w)
                return f(w) - 0.5 * alpha * (g * g).sum()

            mats.append(hessian(surrogate)(flat0))
            continue
        h = hessian(f)(flat0)
        if operator == "hessian":
            mats.append(h)
            continue
        h2 = h @ h
        if operator == "h2":
            mats.append(h2)
            continue
        t3 = jacfwd(hessian(f))(flat0)  # (n, n, n), T_ijk
        tg = t3 @ grad(f)(flat0)
        mats.append(tg if operator == "tg" else tg + h2)
    return torch.stack(mats).mean(0)


def dense_from_matvec(matvec: MatVec, n: int, *, like: Tensor, chunk: int = 64) -> Tensor:
    """The (n, n) matrix of a linear ``matvec`` from its action on the unit vectors (n products,
    ``vmap``-ed in chunks)."""
    eye = torch.eye(n, dtype=like.dtype, device=like.device)
    batched = vmap(matvec)
    cols = [batched(eye[s : s + chunk]) for s in range(0, n, chunk)]
    return torch.cat(cols).T  # row i of the batch is M e_i, i.e. column i


# ---------------------------------------------------------------------------------------------
# Eigen-solvers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectrumResult:
    """``k`` eigenpairs of a symmetric operator.

    ``eigenvalues`` are ordered descending for ``LA``, ascending for ``SA``, by descending
    magnitude for ``LM``; ``eigenvectors`` (n, k) are unit columns in the same order;
    ``residuals`` are ``||M v - lambda v||`` (absolute); ``n_matvecs`` counts every product with
    ``M`` made, including the k of the residual check.
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    n_matvecs: int
    eigenvectors: np.ndarray = field(repr=False)
    method: str = "lanczos"
    operator: str = ""
    which: str = "LA"


class _CountingOperator:
    """A float64 NumPy view of a torch ``matvec`` on the params' device, counting products."""

    def __init__(self, matvec: MatVec, n: int, like: Tensor) -> None:
        self.matvec, self.n, self.like, self.count = matvec, n, like, 0

    def __call__(self, v: np.ndarray) -> np.ndarray:
        self.count += 1
        vt = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=self.like.dtype)
        with torch.no_grad():
            out = self.matvec(vt.to(self.like.device))
        return out.detach().to("cpu", torch.float64).numpy()


def _order(vals: np.ndarray, which: Which) -> np.ndarray:
    if which == "LA":
        return np.argsort(-vals, kind="stable")
    if which == "SA":
        return np.argsort(vals, kind="stable")
    return np.argsort(-np.abs(vals), kind="stable")


def _residuals(op: _CountingOperator, vals: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    return np.array(
        [np.linalg.norm(op(vecs[:, i]) - vals[i] * vecs[:, i]) for i in range(vals.size)]
    )


def lanczos(
    matvec: MatVec,
    n: int,
    *,
    like: Tensor,
    k: int = 5,
    which: Which = "LA",
    tol: float = 1e-6,
    seed: int = 0,
    maxiter: int | None = None,
) -> SpectrumResult:
    """k eigenpairs of a symmetric operator by implicitly restarted Lanczos (ARPACK ``eigsh``),
    start vector from ``seed``. When ``k >= n`` (ARPACK needs k < n), or when ARPACK fails on an
    operator of at most :data:`DENSE_FALLBACK_LIMIT` rows (e.g. an exactly zero one), the matrix
    is built from n products and diagonalised densely instead (``method='dense'``)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n = {n}, got k={k}")
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence

    op = _CountingOperator(matvec, n, like)
    method = "lanczos"
    if k < n:
        rng = np.random.default_rng(seed)
        lin = LinearOperator((n, n), matvec=op, dtype=np.float64)
        try:
            vals, vecs = eigsh(
                lin, k=k, which=which, tol=tol, v0=rng.standard_normal(n), maxiter=maxiter
            )
        except (ArpackError, ArpackNoConvergence) as exc:
            # e.g. an exactly zero operator (Tg on a quadratic) breaks the Lanczos recurrence
            if n > DENSE_FALLBACK_LIMIT:
                raise RuntimeError(f"Lanczos failed on an operator of size {n}: {exc}") from exc
            method = "dense"
    if k >= n or method == "dense":
        m = np.column_stack([op(e) for e in np.eye(n)])
        vals, vecs = np.linalg.eigh(0.5 * (m + m.T))
        method = "dense"
    idx = _order(vals, which)[:k]
    vals, vecs = vals[idx], vecs[:, idx]
    res = _residuals(op, vals, vecs)
    return SpectrumResult(vals, res, op.count, vecs, method=method, which=which)


def power_iteration(
    matvec: MatVec,
    n: int,
    *,
    like: Tensor,
    k: int = 5,
    tol: float = 1e-3,
    max_iter: int = 100,
    seed: int = 0,
) -> SpectrumResult:
    """Top-k eigenpairs by magnitude with plain power iteration and deflation, as PyHessian's
    ``hessian.eigenvalues`` (Yao et al. 2020; its defaults ``tol=1e-3``, ``maxIter=100``): for each
    eigenpair, iterate ``v <- M v / ||M v||`` with ``v`` kept orthogonal to the pairs already
    found, stopping when the Rayleigh quotient changes by less than ``tol`` relatively."""
    op = _CountingOperator(matvec, n, like)
    rng = np.random.default_rng(seed)
    vals: list[float] = []
    vecs: list[np.ndarray] = []

    def deflate(v: np.ndarray) -> np.ndarray:
        for u in vecs:
            v = v - (u @ v) * u
        return v / np.linalg.norm(v)

    for _ in range(k):
        v = deflate(rng.standard_normal(n))
        lam = None
        for _ in range(max_iter):
            w = op(v)
            new = float(v @ w)
            v = deflate(w)
            if lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol:
                lam = new
                break
            lam = new
        vals.append(float(lam))
        vecs.append(v)
    v_arr, vec_arr = np.array(vals), np.column_stack(vecs)
    res = _residuals(op, v_arr, vec_arr)
    return SpectrumResult(v_arr, res, op.count, vec_arr, method="power", which="LM")


# ---------------------------------------------------------------------------------------------
# High-level entry points
# ---------------------------------------------------------------------------------------------


def spectrum(
    loss_fn: LossFn,
    params: Params,
    tasks: TaskBatch,
    *,
    operator: Operator,
    alpha: float = 0.0,
    steps: int = 1,
    k: int = 5,
    which: Which = "LA",
    tol: float = 1e-6,
    seed: int = 0,
) -> SpectrumResult:
    """k extreme eigenvalues of ``operator`` (module table) at ``params`` by Lanczos.

    ``loss_fn(params, x, y)`` is ONE task's loss; ``tasks`` a TaskBatch with a leading task axis.
    ``hessian``/``surrogate``/``tg``/``h2``/``tg_plus_h2`` use each task's pooled support + query
    data (``tasks.pooled()``), averaged over tasks; ``meta`` adapts on the support data (``steps``
    inner steps of size ``alpha``) and evaluates the query data. ``alpha`` is used by
    ``surrogate`` and ``meta`` only.
    """
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    like = next(iter(params.values()))
    mv = task_matvec(loss_fn, params, tasks, operator=operator, alpha=alpha, steps=steps)
    res = lanczos(mv, n_params(params), like=like, k=k, which=which, tol=tol, seed=seed)
    return SpectrumResult(
        res.eigenvalues,
        res.residuals,
        res.n_matvecs,
        res.eigenvectors,
        method=res.method,
        operator=operator,
        which=which,
    )


def frobenius_norms(
    loss_fn: LossFn,
    params: Params,
    tasks: TaskBatch,
    *,
    n_probes: int = 100,
    seed: int = 0,
    method: Literal["auto", "dense", "hutchinson"] = "auto",
) -> dict[str, dict[str, float | int | str]]:
    """Frobenius norms of ``tg``, ``h2`` and ``tg_plus_h2`` (task means, pooled data; App. B,
    Fig. 5c).

    ``dense`` builds each matrix from n products (exact, ``stderr`` 0). ``hutchinson`` uses
    ``||M||_F^2 = E ||M z||^2`` over Rademacher z (E z z^T = I): the estimate is the square root of
    the mean of ``||M z_i||^2`` over ``n_probes`` probes drawn from ``seed``, its standard error
    ``s / (2 sqrt(mean))`` with ``s`` the standard error of that mean (delta method). ``auto``
    is dense up to :data:`DENSE_FROBENIUS_LIMIT` parameters.
    Returns ``{name: {"estimate", "stderr", "method", "n_probes"}}``.
    """
    n = n_params(params)
    like = next(iter(params.values()))
    if method == "auto":
        method = "dense" if n <= DENSE_FROBENIUS_LIMIT else "hutchinson"
    if method not in ("dense", "hutchinson"):
        raise ValueError(f"method must be 'auto', 'dense' or 'hutchinson', got {method!r}")
    if method == "hutchinson" and n_probes < 2:
        raise ValueError(f"n_probes must be >= 2 for an error bar, got {n_probes}")
    mvs = {name: task_matvec(loss_fn, params, tasks, operator=name) for name in ("tg", "h2")}
    out: dict[str, dict[str, float | int | str]] = {}
    if method == "dense":
        mats = {name: dense_from_matvec(mv, n, like=like) for name, mv in mvs.items()}
        mats["tg_plus_h2"] = mats["tg"] + mats["h2"]
        for name, m in mats.items():
            out[name] = {
                "estimate": float(torch.linalg.matrix_norm(m.double())),
                "stderr": 0.0,
                "method": "dense",
                "n_probes": 0,
            }
        return out
    gen = torch.Generator().manual_seed(int(seed))
    z = (torch.randint(0, 2, (n_probes, n), generator=gen) * 2 - 1).to(like.dtype)
    z = z.to(like.device)
    chunk = 16  # probes per vmapped call: bounds memory for networks with many tasks
    prods = {  # (n_probes, n) each
        name: torch.cat([vmap(mv)(z[s : s + chunk]) for s in range(0, n_probes, chunk)])
        for name, mv in mvs.items()
    }
    prods["tg_plus_h2"] = prods["tg"] + prods["h2"]
    for name, mz in prods.items():
        sq = (mz.double() ** 2).sum(dim=1).cpu().numpy()  # ||M z_i||^2
        mean = float(sq.mean())
        se_mean = float(sq.std(ddof=1) / np.sqrt(n_probes))
        est = float(np.sqrt(mean))
        out[name] = {
            "estimate": est,
            "stderr": se_mean / (2 * est) if est > 0 else 0.0,
            "method": "hutchinson",
            "n_probes": int(n_probes),
        }
    return out
