"""Tests of the claims audit itself (issue 6): verdict plumbing, report schema, coverage, CLI.

The behaviour of the pytest plugin is checked end to end: a small file of claim tests (a right
claim, a deliberately wrong one, a stale FAILS, a missing result file, a test that records no
verdict, a misnamed one) is written to a temporary folder and run by pytest in a child process
with the plugin; its report is then read back.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from mamlconv.paper_checks.claims import BY_ID, CLAIMS, claim_id_from_test_name
from mamlconv.paper_checks.report import SCHEMA_PATH, build_report, terminal_table, validate
from mamlconv.paper_checks.verdicts import Record, combine, jsonable

REPO = Path(__file__).resolve().parents[1]
CLAIMS_MD = REPO / "docs/CLAIMS.md"

SCENARIOS = textwrap.dedent(
    '''
    import pytest


    @pytest.mark.claim("S3-6")
    def test_claim_S3_6_right(audit):
        """A right claim: at alpha = 0, beta_c = 2 / lambda_max (the package's beta_c)."""
        from mamlconv.theory.thresholds import beta_c

        got = float(beta_c([0.5, 2.0], 0.0, model="surrogate"))
        assert got == pytest.approx(2 / 2.0, rel=1e-12)
        audit.holds(key=f"beta_c = {got}")


    @pytest.mark.claim("S3-4")
    def test_claim_S3_4_deliberately_wrong(audit):
        """A deliberately wrong claim: 'beta_c = 1 / lambda_max at alpha = 0' (truth: 2/lambda)."""
        from mamlconv.theory.thresholds import beta_c

        got = float(beta_c([0.5, 2.0], 0.0, model="surrogate"))
        assert got == pytest.approx(1 / 2.0, rel=1e-12), f"beta_c = {got}, claimed 0.5"
        audit.holds(key=f"beta_c = {got}")


    @pytest.mark.claim("S3-5")
    def test_claim_S3_5_fails_as_measured(audit):
        """A FAILS verdict whose paper statement is false: a strict xfail, not red."""
        audit.fails(paper_statement_holds=False, statement="1 + 1 == 3",
                    key="measured 1 + 1 = 2")


    @pytest.mark.claim("S3-3")
    def test_claim_S3_3_stale_fails(audit):
        """A FAILS verdict whose paper statement in fact holds: strict XPASS, red."""
        audit.fails(paper_statement_holds=True, statement="1 + 1 == 2",
                    key="measured 1 + 1 = 2")


    @pytest.mark.claim("S4-1")
    def test_claim_S4_1_missing_result_file(audit):
        """An empirical claim whose committed result file is absent: NOT-RUN, not an error."""
        path = audit.result_file("sinusoid/does-not-exist.json", how="mamlconv sweep sinusoid")
        raise AssertionError(f"unreachable: {path}")


    @pytest.mark.claim("S4-2")
    @pytest.mark.slow
    def test_claim_S4_2_slow_tier(audit):
        """A slow-tier claim test: NOT-RUN without --slow."""
        audit.holds(key="ran")


    @pytest.mark.claim("S2-4")
    def test_claim_S2_4_no_verdict(audit):
        """Ends without a verdict: made red."""


    @pytest.mark.claim("S2-5")
    def test_claim_S2_6_misnamed(audit):
        """Marker and name disagree: made red at setup."""
        audit.holds(key="x")


    @pytest.mark.claim("X-4")
    def test_claim_X_4_two_verdicts(audit):
        """Records a second verdict: red."""
        audit.holds(key="one")
        audit.holds(key="two")
    '''
)


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run SCENARIOS with the plugin once; return exit code, report and output."""
    root = tmp_path_factory.mktemp("audit_scenarios")
    (root / "test_scenarios.py").write_text(SCENARIOS)
    empty_results = root / "no-results"
    empty_results.mkdir()
    report_path = root / "out" / "report.md"
    env = {**os.environ, "MAMLCONV_RESULTS": str(empty_results), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("MAMLCONV_SLOW", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "test_scenarios.py",
            "-p",
            "mamlconv.paper_checks.plugin",
            "-p",
            "no:cacheprovider",
            "--audit-report",
            str(report_path),
            "-rA",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(report_path.with_suffix(".json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t for c in report["claims"] for t in c["tests"]}
    claims = {c["id"]: c for c in report["claims"]}
    return {
        "proc": proc,
        "report": report,
        "tests": tests,
        "claims": claims,
        "report_path": report_path,
    }


# (test name, expected verdict, expected pytest outcome, text the key/evidence must contain)
SCENARIO_CASES = [
    ("test_claim_S3_6_right", "HOLDS", "passed", "beta_c = 1.0"),
    ("test_claim_S3_4_deliberately_wrong", "ERROR", "failed", "claimed 0.5"),
    ("test_claim_S3_5_fails_as_measured", "FAILS", "xfailed", "measured 1 + 1 = 2"),
    ("test_claim_S3_3_stale_fails", "ERROR", "failed", "now holds"),
    ("test_claim_S4_1_missing_result_file", "NOT-RUN", "skipped", "result file missing"),
    ("test_claim_S4_2_slow_tier", "NOT-RUN", "skipped", "needs --slow"),
    ("test_claim_S2_4_no_verdict", "ERROR", "failed", "no verdict"),
    ("test_claim_S2_6_misnamed", "ERROR", "error", "not named test_claim_S2_5_"),
    ("test_claim_X_4_two_verdicts", "ERROR", "failed", "exactly one verdict"),
]


@pytest.mark.parametrize(
    ("name", "verdict", "outcome", "text"), SCENARIO_CASES, ids=[c[0][11:] for c in SCENARIO_CASES]
)
def test_plugin_turns_each_outcome_into_a_verdict(
    scenario_run: dict, name: str, verdict: str, outcome: str, text: str
) -> None:
    test = scenario_run["tests"][name]
    assert (test["verdict"], test["outcome"]) == (verdict, outcome), test
    assert text in test["key_number"] + json.dumps(test["evidence"]), test


def test_deliberately_wrong_claim_turns_red(scenario_run: dict) -> None:
    proc = scenario_run["proc"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert re.search(r"FAILED test_scenarios.py::test_claim_S3_4_deliberately_wrong", out), out
    assert re.search(r"FAILED test_scenarios.py::test_claim_S3_3_stale_fails", out), out
    assert re.search(r"XFAIL test_scenarios.py::test_claim_S3_5_fails_as_measured", out), out
    assert "PASSED test_scenarios.py::test_claim_S3_6_right" in out, out


def test_strict_xfail_reason_carries_the_numbers(scenario_run: dict) -> None:
    out = scenario_run["proc"].stdout
    line = next(
        ln
        for ln in out.splitlines()
        if "test_claim_S3_5_fails_as_measured" in ln and ln.startswith("XFAIL")
    )
    assert "FAILS S3-5: measured 1 + 1 = 2" in line, line


def test_missing_result_file_is_not_run_with_reason(scenario_run: dict) -> None:
    claim = scenario_run["claims"]["S4-1"]
    assert claim["verdict"] == "NOT-RUN"
    assert "experiments/results/sinusoid/does-not-exist.json" in claim["key_number"]
    assert "mamlconv sweep sinusoid" in claim["key_number"]


def test_scenario_report_validates_and_covers_every_claim(scenario_run: dict) -> None:
    report = scenario_run["report"]
    validate(report)
    assert [c["id"] for c in report["claims"]] == [c.id for c in CLAIMS]
    for claim in report["claims"]:
        assert claim["verdict"] and claim["key_number"], claim
    # rows without a test in this run say so
    assert scenario_run["claims"]["S5-1"]["key_number"] == "no test collected in this run"
    assert sum(report["counts"].values()) == len(CLAIMS)
    md = scenario_run["report_path"].read_text()
    assert md.count("\n## ") == len(CLAIMS)
    for claim in CLAIMS:
        assert f"| {claim.id} |" in md


def test_terminal_table_lists_every_claim(scenario_run: dict) -> None:
    out = scenario_run["proc"].stdout
    assert "claims audit (Takagi et al., 2019)" in out
    for claim in CLAIMS:
        assert re.search(rf"^{re.escape(claim.id)}\s", out, re.M), claim.id


# --------------------------------------------------------------- schema can fail
def _minimal_report() -> dict:
    rec = Record(nodeid="x::test_claim_S2_1_a", claim_id="S2-1", verdict="HOLDS", key_number="k")
    return build_report(
        {rec.nodeid: rec},
        {rec.nodeid: "S2-1"},
        tiers={"slow": False, "gpu": False},
        duration_s=1.0,
        report_dir=Path.cwd(),
    )


def _set(path: list, value):
    def change(report: dict) -> dict:
        node = report
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return report

    return change


BROKEN = [
    ("unknown-verdict", _set(["claims", 0, "verdict"], "MAYBE")),
    (
        "holds-for-without-setting",
        lambda r: _set(["claims", 0, "tests", 0, "verdict"], "HOLDS-FOR")(r),
    ),
    (
        "approximate-without-error",
        lambda r: _set(["claims", 0, "tests", 0, "verdict"], "APPROXIMATE")(r),
    ),
    ("fails-not-xfailed", lambda r: _set(["claims", 0, "tests", 0, "verdict"], "FAILS")(r)),
    ("claim-missing", lambda r: {**r, "claims": r["claims"][:-1]}),
    ("empty-key-number", _set(["claims", 0, "key_number"], "")),
    ("bad-claim-id", _set(["claims", 0, "id"], "S9")),
    ("extra-field", lambda r: {**r, "surprise": 1}),
]


def test_schema_accepts_a_built_report() -> None:
    validate(_minimal_report())


@pytest.mark.parametrize("change", [c[1] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_schema_rejects_a_broken_report(change) -> None:
    report = json.loads(json.dumps(_minimal_report()))
    with pytest.raises(jsonschema.ValidationError):
        validate(change(report))


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


# --------------------------------------------------------------- verdict helpers
@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        ([], "NOT-RUN"),
        (["NOT-RUN", "HOLDS"], "HOLDS"),
        (["HOLDS", "APPROXIMATE"], "APPROXIMATE"),
        (["HOLDS", "HOLDS-FOR"], "HOLDS-FOR"),
        (["HOLDS", "FAILS", "NOT-RUN"], "FAILS"),
        (["FAILS", "ERROR"], "ERROR"),
    ],
    ids=["none", "slow-not-run", "approx", "holds-for", "fails", "error"],
)
def test_combine(verdicts: list[str], combined: str) -> None:
    assert combine(verdicts) == combined


def test_jsonable_is_strict_json() -> None:
    import numpy as np

    value = jsonable({"a": np.float64("inf"), "b": np.arange(3), "c": [float("nan"), 1.5]})
    assert value == {"a": None, "a_status": "inf", "b": [0, 1, 2], "c": [None, 1.5]}
    json.dumps(value, allow_nan=False)


def test_report_of_a_table_is_terminal_safe() -> None:
    lines = terminal_table(_minimal_report())
    assert lines[0].startswith("ID") and len(lines) == len(CLAIMS) + 3
    assert all(len(line) <= 120 for line in lines[2:-1])


# --------------------------------------------------------------- coverage of docs/CLAIMS.md
def _claims_md_rows() -> list[tuple[str, str]]:
    rows = []
    for line in CLAIMS_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"(S\d|X)-\d+", cells[0]):
            rows.append((cells[0], cells[1]))
    return rows


def test_registry_matches_claims_md() -> None:
    rows = _claims_md_rows()
    assert len(rows) == 24
    assert [(c.id, c.where) for c in CLAIMS] == rows


def _audit_test_names() -> dict[str, list[str]]:
    """Claim ID -> names of the test functions of paper_checks/ that audit it (by AST)."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO / "paper_checks").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                cid = claim_id_from_test_name(node.name)
                assert cid is not None, f"{path.name}::{node.name} is not a test_claim_<ID>_ test"
                found.setdefault(cid, []).append(node.name)
    return found


def test_every_claim_has_an_audit_test() -> None:
    found = _audit_test_names()
    missing = [c.id for c in CLAIMS if c.id not in found]
    assert not missing, f"docs/CLAIMS.md rows without a test in paper_checks/: {missing}"


@pytest.mark.parametrize(
    ("name", "cid"),
    [
        ("test_claim_S2_1_maml_update", "S2-1"),
        ("test_claim_X_5_best[exact]", "X-5"),
        ("test_claim_S3_10_x", None),
        ("test_other", None),
    ],
    ids=["plain", "parametrised", "unknown-row", "not-a-claim"],
)
def test_claim_id_from_test_name(name: str, cid: str | None) -> None:
    assert claim_id_from_test_name(name) == cid
    if cid is not None:
        assert name.startswith(BY_ID[cid].test_prefix)


# --------------------------------------------------------------- the CLI
def test_cli_audit_rejects_a_file_as_out(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "mamlconv", "audit", "--out", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and str(target) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_audit_command_line(tmp_path: Path) -> None:
    from mamlconv.cli.audit import pytest_command

    cmd = pytest_command(tmp_path, slow=True, gpu=False, select="S3_5")
    assert cmd[:3] == [sys.executable, "-m", "pytest"]
    assert "--pyargs" in cmd and "mamlconv.paper_checks" in cmd
    assert cmd[cmd.index("--audit-report") + 1] == str(tmp_path / "audit-report.md")
    assert "--slow" in cmd and "--gpu" not in cmd
    assert cmd[cmd.index("-k") + 1] == "S3_5"


def test_cli_audit_runs_a_selected_claim(tmp_path: Path) -> None:
    """`mamlconv audit -k ...` runs the installed audit and writes a valid report into --out."""
    out = tmp_path / "audit-out"
    proc = subprocess.run(
        [sys.executable, "-m", "mamlconv", "audit", "--out", str(out), "-q", "-k", "S2_1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((out / "audit-report.json").read_text())
    validate(report)
    by_id = {c["id"]: c for c in report["claims"]}
    assert by_id["S2-1"]["verdict"] == "HOLDS"
    assert (out / "audit-report.md").is_file()
    assert not (tmp_path / "audit-report.md").exists()  # nothing in the caller's folder
