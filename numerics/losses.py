"""Losses on which the paper's theory can be checked exactly: quadratics with a chosen spectrum
and the linear regression of the paper's Appendix C.

Both are written as ``loss(params, x, y)`` for ONE task, the convention of
:mod:`mamlconv.numerics.tasks`, so that the generic MAML code (``numerics.maml``), the grid
dynamics (``numerics.dynamics``) and the curvature code (``numerics.curvature``) run on them
unchanged, and so that their closed-form Hessians are independent references for autodiff.

Loss conventions (they scale every threshold, so they are stated everywhere they are used):

- Quadratic: ``L(theta) = 1/2 (theta - c)^T A (theta - c)`` with ``A = Q diag(eigs) Q^T``. It is
  stored as the least-squares problem ``1/2 ||x theta - y||^2`` with design ``x = diag(sqrt(eigs))
  Q^T`` and target ``y = x c``, so the Hessian is exactly ``A`` and the minimum value is 0.
- Linear regression: ``mse`` (default) is the mean of squared errors, ``mean((w x + c - y)^2)``,
  as ``torch.nn.MSELoss``; ``half_mse`` is half of it. The Hessian of ``mse`` is
  ``2 [[E x^2, E x], [E x, 1]]``, twice that of ``half_mse``: every alpha_c and beta_c under
  ``mse`` is HALF its value under ``half_mse``. The paper (App. C) says "mean squared loss" and
  does not say which; ``mse`` is the default because it is what ``MSELoss`` computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mamlconv.numerics.tasks import Params, TaskBatch

LossConvention = Literal["mse", "half_mse"]
LOSS_CONVENTIONS: tuple[LossConvention, ...] = ("mse", "half_mse")

# Appendix C: "scale parameter in the range of [0, 5.0] and bias parameter in the range of
# [0, 5.0] based on data points in the range of [-5.0, 5.0]".
LINREG_SLOPE_RANGE = (0.0, 5.0)
LINREG_BIAS_RANGE = (0.0, 5.0)
LINREG_X_RANGE = (-5.0, 5.0)
LINREG_DEFAULT_POINTS = 100
"""Not given by the paper; 100 points make the empirical moments of x close to U[-5, 5]'s."""


def check_convention(convention: str) -> None:
    if convention not in LOSS_CONVENTIONS:
        raise ValueError(f"loss convention must be one of {LOSS_CONVENTIONS}, got {convention!r}")


# ---------------------------------------------------------------------------------------------
# Quadratics with a given spectrum
# ---------------------------------------------------------------------------------------------


def random_orthogonal(
    dim: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """A Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal
    moved into Q (Mezzadri 2007), drawn from the explicit ``generator``."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    z = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    d = torch.sign(torch.diagonal(r))
    d = torch.where(d == 0, torch.ones_like(d), d)
    return (q * d).to(dtype)


@dataclass(frozen=True)
class Quadratic:
    """``L(theta) = 1/2 (theta - center)^T A (theta - center)``, ``A = basis diag(eigs) basis^T``.

    ``x`` and ``y`` are the least-squares form of the same loss (see the module docstring), the
    data that :func:`quadratic_loss` takes.
    """

    eigs: Tensor  # (d,)
    basis: Tensor  # (d, d), columns are eigenvectors
    center: Tensor  # (d,)
    x: Tensor  # (d, d) = diag(sqrt(eigs)) basis^T
    y: Tensor  # (d,) = x @ center

    @property
    def dim(self) -> int:
        return int(self.eigs.shape[0])

    @property
    def hessian(self) -> Tensor:
        """``A = basis diag(eigs) basis^T`` (closed form)."""
        return (self.basis * self.eigs) @ self.basis.T

    def params(self, theta: Tensor) -> Params:
        return {"theta": theta}

    def task_batch(self) -> TaskBatch:
        """One task, support = query (the paper's Section 3 setting), with a task axis."""
        x, y = self.x[None], self.y[None]
        return TaskBatch(x, y, x, y)


def make_quadratic(
    eigs: np.ndarray | list[float] | Tensor,
    *,
    seed: int,
    center: Tensor | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Quadratic:
    """Quadratic with Hessian spectrum ``eigs`` (all >= 0) in a Haar-random basis drawn from
    ``seed``; ``center`` (the minimiser) defaults to 0."""
    lam = torch.as_tensor(np.asarray(eigs, dtype=float), dtype=torch.float64).reshape(-1)
    if lam.numel() == 0 or not torch.all(torch.isfinite(lam)) or torch.any(lam < 0):
        raise ValueError(f"eigs must be a non-empty list of finite values >= 0, got {eigs!r}")
    gen = torch.Generator().manual_seed(int(seed))
    basis = random_orthogonal(lam.numel(), generator=gen)
    c = torch.zeros(lam.numel(), dtype=torch.float64) if center is None else center.double()
    x = torch.sqrt(lam)[:, None] * basis.T
    y = x @ c
    return Quadratic(*(t.to(device=device, dtype=dtype) for t in (lam, basis, c.reshape(-1), x, y)))


def quadratic_loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
    """``1/2 ||x theta - y||^2`` for ONE task (``x`` (m, d), ``y`` (m,), ``params['theta']`` (d,)).

    With the design of :func:`make_quadratic` this is ``1/2 (theta - c)^T A (theta - c)``.
    """
    r = x @ params["theta"] - y
    return 0.5 * torch.sum(r * r)


def quadratic_hessian(x: Tensor) -> Tensor:
    """Closed-form Hessian ``x^T x`` of :func:`quadratic_loss` (independent of theta)."""
    return x.T @ x


# ---------------------------------------------------------------------------------------------
# Appendix C linear regression
# ---------------------------------------------------------------------------------------------


def linreg_loss_fn(
    convention: LossConvention = "mse",
) -> Callable[[Params, Tensor, Tensor], Tensor]:
    """The loss of ONE linear-regression task, ``params = {'w': (), 'c': ()}``,
    ``x``, ``y`` of shape (n, 1): ``mean((w x + c - y)^2)`` (``mse``) or half of it."""
    check_convention(convention)
    scale = 1.0 if convention == "mse" else 0.5

    def loss(params: Params, x: Tensor, y: Tensor) -> Tensor:
        r = params["w"] * x + params["c"] - y
        return scale * torch.mean(r * r)

    loss.__doc__ = f"Appendix C linear regression, {convention} convention."
    loss.__name__ = f"linreg_{convention}"
    return loss


def linreg_params(
    w: float = 0.0, c: float = 0.0, *, dtype: torch.dtype = torch.float64, device: str = "cpu"
) -> Params:
    """theta = (w, c); the default theta_0 = 0 is the choice of this package (App. C is silent)."""
    return {
        "w": torch.tensor(float(w), dtype=dtype, device=device),
        "c": torch.tensor(float(c), dtype=dtype, device=device),
    }


def linreg_hessian(x: Tensor, *, convention: LossConvention = "mse") -> Tensor:
    """Closed form ``s [[mean x^2, mean x], [mean x, 1]]`` with s = 2 (mse) or 1 (half_mse),
    ordered (w, c). The loss is quadratic in (w, c), so this holds at every theta."""
    check_convention(convention)
    s = 2.0 if convention == "mse" else 1.0
    x = x.reshape(-1)
    m1, m2 = x.mean(), (x * x).mean()
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return s * torch.stack([torch.stack([m2, m1]), torch.stack([m1, one])])


@dataclass(frozen=True)
class LinRegData:
    """One linear-regression task: y = a x + b (noise free), as in Appendix C."""

    x: Tensor  # (n, 1)
    y: Tensor  # (n, 1)
    a: float | None = None  # true slope (None for data read from a file)
    b: float | None = None  # true bias

    def task_batch(self) -> TaskBatch:
        """One task, the same data inside and outside the adaptation (App. C), task axis first."""
        x, y = self.x[None], self.y[None]
        return TaskBatch(x, y, x, y)


def sample_linreg(
    generator: torch.Generator,
    *,
    n_points: int = LINREG_DEFAULT_POINTS,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LinRegData:
    """a, b ~ U[0, 5], x ~ U[-5, 5] (n_points of them), y = a x + b (App. C)."""
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2 (two parameters), got {n_points}")

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        u = torch.rand(*shape, generator=generator, dtype=torch.float64)
        return lo + (hi - lo) * u

    a = float(uniform(*LINREG_SLOPE_RANGE, 1))
    b = float(uniform(*LINREG_BIAS_RANGE, 1))
    x = uniform(*LINREG_X_RANGE, n_points, 1)
    y = a * x + b
    return LinRegData(x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype), a, b)


def linreg_from_arrays(
    x: np.ndarray | list[float],
    y: np.ndarray | list[float],
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LinRegData:
    """Wrap user data (1-D x and y of equal length >= 2, all finite)."""
    xa = np.asarray(x, dtype=float).reshape(-1)
    ya = np.asarray(y, dtype=float).reshape(-1)
    if xa.size != ya.size:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if xa.size < 2:
        raise ValueError(f"need at least 2 data points, got {xa.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError("x and y must be finite numbers")
    t = lambda a: torch.as_tensor(a, dtype=dtype, device=device).reshape(-1, 1)  # noqa: E731
    return LinRegData(t(xa), t(ya))
