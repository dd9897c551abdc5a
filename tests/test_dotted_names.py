"""Every dotted ``mamlconv.…`` name written in the repository resolves.

Scanned (``git ls-files``): the code (``*.py`` outside experiments/results/), the docs
(README.md, docs/*.md, experiments/results/*.md), benchmarks/, examples/, the shell scripts
(``*.sh``, .ci/run) and pyproject.toml. A name starts with a lower-case letter or ``_`` after
``mamlconv.`` and runs on over identifier characters and dots, so that the class of a
``:class:`mamlconv.errors.OutputError``` reference is checked too; a trailing ``.`` (end of a
sentence, an f-string like ``f"mamlconv.cli.{name}"``) is dropped.

A name resolves when ``importlib.import_module`` imports its longest importable module prefix
(a real module, not a bare folder taken as a namespace package) and ``getattr`` finds the rest.
A name followed by ``/`` is a folder path (``mamlconv.experiments.sweep.results/``): it resolves
when
it is an importable package, or its last part is a folder inside the package before it.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NAME = re.compile(r"(?<![\w.])mamlconv\.[a-z_][A-Za-z0-9_.]*(/?)")

# Strings that match NAME but are not module paths, with the reason. Keep it short: a real
# broken name is fixed where it is written, never listed here.
ALLOWED = {
    # tests/test_api.py: the attribute that must not exist (the AttributeError test)
    "mamlconv.nope",
}

SCANNED = (
    "README.md",
    "pyproject.toml",
    ".ci/run",
    "docs/*.md",
    "experiments/results/*.md",
    "benchmarks/*",
    "examples/*",
    "*.sh",
)


def scanned_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    chosen = []
    for rel in listed:
        if not rel or not (REPO / rel).is_file():  # being moved in the work tree right now
            continue
        if rel.endswith(".py"):
            if not rel.startswith("experiments/results/"):
                chosen.append(rel)
        elif any(fnmatch.fnmatchcase(rel, pattern) for pattern in SCANNED):
            chosen.append(rel)
    return sorted(chosen)


def occurrences(files: list[str]) -> list[tuple[str, int, str, bool]]:
    """(file, line, name, is a folder path) for every name in ``files``."""
    found = []
    for rel in files:
        text = (REPO / rel).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            for match in NAME.finditer(line):
                name = match.group(0).removesuffix("/").rstrip(".")
                found.append((rel, number, name, bool(match.group(1))))
    return found


def _import(name: str):
    """The module ``name``, or None when no such module exists; other import errors raise."""
    if name.rpartition(".")[2] == "__main__":  # importing it would run the command
        return None if importlib.util.find_spec(name) is None else name
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise


def resolve(name: str, folder: bool = False) -> str | None:
    """None when ``name`` resolves, else why not."""
    parts = name.split(".")
    try:
        for k in range(len(parts), 0, -1):
            module = _import(".".join(parts[:k]))
            if module is not None:
                break
        else:
            return "no module"
    except Exception as exc:  # the module exists but does not import
        return f"importing it raises {type(exc).__name__}: {exc}"
    prefix, rest = ".".join(parts[:k]), parts[k:]
    if isinstance(module, str):  # a __main__ found, not imported
        return f"{prefix} has no attributes to look up here" if rest else None
    if getattr(module, "__file__", None) is None and not (folder and not rest):
        return f"{prefix} is a bare folder (namespace package), not a module"
    if folder and len(rest) == 1 and hasattr(module, "__path__"):
        if any((Path(p) / rest[0]).is_dir() for p in module.__path__):
            return None
        return f"no folder {rest[0]}/ in package {prefix}"
    obj = module
    for i, attr in enumerate(rest):
        try:
            obj = getattr(obj, attr)
        except Exception as exc:
            return f"{'.'.join(parts[: k + i])} has no attribute {attr!r} ({type(exc).__name__})"
    return None


def test_the_scan_finds_the_names() -> None:
    files = scanned_files()
    for expected in ("README.md", "pyproject.toml", "docs/api.md", "src/mamlconv/api.py"):
        assert expected in files
    names = {name for _, _, name, _ in occurrences(files)}
    assert {"mamlconv.cli", "mamlconv.paper_checks.plugin", "mamlconv.errors"} <= names


def test_every_dotted_name_resolves() -> None:
    verdicts: dict[tuple[str, bool], str | None] = {}
    broken = []
    for rel, line, name, folder in occurrences(scanned_files()):
        if name in ALLOWED:
            continue
        key = (name, folder)
        if key not in verdicts:
            verdicts[key] = resolve(name, folder)
        if verdicts[key] is not None:
            broken.append(f"{rel}:{line}: {name}{'/' if folder else ''}: {verdicts[key]}")
    assert not broken, f"{len(broken)} dotted name(s) that do not resolve:\n" + "\n".join(broken)


def test_resolve_tells_broken_names_apart() -> None:
    pkg = "mamlconv"  # the broken names are built here so that the scan of this file passes
    assert resolve(f"{pkg}.errors") is None
    assert resolve(f"{pkg}.numerics.maml.VARIANTS") is None
    assert resolve(f"{pkg}.__main__") is None
    assert resolve(f"{pkg}.experiments.results", folder=True) is None
    assert "namespace" in resolve(f"{pkg}.experiments.gpu")  # a folder of shell scripts
    assert resolve(f"{pkg}.experiments.gpu", folder=True) is None
    assert "no attribute 'NoSuchError'" in resolve(f"{pkg}.errors.NoSuchError")
    assert resolve(f"{pkg}.no_such_module") == f"{pkg} has no attribute 'no_such_module' " + (
        "(AttributeError)"
    )
    assert "no folder" in resolve(f"{pkg}.experiments.no_such_folder", folder=True)
