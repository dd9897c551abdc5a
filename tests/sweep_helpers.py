"""Helpers shared by the sweep tests: a tiny float64 configuration and the live process tree."""

from __future__ import annotations

from pathlib import Path

from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.problems.registry import get_preset


def tiny_config(**changes) -> SweepConfig:
    """Six cells plus the alpha = 0 row, float64 so that runs compare exactly."""
    cfg = get_preset("sinusoid", "smoke").replace(
        alphas=(1e-3, 0.3),
        betas=(0.05, 0.5, 20.0),
        iters=6,
        record_every=2,
        tasks_per_batch=4,
        pool_size=4,
        dtype="float64",
        device="cpu",
        problem_options={"k_support": 5, "k_query": 5},
    )
    return cfg.replace(**changes)


def live_descendants(pid: int) -> set[int]:
    """Every live (not zombie) descendant of ``pid``, read from Linux's /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the command name: state, ppid, ...
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found
