"""The reading matrix: every assignment of the settings the paper leaves open, in one object.

A *reading* of an empirical claim is one value on each axis below (paper Sections 4.1-4.2 are
silent on all of them); each value names its source. The run axes (initialisation, task source,
MAML variant) decide what is trained; the divergence criterion is applied *after* training
(:mod:`mamlconv.experiments.criteria`), so one run serves every criterion.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mamlconv.experiments.criteria import (
    ABSOLUTE_LEVEL,
    LEARNED_FRACTION,
    RELATIVE_FACTOR,
)


@dataclass(frozen=True)
class Value:
    """One value of an axis: its name, the settings it stands for, and where it comes from."""

    name: str
    settings: Mapping[str, Any]
    source: str


@dataclass(frozen=True)
class Axis:
    """One setting the paper leaves open; ``post_hoc`` axes are applied to results, not runs."""

    name: str
    values: tuple[Value, ...]
    post_hoc: bool = False

    def value(self, name: str) -> Value:
        for v in self.values:
            if v.name == name:
                return v
        known = ", ".join(v.name for v in self.values)
        raise ValueError(f"axis {self.name!r} has no value {name!r} (known: {known})")


EDGE_RESOLUTION_DECADES = 0.05
"""Bisection target: every bisected bracket is at most this wide in log10(beta)."""


INIT = Axis(
    "init",
    (
        Value(
            "torch_default",
            {"init": "torch_default"},
            "PyTorch nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and "
            "biases: what PyTorch MAML code (learn2learn, higher, torchmeta) trains from",
        ),
        Value(
            "finn",
            {"init": "finn"},
            "Finn et al.'s reference code (cbfinn/maml, maml.py construct_fc_weights): weights "
            "from a normal with std 0.01 truncated at 2 std, biases zero",
        ),
    ),
)


TASK_SOURCE = Axis(
    "tasks",
    (
        Value(
            "pool",
            {"task_source": "pool", "pool_size": 100, "tasks_per_batch": 100},
            'paper Sec. 4.1 "the number of tasks was 100" read as a fixed pool of 100 tasks '
            "(full-batch gradient descent on one MAML objective, the setting of the theory)",
        ),
        Value(
            "fresh",
            {"task_source": "fresh", "tasks_per_batch": 100},
            "the same sentence read as 100 tasks per meta-batch, drawn fresh every iteration "
            "(Finn et al.'s sinusoid training)",
        ),
    ),
)


VARIANT = Axis(
    "variant",
    (
        Value("exact", {"variant": "exact"}, "second-order MAML (Finn et al., Eq. 1)"),
        Value(
            "first_order",
            {"variant": "first_order"},
            "first-order MAML (Finn et al. Sec. 5.2); the paper does not say which it trained",
        ),
    ),
)


CRITERION = Axis(
    "criterion",
    (
        Value(
            "nonfinite",
            {},
            'the loss became NaN or inf: the most literal "diverged" (paper Fig. 4: "the area '
            'with no color represents the diverged losses")',
        ),
        Value(
            "absolute",
            {"level": ABSOLUTE_LEVEL},
            "the running maximum of the loss exceeded 1e3 (the package's sweep level)",
        ),
        Value(
            "relative",
            {"factor": RELATIVE_FACTOR},
            "the running maximum exceeded 10 times the loss at iteration 0",
        ),
    ),
    post_hoc=True,
)


@dataclass(frozen=True)
class ReadingMatrix:
    """The axes of one family of claims, and the grid every run reading trains."""

    family: str
    claims: tuple[str, ...]
    axes: tuple[Axis, ...]
    base: Mapping[str, Any]
    """SweepConfig fields shared by every reading (the paper's stated settings)."""
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    seeds: tuple[int, ...]

    @property
    def run_axes(self) -> tuple[Axis, ...]:
        return tuple(a for a in self.axes if not a.post_hoc)

    @property
    def criteria(self) -> tuple[str, ...]:
        return tuple(v.name for a in self.axes if a.post_hoc for v in a.values)

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise ValueError(f"{self.family} has no axis {name!r}")

    def run_readings(self) -> list[dict[str, str]]:
        """Every assignment of the run axes, as {axis: value name}."""
        names = [a.name for a in self.run_axes]
        combos = itertools.product(*[[v.name for v in a.values] for a in self.run_axes])
        return [dict(zip(names, c, strict=True)) for c in combos]

    def config(self, reading: Mapping[str, str], seed: int, *, device: str = "cpu"):
        """The SweepConfig of one run reading and seed."""
        from mamlconv.experiments.config import SweepConfig

        fields: dict[str, Any] = dict(self.base)
        options: dict[str, Any] = {}
        for axis in self.run_axes:
            settings = dict(axis.value(reading[axis.name]).settings)
            if "init" in settings:
                options["init"] = settings.pop("init")
            fields.update(settings)
        alphas = tuple(a for a in self.alphas if a > 0)
        return SweepConfig(
            **fields,
            alphas=alphas,
            betas=self.betas,
            alpha_zero_row=0.0 in self.alphas,
            seed=seed,
            device=device,
            save_params="none",
            problem_options=options,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the axes with every value's settings and source, the grid, the seeds."""
        return {
            "family": self.family,
            "claims": list(self.claims),
            "axes": [
                {
                    "name": a.name,
                    "post_hoc": a.post_hoc,
                    "values": [
                        {"name": v.name, "settings": dict(v.settings), "source": v.source}
                        for v in a.values
                    ],
                }
                for a in self.axes
            ],
            "base": dict(self.base),
            "alphas": list(self.alphas),
            "betas": list(self.betas),
            "seeds": list(self.seeds),
            "learned_fraction": LEARNED_FRACTION,
            "edge_resolution_decades": EDGE_RESOLUTION_DECADES,
        }


def reading_name(reading: Mapping[str, str]) -> str:
    """``init=finn,tasks=pool,variant=exact`` (the order of the dict)."""
    return ",".join(f"{k}={v}" for k, v in reading.items())


def parse_reading(matrix: ReadingMatrix, text: str) -> dict[str, str]:
    """The inverse of :func:`reading_name`; every run axis must be given."""
    reading: dict[str, str] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        matrix.axis(key).value(value)
        reading[key] = value
    missing = [a.name for a in matrix.run_axes if a.name not in reading]
    if missing:
        raise ValueError(f"reading {text!r} lacks axes {missing}")
    return {a.name: reading[a.name] for a in matrix.run_axes}


SINUSOID = ReadingMatrix(
    family="sinusoid",
    claims=("S4-1", "S5-1"),
    axes=(INIT, TASK_SOURCE, VARIANT, CRITERION),
    base={
        "problem": "sinusoid",
        "iters": 500,  # paper Sec. 4.1
        "steps": 1,  # paper Sec. 4.1
        "outer": "sgd",  # paper Sec. 4.1
        "dtype": "float32",
        "divergence_level": math.inf,  # non-finite only: criteria are applied post hoc
        "record_every": 50,
    },
    # Coarse on purpose (the edges come from bisection): alpha = 0, two small alphas where the
    # edge is alpha = 0's (experiments/results/sinusoid_NOTES.md), then denser towards the paper's
    # divergence alpha lies (0.35-0.9 in the committed 20 x 20 sweeps); 9 betas log-spaced over
    # the paper's [1e-2, 9] (0.37 decades a step).
    alphas=(0.0, 1e-3, 1e-2, 0.03, 0.1, 0.2, 0.35, 0.6, 0.9),
    betas=tuple(float(b) for b in np.geomspace(1e-2, 9.0, 9)),
    seeds=(0, 1, 2),
)


MATRICES: dict[str, ReadingMatrix] = {"sinusoid": SINUSOID}
"""Run matrices by family. The few-shot family (S4-2, S4-3) is judged on the committed sweeps
(:func:`judge_committed_edge`); its axes are :data:`FEWSHOT_AXES`."""
