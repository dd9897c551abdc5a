"""Sweep result files: one self-describing ``.npz`` per sweep (plus a readable JSON sidecar).

The ``.npz`` holds the numbers as arrays and, under the key ``meta_json``, one JSON document
with the configuration, the provenance (:func:`mamlconv.util.provenance.describe`), the run's
timing and the file format version. ``load_result`` needs nothing else; the sidecar
``<name>.json`` repeats the metadata and adds the measured boundary per alpha, for reading
without Python.

Arrays (grid rows are the config's alphas, columns its betas; R = len(record_iters)):

====================  ====================  ==============================================
key                   shape                 meaning
====================  ====================  ==============================================
alphas, betas         (nA,), (nB,)          the grid
record_iters          (R,)                  iterations of the trajectory records
final_loss            (nA, nB)              MAML loss after ``iters`` updates, or the loss
                                            that froze a diverged cell
diverged_at           (nA, nB) int64        iteration of divergence, -1 for never
loss, loss_pre,       (nA, nB, R)           trajectories (see ``engine.CellRun``), NaN
grad_norm,                                  after divergence
grad_inner,
meta_grad_norm
alpha0_*              (nB,) / (nB, R)       the same for the alpha = 0 row, when run
params/<name>         (nA, ...)             ``save_params='best'``: per alpha, the final
                      (nA, nB, ...)         parameters of ``best_beta_index``; ``'all'``: all
best_beta_index       (nA,) int64           -1 where every cell of the row diverged
====================  ====================  ==============================================

The same grid as labelled data, one value per cell with the alpha = 0 row first:
:func:`cell_table` (NumPy), :func:`to_xarray` and :func:`to_dataframe` (the optional extra
``mamlconv[data]``, imported only when called).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.errors import MamlconvError, ResultFileError
from mamlconv.experiments.config import SweepConfig
from mamlconv.numerics.boundary import Boundary, extract_boundary
from mamlconv.util.files import atomic_write, atomic_write_text, dumps

FORMAT = "mamlconv-sweep/1"
TRAJECTORIES: tuple[str, ...] = ("loss", "loss_pre", "grad_norm", "grad_inner", "meta_grad_norm")


@dataclass
class SweepResult:
    """The numbers of one alpha x beta sweep, with its configuration and provenance."""

    config: SweepConfig
    alphas: np.ndarray
    betas: np.ndarray
    record_iters: np.ndarray
    final_loss: np.ndarray
    diverged_at: np.ndarray
    trajectories: dict[str, np.ndarray]
    alpha0: dict[str, np.ndarray] | None = None
    """``final_loss``, ``diverged_at`` and the trajectories of the alpha = 0 row, if run."""
    params: dict[str, np.ndarray] | None = None
    best_beta_index: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    run_info: dict[str, Any] = field(default_factory=dict)
    """Wall time, backend, chunking, worker count: how the numbers were made, not what."""

    @property
    def diverged(self) -> np.ndarray:
        """(nA, nB) bool: the cell's loss turned non-finite or passed the divergence level."""
        return self.diverged_at >= 0

    @property
    def stable(self) -> np.ndarray:
        """Fig. 4's coloured cells: not diverged within the run."""
        return ~self.diverged

    def boundary(self) -> Boundary:
        """Per alpha, the upper edge of the stable betas (``numerics.boundary``)."""
        return extract_boundary(self.alphas, self.betas, self.stable)

    def alpha0_boundary(self) -> Boundary | None:
        """The edge of the alpha = 0 row (Fig. 4's dashed line), when it was run."""
        if self.alpha0 is None:
            return None
        stable = self.alpha0["diverged_at"][None, :] < 0
        return extract_boundary(np.array([0.0]), self.betas, stable)

    def trained_params(self, alpha_index: int) -> dict[str, np.ndarray] | None:
        """Final parameters of the best non-diverged cell of an alpha row (or None)."""
        if self.params is None or self.best_beta_index is None:
            return None
        j = int(self.best_beta_index[alpha_index])
        if j < 0:
            return None
        if self.config.save_params == "all":
            return {n: p[alpha_index, j] for n, p in self.params.items()}
        return {n: p[alpha_index] for n, p in self.params.items()}

    def meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "provenance": self.provenance,
            "run_info": self.run_info,
        }


def best_beta_index(final_loss: np.ndarray, diverged: np.ndarray) -> np.ndarray:
    """Per row, the column of the lowest final loss among non-diverged cells (-1: none)."""
    masked = np.where(diverged | ~np.isfinite(final_loss), np.inf, final_loss)
    idx = np.argmin(masked, axis=1)
    return np.where(np.isfinite(masked[np.arange(len(idx)), idx]), idx, -1).astype(np.int64)


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz so that ``path`` is either absent, the old file or the complete new one."""
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays), binary=True)


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def save_result(result: SweepResult, path: str | Path) -> Path:
    """Write ``path`` (.npz) and its JSON sidecar atomically; returns the .npz path."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "alphas": result.alphas,
        "betas": result.betas,
        "record_iters": result.record_iters,
        "final_loss": result.final_loss,
        "diverged_at": result.diverged_at,
        "meta_json": np.array(json.dumps(result.meta())),
    }
    for name, arr in result.trajectories.items():
        arrays[name] = arr.astype(np.float32)  # trajectories: float32 suffices, halves the file
    if result.alpha0 is not None:
        for name, arr in result.alpha0.items():
            arrays[f"alpha0_{name}"] = (
                arr if name in ("final_loss", "diverged_at") else arr.astype(np.float32)
            )
    if result.params is not None:
        for name, arr in result.params.items():
            arrays[f"params/{name}"] = arr
    if result.best_beta_index is not None:
        arrays["best_beta_index"] = result.best_beta_index
    atomic_savez(path, arrays)
    side = result.meta()
    side["boundary"] = result.boundary().as_records()
    b0 = result.alpha0_boundary()
    side["alpha0_boundary"] = None if b0 is None else b0.as_records()[0]
    side["n_diverged"] = int(result.diverged.sum())
    side["n_cells"] = int(result.diverged.size)
    atomic_write_text(sidecar_path(path), dumps(side))  # inf: null + "_status" (files.jsonable)
    return path


def load_result(path: str | Path) -> SweepResult:
    """Read a sweep result file written by :func:`save_result` (raw numbers, no recomputation).

    A missing, truncated or foreign file, or one whose arrays do not fit its grid, is a
    :class:`mamlconv.errors.ResultFileError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ResultFileError(f"{path}: no such result file")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        reason = "truncated or not a zip archive" if isinstance(exc, zipfile.BadZipFile) else ""
        if isinstance(exc, ValueError):
            reason = "not an .npz archive of plain arrays"  # e.g. pickled objects or text
        raise ResultFileError(
            f"{path} is not a readable sweep result ({reason or type(exc).__name__}); it may be "
            "truncated or another program's file: rerun the sweep that made it"
        ) from None
    if "meta_json" not in data:
        raise ResultFileError(f"{path} is an .npz without 'meta_json': not a mamlconv sweep result")
    try:
        meta = json.loads(str(data.pop("meta_json")))
    except ValueError:
        raise ResultFileError(f"{path}: its metadata (meta_json) is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise ResultFileError(f"{path}: not a {FORMAT} file (format={fmt!r})")
    try:
        config = SweepConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ResultFileError(f"{path}: its sweep configuration is invalid ({exc})") from None
    missing = [
        k for k in ("alphas", "betas", "record_iters", "final_loss", "diverged_at") if k not in data
    ]
    if missing:
        raise ResultFileError(f"{path}: arrays {missing} are missing; not a complete sweep result")
    alpha0 = {k[len("alpha0_") :]: v for k, v in data.items() if k.startswith("alpha0_")}
    params = {k[len("params/") :]: v for k, v in data.items() if k.startswith("params/")}
    result = SweepResult(
        config=config,
        alphas=data["alphas"],
        betas=data["betas"],
        record_iters=data["record_iters"],
        final_loss=data["final_loss"],
        diverged_at=data["diverged_at"],
        trajectories={k: data[k].astype(np.float64) for k in TRAJECTORIES if k in data},
        alpha0=alpha0 or None,
        params=params or None,
        best_beta_index=data.get("best_beta_index"),
        provenance=meta.get("provenance", {}),
        run_info=meta.get("run_info", {}),
    )
    _check_shapes(result, path)
    return result


def _check_shapes(result: SweepResult, path: Path) -> None:
    """Every array fits the grid its configuration describes (a foreign or edited file does
    not, and would fail later with an error that names no file)."""
    grid = (len(result.config.alphas), len(result.config.betas))
    want = {
        "alphas": (grid[0],),
        "betas": (grid[1],),
        "record_iters": (result.config.record_iters.size,),
        "final_loss": grid,
        "diverged_at": grid,
    }
    want.update({k: (*grid, want["record_iters"][0]) for k in result.trajectories})
    have = {
        "alphas": result.alphas.shape,
        "betas": result.betas.shape,
        "record_iters": result.record_iters.shape,
        "final_loss": result.final_loss.shape,
        "diverged_at": result.diverged_at.shape,
        **{k: v.shape for k, v in result.trajectories.items()},
    }
    for key, shape in want.items():
        if tuple(have[key]) != shape:
            raise ResultFileError(
                f"{path}: array {key} has shape {tuple(have[key])}, its configuration says "
                f"{shape}; the file is damaged or was edited"
            )


# --------------------------------------------------------------------------- labelled data
class DataExtraMissing(MamlconvError, ImportError):
    """xarray or pandas is not installed: they come with the optional extra ``mamlconv[data]``."""


def _optional(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataExtraMissing(
            f"{module} is not installed; install the extra: pip install 'mamlconv[data]'"
        ) from None


def cell_table(result: SweepResult) -> dict[str, np.ndarray]:
    """The grid's numbers per cell, the alpha = 0 row first when it was run, as arrays of shape
    (n_alpha (+1), n_beta): ``alpha`` and ``beta`` of each cell, ``final_loss``, ``diverged_at``
    (-1: never), ``diverged``, ``initial_loss`` (the loss at the first record, iteration 0),
    ``learned`` (:func:`mamlconv.experiments.criteria.learned` against
    :func:`~mamlconv.experiments.criteria.learned_reference`: chance level for classification,
    else the reference row's initial loss) and ``alpha0_row`` (True on the alpha = 0 row)."""
    from mamlconv.experiments.criteria import learned, learned_reference

    alphas = np.asarray(result.alphas, dtype=float)
    final = np.asarray(result.final_loss, dtype=float)
    div_at = np.asarray(result.diverged_at, dtype=np.int64)
    loss = result.trajectories.get("loss")
    first = np.full(final.shape, np.nan) if loss is None else np.asarray(loss, float)[..., 0]
    zero = np.zeros(final.shape[0], dtype=bool)
    if result.alpha0 is not None:
        loss0 = result.alpha0.get("loss")
        first0 = np.full(final.shape[1], np.nan) if loss0 is None else np.asarray(loss0)[..., 0]
        alphas = np.concatenate([[0.0], alphas])
        final = np.vstack([np.asarray(result.alpha0["final_loss"], float)[None], final])
        div_at = np.vstack([np.asarray(result.alpha0["diverged_at"], np.int64)[None], div_at])
        first = np.vstack([np.asarray(first0, float)[None], first])
        zero = np.concatenate([[True], zero])
    ref = learned_reference(result.config.problem_options, first[0])
    a, b = np.meshgrid(alphas, np.asarray(result.betas, dtype=float), indexing="ij")
    return {
        "alpha": a,
        "beta": b,
        "final_loss": final,
        "diverged_at": div_at,
        "diverged": div_at >= 0,
        "initial_loss": first,
        "learned": (div_at < 0) & learned(final_loss=final, initial_loss=ref),
        "alpha0_row": np.repeat(zero[:, None], b.shape[1], axis=1),
    }


_DESCRIPTIONS = {
    "final_loss": "MAML training loss after the run (the loss that froze a diverged cell)",
    "diverged_at": "iteration at which the cell diverged, -1 for never",
    "diverged": "loss non-finite or above the sweep's divergence_level",
    "initial_loss": "loss at the first record (iteration 0)",
    "learned": "not diverged and final loss below the learned fraction of the reference",
    "alpha0_row": "True on the alpha = 0 row (joint training, Fig. 4's dashed line)",
}


def _attrs(result: SweepResult) -> dict[str, Any]:
    cfg = result.config
    return {
        "problem": cfg.problem,
        "variant": cfg.variant,
        "iters": cfg.iters,
        "seed": cfg.seed,
        "config_json": dumps(cfg.to_dict()),
        "provenance_json": dumps(result.provenance),
        "run_info_json": dumps(result.run_info),
        "format": FORMAT,
    }


def to_xarray(result: SweepResult) -> Any:
    """The grid as an ``xarray.Dataset`` with dims ``alpha`` (0 first when the alpha = 0 row
    was run) and ``beta``; a variable per :func:`cell_table` column; the configuration,
    provenance and run information as attributes (JSON strings, so the dataset writes to
    netCDF). Needs the extra ``mamlconv[data]``."""
    xr = _optional("xarray")
    cells = cell_table(result)
    coords = {"alpha": cells["alpha"][:, 0], "beta": cells["beta"][0]}
    data = {
        k: (("alpha", "beta"), v, {"description": _DESCRIPTIONS[k]})
        for k, v in cells.items()
        if k not in ("alpha", "beta")
    }
    return xr.Dataset(data, coords=coords, attrs=_attrs(result))


def to_dataframe(result: SweepResult) -> Any:
    """The grid as a long ``pandas.DataFrame``, one row per cell (the alpha = 0 row first):
    columns ``alpha``, ``beta`` and every :func:`cell_table` column; the configuration and
    provenance in ``DataFrame.attrs``. Needs the extra ``mamlconv[data]``."""
    pd = _optional("pandas")
    cells = cell_table(result)
    frame = pd.DataFrame({k: v.ravel() for k, v in cells.items()})
    frame.attrs.update(_attrs(result))
    return frame
