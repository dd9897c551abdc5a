"""``mamlconv manifest``: the parser's kinds are the library's, and bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mamlconv.cli import main
from mamlconv.cli import manifest as manifest_cli
from mamlconv.paper_checks import manifest

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"


def test_parser_kinds_are_the_library_kinds():
    assert manifest_cli.KINDS == manifest.KINDS


def _exit(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--results", "/nonexistent/results", "check"], "no results folder /nonexistent/results"),
        (["add", "fig1.json", "--claims", "S9-9"], "S9-9"),
        (["add", "fig1.json", "--kind", "nonsense"], "invalid choice: 'nonsense'"),
        (["exclude", "notes.md"], "--why"),
        (["frob"], "invalid choice: 'frob'"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    if argv[0] != "--results":
        argv = ["--results", str(results), *argv]
    assert _exit(["manifest", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (results / manifest.MANIFEST_NAME).exists()


def test_add_then_remove(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "fig1.json").write_bytes((RESULTS / "fig1.json").read_bytes())
    assert main(["manifest", "--results", str(results), "add", "fig1.json"]) == 0
    assert "fig1.json" in manifest.load_manifest(results).files
    assert main(["manifest", "--results", str(results), "remove", "fig1.json"]) == 0
    assert "removed 1 file(s)" in capsys.readouterr().out
    assert manifest.load_manifest(results).files == {}


def test_no_action_prints_help_and_exits_2(capsys):
    assert main(["manifest"]) == 2
    assert "ACTION" in capsys.readouterr().out
