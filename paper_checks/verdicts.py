"""Verdicts of the claims audit and the recorder that a claim test writes its verdict through.

Every test of ``paper_checks/`` records exactly one verdict through the ``audit`` fixture
(:class:`ClaimAudit`):

- ``HOLDS``       the measurement agrees with the paper's statement;
- ``HOLDS-FOR``   it agrees for a named MAML variant or setting only (``setting`` says which);
- ``APPROXIMATE`` it agrees up to a measured error (``error``);
- ``INCONCLUSIVE`` the evidence cannot decide: the difference that decides the claim lies
                  within the seed spread or within the measurement's resolution (``key`` says
                  which, in numbers);
- ``FAILS``       the measurement contradicts the paper. The test then turns into a *strict*
                  xfail whose reason carries the measured numbers, and asserts the paper's
                  statement: if the package's measurement ever changes so that the statement
                  holds, the strict xfail XPASSes and the test turns red;
- ``NOT-RUN``     not evaluated, with the reason (needs --slow, needs --gpu, a result file is
                  missing); the test is skipped with that reason.

A test whose own assertions fail (the package contradicts itself, or the audit is out of date)
is reported as ``ERROR`` with the failure message. The claim tests import the package with
plain imports, so a missing or renamed module is a collection error, never NOT-RUN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VERDICTS: tuple[str, ...] = (
    "HOLDS",
    "HOLDS-FOR",
    "APPROXIMATE",
    "INCONCLUSIVE",
    "FAILS",
    "NOT-RUN",
    "ERROR",
)
"""All verdicts; ERROR is given by the plugin (a red claim test), never by a test itself."""

# Which verdict speaks for a claim whose tests disagree: the most consequential one.
# A named limitation (HOLDS-FOR) outranks "cannot tell" (INCONCLUSIVE), which outranks agreement.
PRIORITY: dict[str, int] = {
    "ERROR": 0,
    "FAILS": 1,
    "HOLDS-FOR": 2,
    "INCONCLUSIVE": 3,
    "APPROXIMATE": 4,
    "HOLDS": 5,
    "NOT-RUN": 6,
}
"""Rank of each verdict in :func:`combine` (lowest first)."""

ORDER = " > ".join(sorted(PRIORITY, key=PRIORITY.__getitem__))
"""How the verdicts of a claim's tests combine, as text for the report."""


def jsonable(value: Any) -> Any:
    """Evidence as strict JSON under the package's one rule (:func:`mamlconv.util.files.jsonable`):
    numpy scalars/arrays to Python, inf as null with ``<key>_status``, NaN as null."""
    from mamlconv.util.files import jsonable as package_jsonable

    return package_jsonable(value)


def fmt(x: float, digits: int = 3) -> str:
    """A number for a verdict line: 3 significant digits, 'inf' and 'nan' spelled out."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


@dataclass
class Record:
    """The verdict of one claim test (one pytest item)."""

    nodeid: str
    claim_id: str
    verdict: str
    key_number: str = ""
    setting: str | None = None
    error: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    figures: list[dict[str, str]] = field(default_factory=list)
    outcome: str = "passed"
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "nodeid": self.nodeid,
                "verdict": self.verdict,
                "key_number": self.key_number,
                "setting": self.setting,
                "error": self.error,
                "evidence": self.evidence,
                "sources": self.sources,
                "figures": self.figures,
                "outcome": self.outcome,
                "duration_s": round(self.duration_s, 3),
            }
        )


def combine(verdicts: list[str]) -> str:
    """One verdict for a claim from those of its tests (NOT-RUN only when nothing ran)."""
    if not verdicts:
        return "NOT-RUN"
    return min(verdicts, key=lambda v: PRIORITY[v])


class VerdictAlreadyRecorded(RuntimeError):
    """A claim test tried to record a second verdict."""


class ClaimAudit:
    """What the ``audit`` fixture hands a claim test: tiers, paths, and the verdict recorder."""

    def __init__(
        self,
        *,
        request: pytest.FixtureRequest,
        claim_id: str,
        slow: bool,
        gpu: bool,
        figure_dir: Path,
        results_dir: Path,
    ) -> None:
        self._request = request
        self.claim_id = claim_id
        self.slow = slow
        """True in the --slow tier (MAMLCONV_SLOW=1): empirical claims at the largest CPU size."""
        self.gpu = gpu
        """True in the --gpu tier: paper-size reruns on CUDA."""
        self.figure_dir = figure_dir
        self.results_dir = results_dir
        self.record: Record | None = None
        self._sources: list[dict[str, Any]] = []
        self._figures: list[dict[str, str]] = []

    # ------------------------------------------------------------------ context
    @property
    def tier(self) -> str:
        return "gpu" if self.gpu else ("slow" if self.slow else "default")

    @property
    def device(self) -> str:
        """'cuda' in the --gpu tier when a CUDA device is present, else 'cpu'."""
        if self.gpu:
            import torch

            if torch.cuda.is_available():
                return "cuda"
        return "cpu"

    def result_file(self, relpath: str, *, how: str = "") -> Path:
        """A committed result file under experiments/results/ that MANIFEST.json lists,
        verified against its sha256; NOT-RUN naming it when it is absent or not listed."""
        from mamlconv.paper_checks import manifest

        path = self.results_dir / relpath
        hint = f" (produce it with `{how}`)" if how else ""
        if not path.is_file():
            self.not_run(f"result file missing: experiments/results/{relpath}{hint}")
        listed = manifest.load_manifest(self.results_dir)
        entry = listed.files.get(Path(relpath).as_posix()) if listed else None
        if entry is None:
            self.not_run(
                f"result file not registered: experiments/results/{relpath} is not in "
                f"{manifest.MANIFEST_NAME}{hint}; `{manifest.COMMAND} add {relpath}`"
            )
        return manifest.verify(self.results_dir, entry)

    def cite(self, path: Path | str, **facts: Any) -> None:
        """Name a result file the verdict was recomputed from, with its config and commit."""
        self._sources.append(jsonable({"file": str(path), **facts}))

    def figure_path(self, name: str) -> Path:
        """Where this test should write a figure (inside the report's figures folder)."""
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        return self.figure_dir / f"{self.claim_id}-{name}"

    def rerun_path(self, name: str) -> Path:
        """Where a rerun of this session writes its result file (beside the figures)."""
        path = self.figure_dir / "reruns" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def attach(self, path: Path | str, caption: str) -> None:
        """Link a figure produced on the way into the report."""
        self._figures.append({"path": str(path), "caption": caption})

    # ------------------------------------------------------------------ verdicts
    def _put(
        self,
        verdict: str,
        *,
        key: str,
        evidence: dict[str, Any] | None,
        setting: str | None = None,
        error: float | None = None,
    ) -> Record:
        if self.record is not None:
            raise VerdictAlreadyRecorded(
                f"{self._request.node.nodeid} already recorded {self.record.verdict}; "
                f"a claim test records exactly one verdict"
            )
        self.record = Record(
            nodeid=self._request.node.nodeid,
            claim_id=self.claim_id,
            verdict=verdict,
            key_number=key,
            setting=setting,
            error=error,
            evidence=jsonable(dict(evidence or {})),
            sources=list(self._sources),
            figures=list(self._figures),
        )
        return self.record

    def holds(self, *, key: str, evidence: dict[str, Any] | None = None) -> None:
        """The paper's statement agrees with the measurement."""
        self._put("HOLDS", key=key, evidence=evidence)

    def holds_for(self, setting: str, *, key: str, evidence: dict[str, Any] | None = None) -> None:
        """The statement holds for ``setting`` (a MAML variant, a reading) and not beyond it."""
        if not setting:
            raise ValueError("HOLDS-FOR needs the setting it holds for")
        self._put("HOLDS-FOR", key=key, evidence=evidence, setting=setting)

    def approximate(
        self, *, error: float, key: str, evidence: dict[str, Any] | None = None
    ) -> None:
        """The statement holds up to the measured ``error`` (stated in ``key``)."""
        if not math.isfinite(error):
            raise ValueError(f"APPROXIMATE needs a finite measured error, got {error}")
        self._put("APPROXIMATE", key=key, evidence=evidence, error=float(error))

    def inconclusive(self, *, why: str, key: str, evidence: dict[str, Any] | None = None) -> None:
        """The evidence cannot decide; ``why`` names the cause (seed spread, resolution)."""
        if not why:
            raise ValueError("INCONCLUSIVE needs the reason the evidence cannot decide")
        self._put("INCONCLUSIVE", key=key, evidence=evidence, setting=why)

    def fails(
        self,
        *,
        paper_statement_holds: bool,
        statement: str,
        key: str,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        """The measurement contradicts the paper: record FAILS and assert the paper's statement.

        ``paper_statement_holds`` is the measured truth value of the paper's statement. The test
        becomes a strict xfail whose reason carries ``key`` (the numbers); the assertion then
        fails as expected. Should the measurement change so that the statement holds, the strict
        xfail XPASSes and the test turns red, so a FAILS verdict cannot go stale silently.
        """
        self._put("FAILS", key=key, evidence=evidence)
        self._request.node.add_marker(
            pytest.mark.xfail(strict=True, reason=f"FAILS {self.claim_id}: {key}")
        )
        assert paper_statement_holds, f"paper: {statement}; measured: {key}"

    def not_run(self, reason: str) -> None:
        """Record NOT-RUN with ``reason`` and skip the test."""
        self._put("NOT-RUN", key=reason, evidence={"reason": reason})
        pytest.skip(reason)
