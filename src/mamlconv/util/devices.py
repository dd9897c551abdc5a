"""How a device is written (``--device``, ``SweepConfig.device``): the one spelling rule, torch-free
so that argument parsing and configuration checks need no torch. What a spelling means on this
machine (is CUDA there, which index) is :func:`mamlconv.experiments.engine.state.resolve_device`."""

from __future__ import annotations

DEVICE_SPELLINGS = "auto, cpu, cuda or cuda:N"


def is_device_spec(text: str) -> bool:
    """True for ``auto``, ``cpu``, ``cuda`` and ``cuda:N`` (N a non-negative integer)."""
    return text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())
