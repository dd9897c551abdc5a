"""The report's first screen: what the audit found, in words, and per claim the kind of finding
and a one-line reason beside its verdict, all computed from the verdicts and their evidence.

A verdict alone does not say how much it matters: a formal FAILS at a boundary (S3-5's "<="
that should be "<"), an INCONCLUSIVE because a grid is coarse, and one because the run was a
reduced one read the same. :func:`finding` names the kind, from a fixed vocabulary
(:data:`FINDINGS`), by a rule over the verdict, the claim's type (formal or empirical) and the
text and per-reading tables of its evidence; a claim may add a note to its kind
(``Claim.finding`` in :mod:`mamlconv.paper_checks.claims`), never replace the rule, so a new
claim without a note still gets a kind. :func:`reason` is the evidence's own line (the leading
test's key number, its setting, or the count of readings that agree), cut to one line.
:func:`in_words` turns the verdict classes into three sentences (right, wrong, undecided).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from mamlconv.paper_checks.claims import BY_ID
from mamlconv.paper_checks.verdicts import VERDICTS

FINDINGS: dict[str, str] = {
    "confirmed": "the statement holds as written",
    "approximate": "holds up to a measured error",
    "restricted scope": "holds for a named MAML variant or setting only",
    "reading-dependent": "the verdict differs between readings of what the paper leaves open",
    "resolution-limited": "the deciding difference lies within the grid's or the seeds' resolution",
    "reduced setting": "the evidence comes from a run smaller than the paper's",
    "formal flaw": "a stated formula or condition is wrong as written",
    "empirical contradiction": "the experiment contradicts the statement",
    "undecided": "the evidence cannot decide",
    "not run": "no test ran in this session",
    "audit error": "a claim test failed its own checks",
}
"""The kinds of finding, each with what it means (the report's legend)."""

REASON_WIDTH = 150
_REDUCED = ("reduced", "smoke", "not the paper's", "fewer than", "a tenth")
_RESOLUTION = ("resolution", "within the grid", "seed spread", "margin", "cell", "fuzzy")


def _claim_type(claim: dict[str, Any]) -> str:
    return claim.get("kind") or (BY_ID[claim["id"]].kind if claim["id"] in BY_ID else "formal")


def leading_tests(claim: dict[str, Any]) -> list[dict[str, Any]]:
    """The tests whose verdict is the claim's (the ones that speak for it)."""
    return [t for t in claim.get("tests", []) if t["verdict"] == claim["verdict"]]


def deciding_iters(evidence: dict[str, Any]) -> int | None:
    """The training length whose table decides a test recorded per length (``verdict_at_iters``
    beside ``per_length``), else None."""
    value = evidence.get("verdict_at_iters")
    return int(value) if isinstance(value, int | float) and "per_length" in evidence else None


def table_status(evidence: dict[str, Any], where: str) -> str | None:
    """'deciding' or 'superseded' for a per-reading table found under ``per_length / N`` of a
    test that says which length decides; None for any other table."""
    iters = deciding_iters(evidence)
    m = re.search(r"per_length / (\d+)$", where)
    if iters is None or m is None:
        return None
    return "deciding" if int(m.group(1)) == iters else "superseded"


def _reading_verdicts(claim: dict[str, Any]) -> list[tuple[str, str]]:
    """(reading, verdict) of the leading tests' per-reading tables (superseded ones left out);
    the first verdict column of a row counts."""
    out = []
    for t in leading_tests(claim):
        for where, rows in readings_tables(t.get("evidence") or {}):
            if table_status(t["evidence"], where) == "superseded":
                continue
            for row in rows:
                col = next((k for k in row if str(k).startswith("verdict")), None)
                if col and row.get(col):
                    out.append((str(row.get("reading", row.get("name", "?"))), str(row[col])))
    return out


def _text(claim: dict[str, Any]) -> str:
    parts = [claim.get("setting") or "", claim.get("key_number") or ""]
    parts += [t.get("setting") or "" for t in leading_tests(claim)]
    return " ".join(parts).lower()


def finding(claim: dict[str, Any]) -> str:
    """The kind of finding of a claim in the report (a key of :data:`FINDINGS`), followed by
    ``: <note>`` where the claim has its own note."""
    verdict, ctype = claim["verdict"], _claim_type(claim)
    text = _text(claim)
    readings = {v for _, v in _reading_verdicts(claim)}
    split = len(readings) > 1 or "reading" in (claim.get("setting") or "")
    if verdict == "HOLDS":
        kind = "confirmed"
    elif verdict == "APPROXIMATE":
        kind = "approximate"
    elif verdict == "NOT-RUN":
        kind = "not run"
    elif verdict == "ERROR":
        kind = "audit error"
    elif verdict == "FAILS":
        kind = "formal flaw" if ctype == "formal" else "empirical contradiction"
        if ctype == "empirical" and split:
            kind = "reading-dependent"
    elif verdict == "HOLDS-FOR":
        kind = "reading-dependent" if ctype == "empirical" and split else "restricted scope"
    elif any(w in text for w in _REDUCED):
        kind = "reduced setting"
    elif split:
        kind = "reading-dependent"
    elif any(w in text for w in _RESOLUTION):
        kind = "resolution-limited"
    else:
        kind = "undecided"
    note = BY_ID[claim["id"]].finding if claim["id"] in BY_ID else None
    if note and verdict not in ("HOLDS", "NOT-RUN", "ERROR"):
        kind += f": {note}"
    return kind


def one_line(text: str, width: int = REASON_WIDTH) -> str:
    """``text`` on one line, cut at a word boundary to at most ``width`` characters."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " …"


def _reading_label(name: str) -> str:
    """``a_literal`` -> ``(a) literal``; other names with spaces for underscores."""
    if " " in name:
        return name
    m = re.fullmatch(r"([a-z])_(.+)", name)
    return f"({m.group(1)}) {m.group(2).replace('_', ' ')}" if m else name.replace("_", " ")


def _readings_reason(claim: dict[str, Any]) -> str | None:
    pairs = _reading_verdicts(claim)
    if len({v for _, v in pairs}) < 2:
        return None
    if len(pairs) <= 3:
        text = "; ".join(f"{_reading_label(r)}: {v}" for r, v in pairs)
    else:
        counts = Counter(v for _, v in pairs)
        text = f"{len(pairs)} readings: " + ", ".join(f"{n} {v}" for v, n in counts.most_common())
    iters = [deciding_iters(t["evidence"]) for t in leading_tests(claim)]
    at = next((n for n in iters if n), None)
    older = sorted(
        {
            int(n)
            for t in leading_tests(claim)
            for n in (t["evidence"].get("per_length") or {})
            if str(n).isdigit() and at and int(n) != at
        }
    )
    if at:
        text += f" (at {at:,} iterations"
        text += (
            f"; the {', '.join(f'{n:,}' for n in older)}-iteration runs superseded)"
            if older
            else ")"
        )
    return text


def reason(claim: dict[str, Any], width: int = REASON_WIDTH) -> str:
    """One line that says why the claim has its verdict, from its evidence: for a verdict split
    over readings the readings' verdicts, for HOLDS-FOR and INCONCLUSIVE the setting, else the
    leading test's key number; never empty."""
    verdict = claim["verdict"]
    lead = leading_tests(claim)
    if verdict == "NOT-RUN":
        key = claim.get("key_number") or "no test collected"
        text = why_not_run(key)
        text = key if text.endswith("…") else text  # no short form: the reason itself
    else:
        text = _readings_reason(claim) or ""
        if not text and verdict in ("HOLDS-FOR", "INCONCLUSIVE"):
            text = next((t["setting"] for t in lead if t.get("setting")), "")
            text = text or claim.get("setting") or ""
            if text.count("=") > 3:  # a list of readings, not a reason: the key number says it
                text = ""
        if not text:
            text = next((t["key_number"] for t in lead if t.get("key_number")), "")
        text = text or claim.get("key_number") or claim.get("how") or verdict.lower()
    return one_line(text, width)


def annotate(claims: list[dict[str, Any]]) -> None:
    """Give every claim of a report its ``finding`` and ``reason`` (in place)."""
    for c in claims:
        c["finding"] = finding(c)
        c["reason"] = reason(c)


READINGS_KEYS = ("readings", "per_reading")
"""Evidence keys under which a test records its verdict per reading of the claim."""


def _is_verdict_row(row: Any) -> bool:
    return isinstance(row, dict) and any(str(k).startswith("verdict") for k in row)


def readings_tables(
    evidence: dict[str, Any], *, _where: str = "", _depth: int = 0
) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(where, rows)`` for every per-reading verdict table in a test's evidence, up to three
    levels down (per file, per length, per interpretation): under a key of
    :data:`READINGS_KEYS`, a list of dicts that carry a ``verdict``, or a dict mapping each
    reading to its verdict (made rows ``{reading, verdict}``)."""
    found: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in evidence.items():
        where = f"{_where} / {key}" if _where else str(key)
        if key in READINGS_KEYS and isinstance(value, list) and value:
            rows = [r for r in value if _is_verdict_row(r)]
            if rows:
                found.append((_where, rows))
                continue
        if key in READINGS_KEYS and isinstance(value, dict) and value:
            if all(isinstance(v, str) and v in VERDICTS for v in value.values()):
                found.append((_where, [{"reading": r, "verdict": v} for r, v in value.items()]))
                continue
        if isinstance(value, dict) and _depth < 3:
            found += readings_tables(value, _where=where, _depth=_depth + 1)
    return found


def why_not_run(reason: str) -> str:
    """A NOT-RUN reason in two or three words."""
    for needle, short in (
        ("result file missing", "no result file"),
        ("--slow", "needs --slow"),
        ("--gpu", "needs --gpu"),
        ("CUDA", "needs CUDA"),
        ("not registered", "file not in manifest"),
        ("no test collected", "not collected"),
        ("not run in this session", "deselected"),
    ):
        if needle in reason:
            return short
    return one_line(reason, 40)


# --------------------------------------------------------------------------- in words
def _ids(claims: list[dict[str, Any]]) -> str:
    return ", ".join(c["id"] for c in claims)


def _variant_split(by_id: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(where the paper's beta condition is exact, where it is not) in words, from the misjudged
    cells per MAML object that S3-4 records and exact MAML's curvature as X-1 derives it; empty
    strings when those tests did not run."""
    s34, x1 = by_id.get("S3-4"), by_id.get("X-1")
    cells = None
    for t in (s34 or {}).get("tests", []):
        cells = (t.get("evidence") or {}).get("paper_bound_misjudged_cells") or cells
    if not isinstance(cells, dict) or not cells:
        return "", ""
    names = {"surrogate": "the surrogate", "first_order": "first-order MAML", "exact": "exact MAML"}
    right = [names.get(k, k) for k, n in cells.items() if n == 0]
    wrong = [(names.get(k, k), n) for k, n in cells.items() if n]
    if not right or not wrong:
        return "", ""
    yes = f"The paper's conditions are exact for {' and '.join(right)} (S3-4: no misjudged cell)"
    no = "they are not the conditions of " + " and ".join(
        f"{name} (S3-4: {n} misjudged cells)" for name, n in wrong
    )
    curvature = None
    for t in (x1 or {}).get("tests", []):
        curvature = (t.get("evidence") or {}).get("derived_mode_curvature") or curvature
    if x1 and x1["verdict"] == "HOLDS" and curvature and len(wrong) == 1:
        no += f", whose curvature at a minimum is {_pretty(str(curvature))} (X-1)"
    return yes + ".", no


def _pretty(expr: str) -> str:
    """A SymPy string in the report's notation: lambda*(alpha*lambda - 1)**2 -> λ(1 − αλ)²."""
    if expr.replace(" ", "") == "lambda*(alpha*lambda-1)**2":
        return "λ(1 − αλ)²"
    return expr.replace("**2", "²").replace("lambda", "λ").replace("alpha", "α").replace("*", "")


def in_words(claims: list[dict[str, Any]]) -> list[str]:
    """Three Markdown bullets computed from the verdicts: what the paper gets right, what it
    gets wrong, what cannot be decided yet (each with the claims and their kinds)."""
    by_id = {c["id"]: c for c in claims}
    holds = [c for c in claims if c["verdict"] in ("HOLDS", "APPROXIMATE")]
    partial = [c for c in claims if c["verdict"] == "HOLDS-FOR"]
    fails = [c for c in claims if c["verdict"] == "FAILS"]
    open_ = [c for c in claims if c["verdict"] in ("INCONCLUSIVE", "ERROR")]
    yes, no = _variant_split(by_id)
    right = f"**Right:** {len(holds)} of {len(claims)} claims hold as stated"
    right += f" ({_ids(holds)})" if holds else ""
    if partial:
        right += f"; {len(partial)} hold only for a named setting ({_ids(partial)})"
    right += ". " + yes
    wrong = "**Wrong:** " + (f"{no}; " if no else "")
    if fails:
        wrong += f"{len(fails)} FAILS: " + "; ".join(
            f"{c['id']} ({c['finding']}): {one_line(c['reason'], 200)}" for c in fails
        )
    else:
        wrong += "no claim FAILS as a whole"
    if open_:
        kinds = Counter(c["finding"].split(":")[0] for c in open_)
        undecided = (
            f"**Undecided:** {len(open_)} ("
            + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
            + "): "
            + "; ".join(f"{c['id']} {c['finding'].split(':')[0]}" for c in open_)
        )
    else:
        undecided = "**Undecided:** nothing"
    not_run = [c for c in claims if c["verdict"] == "NOT-RUN"]
    if not_run:
        undecided += f"; not run: {_ids(not_run)}"
    wrong = (
        wrong if wrong.endswith("…") else wrong.rstrip(" .") + "."
    )  # a cut reason keeps its mark
    return [f"- {right.strip()}", f"- {wrong}", f"- {undecided}."]


def summary_table(claims: list[dict[str, Any]], anchor: Any, md: Any) -> list[str]:
    """One table, formal claims first: ID, type, verdict, kind of finding, reason, claim."""
    order = sorted(claims, key=lambda c: _claim_type(c) != "formal")
    rows = [
        f"| [{c['id']}](#{anchor(c['id'])}) | {_claim_type(c)} | **{c['verdict']}** | "
        f"{md(c['finding'])} | {md(c['reason'])} | "
        f"{md(one_line(c['where'] + ': ' + c['statement'], 70))} |"
        for c in order
    ]
    return [
        "| ID | type | verdict | kind of finding | why (one line) | claim |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ]


# --------------------------------------------------------------------------- terminal
def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


_OUTCOME_MEANS = {
    "passed": "passed (HOLDS, HOLDS-FOR, APPROXIMATE or INCONCLUSIVE)",
    "xfailed": "xfailed (FAILS: a strict xfail that carries the numbers)",
    "skipped": "skipped (NOT-RUN)",
    "failed": "failed (ERROR)",
    "error": "errors (ERROR)",
    "xpassed": "xpassed (ERROR)",
    "not run": "not run (NOT-RUN)",
}


def pytest_counts_text(report: dict[str, Any]) -> str:
    """pytest's counts of the claim tests, each with the verdicts it stands for."""
    outcomes = report.get("test_outcomes") or {}
    n = sum(outcomes.values())
    parts = [f"{k_n} {_OUTCOME_MEANS.get(k, k)}" for k, k_n in outcomes.items() if k_n]
    return f"{n} claim tests: " + ", ".join(parts) if n else "no claim test ran"


def results_lines(results: dict[str, Any] | None) -> list[str]:
    if not results:
        return []
    folder = results.get("folder") or "experiments/results"
    if results.get("manifest_problem"):
        head = f"**Result files: {results['manifest_problem']}**"
    elif not results.get("manifest"):
        head = f"**Result files: no MANIFEST.json in {folder}; no committed result was read.**"
    else:
        head = (
            f"Result files: {len(results['read'])} read, each verified against its sha256 in "
            f"`{folder}/MANIFEST.json` ({len(results['listed'])} listed)"
        )
    stray = [r["path"] for r in results["ignored"] if "not in" in r["why"]]
    known = len(results["ignored"]) - len(stray)
    tail = []
    if known:
        tail.append(f"{known} committed files not read by the audit (notes, PDFs, sidecars)")
    if stray:
        shown = ", ".join(f"`{p}`" for p in stray[:5]) + (" …" if len(stray) > 5 else "")
        tail.append(f"**{len(stray)} ignored, not in the manifest: {shown}**")
    return [head + ("; " + "; ".join(tail) if tail else "") + ". [Details](#result-files)."]


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def terminal_table(report: dict[str, Any], *, width: int = 120) -> list[str]:
    """Lines of the terminal table: ID, claim, verdict, key number."""
    rows = [("ID", "claim", "verdict", "key number")]
    for c in report["claims"]:
        rows.append((c["id"], c["statement"], c["verdict"], c["key_number"]))
    claim_w, verdict_w = 36, 12
    key_w = max(30, width - 5 - claim_w - verdict_w - 6)
    out = []
    for i, (cid, claim, verdict, key) in enumerate(rows):
        claim_cell = f"{_cut(claim, claim_w):<{claim_w}}"
        out.append(f"{cid:<5}  {claim_cell}  {verdict:<{verdict_w}}  {_cut(key, key_w)}")
        if i == 0:
            out.append("-" * min(width, 5 + claim_w + verdict_w + key_w + 6))
    out.append(
        f"{len(report['claims'])} claims: {counts_text(report['counts'])}; audit run time "
        f"{report['duration_s']:.1f} s"
    )
    out.append(f"(pytest's counts below are of tests, not claims: {pytest_counts_text(report)})")
    for line in results_lines(report.get("results")):
        out.append(
            line.replace("**", "").replace("`", "").replace(" [Details](#result-files).", "")
        )
    return out
