"""The small Python API: thresholds, spectra, advice, sweeps and predictions for any problem.

Every function takes a *problem*: an object with the ``Problem`` protocol (e.g. from
:func:`problem_from_module`), a built-in name (``'sinusoid'``, ``'omniglot'``,
``'miniimagenet'``) or a spec ``'module:factory'`` / ``'path/to/file.py:factory'``. A sweep of a
spec records the spec, so its result file can be compared and plotted in another session; a
sweep of an object records ``memory:<name>`` and needs the object again for :func:`compare`.

Heavy layers (torch, the trainer) are imported inside the functions: ``import mamlconv`` stays
light (``mamlconv.sweep`` etc. are resolved lazily by ``mamlconv.__getattr__``).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import UsageError
from mamlconv.util.display import TableRepr
from mamlconv.util.threads import heavy_call

ProblemLike = Any
"""A ``Problem`` object, a built-in problem name or a ``module:factory`` spec."""


def _resolve(problem: ProblemLike, options: dict[str, Any] | None = None) -> tuple[str, Any]:
    """(the name a config records, the problem object)."""
    from mamlconv.experiments.problems import registry as registry

    options = dict(options or {})
    if isinstance(problem, str):
        name = registry.trust_spec(problem) if registry.is_spec(problem) else problem
        return name, registry.get_problem(name, **options)
    if options:
        raise ValueError("problem_options apply to a name or spec, not to a problem object")
    return registry.register_problem(problem), problem


def _initial_point(
    problem: Any, *, n_tasks: int, seed: int, device: str, steps: int = 1
) -> tuple[Any, Any]:
    """float64 initial parameters and a pool of ``n_tasks`` tasks, as a sweep with ``seed``
    starts from (:func:`mamlconv.experiments.engine.state.initial_state`)."""
    import torch

    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.engine.state import initial_state, resolve_device

    config = SweepConfig(
        problem="api",
        task_source="pool",
        pool_size=n_tasks,
        tasks_per_batch=n_tasks,
        seed=seed,
        steps=steps,
    )
    params, stream = initial_state(
        problem, config, dtype=torch.float64, device=resolve_device(device)
    )
    assert stream.pool is not None
    return params, stream.pool


# --------------------------------------------------------------------------------------------
# theory and spectra
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    """alpha_c and, when alphas were given, beta_c(alpha) of one MAML object on a spectrum."""

    model: str
    steps: int
    alpha_c: float
    alphas: np.ndarray | None
    beta_c: np.ndarray | None


def thresholds(
    eigenvalues: Sequence[float] | np.ndarray,
    alphas: float | Sequence[float] | np.ndarray | None = None,
    *,
    model: str = "surrogate",
    steps: int = 1,
) -> Thresholds:
    """alpha_c (paper Eq. 11) and beta_c(alpha) = 2 / max_i lambda~_i(alpha) (Eq. 14) of the
    MAML object ``model`` (surrogate | first_order | exact, ``steps`` inner steps) on the
    Hessian eigenvalues ``eigenvalues`` (:mod:`mamlconv.theory.thresholds`)."""
    from mamlconv.theory.thresholds import alpha_c, beta_c

    a_c = float(alpha_c(eigenvalues, model=model, steps=steps))
    if alphas is None:
        return Thresholds(model, steps, a_c, None, None)
    a = np.atleast_1d(np.asarray(alphas, dtype=float))
    b = np.atleast_1d(np.asarray(beta_c(eigenvalues, a, model=model, steps=steps), dtype=float))
    return Thresholds(model, steps, a_c, a, b)


@heavy_call  # one torch thread while it runs (mamlconv.util.threads)
def spectrum(
    problem: ProblemLike,
    *,
    operator: str = "hessian",
    alpha: float = 0.0,
    steps: int = 1,
    k: int = 5,
    which: str = "LA",
    n_tasks: int = 16,
    seed: int = 0,
    tol: float = 1e-6,
    params: dict[str, Any] | None = None,
    tasks: Any = None,
    device: str = "cpu",
) -> Any:
    """k extreme eigenvalues of ``operator`` (hessian, surrogate, meta, tg, h2, tg_plus_h2;
    :func:`mamlconv.numerics.curvature.spectrum`) by Lanczos in float64, at ``params`` on
    ``tasks`` -- by default the initial point and a pool of ``n_tasks`` tasks drawn from
    ``seed``, as a sweep with that seed starts."""
    from mamlconv.numerics.curvature import spectrum as _spectrum

    _, prob = _resolve(problem)
    if params is None or tasks is None:
        p0, t0 = _initial_point(prob, n_tasks=n_tasks, seed=seed, device=device)
        params = p0 if params is None else params
        tasks = t0 if tasks is None else tasks
    return _spectrum(
        prob.loss,
        params,
        tasks,
        operator=operator,  # type: ignore[arg-type]
        alpha=alpha,
        steps=steps,
        k=k,
        which=which,  # type: ignore[arg-type]
        tol=tol,
        seed=seed,
    )


@heavy_call
def advise(
    problem: ProblemLike,
    *,
    variant: str = "exact",
    steps: int = 1,
    n_tasks: int = 16,
    alphas: Sequence[float] | None = None,
    safety: float = 0.5,
    k: int = 5,
    seed: int = 0,
    verify_iters: int = 0,
    tol: float = 1e-6,
    device: str = "cpu",
    measure: bool = False,
    budget: int | None = None,
    iters: int | None = None,
    outer: str = "sgd",
) -> Any:
    """Recommended (alpha*, beta*) at the problem's initial point (:mod:`.experiments.advisor`:
    the paper's "largest alpha first, then beta" rule on measured spectra). Returns an
    ``Advice``: ``.alpha_star``, ``.beta_star``, ``.candidates``, ``.as_dict()``.

    ``measure=True``: the edges measured by short training runs instead
    (:mod:`.experiments.analysis.measured_advice`) within ``budget`` cell-iterations, at the
    horizon ``iters`` (default: a built-in problem's paper preset, 500; 100 otherwise) with the
    ``outer`` rule (sgd | adam); returns a ``MeasuredAdvice`` (``.edges``, ``.as_dict()``)."""
    from mamlconv.experiments.analysis.advisor import advise as _advise

    name, prob = _resolve(problem)
    if measure:
        from mamlconv.experiments.analysis.measured_advice import measure as _measure
        from mamlconv.experiments.config import SweepConfig
        from mamlconv.experiments.problems.registry import PROBLEMS, get_preset

        if name in PROBLEMS:
            base = get_preset(name, "paper")
        else:
            base = SweepConfig(problem=name, pool_size=n_tasks, tasks_per_batch=n_tasks, iters=100)
        config = base.replace(variant=variant, steps=steps, seed=seed, device=device, outer=outer)
        config = config if iters is None else config.replace(iters=iters)
        return _measure(prob, config, alphas=alphas, safety=safety, budget=budget, k=k)
    params, pool = _initial_point(prob, n_tasks=n_tasks, seed=seed, device=device, steps=steps)
    return _advise(
        prob,
        params,
        pool,
        variant=variant,
        steps=steps,
        alphas=alphas,
        safety=safety,
        k=k,
        seed=seed,
        verify_iters=verify_iters,
        tol=tol,
    )


# --------------------------------------------------------------------------------------------
# sweeps
# --------------------------------------------------------------------------------------------


class SweepMap(TableRepr):
    """An alpha x beta sweep: the grid, the final losses, the boundary, the figure, the file.

    ``result`` is the :class:`mamlconv.experiments.sweep.results.SweepResult` (trajectories,
    parameters, provenance); ``path`` the ``.npz`` it lives in (None until saved).
    ``plot()`` returns a matplotlib Figure (no file); ``save_figures(out_dir)`` writes the
    PNG/PDF/JSON; ``to_xarray()`` / ``to_dataframe()`` give the grid as labelled data (the
    extra ``mamlconv[data]``).
    """

    def __init__(self, result: Any, path: str | os.PathLike[str] | None = None) -> None:
        self.result = result
        self.path = None if path is None else Path(path)

    def _display_title(self) -> str:
        n_a, n_b = self.final_loss.shape
        return f"SweepMap: {self.config.problem}, {n_a} alphas x {n_b} betas"

    def _display_rows(self) -> list[tuple[str, Any]]:
        cfg = self.config
        b = self.boundary()
        edges = [
            f"{a:.3g}: {lo:.3g}" + ("+" if not np.isfinite(hi) else "")
            for a, lo, hi in zip(b.alphas, b.beta_lo, b.beta_hi, strict=True)
        ]
        return [
            ("variant", f"{cfg.variant} MAML, {cfg.steps} inner step(s)"),
            ("alphas", self.alphas),
            ("betas", self.betas),
            ("alpha = 0 row", self.alpha0_final_loss is not None),
            ("training", f"{cfg.iters} iterations, {cfg.tasks_per_batch} tasks, {cfg.outer}"),
            ("diverged", f"{int(self.diverged.sum())} of {self.diverged.size} cells"),
            ("final loss", self.final_loss[~self.diverged] if (~self.diverged).any() else "—"),
            ("largest stable beta", "; ".join(edges)),
            ("file", str(self.path) if self.path else "not saved (save(path))"),
        ]

    @property
    def config(self) -> Any:
        return self.result.config

    @property
    def alphas(self) -> np.ndarray:
        """The grid's inner learning rates (rows), without the alpha = 0 row."""
        return self.result.alphas

    @property
    def betas(self) -> np.ndarray:
        """The grid's meta learning rates (columns)."""
        return self.result.betas

    @property
    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) of every cell, each of shape (n_alpha, n_beta)."""
        a, b = np.meshgrid(self.alphas, self.betas, indexing="ij")
        return a, b

    @property
    def final_loss(self) -> np.ndarray:
        """(n_alpha, n_beta): MAML training loss after the run (or the loss that diverged)."""
        return self.result.final_loss

    @property
    def diverged(self) -> np.ndarray:
        return self.result.diverged

    @property
    def alpha0_final_loss(self) -> np.ndarray | None:
        """(n_beta,) final losses of the alpha = 0 row (joint training), when it was run."""
        return None if self.result.alpha0 is None else self.result.alpha0["final_loss"]

    def boundary(self) -> Any:
        """Per alpha (the alpha = 0 row first, when run) the stability edge as a bracket:
        ``beta_lo`` the largest stable grid beta, ``beta_hi`` the next one (inf: stable to the
        end of the grid; ``beta_lo`` NaN: nothing stable). A
        :class:`mamlconv.numerics.boundary.Boundary`; ``.as_records()`` for JSON."""
        from mamlconv.numerics.boundary import extract_boundary

        alphas, stable = self.alphas, self.result.stable
        if self.result.alpha0 is not None:
            alphas = np.concatenate([[0.0], alphas])
            stable = np.vstack([self.result.alpha0["diverged_at"][None, :] < 0, stable])
        return extract_boundary(alphas, self.betas, stable)

    def to_xarray(self) -> Any:
        """The grid as an ``xarray.Dataset``: dims ``alpha`` (0 first when the alpha = 0 row
        was run) and ``beta``; variables ``final_loss``, ``diverged_at``, ``diverged``,
        ``learned``, ``initial_loss``, ``alpha0_row``; configuration and provenance as
        attributes (:func:`mamlconv.experiments.sweep.results.to_xarray`). Needs
        ``pip install 'mamlconv[data]'``."""
        from mamlconv.experiments.sweep.results import to_xarray

        return to_xarray(self.result)

    def to_dataframe(self) -> Any:
        """The grid as a long ``pandas.DataFrame``, one row per cell (columns ``alpha``,
        ``beta``, ``final_loss``, ``diverged_at``, ``diverged``, ``learned``, ...). Needs
        ``pip install 'mamlconv[data]'``."""
        from mamlconv.experiments.sweep.results import to_dataframe

        return to_dataframe(self.result)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result file (``.npz`` plus a ``.json`` sidecar); returns its path."""
        from mamlconv.experiments.sweep.results import save_result

        self.path = save_result(self.result, path)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SweepMap:
        from mamlconv.experiments.sweep.results import load_result

        return cls(load_result(path), path)

    def plot(self, ax: Any = None, *, criterion: str | None = None, edge: bool = True) -> Any:
        """The Fig. 4 heat map (final loss per cell on a log colour scale with its colour bar,
        cells that fail ``criterion`` blank, the alpha = 0 edge dashed, the measured edge per
        alpha in red) as a matplotlib ``Figure``; writes no file (``fig.savefig(...)``, or
        :meth:`save_figures`). ``ax``: draw into this Axes (its figure is returned)."""
        from mamlconv.experiments.figures.figure4 import panel_figure

        return panel_figure(self.result, ax=ax, criterion=criterion, edge=edge)

    def save_figures(
        self, out_dir: str | os.PathLike[str], *, stem: str | None = None
    ) -> list[Path]:
        """Write the Fig. 4 heat map as PNG and PDF plus a JSON summary into ``out_dir``;
        returns the paths. Saves the result there first when it has no file yet."""
        from mamlconv.experiments.figures.figure4 import fig4

        if self.path is None:
            self.save(Path(out_dir) / f"{stem or 'sweep'}.npz")
        assert self.path is not None
        return fig4(self.path, Path(out_dir), stem=stem)


def load(path: str | os.PathLike[str]) -> SweepMap:
    """A sweep result file written by :func:`sweep` or ``mamlconv sweep``."""
    return SweepMap.load(path)


def _rates(name: str, values: Any) -> tuple[float, ...]:
    """A grid argument of :func:`sweep` as floats; UsageError naming the argument otherwise."""
    example = "[0.001, 0.01, 0.1]" if name == "alphas" else "[0.1, 1.0, 10.0]"
    if isinstance(values, str | bytes) or np.ndim(values) != 1:
        raise UsageError(
            f"{name} must be a 1-D sequence of numbers, e.g. {name}={example} or "
            f"np.geomspace(...); got {type(values).__name__} {values!r:.40}"
        )
    try:
        out = tuple(float(v) for v in np.asarray(values, dtype=float))
    except (TypeError, ValueError):
        raise UsageError(f"{name} must hold numbers only, got {list(values)!r:.60}") from None
    if not out:
        raise UsageError(f"{name} is empty; give at least one value, e.g. {name}={example}")
    low = 0.0 if name == "alphas" else None  # alpha = 0 is joint training; beta must be > 0
    bad = [v for v in out if not np.isfinite(v) or v < 0 or (low is None and v == 0)]
    if bad:
        sign = ">= 0" if name == "alphas" else "> 0"
        raise UsageError(f"{name} must be finite and {sign}, got {bad[0]!r}")
    return out


@heavy_call
def sweep(
    problem: ProblemLike,
    alphas: Sequence[float] | np.ndarray,
    betas: Sequence[float] | np.ndarray,
    *,
    variant: str = "exact",
    steps: int = 1,
    iters: int = 100,
    tasks_per_batch: int = 16,
    task_source: str = "pool",
    pool_size: int | None = None,
    alpha_zero_row: bool = True,
    outer: str = "sgd",
    divergence_level: float = 1e3,
    record_every: int = 10,
    seed: int = 0,
    dtype: str = "float32",
    device: str = "auto",
    chunk_size: int | None = None,
    save_params: str = "best",
    problem_options: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    workers: int = 1,
    progress: bool = False,
) -> SweepMap:
    """Train MAML on every cell of ``alphas`` x ``betas`` (plus the alpha = 0 row) and return
    the map (:func:`mamlconv.experiments.sweep.run.run_sweep`; every option is a
    :class:`~mamlconv.experiments.config.SweepConfig` field). Every cell starts from the same
    initial parameters and sees the same tasks. ``out``: the result file (default: a temporary
    one, removed; ``SweepMap.save`` keeps it). ``divergence_level``: a cell whose loss passes it
    (or turns non-finite) counts as diverged; 1e3 suits losses of order 1 at the start."""
    from mamlconv.experiments.config import SweepConfig
    from mamlconv.experiments.sweep.run import run_sweep

    alphas, betas = _rates("alphas", alphas), _rates("betas", betas)
    name, _ = _resolve(problem, problem_options)
    if workers > 1 and name.startswith("memory:"):
        raise ValueError(
            "a problem object lives in this process only; use workers=1 or give the problem "
            "as a 'module:factory' spec"
        )
    config = SweepConfig(
        problem=name,
        variant=variant,
        alphas=alphas,
        betas=betas,
        alpha_zero_row=alpha_zero_row,
        iters=iters,
        tasks_per_batch=tasks_per_batch,
        steps=steps,
        outer=outer,
        divergence_level=divergence_level,
        task_source=task_source,
        pool_size=pool_size if pool_size is not None else tasks_per_batch,
        record_every=min(record_every, iters),
        seed=seed,
        dtype=dtype,
        device=device,
        chunk_size=chunk_size,
        save_params=save_params,
        problem_options=problem_options or {},
    )
    if out is not None:
        result = run_sweep(config, out, resume=resume, workers=workers, progress=progress)
        return SweepMap(result, out)
    with tempfile.TemporaryDirectory(prefix="mamlconv_sweep_") as tmp:
        result = run_sweep(config, Path(tmp) / "sweep.npz", workers=workers, progress=progress)
    return SweepMap(result, None)


# --------------------------------------------------------------------------------------------
# predictions
# --------------------------------------------------------------------------------------------


@heavy_call
def compare(
    result: SweepMap | Any,
    *,
    problem: ProblemLike | None = None,
    points: Sequence[str] = ("init", "trained"),
    k: int = 30,
    tol: float = 1e-4,
    device: str = "cpu",
    out: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Any:
    """The sweep's measured edge against three predictions of beta_c per alpha
    (:mod:`mamlconv.experiments.analysis.comparison`): ``formula`` (paper Eq. 14 on H's spectrum),
    ``surrogate`` (2 / lambda_max of E[H - alpha(Tg + H^2)]) and ``meta`` (2 / lambda_max of
    the exact meta-Hessian), at the initial and/or trained points. ``problem``: the object for
    a sweep made from one (``memory:<name>``), or to override the recorded spec. ``out``: also
    write the Markdown/JSON table and the heat map with the predictions there. Returns a
    ``Comparison`` (``.predictions[point][name]``, ``.boundary``, ``.summary()``)."""
    from mamlconv.experiments.analysis.comparison import compare as _compare
    from mamlconv.experiments.figures.comparison import write_comparison

    sweep_map = result if isinstance(result, SweepMap) else SweepMap(result)
    res = sweep_map.result
    if problem is not None:
        name, _ = _resolve(problem)
        res = dataclasses.replace(res, config=res.config.replace(problem=name, problem_options={}))
    if "trained" in points and res.params is None:
        points = tuple(p for p in points if p != "trained")
    cmp = _compare(res, points=tuple(points), k=k, tol=tol, device=device, progress=progress)
    if out is not None:
        source = str(sweep_map.path) if sweep_map.path is not None else res.config.problem
        stem = f"{sweep_map.path.stem}_compare" if sweep_map.path is not None else "compare"
        cmp.files = write_comparison(cmp, res, Path(out), source=source, stem=stem)
    return cmp


@heavy_call
def local_stability(
    problem: ProblemLike,
    alphas: Sequence[float],
    *,
    variant: str = "exact",
    steps: int = 1,
    n_tasks: int = 16,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    tasks: Any = None,
    optimiser_iters: int = 3000,
    newton_iters: int = 300,
    horizon: int = 1000,
    resolution: float = 0.005,
    log: Any = None,
) -> Any:
    """The paper's conditions in their own regime (:mod:`mamlconv.experiments.analysis.local`,
    ``mamlconv local``): per alpha, a stationary point theta*(alpha) of the variant's outer
    update found in float64 from ``params`` (default: the initial point of a sweep with
    ``seed``) on the fixed ``tasks`` (default: a pool of ``n_tasks``), its certificate, every
    prediction of the local beta edge and, where theta* is certified, the edge measured with the
    real outer update. Returns a ``LocalStudy`` (``.rows``, ``.record()`` for the JSON)."""
    from mamlconv.experiments.analysis.local import local_stability as _local

    name, prob = _resolve(problem)
    if params is None or tasks is None:
        p0, t0 = _initial_point(prob, n_tasks=n_tasks, seed=seed, device="cpu", steps=steps)
        params = p0 if params is None else params
        tasks = t0 if tasks is None else tasks
    return _local(
        prob,
        alphas,
        tasks=tasks,
        init=params,
        variant=variant,
        steps=steps,
        seed=seed,
        name=name,
        optimiser_iters=optimiser_iters,
        newton_iters=newton_iters,
        horizon=horizon,
        resolution=resolution,
        log=log,
    )
