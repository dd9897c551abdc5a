"""The LaTeX document of the derivations (theory/latex.py) and its compilation with pdflatex.

The compile tests are marked ``latex``. Without pdflatex they skip with a reason, unless
MAMLCONV_REQUIRE_LATEX=1 (as in CI), where a missing pdflatex is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import sympy as sp

from mamlconv.theory import conditions as cd
from mamlconv.theory import gradient_penalty as gp
from mamlconv.theory import latex
from mamlconv.theory.quadratic import mode_curvature


@pytest.fixture(scope="module")
def document() -> str:
    return latex.build_document()


def require_pdflatex() -> str:
    """pdflatex's path; skip without it, or FAIL when MAMLCONV_REQUIRE_LATEX=1 (CI)."""
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("MAMLCONV_REQUIRE_LATEX") == "1":
            pytest.fail("MAMLCONV_REQUIRE_LATEX=1 but pdflatex is not on PATH")
        pytest.skip(
            "pdflatex not on PATH (install texlive-latex-base; set MAMLCONV_REQUIRE_LATEX=1)"
        )
    return exe


def test_document_is_standalone_and_every_check_holds(document: str) -> None:
    assert document.startswith("\\documentclass")
    assert document.count("\\begin{document}") == 1 and document.rstrip().endswith(
        "\\end{document}"
    )
    assert "FAILS" not in document and "NONZERO" not in document
    assert document.count("(holds)") >= 2 * 6 + 2 * 4 + 2  # Sec. 2.2 and App. A for n = 2, 3; tasks


@pytest.mark.parametrize(
    "equation",
    [
        "Eq.~3",
        "Eq.~4",
        "Sec.~2.2",
        "Eq.~5",
        "Eq.~6--7",
        "Eq.~16--20",
        "Eq.~9",
        "Eq.~10--11",
        "Eq.~12--14",
        "Eq.~15",
        "Sec.~3.2",
        "extended version",
    ],
)
def test_every_paper_equation_has_a_numbered_step(document: str, equation: str) -> None:
    assert re.search(r"\\step\{" + re.escape(equation), document), equation


def test_steps_are_numbered_and_references_resolve(document: str) -> None:
    labels = set(re.findall(r"\\label\{(st:[a-z0-9]+)\}", document))
    refs = set(re.findall(r"\\ref\{(st:[a-z0-9]+)\}", document))
    assert refs <= labels, refs - labels
    assert document.count("\\step{") >= 20


@pytest.mark.parametrize(
    ("name", "derived"),
    [
        ("exact curvature", lambda: mode_curvature("exact")),
        ("surrogate beta bound", lambda: cd.beta_bound("surrogate")),
        ("bound at alpha_c", lambda: cd.bound_at_alpha_c("surrogate").beta_lower),
        ("exact counterpart", lambda: cd.bound_at_alpha_c("exact").beta_lower),
        ("open beta interval", lambda: cd.beta_stable_set()),
        ("factor two", lambda: gp.penalty_factor(2)),
    ],
)
def test_expressions_come_from_sympy_latex(document: str, name: str, derived) -> None:
    """The printed formulas are sympy.latex of the derived objects (not typed in)."""
    assert sp.latex(derived()) in document, name


@pytest.mark.parametrize(
    "words",
    [
        "factor",
        "up to scale",
        "Exact vs surrogate",
        "Strictness",
        "does not converge",
        "four times",
        "6.75",
        "sufficient",
        "no $\\alpha_c$",
    ],
)
def test_findings_are_stated_in_words(document: str, words: str) -> None:
    assert words in document


def test_latex_problems_parser() -> None:
    bad = "This is pdfTeX\n! Undefined control sequence.\nl.12 \\foo\n./x.tex:12: Undefined control"
    assert len(latex.latex_problems(bad)) == 2
    assert latex.latex_problems("This is pdfTeX\nOutput written on x.pdf (1 page).\n") == []
    assert latex.latex_problems("! LaTeX Error: File `booktabs.sty' not found.") != []


def test_missing_pdflatex_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    tex = tmp_path / "x.tex"
    tex.write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
    monkeypatch.setattr(latex.shutil, "which", lambda name: None)
    with pytest.raises(latex.PdflatexNotFoundError, match="texlive-latex-base"):
        latex.compile_pdf(tex)


@pytest.mark.latex
def test_document_compiles_without_errors(tmp_path: Path) -> None:
    require_pdflatex()
    tex = latex.write_document(tmp_path / "derivations.tex")
    pdf = latex.compile_pdf(tex, keep_log=True)
    assert pdf.read_bytes().startswith(b"%PDF")
    log = tex.with_suffix(".log").read_text(errors="replace")
    assert "Undefined control sequence" not in log
    assert "LaTeX Warning: Reference" not in log  # every \ref resolved after the rerun
    pages = int(re.search(r"Output written on .*\((\d+) pages?", log).group(1))
    assert pages >= 4


@pytest.mark.latex
def test_undefined_control_sequence_fails_the_compile(tmp_path: Path) -> None:
    require_pdflatex()
    tex = tmp_path / "bad.tex"
    tex.write_text("\\documentclass{article}\n\\begin{document}\n\\notamacro x\n\\end{document}\n")
    with pytest.raises(latex.LatexError, match="Undefined control sequence"):
        latex.compile_pdf(tex)


FAKE_PDFLATEX = """#!/bin/sh
# A stand-in for pdflatex: writes what pdflatex writes, where pdflatex would write it.
out=.
for arg in "$@"; do
  case "$arg" in
    -output-directory=*) out="${arg#-output-directory=}" ;;
    -*) ;;
    *) name="${arg%.tex}" ;;
  esac
done
printf 'aux' > "$out/$name.aux"
printf 'This is pdfTeX\\nOutput written on %s.pdf (1 page).\\n' "$name" > "$out/$name.log"
printf '%%PDF-1.5 fake' > "$out/$name.pdf"
"""


def test_compile_leaves_only_the_pdf_beside_the_tex(tmp_path: Path, monkeypatch) -> None:
    """No .aux/.log litter in the user's folder (pdflatex's auxiliaries go to a temporary
    folder); run with a stand-in pdflatex so that this runs where TeX is not installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pdflatex"
    fake.write_text(FAKE_PDFLATEX)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out = tmp_path / "out"
    out.mkdir()
    tex = out / "doc.tex"
    tex.write_text("\\documentclass{article}\\begin{document}x\\end{document}\n")
    pdf = latex.compile_pdf(tex)
    assert pdf == tex.with_suffix(".pdf") and pdf.read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in out.iterdir()) == ["doc.pdf", "doc.tex"]
    latex.compile_pdf(tex, keep_log=True)
    assert sorted(p.name for p in out.iterdir()) == ["doc.log", "doc.pdf", "doc.tex"]


def _fake_pdflatex(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pdflatex"
    fake.write_text(FAKE_PDFLATEX)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_derive_out_writes_the_tex_and_the_pdf_there(tmp_path: Path, monkeypatch, capsys) -> None:
    """`mamlconv derive --out d` writes d/derivation.tex and d/derivation.pdf (a stand-in
    pdflatex, so that this runs where TeX is not installed; the real compile is tested above)."""
    from mamlconv.cli import main

    _fake_pdflatex(tmp_path, monkeypatch)
    out = tmp_path / "d"
    assert main(["derive", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["derivation.pdf", "derivation.tex"]
    assert (out / "derivation.tex").read_text() == latex.build_document()
    printed = capsys.readouterr().out
    assert f"wrote {out / 'derivation.tex'}" in printed and "derivation.pdf" in printed


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--out", "{tmp}/f", "--latex", "{tmp}/x.tex"],
            "give --out DIR or --latex FILE, not both",
        ),
        (["--out", "{tmp}/f"], "exists and is not a folder"),
    ],
)
def test_derive_out_bad_input_is_one_line(tmp_path: Path, capsys, argv, needle) -> None:
    from mamlconv.cli import main

    (tmp_path / "f").write_text("a file")
    assert main(["derive", *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err
