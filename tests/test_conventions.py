"""The package's conventions (issue 12): negative numbers in list arguments, one device rule for
every command, one JSON rule for non-finite numbers, logging and warnings instead of writes to
stderr in library code."""

from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mamlconv.cli import build_parser, main
from mamlconv.cli._args import Parser, UsageError, float_list
from mamlconv.experiments.engine.state import resolve_device
from mamlconv.util.files import dumps, jsonable, read_json, restore_nonfinite

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- negative numbers


@pytest.mark.parametrize(
    ("argv", "desired"),
    [
        (["--eigs", "-1,0.5"], [-1.0, 0.5]),
        (["--eigs=-1,0.5"], [-1.0, 0.5]),
        (["--eigs", "-1e-3"], [-1e-3]),
        (["--eigs", "-.5,2"], [-0.5, 2.0]),
        (["--eigs", "1,-2"], [1.0, -2.0]),
    ],
)
def test_negative_numbers_parse_as_values(argv, desired):
    parser = Parser(prog="t")
    parser.add_argument("--eigs", type=float_list)
    parser.add_argument("-q", action="store_true")
    assert parser.parse_args(argv).eigs == desired


def test_thresholds_takes_a_negative_eigenvalue_without_equals(capsys):
    assert main(["thresholds", "--eigs", "-1,0.5,2", "--alpha", "0.1", "--json"]) == 0
    spaced = json.loads(capsys.readouterr().out)
    assert main(["thresholds", "--eigs=-1,0.5,2", "--alpha", "0.1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == spaced


def test_an_unknown_option_is_still_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["thresholds", "--eigs", "1", "--alpha", "0.1", "-x"])
    assert exc.value.code == 2 and "-x" in capsys.readouterr().err


# ------------------------------------------------------------------------ devices


DEVICE_COMMANDS = {
    "sweep": ["sweep", "sinusoid", "--out", "r.npz"],
    "compare": ["compare", "r.npz", "--out", "o"],
    "advise": ["advise", "sinusoid"],
    "figure": ["figure", "fig1"],
}


@pytest.mark.parametrize("command", list(DEVICE_COMMANDS))
@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_every_command_accepts_the_same_devices(command, device):
    args = build_parser().parse_args([*DEVICE_COMMANDS[command], "--device", device])
    assert args.device == device


@pytest.mark.parametrize("command", ["compare", "advise", "figure"])
def test_the_default_device_is_auto(command):
    assert build_parser().parse_args(DEVICE_COMMANDS[command]).device == "auto"


@pytest.mark.parametrize("command", list(DEVICE_COMMANDS))
def test_a_bad_device_is_one_line(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*DEVICE_COMMANDS[command], "--device", "gpu"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "'gpu'" in err


def test_resolve_device():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(UsageError, match=f"cuda:{count}"):
        resolve_device(f"cuda:{count}")  # one past the last device (or no CUDA at all)


# --------------------------------------------------------------------- JSON rule


def test_jsonable_writes_null_and_a_status_for_infinity():
    value = {
        "a": np.float64("inf"),
        "b": np.arange(3),
        "c": [float("nan"), 1.5, float("-inf")],
        "d": -math.inf,
        "e": float("nan"),
        "f": 2.5,
    }
    got = jsonable(value)
    assert got == {
        "a": None,
        "a_status": "inf",
        "b": [0, 1, 2],
        "c": [None, 1.5, None],
        "d": None,
        "d_status": "-inf",
        "e": None,
        "f": 2.5,
    }
    json.dumps(got, allow_nan=False)
    back = restore_nonfinite(got)
    assert back["a"] == math.inf and back["d"] == -math.inf and "a_status" not in back
    assert back["e"] is None and back["f"] == 2.5


def test_numbers_stay_numbers_in_every_field(tmp_path):
    """A field holds a number or null, never a string standing for a number."""
    rec = {"beta_c": [1.0, math.inf], "rows": [{"beta_c": 0.5}, {"beta_c": math.inf}]}
    path = tmp_path / "x.json"
    path.write_text(dumps(rec))
    raw = json.loads(path.read_text())
    assert all(isinstance(r["beta_c"], float | type(None)) for r in raw["rows"])
    assert read_json(path)["rows"][1]["beta_c"] == math.inf


def test_read_json_reads_files_from_before_the_rule(tmp_path):
    path = tmp_path / "old.json"
    path.write_text('{"beta_hi": Infinity, "x": NaN}')
    got = read_json(path)
    assert got["beta_hi"] == math.inf and math.isnan(got["x"])


def _strings_for_numbers(value, where="$"):
    if isinstance(value, dict):
        for k, v in value.items():
            if k.endswith("_status"):
                continue
            yield from _strings_for_numbers(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings_for_numbers(v, f"{where}[{i}]")
    elif isinstance(value, str) and value.lower() in ("inf", "-inf", "nan", "infinity"):
        yield where


def test_committed_json_follows_the_rule():
    """Every JSON file under experiments/results is strict JSON, with no number spelled as a
    string."""
    bad = {}
    for path in sorted((REPO / "experiments" / "results").glob("*.json")):
        text = path.read_text()
        try:
            obj = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as exc:
            bad[path.name] = f"not strict JSON: {exc}"
            continue
        found = list(_strings_for_numbers(obj))
        if found:
            bad[path.name] = found[:3]
    assert not bad, bad


# --------------------------------------------------------- logging, not stderr writes


LIBRARY = ("theory", "numerics", "experiments", "paper_checks", "src/mamlconv")


def test_library_code_reports_through_logging_or_warnings():
    """No module outside the CLI writes to stderr itself; messages go through ``logging`` (one
    logger per module) or ``warnings``. Exempt: progress bars, which own their line."""
    offenders = []
    for root in LIBRARY:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("src/mamlconv/cli/"):
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"sys\.stderr\.write|print\(.*file=sys\.stderr", line):
                    if "progress bar" not in line:
                        offenders.append(f"{rel}:{n}")
    assert not offenders, offenders


def _has_main_guard(source: str) -> bool:
    """Whether a module has an ``if __name__ == "__main__":`` block at its top level."""
    for node in ast.parse(source).body:
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and isinstance(test, ast.Compare):
            names = [test.left, *test.comparators]
            if any(isinstance(x, ast.Name) and x.id == "__name__" for x in names) and any(
                isinstance(x, ast.Constant) and x.value == "__main__" for x in names
            ):
                return True
    return False


def test_main_guard_detection():
    assert _has_main_guard('import sys\nif __name__ == "__main__":\n    sys.exit(0)\n')
    assert _has_main_guard("if '__main__' == __name__:\n    pass\n")
    assert not _has_main_guard('def f():\n    return __name__ == "mamlconv"\n')


def test_entry_points_are_cli_subcommands_only():
    """A command line lives in src/mamlconv/cli/ (a ``mamlconv`` subcommand) or in
    benchmarks/; no library module runs as ``python -m`` (``mamlconv/__main__.py`` excepted)."""
    offenders = []
    for root in LIBRARY:
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel.startswith("src/mamlconv/cli/") or rel == "src/mamlconv/__main__.py":
                continue
            if _has_main_guard(path.read_text()):
                offenders.append(rel)
    assert not offenders, offenders


def test_library_logging_is_quiet_until_the_cli_shows_it(capsys):
    import logging

    from mamlconv.cli._args import cli_logging

    log = logging.getLogger("mamlconv.experiments.analysis.comparison")
    log.info("spectra at init")
    log.warning("a diagnostic")
    assert capsys.readouterr().err == ""  # NullHandler: a library call prints nothing
    with cli_logging("compare"):
        log.info("spectra at init")
    assert capsys.readouterr().err == "mamlconv compare: spectra at init\n"
    log.warning("after the command")
    assert capsys.readouterr().err == ""  # the command's handler is gone again
    main(["thresholds", "--eigs", "1", "--alpha", "0.1", "--json"])
    capsys.readouterr()
    log.warning("after main()")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "package",
    ["mamlconv.experiments.sweep", "mamlconv.experiments.analysis", "mamlconv.experiments.figures"],
)
def test_every_lazily_exported_name_imports(package: str) -> None:
    """A package's public names (its lazy map, util/lazy.py) each resolve to the object defined
    in the module the map names, and ``__all__`` is exactly that map."""
    import importlib

    pkg = importlib.import_module(package)
    assert sorted(pkg.__all__) == sorted(pkg._EXPORTS)
    for name, where in pkg._EXPORTS.items():
        module = importlib.import_module(where, package)
        assert getattr(pkg, name) is getattr(module, name), f"{package}.{name}"
