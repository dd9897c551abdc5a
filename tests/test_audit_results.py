"""The audit's few-shot Fig. 4 claims recompute their verdicts from the raw numbers of result files.

Synthetic sweep files in the package's result format (``experiments.results.save_result``) are
placed in a temporary results folder (``MAMLCONV_RESULTS``); the real audit tests of Fig. 4b/4c
(S4-2, S4-3) then run on them in a child pytest. The raw diverged cells and losses alone decide
each verdict, at the grid's resolution (``readings.judge_committed_edge``): an edge that rises by
more than one cell up to the divergence alpha HOLDS, one that falls by more than one cell FAILS
(strict xfail), a margin of one cell is INCONCLUSIVE (within the resolution), and a grid whose
alpha = 0 edge is off the grid is INCONCLUSIVE (the grid cannot decide) -- never an error. Cells
whose loss did not fall are told apart from cells that learned. The sweeps are written at each
problem's paper preset (its iterations and task batch), so the evidence-sufficiency rule
(``judging.why_sweep_cannot_decide``) lets them decide; the same sweeps as reduced runs are
INCONCLUSIVE for every claim that reads them.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mamlconv.cli.audit import pytest_command
from mamlconv.paper_checks.manifest import add as manifest_add
from mamlconv.paper_checks.report import validate

ALPHAS = np.geomspace(1e-3, 1.0, 10)  # the last row diverges: alpha_div = 1
BETAS = np.geomspace(1e-2, 10.0, 8)

# (problem, variant, first diverged beta index per alpha row, same for the alpha = 0 row);
# the rows within a decade below alpha_div are the last three stable ones (0.1, 0.22, 0.46)
SYNTHETIC = {
    "rising": ("omniglot", "exact", [3] * 6 + [4, 5, 6, 0], 3),
    "one-cell": ("omniglot", "first_order", [3] * 6 + [3, 4, 3, 0], 3),
    "falling": ("miniimagenet", "exact", [3] * 6 + [1, 1, 1, 0], 3),
    "off-grid": ("miniimagenet", "first_order", [3] * 6 + [4, 5, 6, 0], len(BETAS)),
}
COLLAPSED = {"rising": (8, 5)}
"""Cells (row, column) whose loss did not fall (final loss = initial loss): the rising sweep's
best cell near alpha_div did not learn, so on learned cells its margin shrinks."""
INITIAL_LOSS = float(np.log(5))
"""The loss of a 5-way classifier at initialisation, chance level: a cell that ends there did
not learn (the reference of ``criteria.learned`` for classification)."""


def _write_sweep(
    path: Path,
    *,
    problem: str,
    variant: str,
    edges: list[int],
    edge0: int,
    reduced: bool = False,
) -> None:
    """One synthetic sweep, at the problem's paper preset (its iterations and task batch), so
    that the evidence-sufficiency rule lets it decide; ``reduced`` halves the task batch (a
    reduced run, which cannot decide any claim that reads it)."""
    from mamlconv.experiments.problems.registry import get_preset
    from mamlconv.experiments.sweep.results import SweepResult, save_result

    paper = get_preset(problem, "paper")
    config = paper.replace(variant=variant, alphas=tuple(ALPHAS), betas=tuple(BETAS))
    if reduced:
        config = config.replace(tasks_per_batch=max(1, paper.tasks_per_batch // 2))
    cols = np.arange(BETAS.size)
    diverged_at = np.where(cols[None, :] >= np.asarray(edges)[:, None], 7, -1).astype(np.int64)
    final_loss = np.where(diverged_at < 0, 0.25, 2e3)
    for name, (i, j) in COLLAPSED.items():
        if path.stem == name:
            final_loss[i, j] = INITIAL_LOSS
    div0 = np.where(cols >= edge0, 7, -1).astype(np.int64)
    # loss trajectories: what "learned" is judged from
    # (recorded at the configuration's record_iters: the initial loss, then the final one)
    n_rec = config.record_iters.size
    loss = np.repeat(final_loss[..., None], n_rec, axis=-1)
    loss[..., 0] = INITIAL_LOSS
    loss0 = np.repeat(np.where(div0 < 0, 0.5, 2e3)[:, None], n_rec, axis=-1)
    loss0[:, 0] = INITIAL_LOSS
    # as the engine stores them: a diverged cell's records after its divergence are not finite
    # (the audit recomputes diverged_at from the trajectory and refuses a file that disagrees)
    after = np.asarray(config.record_iters) > 7
    loss[(diverged_at >= 0)[..., None] & after] = np.nan
    loss0[(div0 >= 0)[:, None] & after] = np.nan
    result = SweepResult(
        config=config,
        alphas=ALPHAS,
        betas=BETAS,
        record_iters=config.record_iters,
        final_loss=final_loss,
        diverged_at=diverged_at,
        trajectories={"loss": loss},
        alpha0={"final_loss": np.where(div0 < 0, 0.5, 2e3), "diverged_at": div0, "loss": loss0},
        provenance={"git_commit": "feedc0de"},
    )
    save_result(result, path)


def _audit(root: Path, sweeps: dict[str, tuple], *, reduced: bool = False) -> dict:
    results = root / "results"
    for name, (problem, variant, edges, edge0) in sweeps.items():
        _write_sweep(
            results / "sub" / f"{name}.npz",
            problem=problem,
            variant=variant,
            edges=edges,
            edge0=edge0,
            reduced=reduced,
        )
    # The audit reads only what the results folder's MANIFEST.json lists: register the files.
    manifest_add(results, [f"sub/{name}.npz" for name in sweeps])
    report = root / "out" / "audit-report.md"
    env = {**os.environ, "MAMLCONV_RESULTS": str(results), "PYTHONDONTWRITEBYTECODE": "1"}
    # The same child command line as `mamlconv audit`, restricted to the Fig. 4 claims.
    cmd = pytest_command(
        report.parent,
        slow=False,
        gpu=False,
        select="(test_claim_S4_2 or test_claim_S4_3) and not rerun and not paper_size",
    )
    proc = subprocess.run(
        cmd,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(report.with_suffix(".json").read_text())
    tests = {t["nodeid"].split("::")[-1]: t for c in data["claims"] for t in c["tests"]}
    return {"proc": proc, "report": data, "tests": tests}


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _audit(tmp_path_factory.mktemp("audit_results"), SYNTHETIC)


REDUCED = {
    "reduced_rising": SYNTHETIC["rising"],
    "reduced_falling": SYNTHETIC["falling"],
}
"""The rising and falling sweeps again, as reduced runs (half the paper's task batch)."""


@pytest.fixture(scope="module")
def audited_reduced(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _audit(tmp_path_factory.mktemp("audit_reduced"), REDUCED, reduced=True)


CASES = [
    ("test_claim_S4_2_omniglot[exact]", "HOLDS", "passed", "margin 3 cell(s) -> above"),
    ("test_claim_S4_2_omniglot[first_order]", "INCONCLUSIVE", "passed", "within the grid"),
    ("test_claim_S4_3_miniimagenet[exact]", "FAILS", "xfailed", "margin -2 cell(s) -> below"),
    (
        "test_claim_S4_3_miniimagenet[first_order]",
        "INCONCLUSIVE",
        "passed",
        "no reference edge inside the grid",
    ),
]


@pytest.mark.parametrize(
    ("name", "verdict", "outcome", "text"), CASES, ids=[c[0][11:] for c in CASES]
)
def test_verdict_recomputed_from_raw_numbers(
    audited: dict, name: str, verdict: str, outcome: str, text: str
) -> None:
    test = audited["tests"][name]
    assert (test["verdict"], test["outcome"]) == (verdict, outcome), test
    assert text in json.dumps(test), test


def test_no_error_and_exit_code_zero(audited: dict) -> None:
    proc = audited["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert all(t["verdict"] != "ERROR" for t in audited["tests"].values())


def test_evidence_cites_file_config_and_commit(audited: dict) -> None:
    sources = audited["tests"]["test_claim_S4_2_omniglot[exact]"]["sources"]
    assert len(sources) == 1
    src = sources[0]
    assert src["file"].endswith("rising.npz")
    assert src["commit"] == "feedc0de"
    assert src["problem"] == "omniglot" and src["variant"] == "exact"
    assert src["grid"].startswith(f"{ALPHAS.size} alphas") and f"{BETAS.size} betas" in src["grid"]


def test_rising_edge_numbers_on_all_and_on_learned_cells(audited: dict) -> None:
    ev = audited["tests"]["test_claim_S4_2_omniglot[exact]"]["evidence"]["per_file"]["rising.npz"]
    every = ev["all"]
    # the last stable row (index 8) reaches betas[5]; alpha = 0's largest stable beta is b[2]
    assert every["edge_near"] == pytest.approx(BETAS[5])
    assert every["alpha_near"] == pytest.approx(ALPHAS[8])
    assert every["edge_reference"] == pytest.approx(BETAS[2])
    assert every["alpha_div"] == pytest.approx(ALPHAS[9])
    assert every["margin_cells"] == 3 and every["outcome"] == "above"
    # that best cell did not learn: on learned cells row 8 reaches b[4] only, and row 7 b[4]
    learned = ev["learned"]
    assert learned["edge_near"] == pytest.approx(BETAS[4])
    assert learned["margin_cells"] == 2 and learned["outcome"] == "above"


def test_falling_edge_fails_with_its_numbers(audited: dict) -> None:
    test = audited["tests"]["test_claim_S4_3_miniimagenet[exact]"]
    every = test["evidence"]["per_file"]["falling.npz"]["all"]
    assert every["margin_cells"] == -2 and every["outcome"] == "below"


def test_report_validates(audited: dict) -> None:
    validate(audited["report"])


@pytest.mark.parametrize(
    ("name", "file"),
    [
        ("test_claim_S4_2_omniglot[exact]", "reduced_rising.npz"),
        ("test_claim_S4_3_miniimagenet[exact]", "reduced_falling.npz"),
    ],
)
def test_reduced_sweep_is_inconclusive_for_every_claim_reading_it(
    audited_reduced: dict, name: str, file: str
) -> None:
    # the same edges that HOLD / FAIL at the paper's protocol decide nothing in a reduced run
    proc = audited_reduced["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    test = audited_reduced["tests"][name]
    assert (test["verdict"], test["outcome"]) == ("INCONCLUSIVE", "passed"), test
    ev = test["evidence"]["per_file"][file]
    for pop in ("all", "learned"):
        assert ev[pop]["outcome"] == "undecided", ev
        assert "reduced run" in ev[pop]["why"] and "task batch" in ev[pop]["why"], ev
    validate(audited_reduced["report"])


def test_learned_cells_of_a_classification_sweep_are_judged_against_chance() -> None:
    """One "learned" rule: on the committed Omniglot grid the alpha = 0 cells end at chance
    level (final loss 1.61-1.65, ln 5 = 1.609) although far below their own loss at iteration 0
    (2.57). Judged against chance, as the Fig. 4 panels' ``learned`` mask is, none of them
    learned; judged against the initial loss they would all have."""
    from mamlconv.experiments.criteria import chance_loss, criteria, learned_reference
    from mamlconv.experiments.sweep.results import load_result
    from mamlconv.paper_checks.judging.committed import judge_committed_edge
    from mamlconv.util.provenance import REPO_ROOT

    result = load_result(REPO_ROOT / "experiments/results/omniglot_paper_7x7_h200.npz")
    ref_init = np.asarray(result.alpha0["loss"], dtype=float)[..., 0]
    assert learned_reference(result.config.problem_options, ref_init) == chance_loss(5)
    assert learned_reference({}, ref_init) == pytest.approx(float(np.nanmedian(ref_init)))
    panel = criteria(result)["learned"]
    judged = judge_committed_edge(result)["learned"]
    assert not panel.stable0.any()
    assert judged["edge_reference"] is None and judged["outcome"] == "undecided"


def test_sweeps_combine_with_their_own_reasons() -> None:
    """Over committed sweeps: a verdict from the sweeps that decide; when none decides, the
    INCONCLUSIVE names the sweeps' own reasons (a reduced run is not 'no edge in the grid')."""
    from mamlconv.paper_checks.judging.committed import combine_sweeps

    def entry(outcome: str, why: str | None = None) -> dict:
        e = {"outcome": outcome} | ({"why": why} if why else {})
        return {"all": e, "learned": e}

    undecided = combine_sweeps(
        {
            "a": entry("undecided", "a 2 x 2 grid is a smoke test"),
            "b": entry("undecided", "a reduced run"),
        }
    )
    assert undecided["all"] == {
        "verdict": "INCONCLUSIVE",
        "decided": False,
        "why": "a 2 x 2 grid is a smoke test; a reduced run",
    }
    mixed = combine_sweeps({"a": entry("above"), "b": entry("tie"), "c": entry("undecided", "x")})
    assert mixed["all"]["verdict"] == "INCONCLUSIVE" and "grid's resolution" in mixed["all"]["why"]
    assert combine_sweeps({"a": entry("above"), "b": entry("below")})["all"]["why"] == (
        "the sweeps disagree"
    )
    held = combine_sweeps({"a": entry("above"), "b": entry("undecided", "x")})["all"]
    assert held == {"verdict": "HOLDS", "decided": True, "why": None}
