"""The repository stands on its own (issue 12): every document that its text names is in it.

Shipped text is every Python file, every Markdown file and the help text of every command.
Two checks run over it:

- a reference to a file (``docs/MATH.md``, ``experiments/results/FEWSHOT.md``,
  ``numerics/maml.py``, a Markdown link) must name a file of the repository, relative to the
  repository root or, in Markdown, to the referring file;
- nothing may point outside the repository: no relative path that climbs out of it (``../``
  past the repository root) and no absolute path into a home or workspace folder. This holds for
  the tests and benchmarks too: they find the data through ``MAMLCONV_DATA`` alone.

And the claim list has one source: ``docs/CLAIMS.md``, which the audit's installed table
(:data:`mamlconv.paper_checks.claims.CLAIMS`) must equal.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mamlconv.paper_checks.claims import CLAIMS

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("src", "theory", "numerics", "experiments", "paper_checks", "tests", "benchmarks")
SKIP_PARTS = {".venv", ".git", "build", "dist", ".hypothesis", "__pycache__"}

# What counts as a reference to a file of the repository: a path that starts with one of its
# folders (docs/MATH.md, numerics/maml.py, experiments/results/FEWSHOT.md), or a document named
# in capitals or as notes (MATH.md, CLAIMS.md, sinusoid_NOTES.md), which must then be found
# from the repository root or, in Markdown, beside the referring file. Output names such as
# audit-report.md are not references. No glob or placeholder characters.
TOP = r"(?:docs|src|theory|numerics|experiments|paper_checks|tests|benchmarks)"
FILE_REF = re.compile(
    rf"(?<![\w/.<*-])({TOP}/(?:[\w.-]+/)*[\w.-]+\.(?:md|py)|[A-Z][A-Z_-]*\.md|\w+_NOTES\.md)"
    r"(?![\w/])"
)
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
PARENT_PATH = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-]+)")
"""A relative path that starts by climbing (``../x``): it must stay inside the repository."""
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|home|root|Users|mnt)/\w")
"""An absolute path into a home or workspace folder of some machine."""


def _points_outside(line: str, referrer: Path | None) -> bool:
    """True when ``line`` names a path outside the repository (from the file ``referrer``, or
    from the repository root for help texts)."""
    if MACHINE_PATH.search(line):
        return True
    base = (referrer.parent if referrer is not None else REPO).resolve()
    return any(
        not (base / m).resolve().is_relative_to(REPO.resolve()) for m in PARENT_PATH.findall(line)
    )


def shipped_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "pyproject.toml"]
    files += sorted((REPO / "docs").glob("*.md"))
    files += sorted((REPO / "experiments" / "results").glob("*.md"))
    for folder in CODE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            if not SKIP_PARTS & set(path.relative_to(REPO).parts):
                files.append(path)
    return files


def help_texts() -> dict[str, str]:
    """``mamlconv --help`` and every subcommand's help, as a user sees them."""
    from mamlconv.cli import build_parser

    parser = build_parser()
    texts = {"mamlconv --help": parser.format_help()}
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, subparser in sub.choices.items():
        texts[f"mamlconv {name} --help"] = subparser.format_help()
    return texts


def _resolves(ref: str, referrer: Path | None) -> bool:
    ref = ref.split("#", 1)[0]
    if not ref or "://" in ref or ref.startswith("mailto:"):
        return True
    candidates = [REPO / ref]
    if referrer is not None:
        candidates.append(referrer.parent / ref)
    return any(c.exists() for c in candidates)


def _references(text: str, is_markdown: bool) -> set[str]:
    if not is_markdown:
        return set(FILE_REF.findall(text))
    # In Markdown a link's text is a label (often the file's bare name); its target is the path.
    labels_dropped = re.sub(r"\[[^\]]*\](\([^)]*\))", r"\1", text)
    return set(FILE_REF.findall(labels_dropped)) | set(MD_LINK.findall(text))


def test_shipped_text_is_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in shipped_files()}
    assert {"README.md", "docs/MATH.md", "docs/CLAIMS.md", "theory/latex.py"} <= names
    assert "mamlconv figure --help" in help_texts()


def test_every_named_file_exists() -> None:
    missing = []
    for path in shipped_files():
        if path == Path(__file__).resolve():
            continue  # its own examples
        text = path.read_text()
        for ref in sorted(_references(text, path.suffix == ".md")):
            if not _resolves(ref, path):
                missing.append(f"{path.relative_to(REPO)}: {ref}")
    for where, text in help_texts().items():
        for ref in sorted(_references(text, False)):
            if not _resolves(ref, None):
                missing.append(f"{where}: {ref}")
    assert not missing, "references to files that are not in the repository:\n" + "\n".join(missing)


def test_nothing_points_outside_the_repository() -> None:
    found = []
    for path in shipped_files():
        rel = path.relative_to(REPO).as_posix()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if _points_outside(line, path):
                found.append(f"{rel}:{n}: {line.strip()}")
    for where, text in help_texts().items():
        found += [
            f"{where}: {line.strip()}" for line in text.splitlines() if _points_outside(line, None)
        ]
    assert not found, "text pointing outside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("line", "outside"),
    [
        ("data in " + "../" * 2 + "data beside the checkout", True),  # past the root
        ("see ../README.md", False),  # from tests/: the repository's README
        ("cached under /" + "home/alice/.cache", True),  # (built: this file names none)
        ("written to ~/.cache/mamlconv", False),
        ("a ratio 3/4 of the runs", False),
    ],
)
def test_the_outside_check_catches(line: str, outside: bool) -> None:
    assert _points_outside(line, REPO / "tests" / "test_x.py") is outside


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("see MATH.md section 4", "MATH.md"),
        ("(CLAIMS.md X-3)", "CLAIMS.md"),
        ("tests/test_audit_claims.py checks", "tests/test_audit_claims.py"),
        ("[notes](results/NOTES.md)", "results/NOTES.md"),
    ],
)
def test_the_reference_check_catches(text: str, bad: str) -> None:
    refs = _references(text, True)
    assert bad in refs and not _resolves(bad, REPO / "README.md")


def test_the_reference_check_accepts() -> None:
    text = (
        "docs/MATH.md, `numerics/maml.py`, [claims](docs/CLAIMS.md#the-list), a.b.c, x.mdx, "
        "writes DIR/audit-report.md and small_compare.md"
    )
    refs = _references(text, True)
    assert refs == {"docs/MATH.md", "numerics/maml.py", "docs/CLAIMS.md"}
    assert all(_resolves(r, REPO / "README.md") for r in refs)


# ----------------------------------------------------------------- one claim list


def claims_md_rows() -> list[tuple[str, str, str, str]]:
    """(ID, where, claim, how) of every row of the table in docs/CLAIMS.md."""
    rows = []
    for line in (REPO / "docs" / "CLAIMS.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"(S\d|X)-\d+", cells[0]):
            rows.append((cells[0], cells[1], cells[2], cells[3]))
    return rows


def test_installed_claims_equal_docs_claims_md() -> None:
    """The audit's table and docs/CLAIMS.md agree row for row, in order, in all four columns."""
    doc = claims_md_rows()
    installed = [(c.id, c.where, c.statement, c.how) for c in CLAIMS]
    assert [r[0] for r in doc] == [r[0] for r in installed], "claim IDs or their order differ"
    for d, i in zip(doc, installed, strict=True):
        for column, a, b in zip(("where", "claim", "how"), d[1:], i[1:], strict=True):
            assert a == b, f"{d[0]} {column}:\n  docs/CLAIMS.md: {a}\n  claims.py:      {b}"


def test_committed_results_name_no_machine_path() -> None:
    """Result records travel with the repository: a path they record is relative to it, never
    the absolute path of the machine that made them (``MACHINE_PATH``, or this checkout's root)."""
    import numpy as np

    results = REPO / "experiments" / "results"
    found = []
    for path in sorted(results.rglob("*")):
        if path.suffix in (".json", ".md"):
            texts = [path.read_text()]
        elif path.suffix == ".npz":
            with np.load(path) as z:
                texts = [str(z[k]) for k in z.files if k.endswith("json")]
        else:
            continue
        for text in texts:
            if MACHINE_PATH.search(text) or str(REPO) in text:
                found.append(str(path.relative_to(REPO)))
    assert not found, "machine paths in committed results:\n" + "\n".join(found)
