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
import shutil
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


    @pytest.mark.claim("X-2")
    def test_claim_X_2_forward_mode(audit):
        """torch.func.jvp: goes through torch's deprecated torch.jit.script internally."""
        import torch
        from torch.func import jvp

        _, tangent = jvp(lambda x: (x**2).sum(), (torch.ones(3),), (torch.ones(3),))
        audit.holds(key=f"jvp = {float(tangent)}")


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
    ("test_claim_X_2_forward_mode", "HOLDS", "passed", "jvp = 6.0"),
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


def test_torch_internal_deprecation_warnings_stay_out_of_the_output(scenario_run: dict) -> None:
    """torch.func's jvp warns that torch.jit.script is deprecated: a torch internal that the
    plugin filters, so the audit's output has no warnings summary."""
    out = scenario_run["proc"].stdout
    assert "warnings summary" not in out and "DeprecationWarning" not in out, out[-3000:]


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
    assert md.count("\n## ") == len(CLAIMS) + 1  # one section per claim, then result files
    for claim in CLAIMS:
        assert f"| [{claim.id}](#claim-{claim.id.lower()}) |" in md  # summary row
        assert f"\n## {claim.id} (" in md  # its section


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


def test_schema_requires_every_claim() -> None:
    """The schema's claim count follows the claim list (a report that drops a claim is refused)."""
    schema = json.loads(SCHEMA_PATH.read_text())
    assert schema["properties"]["claims"]["minItems"] == len(CLAIMS)


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
    assert lines[0].startswith("ID") and len(lines) == len(CLAIMS) + 4
    assert all(len(line) <= 120 for line in lines[2 : 2 + len(CLAIMS)])
    assert "pytest's counts below are of tests, not claims" in lines[-1]


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
    assert len(rows) == 27
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


def _string_imports(source: str) -> list[str]:
    """``line: call`` for each call named ``require`` or ``import_module`` that is passed a
    string literal starting with "mamlconv." (a module reached by name, not imported)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in ("require", "import_module"):
            continue
        args = [*node.args, *(k.value for k in node.keywords)]
        if any(
            isinstance(a, ast.Constant)
            and isinstance(a.value, str)
            and a.value.startswith("mamlconv.")
            for a in args
        ):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_audit_imports_the_package_plainly() -> None:
    """The audit reaches the package through plain imports: a missing or renamed module fails
    the audit (an ImportError at collection), it is never recorded as NOT-RUN."""
    assert _string_imports('audit.require("mamlconv.theory.thresholds", "beta_c")')
    assert _string_imports('importlib.import_module(name="mamlconv.numerics.maml")')
    assert not _string_imports('import_module("json"); require("x")')
    found = {
        path.name: hits
        for path in sorted((REPO / "paper_checks").glob("*.py"))
        if (hits := _string_imports(path.read_text()))
    }
    assert not found, f"string imports of the package in paper_checks/ (import it instead): {found}"


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


def test_cli_audit_checks_out_before_running(tmp_path: Path) -> None:
    """A folder where the report file should be: refused at once (exit 2, one line), before
    any claim test runs -- not after minutes of work with a traceback."""
    out = tmp_path / "out"
    (out / "audit-report.md").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "mamlconv", "audit", "--out", str(out), "-k", "S2_1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout == "", proc.stdout[-2000:]  # pytest never started
    assert proc.stderr.count("\n") == 1 and "audit-report.md" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_cli_audit_refuses_an_unwritable_out(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mamlconv", "audit", "--out", str(out), "-k", "S2_1"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        out.chmod(0o755)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout[-2000:] + proc.stderr
    assert "not writable" in proc.stderr and str(out) in proc.stderr, proc.stderr


# --------------------------------------------------------------- committed result files
RESULTS = REPO / "experiments" / "results"


def test_committed_manifest_verifies() -> None:
    """Every committed file under experiments/results/ is either listed in MANIFEST.json with
    its sha256 (read by the audit) or listed as not read; `... manifest check` says so."""
    from mamlconv.paper_checks import manifest

    assert manifest.check(RESULTS) == []
    listed = manifest.load_manifest(RESULTS)
    assert listed is not None
    kinds = {e.kind for e in listed.files.values()}
    assert {"sweep", "figure-record", "comparison", "figure"} <= kinds
    for entry in listed.files.values():  # the claims named are claims, figures are listed
        assert set(entry.claims) <= set(BY_ID), entry
        assert all(f in listed.files for f in entry.figures), entry


def test_manifest_command_line(tmp_path: Path) -> None:
    """add (with the figure beside), check (unlisted and changed files), exclude, update."""
    from mamlconv.paper_checks import manifest

    results = tmp_path / "results"
    results.mkdir()
    for name in ("fig1.json", "fig1.png"):
        (results / name).write_bytes((RESULTS / name).read_bytes())
    (results / "notes.md").write_text("notes\n")

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mamlconv", "manifest", "--results", str(results), *argv],
            capture_output=True,
            text=True,
            timeout=120,
        )

    proc = cli("add", str(results / "fig1.json"))
    assert proc.returncode == 0, proc.stderr
    assert "figure-record for S2-7 (with fig1.png)" in proc.stdout
    proc = cli("check")
    assert proc.returncode == 1 and "notes.md is not in MANIFEST.json" in proc.stderr
    assert cli("exclude", "notes.md", "--why", "notes").returncode == 0
    assert cli("check").returncode == 0
    with open(results / "fig1.png", "ab") as fh:
        fh.write(b"x")
    proc = cli("check")
    assert proc.returncode == 1 and "fig1.png changed since it was registered" in proc.stderr
    proc = cli("update")
    assert proc.returncode == 0 and "1 file(s) changed: fig1.png" in proc.stdout, proc.stdout
    assert cli("check").returncode == 0
    proc = cli("add", "notes.md")  # kind 'data' needs the claims it serves
    assert proc.returncode == 2 and "--claims" in proc.stderr, proc.stderr
    proc = cli("add", "notes.md", "--claims", "S9-9")
    assert proc.returncode == 2 and "S9-9" in proc.stderr, proc.stderr
    assert cli("add", "notes.md", "--claims", "S4-1", "--what", "a note").returncode == 0
    entry = manifest.load_manifest(results).files["notes.md"]
    assert (entry.kind, entry.claims, entry.what) == ("data", ("S4-1",), "a note")


def _run_audit(results: Path, out: Path, select: str, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "mamlconv", "audit", "--out", str(out), "-k", select, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MAMLCONV_RESULTS": str(results), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    report = json.loads((out / "audit-report.json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t for c in report["claims"] for t in c["tests"]}
    return {"proc": proc, "report": report, "tests": tests}


@pytest.fixture(scope="module")
def damaged_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The committed results with three kinds of damage, audited once: a Fig. 1 seed record no
    longer JSON (MANIFEST.json not updated: a sha256 mismatch), fig5.json no longer JSON with a
    manifest that matches it, the Omniglot sweep truncated with a manifest that matches it."""
    from mamlconv.paper_checks import manifest

    root = tmp_path_factory.mktemp("damaged")
    results = root / "results"
    shutil.copytree(RESULTS, results)
    (results / "readings" / "fig1_50000it_seed0.json").write_text('{"figure": "fig1", "grad')
    (results / "fig5.json").write_text("{not json")
    npz = results / "omniglot_paper_7x7_h200.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    data = json.loads((results / manifest.MANIFEST_NAME).read_text())
    for row in data["files"]:
        if row["path"] in ("fig5.json", npz.name):
            row["sha256"] = manifest.sha256_of(results / row["path"])
            row["size"] = (results / row["path"]).stat().st_size
    (results / manifest.MANIFEST_NAME).write_text(json.dumps(data))
    return _run_audit(
        results,
        root / "out",
        "test_claim_S2_7_gradient_norm_grows or test_claim_S3_2_tg_negligible or "
        "test_claim_S4_2_omniglot or test_claim_X_5_predictions_networks",
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "test_claim_S2_7_gradient_norm_grows",
            "fig1_50000it_seed0.json changed since it was registered",
        ),
        ("test_claim_S3_2_tg_negligible", "fig5.json is not valid JSON"),
        ("test_claim_S4_2_omniglot[exact]", "omniglot_paper_7x7_h200.npz is not a readable sweep"),
    ],
    ids=["changed-fig1-record", "corrupt-fig5", "truncated-npz"],
)
def test_damaged_result_is_an_error_naming_the_file(
    damaged_results: dict, name: str, text: str
) -> None:
    """Not NOT-RUN "result file missing" with exit 0, not BadZipFile without a name."""
    test = damaged_results["tests"][name]
    assert test["verdict"] == "ERROR", test
    assert text in test["key_number"], test["key_number"]
    assert damaged_results["proc"].returncode == 1


def test_undamaged_files_still_decide(damaged_results: dict) -> None:
    test = damaged_results["tests"]["test_claim_X_5_predictions_networks"]
    assert test["verdict"] == "HOLDS-FOR", test


def test_manifest_errors_name_the_file(tmp_path: Path) -> None:
    """A corrupt manifest, a listed file that is gone, a changed one: each an error naming the
    file and the fix; survey() tells unlisted files from files listed as not read."""
    from mamlconv.paper_checks import manifest

    results = tmp_path / "results"
    results.mkdir()
    (results / "fig5.json").write_bytes((RESULTS / "fig5.json").read_bytes())
    (results / "notes.md").write_text("n\n")
    (results / "stray").mkdir()
    (results / "stray" / "fig5.json").write_text("{}")
    manifest.add(results, ["fig5.json"])
    manifest.exclude(results, ["notes.md"], why="notes")
    entry = manifest.load_manifest(results).files["fig5.json"]
    assert manifest.load_json(results, entry)["figure"] == "fig5"
    seen = manifest.survey(results)
    assert seen["listed"] == ["fig5.json"] and "fig5.json" in seen["read"]
    assert seen["ignored"] == [
        {"path": "notes.md", "why": "committed, not read by the audit: notes"},
        {"path": "stray/fig5.json", "why": "not in MANIFEST.json"},
    ]
    (results / "fig5.json").write_text("{}")
    with pytest.raises(manifest.ResultFileError, match="fig5.json changed since it was"):
        manifest.verify(results, entry)
    (results / "fig5.json").unlink()
    with pytest.raises(manifest.ResultFileError, match="fig5.json is listed in MANIFEST.json"):
        manifest.verify(results, entry)
    (results / "MANIFEST.json").write_text("{oops")
    with pytest.raises(manifest.ResultFileError, match="MANIFEST.json is corrupt"):
        manifest.load_manifest(results)
    assert "MANIFEST.json is corrupt" in manifest.survey(results)["manifest_problem"]


def test_committed_glob_returns_only_listed_verified_files(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What a claim test gets for ``readings/fig1_*.json``: the listed files, verified; an
    unlisted one in the same folder is not among them; none listed is NOT-RUN naming the fix."""
    from mamlconv.paper_checks import manifest
    from mamlconv.paper_checks.helpers import committed_figure_record, committed_glob
    from mamlconv.paper_checks.verdicts import ClaimAudit

    results = tmp_path / "results"
    (results / "readings").mkdir(parents=True)
    fig1 = (RESULTS / "fig1.json").read_bytes()
    for name in ("fig1.json", "readings/fig1_5000it_seed1.json", "readings/fig1_5000it_seed2.json"):
        (results / name).write_bytes(fig1)
    manifest.add(results, ["fig1.json", "readings/fig1_5000it_seed1.json"])

    def recorder() -> ClaimAudit:
        return ClaimAudit(
            request=request,
            claim_id="S2-7",
            slow=False,
            gpu=False,
            figure_dir=tmp_path / "figs",
            results_dir=results,
        )

    got = committed_glob(recorder(), "readings/fig1_*.json", what="Fig. 1 records", make="m")
    assert got == [results / "readings" / "fig1_5000it_seed1.json"]
    # a per-seed record of the same figure does not make Fig. 1's own record ambiguous
    assert committed_figure_record(recorder(), "fig1", caption="c")["figure"] == "fig1"
    with pytest.raises(pytest.skip.Exception, match="no Fig. 5 records .* in MANIFEST.json"):
        committed_glob(recorder(), "readings/fig5_*.json", what="Fig. 5 records", make="m")


def test_cli_audit_child_gets_absolute_folders(tmp_path: Path, monkeypatch) -> None:
    """The child runs in a temporary folder, so a relative MAMLCONV_RESULTS / _DATA / _CACHE
    must reach it as an absolute path (else the audit would find no results)."""
    from mamlconv.cli.audit import child_environment

    monkeypatch.chdir(tmp_path)
    env = child_environment(
        {"MAMLCONV_RESULTS": "res", "MAMLCONV_DATA": f"a{os.pathsep}/abs/b", "PATH": "x"}
    )
    assert env["MAMLCONV_RESULTS"] == str(tmp_path.resolve() / "res")
    assert env["MAMLCONV_DATA"] == f"{tmp_path.resolve() / 'a'}{os.pathsep}/abs/b"
    assert env["PATH"] == "x" and env["PYTHONDONTWRITEBYTECODE"] == "1"
