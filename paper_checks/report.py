"""The audit report: one entry per docs/CLAIMS.md row, as JSON (validated against
``report_schema.json``), Markdown, and a terminal table.

JSON layout (see the schema for every field): ``claims`` lists all rows of docs/CLAIMS.md in order,
each with its place in the paper, the statement, the combined verdict, a key number, and the
records of its tests (verdict, evidence, result files cited, figures, pytest outcome).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from mamlconv.paper_checks.claims import CLAIMS
from mamlconv.paper_checks.verdicts import VERDICTS, Record, combine, jsonable

SCHEMA_ID = "mamlconv-audit-report/1"
SCHEMA_PATH = Path(__file__).with_name("report_schema.json")
PAPER = (
    "Takagi, Nagano, Yoshida & Okada (2019), 'On the conditions of MAML convergence', "
    "3rd Workshop on Meta-Learning at NeurIPS 2019"
)


def _relative(path: str, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return path


def _provenance() -> dict[str, Any]:
    try:
        from mamlconv.provenance import describe

        return jsonable(describe())
    except Exception as exc:  # provenance must never cost the report
        return {"error": f"provenance unavailable: {exc}"}


def build_report(
    records: dict[str, Record],
    collected: dict[str, str],
    *,
    tiers: dict[str, bool],
    duration_s: float,
    report_dir: Path,
) -> dict[str, Any]:
    """The report as a JSON-ready dict: every docs/CLAIMS.md row with a verdict and its evidence.

    ``records`` maps pytest node ids to the verdicts recorded this session, ``collected`` maps
    the claim tests collected to their claim IDs. A row without a collected test is NOT-RUN
    ("no test collected"), so a partial run still accounts for every claim.
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
        entry = rec.as_dict()
        entry["figures"] = [
            {**f, "path": _relative(f["path"], report_dir)} for f in entry["figures"]
        ]
        by_claim.setdefault(claim_id, []).append(entry)

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
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    return {
        "schema": SCHEMA_ID,
        "paper": PAPER,
        "generated_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tiers": dict(tiers),
        "duration_s": round(float(duration_s), 2),
        "provenance": _provenance(),
        "counts": counts,
        "claims": claims,
    }


def validate(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``report`` follows report_schema.json."""
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict[str, Any]) -> str:
    """The report for a reader: the verdict table, then each claim with its evidence."""
    tiers = ", ".join(k for k, on in report["tiers"].items() if on) or "default"
    prov = report["provenance"]
    lines = [
        "# Claims audit of Takagi et al. (2019)",
        "",
        f"Paper: {report['paper']}.",
        "",
        f"Generated {report['generated_utc']} by mamlconv {prov.get('mamlconv_version', '?')} "
        f"(commit {prov.get('git_commit')}, torch {prov.get('torch', '?')}), tier: {tiers}, "
        f"run time {report['duration_s']:.1f} s.",
        "",
        "Verdicts: " + ", ".join(f"{v} {n}" for v, n in report["counts"].items() if n) + ".",
        "",
        "| ID | where | claim | verdict | key number |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in report["claims"]:
        verdict = c["verdict"] + (f" ({c['setting']})" if c.get("setting") else "")
        lines.append(
            f"| {c['id']} | {_md_escape(c['where'])} | {_md_escape(c['statement'])} | "
            f"**{_md_escape(verdict)}** | {_md_escape(c['key_number'])} |"
        )
    for c in report["claims"]:
        lines += ["", f"## {c['id']} ({c['where']}): {c['verdict']}", "", f"> {c['statement']}"]
        lines += ["", f"Checked by: {c['how']}."]
        for t in c["tests"]:
            head = f"- `{t['nodeid']}`: **{t['verdict']}**"
            if t.get("setting"):
                head += f" for {t['setting']}"
            lines.append(f"{head} ({t['outcome']}, {t['duration_s']:.2f} s): {t['key_number']}")
            for k, v in t["evidence"].items():
                lines.append(f"  - {k}: {json.dumps(v, ensure_ascii=False)[:1500]}")
            for s in t["sources"]:
                lines.append(f"  - result file: {json.dumps(s, ensure_ascii=False)[:1500]}")
        for f in c["figures"]:
            lines += ["", f"![{f['caption']}]({f['path']})", f"*{f['caption']}*"]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], path: Path) -> list[Path]:
    """Write ``path`` (Markdown) and ``path.with_suffix('.json')``; return both paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path = path.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    path.write_text(markdown(report))
    return [path, json_path]


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def terminal_table(report: dict[str, Any], *, width: int = 120) -> list[str]:
    """Lines of the terminal table: ID, claim, verdict, key number."""
    rows = [("ID", "claim", "verdict", "key number")]
    for c in report["claims"]:
        rows.append((c["id"], c["statement"], c["verdict"], c["key_number"]))
    claim_w, verdict_w = 36, 11
    key_w = max(30, width - 5 - claim_w - verdict_w - 6)
    out = []
    for i, (cid, claim, verdict, key) in enumerate(rows):
        claim_cell = f"{_cut(claim, claim_w):<{claim_w}}"
        out.append(f"{cid:<5}  {claim_cell}  {verdict:<{verdict_w}}  {_cut(key, key_w)}")
        if i == 0:
            out.append("-" * min(width, 5 + claim_w + verdict_w + key_w + 6))
    counts = ", ".join(f"{v} {n}" for v, n in report["counts"].items() if n)
    out.append(
        f"{len(report['claims'])} claims: {counts}; audit run time {report['duration_s']:.1f} s"
    )
    return out
