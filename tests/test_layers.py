"""The layers of the package, checked on the import graph read from the source (``ast``).

Every module of the package is found by walking the folders of pyproject's ``package-dir``
mapping; nothing of the package is imported. An edge is one import statement of a package
module: ``import x``, ``from x import y`` (to ``x.y`` when ``y`` is a submodule, else to
``x``), relative imports, and ``importlib.import_module("literal")`` calls, wherever they
stand: at module level, inside a function or method, or under ``if TYPE_CHECKING``. The
implicit import of the parent packages of ``x`` is not an edge.

Two rules, both over all edges alike (module-level and function-level):

- no cycle: the graph has no strongly connected component of more than one module;
- the layer order of ``LAYERS``: a module imports modules of its own unit and of units below
  it, never above it; every module belongs to a unit (a module matching no row fails, so a
  new module has to be placed).

The table is written for the target layout (base layer ``errors`` + ``util/``, then theory,
numerics, the experiments subpackages in data-flow order, paper_checks, the top). A failure
lists exactly what stands against it, file:line for every edge: the to-do list.

A size guard stands beside them: no package module over 600 lines (pytest test modules,
``test_*.py``, excepted) and no package folder with more than 12 ``.py`` modules.
"""

from __future__ import annotations

import ast
import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = "mamlconv"

# The layer order, lowest first: (unit name, module-name prefixes). Prefixes are written
# relative to ROOT (``"theory"`` is ROOT + ".theory") so that this table, which names the
# target layout, is not read as a list of today's module paths by test_dotted_names.py.
# A prefix matches the module of that name and every module below it; a prefix ending in
# "$" matches that one module only ("$" alone is ROOT's own __init__). A module belongs to
# the unit of its longest matching prefix; a module may import its own unit and the units
# above it in this list (below it in the layering), never a unit further down the list.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # base layer: imports nothing else of the package (util may import errors)
    ("base", ("errors", "util")),
    ("theory", ("theory",)),
    ("numerics", ("numerics",)),
    # the experiments package's own __init__ (it imports nothing: see the test below)
    ("experiments", ("experiments$",)),
    # the experiments subpackages, in data-flow order
    ("experiments.config", ("experiments.config",)),
    ("experiments.criteria", ("experiments.criteria",)),
    ("experiments.data", ("experiments.data",)),
    ("experiments.problems", ("experiments.problems",)),
    ("experiments.engine", ("experiments.engine",)),
    ("experiments.sweep", ("experiments.sweep",)),
    ("experiments.readings", ("experiments.readings",)),
    ("experiments.analysis", ("experiments.analysis",)),
    ("experiments.figures", ("experiments.figures",)),
    ("paper_checks", ("paper_checks",)),
    # the top: the package's __init__, the Python API, ``python -m`` and the command line
    ("top", ("$", "api", "__main__", "cli")),
]
BASE_UNIT = "base"
# Packages whose __init__ imports nothing of the package (relative to ROOT, as above).
EMPTY_INITS = ("experiments",)


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    path: Path
    line: int
    where: str  # "module" (module level, class bodies too), "function", "type-checking"
    dynamic: bool = False  # an importlib.import_module("literal") call

    @property
    def module_level(self) -> bool:
        return self.where != "function"

    def at(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def _shown(path: Path) -> str:
    try:
        return Path(path).resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


# --- the graph ------------------------------------------------------------------------------


def discover_modules(repo: Path) -> dict[str, Path]:
    """{module name: source file} for every module under pyproject's package-dir folders.

    A folder without ``__init__.py`` is not a package (data, shell scripts) and is skipped with
    everything below it."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for package, folder in package_dir.items():
        top = repo / folder
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            if "__init__.py" not in filenames:
                dirnames.clear()
                continue
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            parts = [package, *here.relative_to(top).parts]
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                stem = name[: -len(".py")]
                modules[".".join(parts if stem == "__init__" else [*parts, stem])] = here / name
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_import_module_call(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return (
        name == "import_module"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    )


def _raw_imports(tree: ast.Module) -> Iterable[tuple[ast.AST, str]]:
    """(import node or import_module call, where) for every import in the tree."""

    def walk(node: ast.AST, where: str) -> Iterable[tuple[ast.AST, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, where
            elif isinstance(child, ast.Call) and _is_import_module_call(child):
                yield child, where
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                inner = where if where == "function" else "type-checking"
                yield from walk(child.test, where)
                for stmt in child.body:
                    yield from walk_one(stmt, inner)
                for stmt in child.orelse:
                    yield from walk_one(stmt, where)
            else:
                yield from walk(child, where)

    def walk_one(stmt: ast.AST, where: str) -> Iterable[tuple[ast.AST, str]]:
        wrapper = ast.Module(body=[stmt], type_ignores=[])
        yield from walk(wrapper, where)

    yield from walk(tree, "module")


def _internal(name: str, modules: Mapping[str, Path]) -> str | None:
    """The module an import of ``name`` lands on: ``name`` itself, or (for an attribute or a
    name that does not exist) its longest prefix that is a module; None outside the tree."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def _file_edges(importer: str, path: Path, modules: Mapping[str, Path]) -> Iterable[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    for node, where in _raw_imports(tree):
        targets: list[str | None] = []
        if isinstance(node, ast.Import):
            targets = [_internal(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                targets.append(sub if sub in modules else _internal(source, modules))
        else:
            assert isinstance(node, ast.Call)
            targets = [_internal(node.args[0].value, modules)]
        for target in targets:
            if target is not None and target != importer:
                yield Edge(importer, target, path, node.lineno, where, isinstance(node, ast.Call))


def build_graph(modules: Mapping[str, Path]) -> list[Edge]:
    """Every import edge between the modules of ``modules`` ({module name: source file})."""
    edges = {e for name, path in modules.items() for e in _file_edges(name, Path(path), modules)}
    return sorted(edges, key=lambda e: (e.importer, e.line, e.imported))


def strongly_connected(edges: Sequence[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, list[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, []).append(e.imported)
        graph.setdefault(e.imported, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(set(graph[start]))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(set(graph[child])))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def cycle_report(edges: Sequence[Edge]) -> list[str]:
    """One block per strongly connected component: its modules and every edge inside it."""
    blocks = []
    for component in strongly_connected(edges):
        members = set(component)
        inside = [e for e in edges if e.importer in members and e.imported in members]
        lines = [f"cycle of {len(component)} modules: {', '.join(component)}"]
        lines += [f"    {e.at()}: {e.importer} -> {e.imported} ({e.where})" for e in inside]
        blocks.append("\n".join(lines))
    return blocks


def unit_of(module: str, root: str = ROOT, layers: Sequence = LAYERS) -> int | None:
    """The index in ``layers`` of the unit of ``module`` (longest matching prefix), or None."""
    best: tuple[int, int] | None = None  # (prefix length, unit index)
    for i, (_unit, prefixes) in enumerate(layers):
        for prefix in prefixes:
            exact = prefix.endswith("$")
            rel = prefix.removesuffix("$")
            name = f"{root}.{rel}" if rel else root
            if module == name or (not exact and module.startswith(name + ".")):
                if best is None or len(name) > best[0]:
                    best = (len(name), i)
    return None if best is None else best[1]


def _unit_name(module: str) -> str:
    unit = unit_of(module)
    return "no unit" if unit is None else LAYERS[unit][0]


def unplaced(modules: Mapping[str, Path], root: str = ROOT, layers: Sequence = LAYERS) -> list[str]:
    """The modules that match no row of ``layers``, with their files."""
    return [
        f"{_shown(path)}: {name}"
        for name, path in sorted(modules.items())
        if unit_of(name, root, layers) is None
    ]


def upward_imports(edges: Sequence[Edge], root: str = ROOT, layers: Sequence = LAYERS) -> list[str]:
    """Every edge that imports a unit further down ``layers`` than the importer's own unit.

    Edges from or to an unplaced module are left out (``unplaced`` reports those modules)."""
    wrong = []
    for e in edges:
        a, b = unit_of(e.importer, root, layers), unit_of(e.imported, root, layers)
        if a is not None and b is not None and b > a:
            wrong.append(
                f"{e.at()}: {e.importer} [{layers[a][0]}] imports {e.imported} "
                f"[{layers[b][0]}] ({e.where})"
            )
    return wrong


# --- the real package -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = discover_modules(REPO)
    assert ROOT in found and len(found) > 20, f"package modules not found: {sorted(found)}"
    return found


@pytest.fixture(scope="module")
def edges(modules: dict[str, Path]) -> list[Edge]:
    return build_graph(modules)


def test_summary(modules: dict[str, Path], edges: list[Edge]) -> None:
    inside = sum(e.where == "function" for e in edges)
    typing_only = sum(e.where == "type-checking" for e in edges)
    dynamic = sum(e.dynamic for e in edges)
    pairs = len({(e.importer, e.imported) for e in edges})
    print(
        f"\nimport graph: {len(modules)} modules, {len(edges)} edges "
        f"({len(edges) - inside - typing_only} at module level, {inside} inside functions, "
        f"{typing_only} under TYPE_CHECKING; {dynamic} by importlib.import_module), "
        f"{pairs} distinct module pairs"
    )
    assert edges


def test_no_import_cycle(edges: list[Edge]) -> None:
    blocks = cycle_report(edges)
    if blocks:
        pytest.fail(f"{len(blocks)} import cycle(s):\n" + "\n".join(blocks), pytrace=False)


def test_every_module_has_a_unit(modules: dict[str, Path]) -> None:
    missing = unplaced(modules)
    if missing:
        pytest.fail(
            (
                f"{len(missing)} module(s) in no unit of LAYERS (move them into the target layout, "
                "or place a new module in the table):\n" + "\n".join(missing)
            ),
            pytrace=False,
        )


def test_no_import_against_the_layer_order(edges: list[Edge]) -> None:
    wrong = upward_imports(edges)
    unchecked = sum(unit_of(e.importer) is None or unit_of(e.imported) is None for e in edges)
    note = f" ({unchecked} edges from or to unplaced modules not checked)" if unchecked else ""
    if wrong:
        pytest.fail(
            f"{len(wrong)} import(s) against the layer order{note}:\n" + "\n".join(wrong),
            pytrace=False,
        )


def test_base_layer_imports_nothing_above_it(modules: dict[str, Path], edges: list[Edge]) -> None:
    base = next(i for i, (unit, _) in enumerate(LAYERS) if unit == BASE_UNIT)
    members = [m for m in modules if unit_of(m) == base]
    assert members, "the base layer has no module"
    wrong = [
        f"{e.at()}: {e.importer} imports {e.imported} [{_unit_name(e.imported)}] ({e.where})"
        for e in edges
        if unit_of(e.importer) == base and unit_of(e.imported) != base
    ]
    if wrong:
        pytest.fail("the base layer imports modules above it:\n" + "\n".join(wrong), pytrace=False)


@pytest.mark.parametrize("package", EMPTY_INITS)
def test_package_init_imports_nothing(package: str, edges: list[Edge]) -> None:
    name = f"{ROOT}.{package}"
    wrong = [f"{e.at()}: {e.importer} imports {e.imported}" for e in edges if e.importer == name]
    if wrong:
        pytest.fail(f"{name} (its __init__) imports:\n" + "\n".join(wrong), pytrace=False)


# --- the checker on a planted tree ----------------------------------------------------------

TOY_LAYERS = [("low", ("low",)), ("high", ("high",)), ("top", ("$",))]


def _toy(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    """Write ``files`` ({relative path: source}) under tmp_path/toy, with a pyproject."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "toy" = "toy" }\n', encoding="utf-8"
    )
    for rel, source in files.items():
        path = tmp_path / "toy" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return discover_modules(tmp_path)


CLEAN = {
    "__init__.py": "from toy.high import run\n",
    "low/__init__.py": "",
    "low/base.py": "import os\n",
    "low/more.py": "from . import base\nfrom .base import os\n",
    "high.py": (
        "from typing import TYPE_CHECKING\n"
        "from toy.low import base\n"
        "if TYPE_CHECKING:\n"
        "    import toy.low.more\n"
        "def run():\n"
        "    import importlib\n"
        "    return importlib.import_module('toy.low.more')\n"
    ),
}


def test_the_graph_of_a_clean_tree(tmp_path: Path) -> None:
    modules = _toy(tmp_path, {**CLEAN, "data/notes.py": "import toy\n"})
    assert set(modules) == {"toy", "toy.low", "toy.low.base", "toy.low.more", "toy.high"}
    got = {(e.importer, e.imported, e.line, e.where) for e in build_graph(modules)}
    assert got == {
        ("toy", "toy.high", 1, "module"),
        ("toy.low.more", "toy.low.base", 1, "module"),  # from . import base: the submodule
        ("toy.low.more", "toy.low.base", 2, "module"),
        ("toy.high", "toy.low.base", 2, "module"),
        ("toy.high", "toy.low.more", 4, "type-checking"),
        ("toy.high", "toy.low.more", 7, "function"),
    }
    edges = build_graph(modules)
    assert cycle_report(edges) == []
    assert unplaced(modules, "toy", TOY_LAYERS) == []
    assert upward_imports(edges, "toy", TOY_LAYERS) == []


def test_the_checker_fails_on_a_planted_cycle(tmp_path: Path) -> None:
    # low.base imports low.more inside a function; low.more imports low.base at module level
    planted = {**CLEAN, "low/base.py": "def f():\n    from toy.low import more\n"}
    edges = build_graph(_toy(tmp_path, planted))
    [block] = cycle_report(edges)
    assert block.startswith("cycle of 2 modules: toy.low.base, toy.low.more")
    assert "toy/low/base.py:2: toy.low.base -> toy.low.more (function)" in block
    assert "toy/low/more.py:1: toy.low.more -> toy.low.base (module)" in block
    assert upward_imports(edges, "toy", TOY_LAYERS) == []  # same unit: only the cycle is wrong


def test_the_checker_fails_on_a_planted_upward_import(tmp_path: Path) -> None:
    planted = {**CLEAN, "low/more.py": "from .base import os\nimport toy.high as h\n"}
    modules = _toy(tmp_path, planted)
    edges = build_graph(modules)
    wrong = upward_imports(edges, "toy", TOY_LAYERS)
    assert len(wrong) == 1
    assert wrong[0].endswith(
        "toy/low/more.py:2: toy.low.more [low] imports toy.high [high] (module)"
    )
    # toy.high imports toy.low.more back under TYPE_CHECKING and in run(): a cycle as well
    [block] = cycle_report(edges)
    assert block.startswith("cycle of 2 modules: toy.high, toy.low.more")


def test_the_checker_fails_on_an_unplaced_module(tmp_path: Path) -> None:
    modules = _toy(tmp_path, {**CLEAN, "stray.py": "import toy.low.base\n"})
    assert [m.rpartition(": ")[2] for m in unplaced(modules, "toy", TOY_LAYERS)] == ["toy.stray"]
    assert unit_of("toy", "toy", TOY_LAYERS) == 2  # "$" alone: the root __init__ only
    assert unit_of("toy.low.base", "toy", TOY_LAYERS) == 0


# --- the size guard -------------------------------------------------------------------------

MAX_MODULE_LINES = 600
MAX_MODULES_PER_FOLDER = 12
# Folders under the package-dir folders that hold no package modules to size (relative to the
# repository root): the test suite and the shipped result files.
SIZE_EXEMPT = ("tests", "experiments/results")


def sized_files(repo: Path) -> list[Path]:
    """Every ``.py`` file under pyproject's package-dir folders, except ``SIZE_EXEMPT``.

    Unlike :func:`discover_modules` this walks folders without ``__init__.py`` too: a script
    folder inside a package still counts."""
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    exempt = {(repo / rel).resolve() for rel in SIZE_EXEMPT}
    found: set[Path] = set()
    for folder in package_dir.values():
        for dirpath, dirnames, filenames in os.walk(repo / folder):
            here = Path(dirpath).resolve()
            if here in exempt:
                dirnames.clear()
                continue
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            found.update(here / name for name in filenames if name.endswith(".py"))
    return sorted(found)


def oversized(
    files: Sequence[Path],
    max_lines: int = MAX_MODULE_LINES,
    max_modules: int = MAX_MODULES_PER_FOLDER,
) -> list[str]:
    """The files longer than ``max_lines`` lines (pytest test modules, ``test_*.py``, excepted)
    and the folders holding more than ``max_modules`` ``.py`` modules, one line each."""
    wrong = []
    for path in files:
        if path.name.startswith("test_"):
            continue
        with path.open(encoding="utf-8") as handle:
            lines = sum(1 for _ in handle)
        if lines > max_lines:
            wrong.append(f"{_shown(path)}: {lines} lines (at most {max_lines})")
    per_folder: dict[Path, int] = {}
    for path in files:
        per_folder[path.parent] = per_folder.get(path.parent, 0) + 1
    for folder, count in sorted(per_folder.items()):
        if count > max_modules:
            wrong.append(f"{_shown(folder)}/: {count} modules (at most {max_modules})")
    return wrong


def test_no_module_or_folder_is_too_big() -> None:
    """No package module has more than MAX_MODULE_LINES lines and no package folder holds more
    than MAX_MODULES_PER_FOLDER ``.py`` modules (``__init__.py`` counted).

    The files are those of pyproject's package-dir folders, without ``tests/`` and
    ``experiments/results/``. Files named ``test_*.py`` (the audit's pytest test modules in
    ``paper_checks/``) are test code and exempt from the line limit, not from the folder count.
    A module past the limit is split by idea, a crowded folder becomes subpackages."""
    files = sized_files(REPO)
    assert len(files) > 20, f"package files not found: {files}"
    wrong = oversized(files)
    if wrong:
        pytest.fail(
            f"{len(wrong)} module(s) or folder(s) over the size limits:\n" + "\n".join(wrong),
            pytrace=False,
        )


def test_the_size_guard_on_a_planted_tree(tmp_path: Path) -> None:
    files = []
    for i in range(4):
        path = tmp_path / "pkg" / f"m{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x = 1\n" * (3 if i else 6), encoding="utf-8")
        files.append(path)
    long_test = tmp_path / "pkg" / "test_long.py"
    long_test.write_text("x = 1\n" * 9, encoding="utf-8")
    files.append(long_test)
    wrong = oversized(files, max_lines=5, max_modules=4)
    assert len(wrong) == 2
    assert wrong[0].endswith("pkg/m0.py: 6 lines (at most 5)")
    assert wrong[1].endswith("pkg/: 5 modules (at most 4)")
    assert oversized(files, max_lines=6, max_modules=5) == []
