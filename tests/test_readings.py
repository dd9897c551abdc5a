"""The reading matrix (issue 9): post-hoc divergence criteria, mechanism, bisected edges, the
per-reading and per-claim verdict rules, Fig. 1 over seeds, the INCONCLUSIVE verdict, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mamlconv.experiments import criteria
from mamlconv.experiments import readings as R
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.engine.loop import train_cells
from mamlconv.experiments.problems.sinusoid import SinusoidProblem, mlp_forward
from mamlconv.paper_checks import judging
from mamlconv.paper_checks.judging import committed

PROBLEM = SinusoidProblem(k_support=6, k_query=5)
# Cells: quiet, joint training, near the edge, fast divergence, slow blow-up.
ALPHAS = np.array([0.003, 0.0, 0.3, 0.1, 0.0])
BETAS = np.array([0.05, 0.2, 0.8, 30.0, 3.0])


def _config(**changes) -> SweepConfig:
    base = SweepConfig(
        problem="sinusoid",
        alphas=(0.01,),
        betas=(0.1,),
        iters=30,
        tasks_per_batch=4,
        pool_size=5,
        record_every=1,
        dtype="float64",
        device="cpu",
        divergence_level=math.inf,
        problem_options={"k_support": 6, "k_query": 5},
    )
    return base.replace(**changes)


# ------------------------------------------------------------------ engine: running max loss
def test_max_loss_is_the_maximum_of_every_iterations_loss() -> None:
    run = train_cells(PROBLEM, _config(), ALPHAS, BETAS)
    assert run.max_loss is not None
    for c in range(ALPHAS.size):
        traj = run.loss[c]
        seen = traj[~np.isnan(traj)]
        if run.diverged_at[c] >= 0:  # the freezing loss is non-finite: inf, or NaN
            assert not np.isfinite(run.max_loss[c]), (c, run.max_loss[c])
        else:
            assert run.max_loss[c] == pytest.approx(max(seen.max(), run.final_loss[c]))
    assert (run.diverged_at >= 0).any() and (run.diverged_at < 0).any()


def test_post_hoc_absolute_criterion_equals_freezing_online() -> None:
    """Deciding 'max loss > level' after a non-finite-only run gives the same cells as
    freezing each cell when it crosses the level (their trajectories agree until then)."""
    level = 50.0
    free = train_cells(PROBLEM, _config(), ALPHAS, BETAS)
    frozen = train_cells(PROBLEM, _config(divergence_level=level), ALPHAS, BETAS)
    post_hoc = ~np.isfinite(free.max_loss) | (free.max_loss > level)
    np.testing.assert_array_equal(post_hoc, frozen.diverged_at >= 0)
    assert post_hoc.any() and not post_hoc.all()


# ------------------------------------------------------------------ criteria and mechanism
def test_criteria_on_hand_made_numbers() -> None:
    init = np.array([4.0, 4.0, 4.0, 4.0, 4.0])
    mx = np.array([5.0, 45.0, 2e3, np.inf, np.nan])
    np.testing.assert_array_equal(
        criteria.diverged("nonfinite", max_loss=mx, initial_loss=init), [0, 0, 0, 1, 1]
    )
    np.testing.assert_array_equal(
        criteria.diverged("absolute", max_loss=mx, initial_loss=init), [0, 0, 1, 1, 1]
    )
    np.testing.assert_array_equal(
        criteria.diverged("relative", max_loss=mx, initial_loss=init), [0, 1, 1, 1, 1]
    )
    with pytest.raises(ValueError, match="unknown criterion"):
        criteria.diverged("median", max_loss=mx, initial_loss=init)
    np.testing.assert_array_equal(
        criteria.learned(final_loss=np.array([1.0, 3.8, np.nan]), initial_loss=np.array([4.0] * 3)),
        [True, False, False],
    )


def test_dead_fraction_against_a_unit_by_unit_loop() -> None:
    gen = torch.Generator().manual_seed(3)
    params = [
        SinusoidProblem().init_params(gen, dtype=torch.float64, device="cpu") for _ in range(3)
    ]
    params[1]["b2"] = params[1]["b2"] - 5.0  # kill every second-layer unit: constant output
    params[2]["b1"][:7] = -50.0  # seven dead first-layer units
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)[:, None]
    stacked = {k: np.stack([p[k].numpy() for p in params]) for k in params[0]}
    got = criteria.dead_fraction_mlp(stacked, x.numpy())
    for c, p in enumerate(params):
        dead = 0
        h1 = x @ p["w1"] + p["b1"]
        dead += sum(bool((h1[:, u] <= 0).all()) for u in range(40))
        h2 = torch.relu(h1) @ p["w2"] + p["b2"]
        dead += sum(bool((h2[:, u] <= 0).all()) for u in range(40))
        assert got[c] == pytest.approx(dead / 80)
    assert got[1] >= 0.5
    out = mlp_forward(params[1], x)
    assert torch.allclose(out, out[0].expand_as(out))  # all layer-2 units dead: constant
    nan = {k: v.copy() for k, v in stacked.items()}
    nan["w3"][0, 0, 0] = np.nan
    assert np.isnan(criteria.dead_fraction_mlp(nan, x.numpy())[0])


# ------------------------------------------------------------------ deciding alphas, brackets
def test_deciding_alphas_and_grid_brackets() -> None:
    alphas = np.array([0.0, 1e-3, 1e-2, 5e-2, 0.1, 0.3, 0.9])
    stable = np.zeros((7, 4), dtype=bool)
    stable[:5, :2] = True
    stable[4, 2] = True
    d = R.deciding_alphas(alphas, stable)
    assert d["alpha_div"] == 0.3 and d["last_stable"] == 4
    assert d["near"] == [3, 4] and d["rows"] == [0, 3, 4]
    betas = np.array([0.1, 0.3, 1.0, 3.0])
    assert R.grid_bracket(betas, stable[4]) == (1.0, 3.0)
    assert R.grid_bracket(betas, stable[5]) == (None, 0.1)
    assert R.grid_bracket(betas, np.ones(4, bool)) == (3.0, math.inf)
    none = R.deciding_alphas(alphas, np.zeros((7, 4), dtype=bool))
    assert none["alpha_div"] is None and none["rows"] == [0]


@pytest.mark.parametrize(
    ("a", "b", "out"),
    [
        ((2.0, 2.1, 0.02), (1.0, 1.1, 0.04), "above"),
        ((1.0, 1.1, 0.04), (2.0, 2.1, 0.02), "below"),
        ((1.0, 1.2, 0.08), (1.1, 1.3, 0.07), "tie"),
        ((math.nan, math.nan, math.inf), (1.0, 1.1, 0.04), "undecided"),
    ],
)
def test_compare_brackets(a, b, out) -> None:
    assert judging.compare_brackets(a, b) == out


@pytest.mark.parametrize(
    ("outcomes", "verdict"),
    [
        (["above"] * 3, "HOLDS"),
        (["below"] * 3, "FAILS"),
        (["above", "above", "below"], "INCONCLUSIVE"),
        (["below", "tie", "below"], "INCONCLUSIVE"),
        (["yes", "yes"], "HOLDS"),
        ([], "INCONCLUSIVE"),
    ],
)
def test_per_reading_verdict(outcomes, verdict) -> None:
    assert judging.per_reading_verdict(outcomes) == verdict


def _doc_reading_table() -> dict[tuple[bool, bool, bool], str]:
    """The table of the claim list's "How readings combine", parsed."""
    text = (Path(__file__).resolve().parents[1] / "docs/CLAIMS.md").read_text()
    section = text.split("### How readings combine", 1)[1].split("\n\n| ", 1)[1]
    rows = ("| " + section).split("\n\n", 1)[0].splitlines()[2:]
    out = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        key = tuple(c == "yes" for c in cells[:3])
        out[key] = cells[3].split(" (", 1)[0]
    return out


def test_reading_table_is_the_documented_one() -> None:
    from mamlconv.paper_checks.verdicts import ORDER

    assert _doc_reading_table() == judging.READING_TABLE
    assert len(judging.READING_TABLE) == 8  # every combination of the three
    text = (Path(__file__).resolve().parents[1] / "docs/CLAIMS.md").read_text()
    assert ORDER in " ".join(text.split())


_PER_READING = {"holds": "HOLDS", "fails": "FAILS", "undecided": "INCONCLUSIVE"}


@pytest.mark.parametrize("key", sorted(_doc_reading_table()), ids=str)
def test_combine_readings_every_combination(key: tuple[bool, bool, bool]) -> None:
    # the literal reading first, as the claim tests give them
    kinds = [k for k, present in zip(_PER_READING, key, strict=True) if present]
    per = {f"({chr(97 + i)}) {k}": _PER_READING[k] for i, k in enumerate(kinds)}
    out = judging.combine_readings(per)
    assert out["verdict"] == _doc_reading_table()[key]
    assert out["holds_for"] == [r for r in per if r.endswith("holds")]
    assert out["fails_for"] == [r for r in per if r.endswith("fails")]
    assert out["text"].split("; ")[0].startswith("(a)") or not per
    assert judging.claim_verdict(per) == (out["verdict"], out["holds_for"])


def test_combine_readings_cases() -> None:
    # FAILS only when every reading fails
    assert judging.combine_readings({"a": "FAILS", "b": "FAILS"})["verdict"] == "FAILS"
    # the S2-7 shape: literal undecided, the implied contrast fails
    out = judging.combine_readings({"a_literal": "INCONCLUSIVE", "b_contrast": "FAILS"})
    assert (out["verdict"], out["fails_for"]) == ("INCONCLUSIVE", ["b_contrast"])
    assert out["text"] == "a_literal: undecided; b_contrast: fails"
    # a reading that holds for some settings only: the claim holds for some only
    assert judging.combine_readings({"a": "HOLDS-FOR", "b": "HOLDS"})["verdict"] == "HOLDS-FOR"
    assert judging.combine_readings({"a": "HOLDS", "b": "HOLDS"})["verdict"] == "HOLDS"


# ------------------------------------------------------------------ one reading, small
TINY = dataclasses.replace(
    R.SINUSOID,
    base={**R.SINUSOID.base, "iters": 25, "record_every": 5},
    alphas=(0.0, 0.03, 0.3, 0.9),
    betas=(0.01, 0.1, 1.0, 9.0),
    seeds=(0,),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    reading = {"init": "torch_default", "tasks": "pool", "variant": "first_order"}
    rec = R.run_reading(TINY, reading, 0)
    path = R.save_run(rec, R.result_path(tmp_path_factory.mktemp("readings"), TINY, reading, 0))
    return path, rec


def test_run_reading_bisects_each_deciding_alpha_to_the_resolution(tiny_run) -> None:
    path, rec = tiny_run
    assert R.is_done(path, TINY, rec["reading"], 0)
    assert not R.is_done(path, TINY, rec["reading"], 1)
    loaded = R.load_run(path)
    assert loaded["grid"]["final_loss"].shape == (4, 4)
    assert rec["provenance"]["git_commit"]
    assert rec["config"]["divergence_level"] == math.inf
    bisected = 0
    for criterion in ("nonfinite", "absolute", "relative"):
        b = rec["bisections"][criterion]
        assert b["decide"]["rows"][0] == 0
        for row in b["rows"]:
            if row.get("bisect_inside"):
                bisected += 1
                width = math.log10(row["bisect_hi"] / row["bisect_lo"])
                assert width <= R.EDGE_RESOLUTION_DECADES + 1e-12
                assert row["grid_lo"] <= row["bisect_lo"] < row["bisect_hi"] <= row["grid_hi"]
                # the bracket's two ends were trained and classified as it says
                lo = [c for c in b["cells"] if c["beta"] == row["bisect_lo"]]
                hi = [c for c in b["cells"] if c["beta"] == row["bisect_hi"]]
                assert lo and all(c["stable"] for c in lo)
                assert hi and not any(c["stable"] for c in hi)
                assert row["edge_learned"] is not None
    assert bisected >= 2


def test_judge_tables_from_a_run(tiny_run) -> None:
    _, rec = tiny_run
    rec = json.loads(json.dumps(rec, default=lambda o: o.tolist()))  # as loaded from disk
    rec["grid"] = {k: np.asarray(v, dtype=float) for k, v in rec["grid"].items()}
    rec["grid"]["learned"] = rec["grid"]["learned"].astype(bool)
    edges = judging.judge_edges([rec], ("nonfinite", "absolute"))
    assert len(edges.table) == 2
    for row in edges.table:
        assert (
            row["verdict_all"] in judging.PER_READING
            and row["verdict_learned"] in judging.PER_READING
        )
    guide = judging.judge_guideline([rec], ("nonfinite",))
    assert guide["b"].table[0]["seeds"][0]["outcome"] in ("yes", "no", "undecided")


# ------------------------------------------------------------------ Fig. 1 over seeds
def _fig1_record(seed: int, norm_maml: np.ndarray, norm_joint: np.ndarray, inner_maml, inner_joint):
    return {
        "alphas": [0.0, 1e-2],
        "iters": 50_000,
        "config": {"seed": seed},
        "provenance": {"git_commit": "abc"},
        "grad_norm": [list(norm_joint), list(norm_maml)],
        "grad_inner": [list(inner_joint), list(inner_maml)],
    }


def test_fig1_literal_holds_and_contrast_fails_when_joint_grows_more() -> None:
    t = np.linspace(0, 1, 101)
    recs = [_fig1_record(s, 5 + 20 * t, 5 + 100 * t, 1 + 5 * t, 1 + 40 * t) for s in range(3)]
    out = judging.judge_fig1(recs)
    assert out["per_reading"] == {"a_literal": "HOLDS", "b_contrast": "FAILS"}
    assert out["verdict"] == "HOLDS-FOR" and out["holds_for"] == ["a_literal"]


def test_fig1_median_not_last_record_and_noise_is_inconclusive() -> None:
    t = np.linspace(0, 1, 101)
    spike = 5 + 20 * t
    spike[-1] = 1e4  # one wild last record must not decide
    rng = np.random.default_rng(0)
    noisy = 1 + rng.normal(0, 50, 101)  # inner product: pure noise around its start
    recs = [_fig1_record(s, spike, 5 + 100 * t, noisy, noisy) for s in range(3)]
    out = judging.judge_fig1(recs)
    assert out["per_part"]["b_contrast/grad_norm"] == "FAILS"
    assert out["per_part"]["a_literal/grad_inner"] == "INCONCLUSIVE"
    assert out["verdict"] in ("INCONCLUSIVE", "FAILS")


# ------------------------------------------------------------------ INCONCLUSIVE in the audit
def test_inconclusive_ranks_between_holds_for_and_agreement() -> None:
    from mamlconv.paper_checks.verdicts import VERDICTS, combine

    assert "INCONCLUSIVE" in VERDICTS
    assert combine(["HOLDS", "INCONCLUSIVE"]) == "INCONCLUSIVE"
    assert combine(["HOLDS-FOR", "INCONCLUSIVE"]) == "HOLDS-FOR"
    assert combine(["FAILS", "INCONCLUSIVE"]) == "FAILS"


def test_schema_accepts_inconclusive_only_with_its_reason() -> None:
    import jsonschema

    from mamlconv.paper_checks.report import build_report
    from mamlconv.paper_checks.verdicts import Record

    schema = json.loads((Path(judging.__file__).parents[1] / "report_schema.json").read_text())
    rec = Record(
        nodeid="x::test_claim_S4_1_a",
        claim_id="S4-1",
        verdict="INCONCLUSIVE",
        key_number="k",
        setting="within the seed spread",
    )
    report = build_report(
        {rec.nodeid: rec},
        {rec.nodeid: "S4-1"},
        tiers={"slow": False, "gpu": False},
        duration_s=1.0,
    )
    jsonschema.validate(report, schema)
    report["claims"][15]["tests"][0]["setting"] = None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema)


def test_claims_are_marked_formal_or_empirical() -> None:
    from mamlconv.paper_checks.claims import BY_ID, EMPIRICAL

    assert {"S2-7", "S4-1", "S4-2", "S4-3", "S5-1"} <= set(EMPIRICAL)
    assert BY_ID["S3-5"].kind == "formal"


# ------------------------------------------------------------------ CLI
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mamlconv", "readings", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_list_names_every_value_with_its_source(tmp_path: Path) -> None:
    proc = _cli("list", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    desc = json.loads(proc.stdout)["sinusoid"]
    axes = {a["name"]: a for a in desc["axes"]}
    assert set(axes) == {"init", "tasks", "variant", "criterion"}
    assert all(v["source"] for a in desc["axes"] for v in a["values"])
    assert len(desc["runs"]) == 2 * 2 * 2 * 3 and not any(r["done"] for r in desc["runs"])


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("run", "S9"), "no reading matrix runs claim 'S9'"),
        (("run", "S4-1", "--reading", "init=foo,tasks=pool,variant=exact"), "no value 'foo'"),
        (("run", "S4-1", "--reading", "init=finn"), "lacks axes"),
        (("run", "S4-1", "--seeds", "a"), "expected integers"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, text) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2
    assert text in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ CNN initialisations
def test_cnn_inits_follow_their_sources() -> None:
    from mamlconv.experiments.problems import cnn

    def draw(spec):
        return cnn.init_params(spec, torch.Generator().manual_seed(0), dtype=torch.float64)

    om = {i: draw(cnn.omniglot_spec(init=i)) for i in cnn.INITS}
    mi = {i: draw(cnn.miniimagenet_spec(init=i)) for i in cnn.INITS}
    # Finn et al.: Omniglot head from a standard normal, the rest Glorot (same draws before it)
    head = om["finn"]["head.weight"]
    assert 0.8 < float(head.std()) < 1.2
    assert torch.equal(om["finn"]["conv0.weight"], om["glorot"]["conv0.weight"])
    for name in mi["glorot"]:  # MiniImagenet: Finn et al.'s code is Glorot throughout
        assert torch.equal(mi["finn"][name], mi["glorot"][name]), name
    # PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); conv1 fan_in = 64 * 9
    w = om["torch_default"]["conv1.weight"]
    bound = 1 / math.sqrt(64 * 9)
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.95 * bound
    glorot_bound = math.sqrt(6 / (64 * 9 + 64 * 9))
    assert float(om["glorot"]["conv1.weight"].abs().max()) > bound  # a wider law
    assert float(om["glorot"]["conv1.weight"].abs().max()) <= glorot_bound
    assert float(om["torch_default"]["head.bias"].abs().max()) > 0
    for i in cnn.INITS:
        assert torch.equal(om[i]["bn0.weight"], torch.ones(64))
        assert torch.equal(om[i]["bn0.bias"], torch.zeros(64))
    with pytest.raises(ValueError, match="init must be one of"):
        cnn.omniglot_spec(init="he")


def test_bisection_with_a_range_per_alpha() -> None:
    from mamlconv.numerics.boundary import bisect_boundary

    alphas = np.array([0.1, 0.5, 2.0])  # edges 1 / alpha: 10, 2, 0.5

    def is_stable(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return b < 1.0 / a

    lo, hi = np.array([5.0, 1.0, 0.6]), np.array([20.0, 3.0, 2.0])  # the last misses its edge
    res = bisect_boundary(is_stable, alphas, beta_min=lo, beta_max=hi, rtol=1e-3)
    np.testing.assert_array_equal(res.inside_range, [True, True, False])
    for k in range(2):
        assert lo[k] <= res.beta_lo[k] < 1 / alphas[k] <= res.beta_hi[k] <= hi[k]
    with pytest.raises(ValueError, match="beta_min < beta_max"):
        bisect_boundary(is_stable, alphas, beta_min=hi, beta_max=lo)


# ------------------------------------------------------------------ evidence sufficiency
def test_why_sweep_cannot_decide_is_one_rule_for_every_edge_claim() -> None:
    from types import SimpleNamespace

    from mamlconv.experiments.problems.registry import get_preset

    paper = get_preset("miniimagenet", "paper")

    def result(n: int, **changes: int) -> SimpleNamespace:
        cfg = SimpleNamespace(
            problem="miniimagenet", iters=paper.iters, tasks_per_batch=paper.tasks_per_batch
        )
        cfg.__dict__.update(changes)
        return SimpleNamespace(config=cfg, diverged=np.zeros((n, n), dtype=bool), alpha0=None)

    assert committed.why_sweep_cannot_decide(result(4)) is None
    assert "smoke test" in committed.why_sweep_cannot_decide(result(committed.MIN_GRID - 1))
    short = committed.why_sweep_cannot_decide(result(4, iters=paper.iters - 1))
    assert short.startswith("a reduced run") and f"of the paper's {paper.iters}" in short
    small = committed.why_sweep_cannot_decide(result(4, tasks_per_batch=paper.tasks_per_batch - 1))
    assert "task batch" in small
    # the Fig. 4 claims and the guideline read it alike
    reduced = result(4, iters=paper.iters - 1)
    assert committed.judge_committed_guideline(reduced)["why"] == short
    assert committed.judge_committed_guideline(reduced)["a_outcome"] == "undecided"


def test_verdict_per_variant_and_provisional_tally() -> None:
    table = [
        {
            "reading": "init=a,variant=exact,x",
            "v": "HOLDS",
            "n_seeds": 3,
            "provisional_all": "HOLDS",
        },
        {
            "reading": "init=b,variant=exact,x",
            "v": "FAILS",
            "n_seeds": 1,
            "provisional_all": "FAILS",
        },
        {
            "reading": "init=a,variant=first_order,x",
            "v": "FAILS",
            "n_seeds": 2,
            "provisional_all": "HOLDS",
        },
        {
            "reading": "init=b,variant=first_order,x",
            "v": "FAILS",
            "n_seeds": 0,
            "provisional_all": "INCONCLUSIVE",
        },
    ]
    assert judging.verdict_per_variant(table, "v") == {"exact": "HOLDS-FOR", "first_order": "FAILS"}
    assert judging.provisional_tally(table) == {"readings": 2, "HOLDS": 1, "FAILS": 1}
