"""The audit report: one entry per docs/CLAIMS.md row, as JSON (validated against
``report_schema.json``), Markdown, and a terminal table.

JSON layout (see the schema for every field): ``claims`` lists all rows of docs/CLAIMS.md in
order, each with its kind (formal or empirical), its place in the paper, the statement, the combined
verdict, a key number, and the records of its tests (verdict, evidence, result files cited,
figures, pytest outcome); ``test_outcomes`` counts pytest's outcomes of the claim tests;
``results`` names the result files read (through MANIFEST.json) and those ignored.

Markdown layout: a one-screen summary (verdict counts, what pytest's counts mean, the result
files, then one table of formal and one of empirical claims with every test's verdict), then
one section per claim (evidence table, per-reading verdicts when a test records them, result
files, figures, raw evidence folded in ``<details>``), then the result files. Figures are copied
into the report's folder and linked relatively, so the folder can be moved.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mamlconv.paper_checks.claims import BY_ID, CLAIMS, claim_id_from_test_name
from mamlconv.paper_checks.summary import (
    FINDINGS,
    annotate,
    counts_text,
    deciding_iters,
    in_words,
    pytest_counts_text,
    readings_tables,
    results_lines,
    summary_table,
    table_status,
    terminal_table,
    why_not_run,
)
from mamlconv.paper_checks.summary import finding as summary_finding
from mamlconv.paper_checks.summary import reason as summary_reason
from mamlconv.paper_checks.verdicts import ORDER, VERDICTS, Record, combine, fmt, jsonable
from mamlconv.util.html_page import html_report

__all__ = ["build_report", "markdown", "readings_tables", "terminal_table", "validate"]

SCHEMA_ID = "mamlconv-audit-report/1"
SCHEMA_PATH = Path(__file__).with_name("report_schema.json")
PAPER = (
    "Takagi, Nagano, Yoshida & Okada (2019), 'On the conditions of MAML convergence', "
    "3rd Workshop on Meta-Learning at NeurIPS 2019"
)


def claim_kind(claim_id: str) -> str:
    """'empirical' or 'formal': the registry's ``Claim.kind`` (docs/CLAIMS.md)."""
    return BY_ID[claim_id].kind


def _provenance() -> dict[str, Any]:
    try:
        from mamlconv.util.provenance import describe

        return jsonable(describe())
    except Exception as exc:  # provenance must never cost the report
        return {"error": f"provenance unavailable: {exc}"}


def build_report(
    records: dict[str, Record],
    collected: dict[str, str],
    *,
    tiers: dict[str, bool],
    duration_s: float,
    results: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict: every docs/CLAIMS.md row with a verdict and its evidence.

    ``records`` maps pytest node ids to the verdicts recorded this session, ``collected`` maps
    the claim tests collected to their claim IDs. A row without a collected test is NOT-RUN
    ("no test collected"), so a partial run still accounts for every claim. ``results`` is
    :func:`mamlconv.paper_checks.manifest.survey` of the results folder (files read, ignored).
    Figure paths stay as recorded; :func:`write_report` copies them into the report's folder.
    """
    by_claim: dict[str, list[dict[str, Any]]] = {c.id: [] for c in CLAIMS}
    for nodeid, claim_id in collected.items():
        rec = records.get(nodeid)
        if rec is None:
            rec = Record(
                nodeid=nodeid,
                claim_id=claim_id,
                verdict="NOT-RUN",
                key_number="collected but not run in this session (deselected or interrupted)",
                outcome="not run",
            )
        by_claim.setdefault(claim_id, []).append(rec.as_dict())

    claims = []
    for claim in CLAIMS:
        tests = by_claim[claim.id]
        verdict = combine([t["verdict"] for t in tests])
        if tests:
            leading = [t for t in tests if t["verdict"] == verdict]
            key = "; ".join(dict.fromkeys(t["key_number"] for t in leading if t["key_number"]))
            settings = [t["setting"] for t in leading if t.get("setting")]
        else:
            key, settings = "no test collected in this run", []
        claims.append(
            {
                "id": claim.id,
                "kind": claim_kind(claim.id),
                "where": claim.where,
                "statement": claim.statement,
                "how": claim.how,
                "verdict": verdict,
                "key_number": key,
                "setting": "; ".join(dict.fromkeys(settings)) or None,
                "tests": tests,
                "figures": [f for t in tests for f in t["figures"]],
                "sources": [s for t in tests for s in t["sources"]],
            }
        )
    annotate(claims)
    _known_commits(claims)
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    outcomes: dict[str, int] = {}
    for c in claims:
        for t in c["tests"]:
            outcomes[t["outcome"]] = outcomes.get(t["outcome"], 0) + 1
    return {
        "schema": SCHEMA_ID,
        "paper": PAPER,
        "generated_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tiers": dict(tiers),
        "duration_s": round(float(duration_s), 2),
        "provenance": _provenance(),
        "counts": counts,
        "test_outcomes": outcomes,
        "results": jsonable(results) if results is not None else None,
        "claims": claims,
    }


def _checkout_root() -> Path | None:
    """The repository the package runs from (a checkout), or None for an installed copy."""
    try:
        from mamlconv.paper_checks import results_dir

        root = results_dir().resolve().parent.parent
    except (ModuleNotFoundError, OSError):
        return None
    return root if (root / ".git").exists() else None


def _known_commits(claims: list[dict[str, Any]]) -> None:
    """For a cited result file whose run recorded no commit (a run from a copied tree), add
    ``commit_added``: the commit that added the file to the repository, when git knows it."""
    root, found = _checkout_root(), {}
    if root is None:
        return
    for claim in claims:
        for source in [s for t in claim["tests"] for s in t["sources"]] + claim["sources"]:
            if source.get("commit") or "commit_added" in source:
                continue
            name = str(source["file"])
            if name not in found:
                try:
                    out = subprocess.run(
                        ["git", "-C", str(root), "log", "--diff-filter=A", "--format=%H", "-1",
                         "--", name],
                        capture_output=True, text=True, timeout=20, check=False,
                    )  # fmt: skip
                    found[name] = out.stdout.strip() or None
                except (OSError, subprocess.SubprocessError):
                    found[name] = None
            if found[name]:
                source["commit_added"] = found[name]


def validate(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``report`` follows report_schema.json."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)


# --------------------------------------------------------------------------- the folder
def localize_figures(report: dict[str, Any], folder: Path, files_dir: Path) -> None:
    """Make the report's folder self-contained: copy every figure that lies outside ``folder``
    into ``files_dir/committed/`` and rewrite all figure paths relative to ``folder`` (with
    forward slashes), so the links work wherever the folder is moved."""
    folder = Path(folder).resolve()
    done: dict[str, str] = {}
    taken: set[str] = set()

    def local(path: str) -> str:
        if path in done:
            return done[path]
        src = Path(path)
        if not src.is_absolute():
            src = (folder / src).resolve()
        try:
            rel = src.resolve().relative_to(folder).as_posix()
        except ValueError:
            target_dir = Path(files_dir) / "committed"
            target_dir.mkdir(parents=True, exist_ok=True)
            name, n = src.name, 1
            while name in taken:
                n += 1
                name = f"{src.stem}-{n}{src.suffix}"
            taken.add(name)
            if src.is_file():
                shutil.copy2(src, target_dir / name)
            rel = (target_dir / name).resolve().relative_to(folder).as_posix()
        done[path] = rel
        return rel

    for claim in report["claims"]:
        for test in claim["tests"]:
            for fig in test["figures"]:
                fig["path"] = local(fig["path"])
        for fig in claim["figures"]:
            fig["path"] = local(fig["path"])


def write_report(report: dict[str, Any], path: Path) -> list[Path]:
    """Write ``path`` (Markdown), ``path.with_suffix('.json')`` and a self-contained
    ``path.with_suffix('.html')`` (figures embedded), with every figure inside
    ``path.with_suffix('.files')/`` (copied there when it lies elsewhere); return the three."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    localize_figures(report, path.parent, path.with_suffix(".files"))
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    md = markdown(report)
    path.write_text(md)
    html_path = path.with_suffix(".html")
    html_path.write_text(html_report(md, path.parent, title="Claims audit of Takagi et al. (2019)"))
    return [path, json_path, html_path]


# --------------------------------------------------------------------------- Markdown
def _md(text: Any) -> str:
    """Text for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _anchor(claim_id: str) -> str:
    return "claim-" + claim_id.lower()


def _test_labels(tests: list[dict[str, Any]]) -> list[str]:
    """Short names of a claim's tests: the test name's words that differ between its tests,
    then the parameter (``test_claim_S4_1_sinusoid_rerun[exact]`` -> ``rerun exact``)."""
    parts = []
    for t in tests:
        name = t["nodeid"].split("::")[-1]
        base, _, param = name.partition("[")
        cid = claim_id_from_test_name(base)
        slug = base[len(BY_ID[cid].test_prefix) :] if cid in BY_ID else base
        parts.append((slug.split("_"), param.rstrip("]")))
    if len(parts) == 1:
        return [parts[0][1]]  # one test: the claim's verdict is its verdict
    common = 0
    if len(parts) > 1:
        words = [w for w, _ in parts]
        while all(len(w) > common for w in words) and len({w[common] for w in words}) == 1:
            common += 1
    labels = []
    for words, param in parts:
        label = " ".join(words[common:] + ([param] if param else []))
        labels.append(label or ("main" if len(parts) > 1 else ""))
    return labels


def _verdict_cell(t: dict[str, Any]) -> str:
    cell = f"**{t['verdict']}**"
    if t["verdict"] == "APPROXIMATE" and t.get("error") is not None:
        cell += f" (error {fmt(t['error'])})"
    return cell


def _per_test_summary(claim: dict[str, Any]) -> str:
    """The summary's cell: every test's verdict by label, NOT-RUN ones counted."""
    tests = claim["tests"]
    if not tests:
        return "no test collected"
    labels = _test_labels(tests)
    ran = [(lab, t) for lab, t in zip(labels, tests, strict=True) if t["verdict"] != "NOT-RUN"]
    shown = [f"{lab}: {t['verdict']}" for lab, t in ran if lab and lab != "main"]
    tiers = []  # tests of a tier not enabled: counted; any other NOT-RUN: named with its reason
    for lab, t in zip(labels, tests, strict=True):
        if t["verdict"] != "NOT-RUN":
            continue
        why = why_not_run(t["key_number"])
        if why.startswith("needs "):
            tiers.append(why)
        else:
            shown.append(f"{lab or 'main'}: NOT-RUN ({why})")
    if tiers:
        more = "more " if len(tiers) < len(tests) else ""
        shown.append(f"{len(tiers)} {more}not run ({', '.join(dict.fromkeys(tiers))})")
    return " · ".join(shown) or "—"


def _short(value: Any, width: int = 48) -> str:
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += [
        "| " + " | ".join(_md(c) if not c.startswith("**") else c for c in r) + " |" for r in rows
    ]
    return out


MAX_READING_COLUMNS = 7


def _cell(value: Any) -> str:
    """A compact table cell: numbers to 3 digits, nested records counted, not dumped."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return f"{len(value)} entries"
    if isinstance(value, dict) and any(isinstance(v, dict | list) for v in value.values()):
        return f"{len(value)} entries"
    return _short(value)


def _readings_md(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    verdicts = [c for c in cols if c.startswith("verdict")]
    first = [c for c in ("reading", "name") if c in cols]
    rest = [c for c in cols if c not in verdicts and c not in first]
    keep = MAX_READING_COLUMNS - len(first) - len(verdicts)
    cols = first + rest[: max(0, keep)] + verdicts
    body = [
        [
            f"**{r[c]}**"
            if c.startswith("verdict") and r.get(c)
            else str(r.get(c, ""))
            if c in first  # the row's label in full
            else _cell(r.get(c, ""))
            for c in cols
        ]
        for r in rows
    ]
    out = _table([c.replace("_", " ") for c in cols], body)
    if len(rest) > keep:
        out.append(f"\n({len(rest) - max(0, keep)} more columns in the JSON report)")
    return out


def _source_rows(claim: dict[str, Any]) -> list[list[str]]:
    rows, seen = [], set()
    deciding = {n for t in claim["tests"] if (n := deciding_iters(t["evidence"] or {}))}
    for s in claim["sources"]:
        if s["file"] in seen:
            continue
        seen.add(s["file"])
        shown_apart = ("file", "commit", "commit_added", "config")
        facts = {k: v for k, v in s.items() if k not in shown_apart}
        text = ", ".join(f"{k} {_short(v, 64)}" for k, v in facts.items() if v is not None)
        commit = str(s.get("commit") or "")
        cell = commit[:12] + ("+dirty" if "dirty" in commit else "")
        if not commit:
            added = s.get("commit_added")
            cell = f"not recorded; added in {added[:12]}" if added else "not recorded"
        if deciding and isinstance(s.get("iters"), int) and s["iters"] not in deciding:
            at = ", ".join(map(str, sorted(deciding)))
            text += f" — **superseded**: the verdict is read at {at} iterations"
        rows.append([f"`{s['file']}`", text, cell])
    return rows


def _per_test_table(claims: list[dict[str, Any]]) -> list[str]:
    """Claims with more than one test: each test's verdict by its label."""
    rows = [
        f"| [{c['id']}](#{_anchor(c['id'])}) | **{c['verdict']}** | {_md(_per_test_summary(c))} |"
        for c in claims
        if len(c["tests"]) > 1
    ]
    return ["| ID | verdict | verdict per test |", "| --- | --- | --- |", *rows]


def markdown(report: dict[str, Any]) -> str:
    """The report for a reader: a one-screen summary (verdicts of every claim and of each of
    its tests, formal and empirical claims apart), then one section per claim with its evidence
    table and figures, the raw evidence folded in ``<details>``, then the result files."""
    tiers = ", ".join(k for k, on in report["tiers"].items() if on) or "default"
    prov = report["provenance"]
    commit = str(prov.get("git_commit") or "?")
    claims = report["claims"]
    for c in claims:  # a report built before findings existed, read back from its JSON
        c["finding"] = c.get("finding") or summary_finding(c)
        c["reason"] = c.get("reason") or summary_reason(c)
    lines = [
        "# Claims audit of Takagi et al. (2019)",
        "",
        f"{report['paper']}. Generated {report['generated_utc']} by mamlconv "
        f"{prov.get('mamlconv_version', '?')} (commit {commit[:12]}, torch "
        f"{prov.get('torch', '?')}), tier {tiers}, {report['duration_s']:.1f} s.",
        "",
        *in_words(claims),
        "",
        *summary_table(claims, _anchor, _md),
        "",
        f"**{len(claims)} claims: {counts_text(report['counts'])}.** A claim's verdict is the "
        f"most consequential of its tests' ({ORDER}); pytest counts tests, not claims: "
        f"{pytest_counts_text(report)}. Kinds of finding: "
        + "; ".join(f"*{k}*: {v}" for k, v in FINDINGS.items())
        + ". Formal claims are equations and derivations, checked symbolically and by exact "
        "computation (a formal FAILS is a flaw in a stated formula, not a failed experiment); "
        "empirical claims are experiments, recomputed from committed result files or rerun.",
        "",
    ]
    lines += results_lines(report.get("results"))
    lines += ["", "### Verdict per test", "", *_per_test_table(claims)]
    for c in claims:
        lines += _claim_section(c)
    lines += _results_section(report.get("results"))
    return "\n".join(lines) + "\n"


def _claim_section(c: dict[str, Any]) -> list[str]:
    kind = c.get("kind", claim_kind(c["id"]))
    lines = [
        "",
        f'<a id="{_anchor(c["id"])}"></a>',
        "",
        f"## {c['id']} ({c['where']}): {c['verdict']}",
        "",
        f"> {c['statement']}",
        "",
        f"{kind.capitalize()} claim. Checked by: {c['how']}.",
        "",
        f"**Kind of finding:** {c['finding']}. **Why:** {c['reason']}",
    ]
    tests = c["tests"]
    if not tests:
        return [*lines, "", "No test of this claim was collected in this run."]
    labels = _test_labels(tests)
    rows, grouped = [], {}
    for lab, t in zip(labels, tests, strict=True):
        if t["verdict"] == "NOT-RUN":  # one row per reason
            grouped.setdefault(t["key_number"], []).append(lab or "main")
            continue
        rows.append([lab or "main", _verdict_cell(t), t["key_number"]])
    for reason, labs in grouped.items():
        rows.append([", ".join(labs), "**NOT-RUN**", reason])
    lines += ["", *_table(["test", "verdict", "key number"], rows)]
    for lab, t in zip(labels, tests, strict=True):
        if t.get("setting"):
            what = {"HOLDS-FOR": "holds for", "INCONCLUSIVE": "inconclusive because"}.get(
                t["verdict"], "setting"
            )
            lines += ["", f"*{' '.join(x for x in (lab, what) if x).capitalize()}:* {t['setting']}"]
    for lab, t in zip(labels, tests, strict=True):
        for where, rows_r in readings_tables(t["evidence"]):
            title = " / ".join(x for x in (lab, where) if x)
            status = table_status(t["evidence"], where)
            note = {
                "deciding": " — **this table decides the verdict**",
                "superseded": " — *superseded: shorter runs, kept for the record; the verdict is "
                f"read at {deciding_iters(t['evidence'])} iterations*",
            }.get(status or "", "")
            lines += [
                "",
                f"Readings{f' ({title})' if title else ''}{note}:",
                "",
                *_readings_md(rows_r),
            ]
    sources = _source_rows(c)
    if sources:
        lines += ["", *_table(["result file", "settings", "commit"], sources)]
    seen = set()
    for f in c["figures"]:
        if f["path"] in seen:
            continue
        seen.add(f["path"])
        lines += ["", f"![{_md(f['caption'])}]({f['path']})", "", f"*{f['caption']}*"]
    raw = []
    for t in tests:
        if t["verdict"] == "NOT-RUN" and set(t["evidence"]) <= {"reason"}:
            continue  # the table above says it
        raw.append(f"{t['nodeid']} ({t['verdict']}, pytest {t['outcome']}):")
        for k, v in t["evidence"].items():
            text = json.dumps(v, ensure_ascii=False)
            cut = " … (cut; the JSON report has all of it)" if len(text) > 1200 else ""
            raw.append(f"  {k}: {text[:1200]}{cut}")
    if raw:
        lines += [
            "",
            "<details><summary>Raw evidence (all of it is in the JSON report)</summary>",
            "",
            "<pre>" + html.escape("\n".join(raw), quote=False) + "</pre>",
            "",
            "</details>",
        ]
    return lines


def _results_section(results: dict[str, Any] | None) -> list[str]:
    if not results:
        return []
    lines = ["", '<a id="result-files"></a>', "", "## Result files", ""]
    folder = results.get("folder") or "experiments/results"
    if results.get("manifest"):
        lines.append(
            f"The audit reads exactly the files that `{folder}/MANIFEST.json` lists, each "
            "verified against its sha256 first (a changed, missing or unreadable file is an "
            "ERROR naming it). Read in this run: "
            + (", ".join(f"`{p}`" for p in results["read"]) or "none")
            + "."
        )
    else:
        lines.append(results.get("manifest_problem") or f"No MANIFEST.json in {folder}.")
    stray = [r for r in results["ignored"] if "not in" in r["why"]]
    known = [r for r in results["ignored"] if "not in" not in r["why"]]
    if stray:
        lines += [
            "",
            "Ignored, not in the manifest (register a file with `python -m "
            "mamlconv.paper_checks.manifest add FILE`):",
            "",
        ]
        lines += [f"- `{r['path']}`" for r in stray]
    if known:
        lines += [
            "",
            f"<details><summary>{len(known)} committed files the audit does not read</summary>",
            "",
            "<ul>",
        ]
        lines += [
            f"<li><code>{html.escape(r['path'])}</code>: "
            f"{html.escape(r['why'].removeprefix('committed, not read by the audit: '))}</li>"
            for r in known
        ]
        lines += ["</ul>", "", "</details>"]
    return lines
