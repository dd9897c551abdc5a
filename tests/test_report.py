"""The audit report as a reader gets it (issue 12): a one-screen summary with every test's
verdict, formal and empirical claims apart; one section per claim with its evidence table and
figures, raw evidence folded away; a self-contained folder whose image links still resolve
after it is moved; nothing else in the folder, and no warnings in the output.

The Markdown is rendered to HTML with the ``markdown`` package, as a reader's viewer would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import markdown as markdown_lib
import pytest

from mamlconv.paper_checks.claims import CLAIMS, EMPIRICAL
from mamlconv.paper_checks.report import (
    build_report,
    markdown,
    validate,
    write_report,
)
from mamlconv.paper_checks.verdicts import Record

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
SUMMARY_MAX_LINES = 70
"""The Markdown before the first per-claim section (first screen plus the per-test table)."""
FIRST_SCREEN = 40
"""Lines a reader sees first: the sentences in words and one row per claim."""


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.anchors: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(a["src"] or "")
        if tag == "a" and a.get("href"):
            self.anchors.append(a["href"] or "")
        if a.get("id"):
            self.ids.add(a["id"] or "")


def rendered_links(md_path: Path) -> _Links:
    """The image sources, link targets and element ids of the report rendered to HTML."""
    html = markdown_lib.markdown(md_path.read_text(), extensions=["tables"])
    links = _Links()
    links.feed(html)
    return links


def assert_links_resolve(md_path: Path) -> int:
    """Every image and relative link of the rendered report resolves inside its folder;
    every in-page anchor exists. Returns the number of images."""
    links = rendered_links(md_path)
    folder = md_path.parent.resolve()
    for src in links.images + [h for h in links.anchors if not h.startswith("#")]:
        parsed = urlparse(src)
        assert not parsed.scheme and not parsed.netloc, src
        target = (folder / unquote(parsed.path)).resolve()
        assert target.is_file(), f"{src} does not resolve from {folder}"
        assert target.is_relative_to(folder), f"{src} points outside the report's folder"
    for href in links.anchors:
        if href.startswith("#"):
            assert href[1:] in links.ids, f"in-page link {href} has no target"
    return len(links.images)


def summary_lines(md: str) -> list[str]:
    """The Markdown before the first per-claim section."""
    lines = md.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith('<a id="claim-'))
    return lines[:first]


# --------------------------------------------------------------- a real audit, moved
@pytest.fixture(scope="module")
def audit_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`mamlconv audit --strict` on a copy of the committed results with a stray
    3-iteration fig1.json in a subfolder (whose curves would make S2-7 hold)."""
    root = tmp_path_factory.mktemp("report")
    results = root / "results"
    shutil.copytree(RESULTS, results)
    listed = json.loads((RESULTS / "MANIFEST.json").read_text())
    known = {e["path"] for e in listed["files"]} | {e["path"] for e in listed["not_audited"]}
    for path in sorted(results.rglob("*"), reverse=True):  # a working tree's unlisted files out
        rel = path.relative_to(results).as_posix()
        if path.is_file() and rel != "MANIFEST.json" and rel not in known:
            path.unlink()
    record = json.loads((RESULTS / "fig1.json").read_text())
    record.update(
        iters=3,
        grad_norm=[[1.0, 0.5, 0.5], [1.0, 9.0, 9.0]],  # MAML grows, joint shrinks: "HOLDS"
        grad_inner=[[1.0, 0.5, 0.5], [1.0, 9.0, 9.0]],
    )
    (results / "sub").mkdir()
    (results / "sub" / "fig1.json").write_text(json.dumps(record))
    out = root / "audit-out"
    env = {**os.environ, "MAMLCONV_RESULTS": str(results), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mamlconv",
            "audit",
            "--out",
            str(out),
            "--strict",
            "-k",
            "test_claim_S2_7_gradient_norm_grows or test_claim_S3_2_tg_negligible or "
            "test_claim_X_5_predictions_networks or test_claim_X_4 or test_claim_S3_5_beta_edge",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=root,
    )
    report = json.loads((out / "audit-report.json").read_text())
    return {"proc": proc, "out": out, "root": root, "report": report}


def test_stray_result_file_is_ignored_and_reported(audit_run: dict) -> None:
    """The stray fig1.json does not flip S2-7 (the last path found used to win)."""
    s27 = next(c for c in audit_run["report"]["claims"] if c["id"] == "S2-7")
    assert s27["verdict"] == "INCONCLUSIVE", s27["key_number"]  # as from the committed records
    assert not any("sub/fig1.json" in s["file"] for s in s27["sources"])
    ignored = {r["path"]: r["why"] for r in audit_run["report"]["results"]["ignored"]}
    assert ignored["sub/fig1.json"] == "not in MANIFEST.json"
    md = (audit_run["out"] / "audit-report.md").read_text()
    assert "`sub/fig1.json`" in "\n".join(summary_lines(md))  # said up front
    assert "sub/fig1.json" in audit_run["proc"].stdout  # and on the terminal


def test_strict_exits_1_when_a_claim_fails(audit_run: dict) -> None:
    proc = audit_run["proc"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "--strict: 1 claim(s) FAIL: S3-5" in proc.stderr, proc.stderr


def test_folder_holds_only_the_report(audit_run: dict) -> None:
    """No .hypothesis/, .benchmarks/ or other litter in the output folder or the caller's."""
    out = audit_run["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "audit-report.files",
        "audit-report.html",
        "audit-report.json",
        "audit-report.md",
    ]
    assert sorted(p.name for p in audit_run["root"].iterdir()) == ["audit-out", "results"]


def test_no_warnings_in_the_output(audit_run: dict) -> None:
    out = audit_run["proc"].stdout + audit_run["proc"].stderr
    assert "warnings summary" not in out and "Warning:" not in out, out[-3000:]


def test_report_validates_with_relative_figure_paths(audit_run: dict) -> None:
    report = audit_run["report"]
    validate(report)
    figures = [f["path"] for c in report["claims"] for f in c["figures"]]
    assert any(p.startswith("audit-report.files/") for p in figures), figures
    assert all(not Path(p).is_absolute() and ".." not in Path(p).parts for p in figures)


def test_image_links_resolve_also_after_moving_the_folder(audit_run: dict, tmp_path: Path) -> None:
    report = audit_run["out"] / "audit-report.md"
    n = assert_links_resolve(report)
    # fig5.png (S3-2), two comparison plots: copied in
    assert n >= 3, n
    moved = tmp_path / "elsewhere" / "moved-audit"
    shutil.copytree(audit_run["out"], moved)
    shutil.rmtree(audit_run["out"])  # the original is gone: nothing may point back at it
    try:
        assert assert_links_resolve(moved / "audit-report.md") == n
    finally:
        shutil.copytree(moved, audit_run["out"])


def inline_images(html_path: Path) -> list[bytes]:
    """The images of an HTML page, each decoded from its data: URI (a non-inline image fails)."""
    import base64

    links = _Links()
    links.feed(html_path.read_text())
    images = []
    for src in links.images:
        head, _, data = src.partition(",")
        assert head.startswith("data:image/") and head.endswith(";base64"), src[:80]
        images.append(base64.b64decode(data, validate=True))
    return images


def test_html_report_holds_every_figure_inline_and_survives_a_move(
    audit_run: dict, tmp_path: Path
) -> None:
    out = audit_run["out"]
    n_md = len(rendered_links(out / "audit-report.md").images)
    lone = tmp_path / "alone" / "report.html"  # the page alone, nothing beside it
    lone.parent.mkdir()
    shutil.copy(out / "audit-report.html", lone)
    images = inline_images(lone)
    assert len(images) == n_md >= 3
    assert all(img.startswith(b"\x89PNG") for img in images)
    text = lone.read_text()
    assert "figure missing" not in text and "Right:" in text
    first = text.split("<table>", 2)[1]  # the first screen's table: one row per claim
    assert first.count("<tr><td>") == len(audit_run["report"]["claims"])
    for c in audit_run["report"]["claims"]:
        assert f'<a href="#claim-{c["id"].lower()}">{c["id"]}</a>' in first
    links = _Links()
    links.feed(text)
    for href in links.anchors:
        if href.startswith("#"):
            assert href[1:] in links.ids, f"in-page link {href} has no target"


def test_summary_fits_a_screen(audit_run: dict) -> None:
    md = (audit_run["out"] / "audit-report.md").read_text()
    head = summary_lines(md)
    assert len(head) <= SUMMARY_MAX_LINES, "\n".join(head)
    text = "\n".join(head)
    assert "pytest counts tests, not claims" in text
    for claim in CLAIMS:
        assert f"[{claim.id}](#claim-{claim.id.lower()})" in text
    assert_first_screen_explains(md, audit_run["report"])


def first_screen_rows(md: str) -> dict[str, list[str]]:
    """The cells of the first table's rows (ID -> cells), from the first 40 lines."""
    rows = {}
    for line in md.splitlines()[:FIRST_SCREEN]:
        if line.startswith("| [") and "](#claim-" in line:
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows.setdefault(cells[0].split("]")[0].lstrip("["), cells)
    return rows


def assert_first_screen_explains(md: str, report: dict) -> None:
    """In the first 40 lines: every claim's row with its verdict, a kind of finding from the
    vocabulary and a non-empty one-line reason; the three sentences in words."""
    from mamlconv.paper_checks.summary import FINDINGS

    rows = first_screen_rows(md)
    assert set(rows) == {c["id"] for c in report["claims"]}, sorted(rows)
    for c in report["claims"]:
        cells = rows[c["id"]]
        assert cells[2] == f"**{c['verdict']}**", cells
        kind, why = cells[3], cells[4]
        assert kind.split(":")[0] in FINDINGS, cells
        assert why.strip(" …—") and "\n" not in why, cells
        assert c["finding"] == kind.replace("\\|", "|") and c["reason"], c["id"]
    head = "\n".join(md.splitlines()[:FIRST_SCREEN])
    for word in ("**Right:**", "**Wrong:**", "**Undecided:**"):
        assert word in head


# --------------------------------------------------------------- layout, from records
def _record(nodeid: str, claim: str, verdict: str, key: str, **kw) -> Record:
    outcome = {"FAILS": "xfailed", "NOT-RUN": "skipped", "ERROR": "failed"}.get(verdict, "passed")
    return Record(
        nodeid=nodeid, claim_id=claim, verdict=verdict, key_number=key, outcome=outcome, **kw
    )


def _full_report() -> dict:
    """Every claim with a test; S4-1 with two variants and four not-run tiers, one with
    per-reading verdicts; S3-5 FAILS (formal); S2-7 INCONCLUSIVE."""
    recs = []
    for c in CLAIMS:
        slug = "test_claim_" + c.id.replace("-", "_") + "_x"
        recs.append(_record(f"t.py::{slug}", c.id, "HOLDS", f"{c.id} key"))
    recs = [r for r in recs if r.claim_id not in ("S4-1", "S3-5", "S2-7")]
    readings = [
        {"reading": "edge within a decade below alpha_div", "beta_max": 0.359, "verdict": "FAILS"},
        {"reading": "edge at the last stable alpha", "beta_max": 0.0205, "verdict": "FAILS"},
        {"reading": "smoothed edge", "beta_max": 0.61, "verdict": "INCONCLUSIVE"},
    ]
    recs += [
        _record("e.py::test_claim_S4_1_sinusoid[exact]", "S4-1", "FAILS", "exact: margin -1",
                evidence={"readings": readings}),
        _record("e.py::test_claim_S4_1_sinusoid[first_order]", "S4-1", "APPROXIMATE",
                "first-order: margin 1", error=0.155),
        *[
            _record(f"e.py::test_claim_S4_1_sinusoid_{tier}[{v}]", "S4-1", "NOT-RUN", why)
            for tier, why in (("rerun", "needs --slow"), ("paper_size", "needs --gpu"))
            for v in ("exact", "first_order")
        ],
        _record("s.py::test_claim_S3_5_beta_edge", "S3-5", "FAILS", "<= should be <"),
        _record("s.py::test_claim_S3_5_alpha_edge", "S3-5", "HOLDS-FOR", "alpha edge",
                setting="alpha <= 1/lambda"),
        _record("e.py::test_claim_S2_7_gradient_norm_grows", "S2-7", "INCONCLUSIVE", "noisy",
                setting="the difference lies within the seed spread"),
    ]  # fmt: skip
    records = {r.nodeid: r for r in recs}
    collected = {r.nodeid: r.claim_id for r in recs}
    return build_report(
        records,
        collected,
        tiers={"slow": False, "gpu": False},
        duration_s=1.0,
        results={"folder": "x", "manifest": None, "listed": [], "read": [], "ignored": []},
    )


def test_summary_lists_every_variant_and_separates_formal_from_empirical() -> None:
    report = _full_report()
    validate(report)
    md = markdown(report)
    head = summary_lines(md)
    assert len(head) <= SUMMARY_MAX_LINES
    assert_first_screen_explains(md, report)
    rows = first_screen_rows(md)
    order = list(rows)
    formal = [c.id for c in CLAIMS if c.id not in EMPIRICAL]
    assert order[: len(formal)] == formal  # formal claims first, in the paper's order
    for c in CLAIMS:
        assert rows[c.id][1] == ("empirical" if c.id in EMPIRICAL else "formal"), c.id
    # a formal FAILS at a boundary reads as such, not like a failed experiment
    assert rows["S3-5"][3] == "formal flaw: boundary case, ≤ where < is needed"
    assert rows["S3-5"][4] == "<= should be <"
    # readings that disagree (FAILS, FAILS, INCONCLUSIVE): the verdict depends on the reading
    assert rows["S4-1"][3] == "reading-dependent"
    assert rows["S4-1"][4] == (
        "edge within a decade below alpha_div: FAILS; edge at the last stable alpha: FAILS; "
        "smoothed edge: INCONCLUSIVE"
    )
    assert rows["S2-7"][3] == "resolution-limited"
    assert rows["S2-7"][4] == "the difference lies within the seed spread"
    per_test = {
        line.split("]")[0].lstrip("| ["): line for line in head if "verdict per" not in line
    }
    s41 = per_test["S4-1"]
    assert "**FAILS**" in s41 and "exact: FAILS" in s41 and "first_order: APPROXIMATE" in s41
    assert "4 more not run (needs --slow, needs --gpu)" in s41
    assert "beta edge: FAILS" in per_test["S3-5"]
    text = "\n".join(head)
    assert (
        "1 INCONCLUSIVE" in text
        and "ERROR > FAILS > HOLDS-FOR > INCONCLUSIVE > APPROXIMATE" in text
    )
    # pytest's counts are given as counts of tests, with what each stands for
    n_tests = sum(len(c["tests"]) for c in report["claims"])
    assert f"{n_tests} claim tests:" in text and "2 xfailed (FAILS" in text


def test_a_claim_without_a_note_still_gets_a_kind_and_a_reason() -> None:
    """The kind comes from the verdict and its evidence, not from a table of known claims: an
    unknown claim row, each verdict, gets a kind from the vocabulary and a non-empty reason."""
    from mamlconv.paper_checks.summary import FINDINGS, finding, reason

    for verdict, kind, extra in (
        ("HOLDS", "formal", {}),
        ("FAILS", "empirical", {}),
        ("HOLDS-FOR", "formal", {"setting": "first-order MAML only"}),
        ("INCONCLUSIVE", "empirical", {"setting": "a reduced run of 20 iterations"}),
        ("INCONCLUSIVE", "empirical", {"setting": "a margin of one cell"}),
        ("NOT-RUN", "empirical", {}),
    ):
        test = {"verdict": verdict, "key_number": "k 1.5", "evidence": {}, **extra}
        claim = {"id": "X-99", "kind": kind, "verdict": verdict, "key_number": "k 1.5",
                 "setting": extra.get("setting"), "tests": [test], "how": "h"}  # fmt: skip
        assert finding(claim) in FINDINGS and reason(claim), (verdict, extra)
    claim["verdict"], claim["tests"][0]["verdict"] = "INCONCLUSIVE", "INCONCLUSIVE"
    claim["setting"] = claim["tests"][0]["setting"] = "a margin of one cell"
    assert (finding(claim), reason(claim)) == ("resolution-limited", "a margin of one cell")


def test_superseded_reading_tables_and_results_are_labelled() -> None:
    """S2-7 records a table per training length and which length decides: the other table
    and the result files of the other length say they are superseded."""
    evidence = {
        "verdict_at_iters": 50000,
        "per_length": {
            "5000": {"per_reading": {"a_literal": "HOLDS", "b_contrast": "HOLDS"}},
            "50000": {"per_reading": {"a_literal": "INCONCLUSIVE", "b_contrast": "FAILS"}},
        },
    }
    sources = [
        {"file": "r/fig1_5000it.json", "iters": 5000, "commit": "a" * 40},
        {"file": "r/fig1_50000it.json", "iters": 50000, "commit": None},
    ]
    rec = _record("e.py::test_claim_S2_7_gradient_norm_grows", "S2-7", "INCONCLUSIVE", "k",
                  setting="s", evidence=evidence, sources=sources)  # fmt: skip
    report = build_report({rec.nodeid: rec}, {rec.nodeid: "S2-7"},
                          tiers={"slow": False, "gpu": False}, duration_s=1.0)  # fmt: skip
    md = markdown(report)
    assert "Readings (per_length / 5000) — *superseded:" in md
    assert "Readings (per_length / 50000) — **this table decides the verdict**:" in md
    row5k = next(line for line in md.splitlines() if "`r/fig1_5000it.json`" in line)
    assert "**superseded**: the verdict is read at 50000 iterations" in row5k
    row50k = next(line for line in md.splitlines() if "`r/fig1_50000it.json`" in line)
    assert "superseded" not in row50k and "not recorded" in row50k and "?" not in row50k
    s27 = first_screen_rows(md)["S2-7"]
    assert s27[4] == (
        "(a) literal: INCONCLUSIVE; (b) contrast: FAILS (at 50,000 iterations; the "
        "5,000-iteration runs superseded)"
    )


def test_commit_of_a_committed_result_without_one_is_found_in_git() -> None:
    """The committed H200 Omniglot sweep recorded no commit (run from a copied tree): the
    report names the commit that added it."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    name = "experiments/results/omniglot_paper_7x7_h200.npz"
    rec = _record("e.py::test_claim_S4_2_omniglot[exact]", "S4-2", "INCONCLUSIVE", "k",
                  setting="s", sources=[{"file": name, "commit": None}])  # fmt: skip
    report = build_report({rec.nodeid: rec}, {rec.nodeid: "S4-2"},
                          tiers={"slow": False, "gpu": False}, duration_s=1.0)  # fmt: skip
    added = report["claims"][next(i for i, c in enumerate(CLAIMS) if c.id == "S4-2")]
    commit = added["sources"][0].get("commit_added")
    want = subprocess.run(["git", "-C", str(REPO), "log", "--diff-filter=A", "--format=%H", "-1",
                           "--", name], capture_output=True, text=True).stdout.strip()  # fmt: skip
    assert commit == want and len(commit) == 40
    assert f"not recorded; added in {commit[:12]}" in markdown(report)


def test_claim_section_has_evidence_table_readings_and_folded_raw_evidence() -> None:
    md = markdown(_full_report())
    section = md.split('<a id="claim-s4-1"></a>')[1].split('<a id="claim-s4-2"></a>')[0]
    assert "| test | verdict | key number |" in section
    assert "| exact | **FAILS** | exact: margin -1 |" in section
    assert "| first_order | **APPROXIMATE** (error 0.155) | first-order: margin 1 |" in section
    assert "| rerun exact, rerun first_order | **NOT-RUN** | needs --slow |" in section
    assert "| reading | beta max | verdict |" in section
    assert "| smoothed edge | 0.61 | **INCONCLUSIVE** |" in section
    raw = section.split("<details>")[1]
    assert '"reading": "smoothed edge"' in raw and "</details>" in raw


def test_figures_are_copied_in_and_linked_relatively(tmp_path: Path) -> None:
    """A figure outside the folder (a committed PNG) is copied in; one written inside it (a
    figure the audit drew) is linked where it is; same-named figures do not collide."""
    elsewhere = tmp_path / "committed"
    (elsewhere / "a").mkdir(parents=True)
    (elsewhere / "b").mkdir()
    for d in ("a", "b"):
        (elsewhere / d / "fig.png").write_bytes(b"\x89PNG " + d.encode())
    out = tmp_path / "out"
    drawn = out / "audit-report.files" / "S3-7-fig2.png"
    drawn.parent.mkdir(parents=True)
    drawn.write_bytes(b"\x89PNG drawn")
    rec = _record(
        "t.py::test_claim_S3_7_x",
        "S3-7",
        "HOLDS",
        "k",
        figures=[
            {"path": str(elsewhere / "a" / "fig.png"), "caption": "a"},
            {"path": str(elsewhere / "b" / "fig.png"), "caption": "b"},
            {"path": str(drawn), "caption": "drawn"},
        ],
    )
    report = build_report(
        {rec.nodeid: rec}, {rec.nodeid: "S3-7"}, tiers={"slow": False, "gpu": False},
        duration_s=1.0,
    )  # fmt: skip
    md_path, json_path, _ = write_report(report, out / "audit-report.md")
    paths = [f["path"] for f in json.loads(json_path.read_text())["claims"][13]["figures"]]
    assert paths == [
        "audit-report.files/committed/fig.png",
        "audit-report.files/committed/fig-2.png",
        "audit-report.files/S3-7-fig2.png",
    ]
    assert (out / paths[1]).read_bytes() == b"\x89PNG b"
    shutil.rmtree(elsewhere)
    shutil.move(out, tmp_path / "moved")
    assert assert_links_resolve(tmp_path / "moved" / "audit-report.md") == 3


def test_settings_say_what_they_are() -> None:
    md = markdown(_full_report())
    assert "*Alpha edge holds for:* alpha <= 1/lambda" in md
    assert "*Inconclusive because:* the difference lies within the seed spread" in md


def test_per_reading_tables_in_the_shapes_tests_record() -> None:
    """A list of rows with a verdict (also nested per file or per length, with columns of
    nested records counted), and a mapping reading -> verdict."""
    from mamlconv.paper_checks.report import readings_tables

    evidence = {
        "per_reading": [
            {"reading": "r1", "alpha": 0.5, "seeds": [{"seed": 0}, {"seed": 1}], "verdict": "FAILS"}
        ],
        "per_length": {"5000": {"per_reading": {"a_literal": "HOLDS", "b_contrast": "FAILS"}}},
        "readings": {"a_literal": "both grow", "b_contrast": "grow more"},  # descriptions only
    }
    tables = dict(readings_tables(evidence))
    assert set(tables) == {"", "per_length / 5000"}
    assert tables["per_length / 5000"] == [
        {"reading": "a_literal", "verdict": "HOLDS"},
        {"reading": "b_contrast", "verdict": "FAILS"},
    ]
    rec = _record("e.py::test_claim_S4_1_sinusoid[exact]", "S4-1", "FAILS", "k", evidence=evidence)
    report = build_report(
        {rec.nodeid: rec}, {rec.nodeid: "S4-1"}, tiers={"slow": False, "gpu": False},
        duration_s=1.0,
    )  # fmt: skip
    md = markdown(report)
    assert "| reading | alpha | seeds | verdict |" in md
    assert "| r1 | 0.5 | 2 entries | **FAILS** |" in md
    assert "Readings (exact):" in md and "Readings (exact / per_length / 5000):" in md
    assert "| a_literal | **HOLDS** |" in md
