"""theta*(alpha): a stationary point of one MAML variant's outer update, found and certified in
float64 (docs/MATH.md "Two regimes"; claims X-6, X-7).

The outer update of a variant is theta <- theta - beta F(theta) with the task-mean direction

- ``exact``:       F = grad E_tau L_q,tau(theta_k), the gradient of the meta-objective
  (:func:`mamlconv.numerics.maml.meta_objective`); its Jacobian is the exact meta-Hessian,
  symmetric;
- ``first_order``: F = E_tau grad L_q,tau(theta_k), theta_k the adapted point; NOT a gradient of
  anything: its Jacobian E_tau H_q(theta_k) (I - alpha H_s(theta)) (one step) is not symmetric
  and its eigenvalues mu may be complex.

A fixed point theta* (F = 0) is searched for in two stages: an optimiser to get close (Adam
along -F from the start point, for either variant) and then Newton steps on F itself. For a
model of at most
:data:`DENSE_LIMIT` parameters the Jacobian is built densely from Jacobian-vector products and
the step is a damped least-squares solve through its singular value decomposition; above the
limit it is a Krylov solve (MINRES for the symmetric exact Jacobian, GMRES otherwise) on the
products. The search stops when ||F|| stops falling (round-off) or reaches ``abs_floor``.
For a twice-differentiable model (exact MAML) the optimiser may be L-BFGS on the meta-objective
and the Newton stage saddle-free (:func:`saddle_free_newton`: |lambda| of the dense
meta-Hessian, so that a step never heads for a saddle).

Flat directions. Networks have directions along which the update does not change to first
order: the ReLU rescaling symmetry at alpha = 0, dead units, and the scale invariance of a
convolution's weights in front of a BatchNorm. There the Jacobian has eigenvalues at round-off
level. The certificate counts the eigenvalues with |mu| <= ``flat_rtol`` * max |mu| as flat,
reports how many, and judges "a minimum" (exact: every other eigenvalue > 0; first order: every
other eigenvalue has a positive real part, so some beta is stable) on the rest; the Newton
solves leave the flat directions out (their singular values fall under the same cut-off); the
measured edge (:mod:`.local`) watches ||F||, to which a flat direction contributes nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from mamlconv.numerics.curvature import dense_from_matvec, flatten, unflatten
from mamlconv.numerics.maml import LossFn, adapt, meta_objective
from mamlconv.numerics.tasks import Params, TaskBatch

LOCAL_VARIANTS: tuple[str, ...] = ("exact", "first_order")

DENSE_LIMIT = 2500
"""Up to this many parameters the Jacobian is built densely (n products) and diagonalised."""

FLAT_RTOL = 1e-7
"""Eigenvalues with |mu| <= FLAT_RTOL * max|mu| are flat directions (see the module text)."""

GRAD_RTOL = 1e-8
"""A point is stationary when ||F|| <= GRAD_RTOL * ||F(start)|| (the issue's criterion)."""

NEWTON_START_RTOL = 1e-3
"""Newton starts only when the optimiser brought ||F|| below this fraction of its start value."""


@dataclass
class UpdateField:
    """The outer-update direction F of one variant at one alpha on a fixed task batch, as a
    function of the flat float64 parameter vector."""

    loss_fn: LossFn
    tasks: TaskBatch
    like: Params
    alpha: float
    variant: str = "exact"
    steps: int = 1

    def __post_init__(self) -> None:
        if self.variant not in LOCAL_VARIANTS:
            raise ValueError(f"variant must be one of {LOCAL_VARIANTS}, got {self.variant!r}")

    def objective(self, theta: Tensor) -> Tensor:
        """The exact meta-objective E_tau L_q(theta_k) (the first-order search starts at its
        minimum too)."""
        p = unflatten(theta, self.like)
        return meta_objective(
            p, self.tasks, loss_fn=self.loss_fn, alpha=self.alpha, steps=self.steps
        )

    def direction(self, theta: Tensor) -> Tensor:
        """F(theta), differentiable (no detach), flat."""
        if self.variant == "exact":
            return grad(self.objective)(theta)
        p = unflatten(theta, self.like)
        loss_fn, alpha, steps = self.loss_fn, self.alpha, self.steps

        def one(task: TaskBatch) -> Params:
            xs, ys, xq, yq = task
            adapted = adapt(p, loss_fn, xs, ys, alpha=alpha, steps=steps)
            return grad(loss_fn)(adapted, xq, yq)

        out = vmap(one)(self.tasks)
        return flatten({k: v.mean(0) for k, v in out.items()})

    def jacobian_matvec(self, theta: Tensor):
        """v -> J(theta) v (forward mode through F), vmap-able over v."""

        def mv(v: Tensor) -> Tensor:
            return jvp(self.direction, (theta,), (v,))[1]

        return mv

    def dense_jacobian(self, theta: Tensor, chunk: int = 32) -> np.ndarray:
        """J(theta) as an (n, n) float64 array from n Jacobian-vector products."""
        mat = dense_from_matvec(self.jacobian_matvec(theta), theta.numel(), like=theta, chunk=chunk)
        return mat.detach().cpu().double().numpy()


@dataclass
class StationaryPoint:
    """Where the search ended and how it got there."""

    theta: Tensor
    grad_norm: float
    grad_norm_start: float
    grad_norm_optimiser: float
    optimiser_iters: int
    newton_iters: int
    seconds: float
    history: list[float] = field(default_factory=list)

    @property
    def relative_grad_norm(self) -> float:
        return self.grad_norm / self.grad_norm_start if self.grad_norm_start > 0 else 0.0


def _norm(field_: UpdateField, theta: Tensor) -> float:
    with torch.no_grad():
        return float(torch.linalg.vector_norm(field_.direction(theta)))


def adam(
    field_: UpdateField, theta0: Tensor, *, iters: int, lr: float = 1e-2, lr_final: float = 1e-4
) -> tuple[Tensor, int]:
    """Adam steps along -F (the variant's own direction, so first order works too), the rate
    falling geometrically from ``lr`` to ``lr_final``; returns the point with the smallest
    ||F|| seen and the iterations run. A first-order method, not a line search: exact MAML's
    objective on a ReLU network jumps where an inner-step gradient crosses a kink, which stops
    L-BFGS's line search early."""
    theta = theta0.detach().clone()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    b1, b2, eps = 0.9, 0.999, 1e-12
    best, best_norm = theta.clone(), math.inf
    decay = (lr_final / lr) ** (1.0 / max(iters, 1))
    rate = lr
    for t in range(1, iters + 1):
        with torch.no_grad():
            f = field_.direction(theta)
        norm = float(torch.linalg.vector_norm(f))
        if not math.isfinite(norm):
            break
        if norm < best_norm:
            best, best_norm = theta.clone(), norm
        m = b1 * m + (1 - b1) * f
        v = b2 * v + (1 - b2) * f * f
        step = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        theta = theta - rate * step
        rate *= decay
    return best, iters


def _svd(jac: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.linalg.svd(jac)


def _dense_step(
    svd: tuple[np.ndarray, np.ndarray, np.ndarray], f: np.ndarray, damping: float, flat_rtol: float
) -> np.ndarray:
    """-(J^T J + damping)^-1 J^T f through the SVD of J, singular values under the flat cut-off
    left out (the flat directions)."""
    u, s, vt = svd
    keep = s > flat_rtol * s[0] if s.size and s[0] > 0 else np.zeros_like(s, dtype=bool)
    coef = np.where(keep, s / (s * s + damping), 0.0) * (u.T @ f)
    return -(vt.T @ coef)


def _krylov_step(field_: UpdateField, theta: Tensor, f: Tensor) -> Tensor:
    from scipy.sparse.linalg import LinearOperator, gmres, minres

    mv = field_.jacobian_matvec(theta)
    n = theta.numel()

    def apply(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=theta.dtype)
        return mv(t.to(theta.device)).detach().cpu().double().numpy()

    op = LinearOperator((n, n), matvec=apply, dtype=np.float64)
    rhs = -f.detach().cpu().double().numpy()
    if field_.variant == "exact":
        sol, _ = minres(op, rhs, maxiter=300, rtol=1e-10)
    else:
        sol, _ = gmres(op, rhs, maxiter=300, restart=60, rtol=1e-10)
    return torch.as_tensor(sol, dtype=theta.dtype, device=theta.device)


def newton(
    field_: UpdateField,
    theta: Tensor,
    *,
    max_iter: int = 40,
    flat_rtol: float = FLAT_RTOL,
    abs_floor: float = 0.0,
    dense: bool | None = None,
    max_rebuilds: int = 2,
) -> tuple[Tensor, int, list[float]]:
    """Damped Newton on F = 0 with ||F|| as the merit function (a step is kept only when it
    lowers ||F||). Dense: Levenberg-Marquardt damping through the SVD of a Jacobian that is
    reused while it works (chord steps); Krylov: a MINRES/GMRES step with halving. Stops when
    no step lowers ||F|| any more (round-off) or at ``abs_floor``."""
    n = theta.numel()
    dense = n <= DENSE_LIMIT if dense is None else dense
    with torch.no_grad():
        f = field_.direction(theta)
    norm = float(torch.linalg.vector_norm(f))
    history = [norm]
    fails, it, rebuilds = 0, 0, 0
    svd, damping = None, 0.0
    while it < max_iter and norm > abs_floor:
        it += 1
        if dense:
            # A chord method: the Jacobian (n products, the expensive part) is rebuilt only when
            # steps with the old one stop lowering ||F||, at most max_rebuilds times.
            if svd is None:
                svd = _svd(field_.dense_jacobian(theta))
                damping = 1e-14 * float(svd[1][0]) ** 2
                rebuilds += 1
            step = _dense_step(svd, f.detach().cpu().double().numpy(), damping, flat_rtol)
            trial = theta + torch.as_tensor(step, dtype=theta.dtype, device=theta.device)
            with torch.no_grad():
                f_trial = field_.direction(trial)
            new = float(torch.linalg.vector_norm(f_trial))
            if math.isfinite(new) and new < norm:
                theta, f, norm, fails = trial, f_trial, new, 0
                damping *= 0.1
                history.append(norm)
                continue
            damping = max(damping * 100.0, 1e-30)
            fails += 1
            if fails >= 4:
                if rebuilds >= max_rebuilds:
                    break
                svd, fails = None, 0
            continue
        if fails >= 3:
            break
        step = _krylov_step(field_, theta, f)
        scale, accepted = 1.0, False
        for _ in range(8):
            trial = theta + scale * step
            with torch.no_grad():
                f_trial = field_.direction(trial)
            new = float(torch.linalg.vector_norm(f_trial))
            if math.isfinite(new) and new < norm:
                theta, f, norm, accepted = trial, f_trial, new, True
                break
            scale *= 0.5
        fails = 0 if accepted else fails + 1
        if accepted:
            history.append(norm)
    return theta, it, history


def lbfgs(field_: UpdateField, theta0: Tensor, *, iters: int, gtol: float) -> tuple[Tensor, int]:
    """scipy's L-BFGS on exact MAML's meta-objective (F is its gradient), float64, until the
    largest gradient component is under ``gtol`` or ``iters`` iterations; a smooth model only
    (on a ReLU network the objective jumps at kinks and the line search stops early)."""
    from scipy.optimize import minimize

    dtype, device = theta0.dtype, theta0.device

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.as_tensor(x, dtype=dtype, device=device).requires_grad_(True)
        value = field_.objective(t)
        (g,) = torch.autograd.grad(value, t)
        return float(value.detach()), g.detach().cpu().double().numpy()

    x0 = theta0.detach().cpu().double().numpy()
    opts = {"maxiter": int(iters), "gtol": float(gtol), "ftol": 0.0, "maxcor": 50}
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", options=opts)
    return torch.as_tensor(res.x, dtype=dtype, device=device), int(res.nit)


def saddle_free_newton(
    field_: UpdateField,
    theta: Tensor,
    *,
    max_iter: int = 30,
    flat_rtol: float = FLAT_RTOL,
    target: float = 0.0,
    max_rebuilds: int = 4,
    reuse: int = 50,
    log: Any = None,
) -> tuple[Tensor, int, list[float]]:
    """Newton on exact MAML's F = grad with the dense meta-Hessian's eigen-decomposition
    H = Q diag(lam) Q^T and the step -Q diag(1 / (|lam| + mu)) Q^T F: a descent direction at a
    saddle (negative curvature is followed downhill, not towards the saddle), plain Newton
    at a minimum; eigen-directions with |lam| <= ``flat_rtol`` max|lam| (the flat set) get
    no step. A step is kept when it lowers ||F||; mu (relative to max|lam|) grows after a
    refused step and shrinks after a kept one; the Hessian (n products) is reused while its
    steps work (chord, at most ``reuse`` kept steps) and rebuilt at most ``max_rebuilds``
    times. Stops at ``target``, at
    round-off (no step lowers ||F||) or ``max_iter`` steps."""
    with torch.no_grad():
        f = field_.direction(theta)
        value = float(field_.objective(theta))
    norm = float(torch.linalg.vector_norm(f))
    history, it, rebuilds, eig, mu_rel, moved = [norm], 0, 0, None, 1e-10, 0
    while it < max_iter and norm > target:
        it += 1
        if eig is None:
            if rebuilds >= max_rebuilds or (rebuilds and not moved):
                break
            jac = field_.dense_jacobian(theta)
            lam, q = np.linalg.eigh(0.5 * (jac + jac.T))
            eig, rebuilds, moved = (lam, q, float(np.max(np.abs(lam)))), rebuilds + 1, 0
            if log is not None:
                log(f"  hessian {rebuilds}: lambda {lam[0]:.3e} .. {lam[-1]:.3e}")
        lam, q, top = eig
        keep = np.abs(lam) > flat_rtol * top
        coef = np.where(keep, 1.0 / (np.abs(lam) + mu_rel * top), 0.0)
        step = -(q @ (coef * (q.T @ f.detach().cpu().double().numpy())))
        trial = theta + torch.as_tensor(step, dtype=theta.dtype, device=theta.device)
        with torch.no_grad():
            f_trial = field_.direction(trial)
            v_trial = float(field_.objective(trial))
        new = float(torch.linalg.vector_norm(f_trial))
        # Kept when ||F|| falls, or (far out, where a descent step may raise ||F||) when the
        # objective falls by more than round-off with ||F|| at most 10 times larger.
        lower = v_trial < value - 1e-13 * abs(value) and new < 10 * norm
        if math.isfinite(new) and (new < norm or lower):
            theta, f, norm, value, moved = trial, f_trial, new, v_trial, moved + 1
            mu_rel = max(mu_rel * 0.1, 1e-16)
            history.append(norm)
            if moved >= reuse:
                eig = None
            if log is not None:
                log(f"  newton {it}: ||F|| {norm:.3e}, objective {value:.12g}, mu {mu_rel:.1e}")
            continue
        if mu_rel >= 1.0:  # this Hessian's steps no longer work: rebuild where the point is
            eig, mu_rel = None, 1e-10
        else:
            mu_rel = min(mu_rel * 10.0, 1.0)
    return theta, it, history


def find_stationary(
    field_: UpdateField,
    theta0: Tensor,
    *,
    optimiser_iters: int = 3000,
    newton_iters: int = 300,
    flat_rtol: float = FLAT_RTOL,
    newton_start_rtol: float | None = None,
    lbfgs_iters: int = 0,
    lbfgs_gtol: float = 1e-9,
    saddle_free: bool = False,
    grad_rtol: float = GRAD_RTOL,
    log: Any = None,
) -> StationaryPoint:
    """theta*(alpha) from ``theta0`` (flat): Adam; for exact MAML optionally L-BFGS on the
    meta-objective; then Newton on F: saddle-free on the dense meta-Hessian (``saddle_free``,
    exact MAML, a smooth model) or the damped least-squares Newton (module text)."""
    start = time.perf_counter()
    g0 = _norm(field_, theta0)
    theta, n_opt = theta0, 0
    if optimiser_iters > 0:
        theta, n_opt = adam(field_, theta0, iters=optimiser_iters)
    g_opt = _norm(field_, theta)
    exact = field_.variant == "exact"
    if exact and lbfgs_iters > 0:
        theta, n_lbfgs = lbfgs(field_, theta, iters=lbfgs_iters, gtol=lbfgs_gtol)
        n_opt += n_lbfgs
        g_opt = _norm(field_, theta)
        if log is not None:
            log(f"  l-bfgs: {n_lbfgs} iterations, ||F|| {g_opt:.3e} (start {g0:.3e})")
    start_rtol = NEWTON_START_RTOL if newton_start_rtol is None else newton_start_rtol
    history, g_adam = [g_opt], g_opt
    g_opt, target = history[-1], 0.01 * grad_rtol * g0
    if g_opt <= target:
        n_newton = 0
    elif exact and saddle_free and theta.numel() <= DENSE_LIMIT:
        theta, n_newton, more = saddle_free_newton(
            field_, theta, max_iter=newton_iters, flat_rtol=flat_rtol, target=target, log=log
        )
        history = history[:-1] + more
    elif optimiser_iters == 0 or g_opt <= start_rtol * g0:
        theta, n_newton, more = newton(field_, theta, max_iter=newton_iters, flat_rtol=flat_rtol)
        history = history[:-1] + more
    else:
        # Farther out a Newton step is orders of magnitude longer than the distance to the
        # nearest ReLU kink (measured on the sinusoid MLP: ~5e-6 from the optimiser's point),
        # where the update's Jacobian jumps; no Newton step then lowers ||F||, and each try
        # costs a dense Jacobian. The point is reported as found (and not certified).
        n_newton = 0
    return StationaryPoint(
        theta=theta.detach(),
        grad_norm=history[-1],
        grad_norm_start=g0,
        grad_norm_optimiser=g_adam,
        optimiser_iters=n_opt,
        newton_iters=n_newton,
        seconds=time.perf_counter() - start,
        history=history,
    )


@dataclass
class Certificate:
    """The Jacobian's spectrum at theta* and the verdict on it."""

    eigenvalues: np.ndarray
    """Eigenvalues of J(theta*) (complex for first order), descending by real part; dense, or
    the extremes found by ARPACK for large models."""
    n_flat: int
    lambda_min: float
    """Smallest (real part of an) eigenvalue outside the flat directions."""
    lambda_min_all: float
    """Smallest (real part of an) eigenvalue, flat ones included."""
    lambda_max: float
    stationary: bool
    minimum: bool
    certified: bool
    reason: str
    method: str


def _extreme_eigenvalues(field_: UpdateField, theta: Tensor, k: int = 12) -> np.ndarray:
    """ARPACK extremes of J for a model above DENSE_LIMIT: largest and smallest real parts."""
    from scipy.sparse.linalg import LinearOperator, eigs, eigsh

    mv = field_.jacobian_matvec(theta)
    n = theta.numel()

    def apply(v: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(np.ascontiguousarray(np.real(v)).reshape(-1), dtype=theta.dtype)
        return mv(t.to(theta.device)).detach().cpu().double().numpy()

    op = LinearOperator((n, n), matvec=apply, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    if field_.variant == "exact":
        hi = eigsh(op, k=k, which="LA", v0=v0, tol=1e-8, return_eigenvectors=False)
        lo = eigsh(op, k=k, which="SA", v0=v0, tol=1e-8, return_eigenvectors=False)
        return np.concatenate([hi, lo]).astype(complex)
    hi = eigs(op, k=k, which="LM", v0=v0, tol=1e-8, return_eigenvectors=False)
    lo = eigs(op, k=k, which="SR", v0=v0, tol=1e-8, return_eigenvectors=False)
    return np.concatenate([hi, lo])


def certify(
    field_: UpdateField,
    point: StationaryPoint,
    *,
    flat_rtol: float = FLAT_RTOL,
    grad_rtol: float = GRAD_RTOL,
    jacobian: np.ndarray | None = None,
) -> Certificate:
    """Stationary (||F|| <= grad_rtol ||F(start)||) and a minimum (module text) at theta*."""
    theta = point.theta
    if theta.numel() <= DENSE_LIMIT:
        jac = field_.dense_jacobian(theta) if jacobian is None else jacobian
        if field_.variant == "exact":
            eig = np.linalg.eigvalsh(0.5 * (jac + jac.T)).astype(complex)
        else:
            eig = np.linalg.eigvals(jac)
        method = "dense"
    else:
        eig, method = _extreme_eigenvalues(field_, theta), "arpack"
    eig = eig[np.argsort(-eig.real, kind="stable")]
    top = float(np.max(np.abs(eig))) if eig.size else 0.0
    flat = np.abs(eig) <= flat_rtol * top
    rest = eig[~flat]
    lam_min = float(rest.real.min()) if rest.size else 0.0
    lam_min_all = float(eig.real.min()) if eig.size else 0.0
    stationary = point.relative_grad_norm <= grad_rtol and math.isfinite(point.grad_norm)
    minimum = bool(rest.size) and lam_min > 0
    if not stationary:
        reason = (
            f"||F|| = {point.grad_norm:.3g} is {point.relative_grad_norm:.3g} of its start value, "
            f"above {grad_rtol:g}"
        )
    elif not minimum:
        kind = "eigenvalue" if field_.variant == "exact" else "real part of an eigenvalue"
        reason = f"not a minimum: smallest non-flat {kind} {lam_min:.3g} <= 0"
    else:
        reason = "stationary to round-off and a minimum outside the flat directions"
    return Certificate(
        eigenvalues=eig,
        n_flat=int(flat.sum()),
        lambda_min=lam_min,
        lambda_min_all=lam_min_all,
        lambda_max=float(eig.real.max()) if eig.size else 0.0,
        stationary=bool(stationary),
        minimum=bool(minimum),
        certified=bool(stationary and minimum),
        reason=reason,
        method=method,
    )


def jacobian_beta_c(eigenvalues: np.ndarray, *, flat_rtol: float = FLAT_RTOL) -> float:
    """The largest stable beta of theta <- theta - beta F near theta*: |1 - beta mu| < 1 for
    every non-flat eigenvalue mu of J, i.e. beta < 2 Re(mu) / |mu|^2 for each; 0 when some
    Re(mu) <= 0 (no beta is stable), inf when there is none."""
    eig = np.asarray(eigenvalues, dtype=complex)
    if not eig.size:
        return math.inf
    top = float(np.max(np.abs(eig)))
    rest = eig[np.abs(eig) > flat_rtol * top]
    if not rest.size:
        return math.inf
    if np.any(rest.real <= 0):
        return 0.0
    return float(np.min(2 * rest.real / np.abs(rest) ** 2))


def to_flat(params: Params) -> Tensor:
    return flatten({k: v.detach() for k, v in params.items()})


def describe_point(point: StationaryPoint, cert: Certificate) -> dict[str, Any]:
    """JSON-ready summary of a search and its certificate (eigenvalues: the extremes only)."""
    eig = cert.eigenvalues
    return {
        "grad_norm": point.grad_norm,
        "grad_norm_start": point.grad_norm_start,
        "grad_norm_optimiser": point.grad_norm_optimiser,
        "relative_grad_norm": point.relative_grad_norm,
        "optimiser_iters": point.optimiser_iters,
        "newton_iters": point.newton_iters,
        "newton_history": point.history,
        "search_seconds": point.seconds,
        "lambda_min": cert.lambda_min,
        "lambda_min_all": cert.lambda_min_all,
        "lambda_max": cert.lambda_max,
        "n_flat": cert.n_flat,
        "stationary": cert.stationary,
        "minimum": cert.minimum,
        "reason": cert.reason,
        "eigen_method": cert.method,
        "max_imag": float(np.max(np.abs(eig.imag))) if eig.size else 0.0,
        "top_eigenvalues": [[float(z.real), float(z.imag)] for z in eig[:5]],
        "bottom_eigenvalues": [[float(z.real), float(z.imag)] for z in eig[-5:]],
    }
