"""The distribution installs the layers under the mamlconv namespace only (issue 2).

Regular install: a wheel is built and installed into a fresh virtual environment (with the
current environment's site-packages visible for the dependencies), then imported from a
directory outside the repository. Editable install: the running environment's install is
checked the same way.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"theory", "numerics", "experiments", "paper_checks"}
GENERIC_NAMES = ("theory", "numerics", "experiments", "paper_checks")

IMPORT_CHECK = """
import importlib, importlib.util, sys
for layer in ("theory", "numerics", "experiments", "paper_checks", "cli"):
    importlib.import_module("mamlconv." + layer)
clashes = [n for n in {names!r} if importlib.util.find_spec(n) is not None]
assert not clashes, f"generic top-level names importable: {{clashes}}"
import mamlconv.theory
print(mamlconv.theory.__file__)
"""


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_folder_is_listed() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"mamlconv"}
    for init in REPO.glob("src/mamlconv/**/__init__.py"):
        rel = init.parent.relative_to(REPO / "src")
        found.add(".".join(rel.parts))
    for layer in LAYERS:
        for init in (REPO / layer).glob("**/__init__.py"):
            rel = init.parent.relative_to(REPO)
            found.add("mamlconv." + ".".join(rel.parts))
    assert found == listed, f"missing from pyproject: {found - listed}; stale: {listed - found}"


def _run_import_check(python: str, cwd: Path) -> str:
    code = IMPORT_CHECK.format(names=GENERIC_NAMES)
    done = subprocess.run(
        [python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_editable_install_imports_from_the_source_tree(tmp_path: Path) -> None:
    theory_file = _run_import_check(sys.executable, tmp_path)
    assert Path(theory_file).resolve().parent == (REPO / "theory").resolve()


def test_regular_install_from_a_wheel(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("mamlconv-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "mamlconv/py.typed" in names, "py.typed (PEP 561) missing from the wheel"
    assert not tops & set(GENERIC_NAMES), f"wheel claims generic names: {tops}"
    assert "mamlconv" in tops

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    # The editable install of the outer environment is visible through system site-packages;
    # the venv's own copy comes first on sys.path, which the printed path proves.
    theory_file = _run_import_check(python, tmp_path)
    assert str(env_dir) in theory_file, theory_file


def test_the_package_is_marked_typed() -> None:
    """PEP 561: ``py.typed`` beside the package's ``__init__`` and listed as package data."""
    assert (REPO / "src" / "mamlconv" / "py.typed").is_file()
    assert "py.typed" in _pyproject()["tool"]["setuptools"]["package-data"]["mamlconv"]
