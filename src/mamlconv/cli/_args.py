"""Argument parsing shared by the subcommands: one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from mamlconv.errors import UsageError as UsageError  # re-exported for the subcommands

PROBLEM_CHOICES = ("sinusoid", "omniglot", "miniimagenet")
"""The task families that `sweep`, `advise` and the presets know by name."""

VARIANT_CHOICES = ("exact", "first_order", "surrogate")
"""``mamlconv.numerics.maml.VARIANTS`` (tested equal), kept here so that building the parser
does not import torch (``mamlconv --help`` must start fast)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the bad value, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = nonnegative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def nonnegative_int(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def device_spec(text: str) -> str:
    """auto | cpu | cuda | cuda:N (availability is checked where the device is used)."""
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def float_list(text: str) -> list[float]:
    """'0.5,1,2' -> [0.5, 1.0, 2.0]; every entry finite."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(p == "" for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return [finite_float(p) for p in parts]


def log_grid(text: str) -> np.ndarray:
    """'LO:HI:N' -> numpy.geomspace(LO, HI, N), with 0 < LO <= HI and N >= 1."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected LO:HI:N, got {text!r}")
    lo, hi = finite_float(parts[0]), finite_float(parts[1])
    n = positive_int(parts[2])
    if not (0 < lo <= hi):
        raise argparse.ArgumentTypeError(f"need 0 < LO <= HI, got {text!r}")
    return np.geomspace(lo, hi, n)
