"""The MAML objects by name and the rule for a valid (variant, inner steps) pair, torch-free, so
that a configuration can be read and checked without importing torch (:mod:`.maml` computes
them)."""

from __future__ import annotations

from typing import Literal

Variant = Literal["exact", "first_order", "surrogate"]
VARIANTS: tuple[Variant, ...] = ("exact", "first_order", "surrogate")


def check_variant(variant: str, steps: int) -> None:
    """Raise ValueError naming the bad value for an unknown variant or step count."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if variant == "surrogate" and steps != 1:
        raise ValueError(f"the surrogate is a one-step object (paper Eq. 4); got steps={steps}")
