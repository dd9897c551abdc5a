"""The pytest plugin of the package: test tiers, the claims audit's ``audit`` fixture, its report.

Registered for the whole repository through ``-p mamlconv.paper_checks.plugin`` in pyproject's
addopts, and passed explicitly by ``mamlconv audit`` (``pytest --pyargs mamlconv.paper_checks``),
so that an installed copy of the audit has the same options. It stays light: pytest only.

Options
- ``--slow`` (or ``MAMLCONV_SLOW=1``): run tests marked ``slow`` (empirical claims rerun on CPU at
  the largest reasonable size); without it they are skipped and reported NOT-RUN.
- ``--gpu`` (or ``MAMLCONV_GPU=1``): run tests marked ``gpu`` (paper-size reruns on CUDA).
- ``--audit-report PATH`` (default ``audit-report.md``; empty string: no report): the Markdown
  report, with ``PATH.with_suffix('.json')`` beside it and the figures and rerun result files
  in ``PATH.with_suffix('.files')/`` (``audit-report.files/``; ignored by git with the report;
  committed figures the report shows are copied into its ``committed/``, so the folder stands
  alone). Written only when claim tests were collected; it names the result files read through
  experiments/results/MANIFEST.json and those ignored (:mod:`mamlconv.paper_checks.manifest`).

Every test of the audit is named ``test_claim_<ID>_<slug>`` (``S2-1`` -> ``S2_1``), carries
``@pytest.mark.claim("<ID>")`` and records one verdict through the ``audit`` fixture
(:class:`mamlconv.paper_checks.verdicts.ClaimAudit`). The plugin turns every outcome into a
verdict: a skip at setup (tier not enabled) is NOT-RUN with its reason, a strict xfail is FAILS,
a red test is ERROR, and a passing test that recorded no verdict is made red. INCONCLUSIVE (the
evidence cannot decide) is recorded by a passing test, like HOLDS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mamlconv.paper_checks.claims import BY_ID, CLAIMS, claim_id_from_test_name
from mamlconv.paper_checks.verdicts import ClaimAudit, Record

_TRUE = {"1", "true", "yes", "on"}


@dataclass
class AuditState:
    """Everything the plugin keeps for one pytest session."""

    slow: bool
    gpu: bool
    report_path: Path | None
    started: float = field(default_factory=time.monotonic)
    records: dict[str, Record] = field(default_factory=dict)
    collected: dict[str, str] = field(default_factory=dict)  # nodeid -> claim id
    written: list[Path] = field(default_factory=list)

    @property
    def figure_dir(self) -> Path:
        """Figures and rerun results of this session: ``<report>.files/`` beside the report."""
        report = self.report_path if self.report_path is not None else Path.cwd() / "audit-report"
        return report.with_suffix(".files")


_STATE = pytest.StashKey[AuditState]()
_AUDIT = pytest.StashKey[ClaimAudit]()
_PROBLEM = pytest.StashKey[str]()


def _add(group: Any, *args: Any, **kwargs: Any) -> None:
    try:
        group.addoption(*args, **kwargs)
    except ValueError:  # another plugin or conftest registered the same flag first: share it
        pass


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mamlconv audit", "claims audit of Takagi et al. (2019)")
    _add(
        group,
        "--slow",
        action="store_true",
        default=False,
        help="run tests marked slow (also MAMLCONV_SLOW=1)",
    )
    _add(
        group,
        "--gpu",
        action="store_true",
        default=False,
        help="run tests marked gpu: paper-size reruns on CUDA (also MAMLCONV_GPU=1)",
    )
    _add(
        group,
        "--audit-report",
        action="store",
        default="audit-report.md",
        metavar="PATH",
        help="Markdown audit report (JSON beside it); '' for none. Default: audit-report.md",
    )


def _flag(config: pytest.Config, name: str, env: str) -> bool:
    return bool(config.getoption(name, default=False)) or (
        os.environ.get(env, "").strip().lower() in _TRUE
    )


def slow_enabled(config: pytest.Config) -> bool:
    """The --slow tier is on (flag or MAMLCONV_SLOW=1)."""
    return _flag(config, "slow", "MAMLCONV_SLOW")


def gpu_enabled(config: pytest.Config) -> bool:
    """The --gpu tier is on (flag or MAMLCONV_GPU=1)."""
    return _flag(config, "gpu", "MAMLCONV_GPU")


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so that `pytest --pyargs mamlconv.paper_checks` works from an
    # installed copy, outside the repository's pyproject.toml.
    # torch.func's forward-mode autodiff goes through a deprecated torch.jit.script path: a
    # torch internal the reader of the audit can do nothing about.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:torch.*")
    for line in (
        "slow: long-running; opt in with --slow or MAMLCONV_SLOW=1",
        "gpu: needs a CUDA device; opt in with --gpu",
        "latex: needs pdflatex on PATH",
        "claim(id): the docs/CLAIMS.md row that a paper_checks test audits",
    ):
        config.addinivalue_line("markers", line)
    report = config.getoption("audit_report", default="audit-report.md")
    config.stash[_STATE] = AuditState(
        slow=slow_enabled(config),
        gpu=gpu_enabled(config),
        report_path=Path(report).resolve() if report else None,
    )


def _state(config: pytest.Config) -> AuditState:
    return config.stash[_STATE]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    for item in items:
        if item.get_closest_marker("slow") and not state.slow:
            item.add_marker(pytest.mark.skip(reason="needs --slow (or MAMLCONV_SLOW=1)"))
        if item.get_closest_marker("gpu") and not state.gpu:
            item.add_marker(pytest.mark.skip(reason="needs --gpu (a CUDA device)"))
        mark = item.get_closest_marker("claim")
        from_name = (
            claim_id_from_test_name(item.name) if item.name.startswith("test_claim_") else None
        )
        if mark is None and from_name is None:
            continue
        marked = str(mark.args[0]) if mark is not None and mark.args else None
        problem = None
        if mark is None:
            problem = f"{item.name} is a claim test but lacks @pytest.mark.claim({from_name!r})"
        elif marked not in BY_ID:
            problem = f"claim marker {marked!r} is not a row of docs/CLAIMS.md"
        elif from_name != marked:
            problem = (
                f"{item.name} is marked claim({marked!r}) but is not named "
                f"{BY_ID[marked].test_prefix}<slug>"
            )
        elif "audit" not in getattr(item, "fixturenames", ()):
            problem = f"{item.name} does not use the audit fixture, so it records no verdict"
        state.collected[item.nodeid] = marked if marked in BY_ID else (from_name or "?")
        if problem:
            item.stash[_PROBLEM] = problem


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Deselected claim tests (``-k``, ``-m``) are not part of this run's report."""
    for item in items:
        state = item.config.stash.get(_STATE, None)
        if state is not None:
            state.collected.pop(item.nodeid, None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    problem = item.stash.get(_PROBLEM, None)
    if problem:
        pytest.fail(f"audit: {problem}", pytrace=False)


@pytest.fixture
def audit(request: pytest.FixtureRequest) -> Iterator[ClaimAudit]:
    """The verdict recorder of one claim test (see :class:`ClaimAudit`).

    While the test runs, torch uses ``MAMLCONV_AUDIT_THREADS`` threads (default 1): the claims
    are many small float64 computations, for which a second thread only adds synchronisation
    (measured here: the App. C linear-regression grids take 13 s on one thread and 199 s on two
    when the machine's two cores are shared with other work).
    """
    import torch

    from mamlconv.paper_checks import results_dir

    state = _state(request.config)
    claim_id = state.collected.get(request.node.nodeid)
    if claim_id is None or claim_id not in BY_ID:
        pytest.fail("the audit fixture is for tests named test_claim_<ID>_... with a claim marker")
    recorder = ClaimAudit(
        request=request,
        claim_id=claim_id,
        slow=state.slow,
        gpu=state.gpu,
        figure_dir=state.figure_dir,
        results_dir=results_dir(),
    )
    request.node.stash[_AUDIT] = recorder
    threads = torch.get_num_threads()
    torch.set_num_threads(_audit_threads())
    try:
        yield recorder
    finally:
        torch.set_num_threads(threads)


def _audit_threads() -> int:
    text = os.environ.get("MAMLCONV_AUDIT_THREADS", "1").strip()
    try:
        return max(1, int(text))
    except ValueError:
        raise pytest.UsageError(
            f"MAMLCONV_AUDIT_THREADS must be an integer, got {text!r}"
        ) from None


def _reason(rep: pytest.TestReport) -> str:
    longrepr = rep.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    return str(longrepr).strip().splitlines()[-1] if longrepr else ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep: pytest.TestReport = yield
    state = _state(item.config)
    claim_id = state.collected.get(item.nodeid)
    if claim_id is None:
        return rep
    recorder = item.stash.get(_AUDIT, None)
    rec = recorder.record if recorder is not None else None
    nodeid = item.nodeid

    def put(verdict: str, key: str, **evidence: Any) -> Record:
        new = Record(
            nodeid=nodeid, claim_id=claim_id, verdict=verdict, key_number=key, evidence=evidence
        )
        state.records[nodeid] = new
        return new

    if rep.when == "setup":
        if rep.skipped:
            put("NOT-RUN", _reason(rep), reason=_reason(rep)).outcome = "skipped"
        elif rep.failed:
            put("ERROR", f"setup failed: {_reason(rep)}").outcome = "error"
        return rep
    if rep.when == "teardown":
        if rep.failed and nodeid in state.records:
            state.records[nodeid].verdict = "ERROR"
            state.records[nodeid].key_number = f"teardown failed: {_reason(rep)}"
            state.records[nodeid].outcome = "error"
        return rep

    # the call phase
    if rep.passed and rec is None:
        rep.outcome = "failed"
        rep.longrepr = f"audit: {item.name} ended without recording a verdict"
        put("ERROR", "no verdict recorded").outcome = "failed"
    elif rep.passed and hasattr(rep, "wasxfail"):  # non-strict XPASS: cannot come from fails()
        put("ERROR", f"unexpected pass of an xfail: {rep.wasxfail}").outcome = "xpassed"
    elif rep.passed:
        assert rec is not None
        rec.outcome = "passed"
        state.records[nodeid] = rec
    elif rep.skipped and hasattr(rep, "wasxfail"):
        if rec is not None and rec.verdict == "FAILS":
            rec.outcome = "xfailed"
            state.records[nodeid] = rec
        else:  # an xfail not made by audit.fails(): the reason is all there is
            put("FAILS", rep.wasxfail, reason=rep.wasxfail).outcome = "xfailed"
    elif rep.skipped:
        if rec is not None and rec.verdict == "NOT-RUN":
            rec.outcome = "skipped"
            state.records[nodeid] = rec
        else:
            put("NOT-RUN", _reason(rep), reason=_reason(rep)).outcome = "skipped"
    else:  # failed
        message = _reason(rep)
        if "XPASS(strict)" in str(rep.longrepr):
            message = (
                "the paper's statement now holds although the audit recorded FAILS "
                f"({rec.key_number if rec else ''}); re-examine the claim"
            )
        red = put("ERROR", message, failure=message, recorded=rec.as_dict() if rec else None)
        red.outcome = "failed"
        if rec is not None:
            red.figures, red.sources = rec.figures, rec.sources
    state.records[nodeid].duration_s = getattr(rep, "duration", 0.0)
    return rep


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if not state.records or state.report_path is None:
        return  # no claim test ran (--collect-only, deselected, or stopped before any)
    from mamlconv.paper_checks.report import build_report, write_report

    report = build_report(
        state.records,
        state.collected,
        tiers={"slow": state.slow, "gpu": state.gpu},
        duration_s=time.monotonic() - state.started,
        results=_results_survey(),
    )
    session.config.stash[_REPORT] = report
    state.written = write_report(report, state.report_path)


_REPORT = pytest.StashKey[dict]()


def _results_survey() -> dict[str, Any]:
    """The result files the audit read (through MANIFEST.json) and those it ignored."""
    from mamlconv.paper_checks import manifest, results_dir

    return manifest.survey(results_dir())


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if not state.records:
        return
    from mamlconv.paper_checks.report import build_report, terminal_table

    report = config.stash.get(_REPORT, None)
    if report is None:  # no report file requested: build the table anyway
        report = build_report(
            state.records,
            state.collected,
            tiers={"slow": state.slow, "gpu": state.gpu},
            duration_s=time.monotonic() - state.started,
            results=_results_survey(),
        )
    terminalreporter.section("claims audit (Takagi et al., 2019)")
    width = getattr(getattr(terminalreporter, "_tw", None), "fullwidth", 120)
    for line in terminal_table(report, width=max(120, int(width))):
        terminalreporter.write_line(line)
    for path in state.written:
        terminalreporter.write_line(f"audit report written: {path}")


__all__ = ["CLAIMS", "audit", "gpu_enabled", "slow_enabled"]
