"""``mamlconv thresholds`` and ``mamlconv derive``: output, JSON, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mamlconv.cli import main
from mamlconv.theory import latex
from mamlconv.theory.thresholds import alpha_c, beta_c, binding_eigenvalue


@pytest.mark.parametrize(
    ("model", "steps", "alpha"),
    [("surrogate", 1, 0.2), ("first_order", 3, 0.1), ("exact", 1, 0.2), ("exact", 2, 0.3)],
    ids=["surrogate", "fo-k3", "exact", "exact-k2"],
)
def test_thresholds_json_agrees_with_library(capsys, model: str, steps: int, alpha: float) -> None:
    eigs = [0.5, 1.0, 2.0, 4.0]
    argv = ["thresholds", "--eigs", "0.5,1,2,4", "--alpha", str(alpha), "--model", model]
    assert main([*argv, "--steps", str(steps), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"alpha_c", "beta_c", "binding_eigenvalue", "model", "steps", "alpha"} <= set(record)
    assert record["model"] == model and record["steps"] == steps and record["alpha"] == alpha

    def value(key):  # the package's JSON rule: inf is null with "<key>_status": "inf"
        return math.inf if record.get(f"{key}_status") == "inf" else record[key]

    assert value("alpha_c") == alpha_c(eigs, model=model, steps=steps)
    assert value("beta_c") == float(beta_c(eigs, alpha, model=model, steps=steps))
    assert record["binding_eigenvalue"] == float(
        binding_eigenvalue(eigs, alpha, model=model, steps=steps)
    )


def test_thresholds_json_inf_and_null(capsys) -> None:
    assert (
        main(["thresholds", "--eigs", "0,0", "--alpha", "0.1", "--model", "exact", "--json"]) == 0
    )
    record = json.loads(capsys.readouterr().out)
    assert record["alpha_c"] is None and record["alpha_c_status"] == "inf"
    assert record["beta_c"] is None and record["beta_c_status"] == "inf"
    assert record["binding_eigenvalue"] is None and "binding_eigenvalue_status" not in record


def test_thresholds_text_output(capsys) -> None:
    assert main(["thresholds", "--eigs", "0.5,1,2,4", "--alpha", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "alpha_c             0.25" in out
    assert f"beta_c(alpha)       {2 / (2 - 0.2 * 4):.10g}" in out
    assert "binding eigenvalue  2" in out


BAD = [
    (["--eigs", "a,1", "--alpha", "0.1"], "'a'"),
    (["--eigs", "", "--alpha", "0.1"], "''"),
    (["--eigs", "1,,2", "--alpha", "0.1"], "'1,,2'"),
    (["--eigs", "nan", "--alpha", "0.1"], "'nan'"),
    (["--eigs", "1,inf", "--alpha", "0.1"], "'inf'"),
    (["--eigs", "1", "--alpha", "-0.5"], "'-0.5'"),
    (["--eigs", "1", "--alpha", "nan"], "'nan'"),
    (["--eigs", "1", "--alpha", "0.1", "--steps", "0"], "'0'"),
    (["--eigs", "1", "--alpha", "0.1", "--steps", "x"], "'x'"),
    (["--eigs", "1", "--alpha", "0.1", "--steps", "2"], "--steps 2 with --model surrogate"),
    (["--eigs", "1", "--alpha", "0.1", "--model", "second"], "'second'"),
    (["--alpha", "0.1"], "--eigs"),
]


@pytest.mark.parametrize(("argv", "fragment"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_thresholds_bad_input_exits_2_with_one_line(capsys, argv, fragment: str) -> None:
    with pytest.raises(SystemExit) as info:
        code = main(["thresholds", *argv])
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert fragment in err


@pytest.mark.parametrize(
    "argv",
    [
        ["thresholds", "--eigs", "1,2", "--alpha", "0.1", "--json"],
        ["thresholds", "--eigs", "1,nan", "--alpha", "0.1"],
        ["thresholds", "--eigs", "1", "--alpha", "0.1", "--model", "surrogate", "--steps", "3"],
    ],
    ids=["ok", "nan", "surrogate-k3"],
)
def test_real_entry_point(argv: list[str]) -> None:
    """The installed entry point, in a fresh process: no traceback, exit 0 or 2."""
    result = subprocess.run(
        [sys.executable, "-m", "mamlconv", *argv], capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stderr
    if "nan" in argv[2] or "3" in argv:
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    else:
        desired = float(beta_c([1.0, 2.0], 0.1, model="surrogate"))
        assert result.returncode == 0 and json.loads(result.stdout)["beta_c"] == desired


def test_help_reads_well(capsys) -> None:
    for sub in ("thresholds", "derive"):
        with pytest.raises(SystemExit) as info:
            main([sub, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert "usage: mamlconv " + sub in out and "example:" in out


def test_derive_prints_checks(capsys) -> None:
    assert main(["derive"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out
    assert "22/22 identities hold" in out


def test_derive_writes_latex(tmp_path: Path, capsys) -> None:
    target = tmp_path / "sub" / "out.tex"
    assert main(["derive", "--latex", str(target)]) == 0
    assert target.read_text().startswith("\\documentclass")
    assert f"wrote {target}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [(["--pdf"], "--pdf needs --latex"), (["--latex", "x.txt"], "'x.txt'")],
    ids=["pdf-alone", "suffix"],
)
def test_derive_bad_input(capsys, argv: list[str], fragment: str) -> None:
    assert main(["derive", *argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_derive_pdf_without_pdflatex_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(latex.shutil, "which", lambda name: None)
    assert main(["derive", "--latex", str(tmp_path / "o.tex"), "--pdf"]) == 1
    err = capsys.readouterr().err
    assert "no PDF" in err and "pdflatex not found" in err
    assert (tmp_path / "o.tex").exists()
