"""N-way K-shot classification on Omniglot and MiniImagenet (paper Section 4.2, Fig. 4b/4c).

A problem here implements the ``Problem`` protocol of :mod:`mamlconv.numerics.tasks` with the
4-block CNN of :mod:`mamlconv.experiments.problems.cnn`, so the sweep engine, the curvature code
and the
figures treat it like the sinusoid.

Episodes (one task = one episode), drawn only from the ``torch.Generator`` passed in:

1. choose ``ways`` distinct classes of the split's class pool (``torch.randperm``); their order
   gives the labels 0..ways-1;
2. per class choose ``shots + query`` distinct images (``argsort`` of uniform draws); the first
   ``shots`` are the support set, the rest the query set.

Support tensors have shape (tasks, ways * shots, channels, side, side), class-major (all shots
of label 0, then label 1, ...); labels are int64 (tasks, ways * shots); the query likewise.

Omniglot: characters split by :func:`mamlconv.experiments.data.omniglot.omniglot_split` (default
Finn et
al.'s sizes: 1,100 train / 100 val / 423 test characters, a seeded shuffle); as Finn et al. (after
Santoro et al.) the rotations by 0, 90, 180 and 270 degrees of each character are distinct classes
(the pool of a split is 4 x its characters). Input is 1 - pixel (ink = 1), 1 x 28 x 28.
MiniImagenet: Ravi & Larochelle's 64 / 16 / 20 classes x 600 images; input is pixel / 255 (RGB,
no mean subtraction, as Finn et al.), 3 x 84 x 84.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mamlconv.experiments import data as data_mod
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.problems import cnn
from mamlconv.numerics.tasks import Params, TaskBatch


@dataclass(frozen=True, eq=False)
class FewShotProblem:
    """A ``ways``-way ``shots``-shot problem over a class pool, with Finn et al.'s CNN.

    ``class_rows`` (classes, images per class) indexes ``images`` (n, side, side[, channels])
    uint8; ``rotations`` multiplies the pool by the four 90-degree rotations (pool class
    ``c`` is source class ``c // 4`` rotated ``c % 4`` quarter turns); ``scale`` maps uint8 to
    the network's input range.
    """

    name: str
    images: np.ndarray = field(repr=False)
    class_rows: np.ndarray = field(repr=False)
    spec: cnn.ConvNetSpec
    ways: int = 5
    shots: int = 1
    query: int = 15
    rotations: bool = False
    scale: float = 1.0
    channels_last: bool = False
    """Opt-in GPU speed option: episode images stored NHWC (each image's channels adjacent),
    the layout tensor cores read natively; same values. (``vmap`` refuses a channels-last
    copy inside the step, so the layout is set here, where the images are made.)"""

    def __post_init__(self) -> None:
        for key in ("ways", "shots", "query"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        if self.ways != self.spec.n_classes:
            raise ValueError(f"ways={self.ways} but the network has {self.spec.n_classes} outputs")
        if self.ways > self.n_classes:
            raise ValueError(f"ways={self.ways} exceeds the {self.n_classes} classes of the split")
        if self.shots + self.query > self.class_rows.shape[1]:
            raise ValueError(
                f"shots + query = {self.shots + self.query} exceeds the "
                f"{self.class_rows.shape[1]} images per class"
            )

    @property
    def n_classes(self) -> int:
        """Size of the class pool (rotated copies counted)."""
        return self.class_rows.shape[0] * (4 if self.rotations else 1)

    # -- Problem protocol -------------------------------------------------------------------

    def init_params(
        self, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
    ) -> Params:
        return cnn.init_params(self.spec, generator, dtype=dtype, device=device)

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return cnn.loss(params, x, y)

    def sample_tasks(
        self,
        generator: torch.Generator,
        n_tasks: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> TaskBatch:
        """``n_tasks`` episodes, drawn on the CPU from ``generator``, then cast and moved."""
        classes, picks = self.sample_indices(generator, n_tasks)
        x = self.gather(classes, picks)  # (tasks, ways, shots + query, C, side, side) uint8
        x = x.to(dtype=torch.float64 if dtype == torch.float64 else torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        n_per = self.shots + self.query
        support = x[:, :, : self.shots].flatten(1, 2)  # (tasks, ways * shots, C, side, side)
        query = x[:, :, self.shots : n_per].flatten(1, 2)
        if self.channels_last:  # (tasks, n, C, H, W) values over NHWC-ordered memory
            support = support.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
            query = query.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        labels = torch.arange(self.ways, dtype=torch.int64)
        ys = labels.repeat_interleave(self.shots).expand(n_tasks, -1)
        yq = labels.repeat_interleave(self.query).expand(n_tasks, -1)
        return TaskBatch(support, ys.contiguous(), query, yq.contiguous()).to(device, dtype)

    # -- episode pieces (public for tests and for the per-cell reference loops) -------------

    def sample_indices(self, generator: torch.Generator, n_tasks: int) -> tuple[Tensor, Tensor]:
        """(classes (tasks, ways), picks (tasks, ways, shots + query)) as int64 CPU tensors.

        ``classes`` index the pool; ``picks`` index the images of each class (distinct within
        a class: the support and query sets never share an image).
        """
        if not isinstance(n_tasks, int) or n_tasks < 1:
            raise ValueError(f"n_tasks must be an integer >= 1, got {n_tasks!r}")
        classes = torch.stack(
            [
                torch.randperm(self.n_classes, generator=generator)[: self.ways]
                for _ in range(n_tasks)
            ]
        )
        per_class = self.class_rows.shape[1]
        u = torch.rand(n_tasks, self.ways, per_class, generator=generator, dtype=torch.float64)
        picks = u.argsort(dim=-1)[..., : self.shots + self.query]
        return classes, picks

    def gather(self, classes: Tensor, picks: Tensor) -> Tensor:
        """uint8 images (tasks, ways, picks, channels, side, side) for the indices, rotated."""
        rot = classes % 4 if self.rotations else torch.zeros_like(classes)
        source = classes // 4 if self.rotations else classes
        rows = torch.from_numpy(self.class_rows)[source[..., None], picks]  # (tasks, ways, picks)
        flat = np.asarray(self.images[rows.reshape(-1).numpy()])
        x = torch.from_numpy(flat)
        if x.dim() == 3:  # (n, side, side): one channel
            x = x.unsqueeze(1)
        else:  # (n, side, side, channels) -> (n, channels, side, side)
            x = x.permute(0, 3, 1, 2)
        x = x.reshape(*rows.shape, *x.shape[1:])
        if self.rotations:
            x = x.clone()
            for k in (1, 2, 3):
                mask = rot == k  # (tasks, ways)
                if mask.any():
                    x[mask] = torch.rot90(x[mask], k, dims=(-2, -1))
        return x


# ------------------------------------------------------------------------------- builders


@functools.lru_cache(maxsize=4)
def _omniglot(root: str | None, cache: str | None) -> data_mod.Omniglot:
    return data_mod.load_omniglot(root, cache=cache)


@functools.lru_cache(maxsize=4)
def _miniimagenet(split: str, root: str | None, cache: str | None) -> data_mod.MiniImagenetSplit:
    return data_mod.load_miniimagenet(split, root, cache=cache)


def _str(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


def omniglot_problem(
    *,
    ways: int = 5,
    shots: int = 1,
    query: int = 15,
    split: str = "train",
    scheme: str = "finn",
    rotations: bool = True,
    filters: int = 64,
    init: str = "glorot",
    root: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    data: data_mod.Omniglot | None = None,
    channels_last: bool = False,
) -> FewShotProblem:
    """Omniglot ``ways``-way ``shots``-shot with ``query`` query images per class (Sec. 4.2).

    Defaults: 5-way 1-shot, query 15 (paper); Finn et al.'s 1,100-character training split of
    :func:`~mamlconv.experiments.data.omniglot.omniglot_split` (``scheme='background'`` for Lake's);
    rotations as new classes; 64 filters. ``data`` injects already-loaded data (tests).
    """
    if data is None:
        data = _omniglot(_str(root), _str(cache))
    chars = data_mod.omniglot_split(data, split, scheme=scheme)
    n_draw = data.images.shape[1]
    images = data.images.reshape(-1, *data.images.shape[2:])  # (characters * 20, 28, 28)
    class_rows = chars[:, None] * n_draw + np.arange(n_draw)[None, :]  # (classes, 20)
    return FewShotProblem(
        name="omniglot",
        images=images,
        class_rows=class_rows,
        spec=cnn.omniglot_spec(ways, filters=filters, init=init),
        ways=ways,
        shots=shots,
        query=query,
        rotations=rotations,
        scale=1.0,
        channels_last=channels_last,
    )


def miniimagenet_problem(
    *,
    ways: int = 5,
    shots: int = 1,
    query: int = 15,
    split: str = "train",
    filters: int = 32,
    init: str = "glorot",
    root: str | os.PathLike[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    data: data_mod.MiniImagenetSplit | None = None,
    channels_last: bool = False,
) -> FewShotProblem:
    """MiniImagenet ``ways``-way ``shots``-shot, ``query`` per class, 32 filters (Sec. 4.2).

    Ravi & Larochelle's split (``train`` 64 classes, ``val`` 16, ``test`` 20; 600 images each),
    pixels / 255. The first use of a split decodes its JPEGs into the cache (seconds).
    """
    if data is None:
        data = _miniimagenet(split, _str(root), _str(cache))
    return FewShotProblem(
        name="miniimagenet",
        images=data.images,
        class_rows=data.class_rows(),
        spec=cnn.miniimagenet_spec(ways, filters=filters, init=init),
        ways=ways,
        shots=shots,
        query=query,
        rotations=False,
        scale=1.0 / 255.0,
        channels_last=channels_last,
    )


# ------------------------------------------------------------------------------- presets


def _log_grid(lo: float, hi: float, n: int) -> tuple[float, ...]:
    return tuple(float(v) for v in np.geomspace(lo, hi, n))


MINIIMAGENET_TRAIN_IMAGES = 64 * 600
MINIIMAGENET_PAPER_BATCH = 4
MINIIMAGENET_EPOCH_ITERS = math.ceil(
    MINIIMAGENET_TRAIN_IMAGES / (MINIIMAGENET_PAPER_BATCH * 5 * (1 + 15))
)
"""One epoch (paper Sec. 4.2 "1 epoch for the MiniImagenet dataset"): episodic training has no
natural epoch; ours is the number of iterations whose episodes together hold as many images as
the training split, 38,400 / (4 tasks x 5 ways x (1 + 15)) = 120 iterations."""

_FEWSHOT_COMMON: dict[str, Any] = dict(
    variant="exact",  # Finn et al.'s second-order MAML; the paper does not say otherwise
    alpha_zero_row=True,  # Fig. 4's dashed alpha = 0 line
    steps=2,  # Sec. 4.2 "the number of update steps is 2"
    outer="sgd",  # Sec. 4.2 silent; Sec. 4.1's SGD, which the theory assumes
    # Paper silent. Cross-entropy starts at ln 5 = 1.61; a loss of 100 means some wrong logit
    # beats the right one by 100, a blown-up network. Non-finite losses count as diverged too.
    divergence_level=1e2,
    task_source="fresh",  # Finn et al. sample new episodes every iteration
    record_every=10,
    seed=0,
    dtype="float32",
)

FEWSHOT_PRESETS: dict[tuple[str, str], SweepConfig] = {
    ("omniglot", "paper"): SweepConfig(
        problem="omniglot",
        alphas=_log_grid(3e-3, 9.0, 20),  # Sec. 4.2 range; 20 log-spaced as the sinusoid (ours)
        betas=_log_grid(3e-2, 90.0, 20),  # Sec. 4.2 range; 20 log-spaced (ours)
        iters=100,  # Sec. 4.2 "after 100 iterations for the Omniglot dataset"
        tasks_per_batch=32,  # Sec. 4.2 "the task batch size is 32 for Omniglot"
        pool_size=32,  # unused with fresh tasks
        problem_options={"ways": 5, "shots": 1, "query": 15, "filters": 64},  # Sec. 4.2
        **_FEWSHOT_COMMON,
    ),
    ("miniimagenet", "paper"): SweepConfig(
        problem="miniimagenet",
        alphas=_log_grid(3e-3, 9e-1, 20),  # Sec. 4.2 range; 20 log-spaced (ours)
        betas=_log_grid(3e-3, 9.0, 20),  # Sec. 4.2 range; 20 log-spaced (ours)
        iters=MINIIMAGENET_EPOCH_ITERS,  # Sec. 4.2 "1 epoch"; see MINIIMAGENET_EPOCH_ITERS
        tasks_per_batch=MINIIMAGENET_PAPER_BATCH,  # Sec. 4.2 "4 for MiniImagenet"
        pool_size=MINIIMAGENET_PAPER_BATCH,  # unused with fresh tasks
        problem_options={"ways": 5, "shots": 1, "query": 15, "filters": 32},  # Sec. 4.2
        **_FEWSHOT_COMMON,
    ),
    # Smoke presets: the same code at a size that trains in seconds on a CPU (tests, CI).
    ("omniglot", "smoke"): SweepConfig(
        problem="omniglot",
        alphas=_log_grid(1e-2, 1.0, 2),
        betas=_log_grid(1e-1, 10.0, 2),
        iters=3,
        tasks_per_batch=2,
        pool_size=2,
        record_every=1,
        problem_options={"ways": 5, "shots": 1, "query": 2, "filters": 8},
        **{k: v for k, v in _FEWSHOT_COMMON.items() if k != "record_every"},
    ),
    ("miniimagenet", "smoke"): SweepConfig(
        problem="miniimagenet",
        alphas=_log_grid(1e-2, 0.3, 2),
        betas=_log_grid(1e-2, 1.0, 2),
        iters=2,
        tasks_per_batch=2,
        pool_size=2,
        record_every=1,
        # The val split (16 classes) decodes in about 1 s, train (64) in about 5 s.
        problem_options={"ways": 5, "shots": 1, "query": 2, "filters": 4, "split": "val"},
        **{k: v for k, v in _FEWSHOT_COMMON.items() if k != "record_every"},
    ),
}
"""``(problem, preset) -> SweepConfig`` for ``mamlconv sweep omniglot|miniimagenet``."""
