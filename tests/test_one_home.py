"""One home for each shared rule: the package defines each of these names exactly once.

A second ``format_seconds`` (times printed two ways), ``resolve_device`` (two device rules with
different errors) or preset lookup is what this guards against; the package sources are walked
with ``ast`` (every layer: ``src/mamlconv``, ``theory``, ``numerics``, ``experiments``,
``paper_checks``) and the function and class definitions counted by name, nested ones included.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

import mamlconv
import mamlconv.experiments
import mamlconv.numerics
import mamlconv.paper_checks
import mamlconv.theory

ROOTS = [
    Path(p)
    for pkg in (
        mamlconv,
        mamlconv.theory,
        mamlconv.numerics,
        mamlconv.experiments,
        mamlconv.paper_checks,
    )
    for p in pkg.__path__
]

ONE_HOME = {
    "format_seconds": "mamlconv/util/progress.py",
    "resolve_device": "experiments/engine/state.py",
    "resolve_dtype": "experiments/engine/state.py",
    "get_preset": "experiments/problems/registry.py",
    "is_device_spec": "mamlconv/util/devices.py",
    "largest_stable": "numerics/boundary.py",
    "near_divergence_rows": "numerics/boundary.py",
    "learned": "experiments/criteria.py",
    "learned_reference": "experiments/criteria.py",
}


def definitions(name: str) -> list[str]:
    """``path:line`` of every ``def``/``class`` called ``name`` in the package sources."""
    found = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                if isinstance(node, kinds) and node.name == name:
                    found.append(f"{path.relative_to(root.parent).as_posix()}:{node.lineno}")
    return found


def test_the_walk_sees_every_layer():
    names = Counter(p.name for p in ROOTS)
    assert set(names) == {"mamlconv", "theory", "numerics", "experiments", "paper_checks"}


@pytest.mark.parametrize("name", sorted(ONE_HOME))
def test_defined_once(name: str) -> None:
    found = definitions(name)
    assert len(found) == 1, f"{name} is defined {len(found)} times: {', '.join(found)}"
    assert found[0].split(":")[0] == ONE_HOME[name]


def spelled_devices(source: str) -> list[int]:
    """Lines of ``source`` that test a device string's spelling themselves: a ``startswith``
    call on the string ``"cuda:"``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "startswith"
            and any(isinstance(a, ast.Constant) and a.value == "cuda:" for a in node.args)
        ):
            lines.append(node.lineno)
    return lines


def test_the_device_spelling_is_coded_once() -> None:
    """``auto | cpu | cuda | cuda:N`` is checked by ``util.devices.is_device_spec`` alone (the
    CLI, the configuration and the engine each had their own, one of them looser)."""
    assert spelled_devices('ok = d.startswith("cuda:") and d[5:].isdigit()') == [1]
    found = [
        f"{path.relative_to(root.parent).as_posix()}:{line}"
        for root in ROOTS
        for path in sorted(root.rglob("*.py"))
        for line in spelled_devices(path.read_text(encoding="utf-8"))
    ]
    assert [f.split(":")[0] for f in found] == ["mamlconv/util/devices.py"], found


@pytest.mark.parametrize("spec", ["cuda:x", "gpu", "cuda:", "CPU"])
def test_a_config_with_a_misspelt_device_is_refused(spec: str) -> None:
    from mamlconv.experiments.config import SweepConfig

    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        SweepConfig(problem="sinusoid", alphas=(0.1,), betas=(0.1,), device=spec)
