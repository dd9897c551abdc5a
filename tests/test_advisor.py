"""The learning-rate advisor (``mamlconv.experiments.analysis.advisor``) and ``mamlconv advise``.

On a quadratic problem with a known spectrum (H = diag(lambda), T = 0 for every task) each of
the advisor's measured predictions has a closed form in ``mamlconv.theory.thresholds``:
the surrogate Hessian is H - alpha H^2 (paper Eq. 9), the exact meta-Hessian
H (I - alpha H)^(2K) (docs/MATH.md Sec. 4), so the advisor must reproduce them to Lanczos accuracy,
and the recommended (alpha*, beta*) must train stably while 2 beta_c diverges.
"""

from __future__ import annotations

import json
import math
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from mamlconv.cli import main
from mamlconv.experiments.analysis.advisor import ALPHA_FRACTIONS, GOVERNING, advise
from mamlconv.numerics.tasks import Params, TaskBatch
from mamlconv.theory.thresholds import alpha_c, beta_c

EIGS = (4.0, 2.5, 1.5, 1.0, 0.5, 0.3, 0.2, 0.1)
"""H's spectrum. With k = 5 the top-k hold every mode that can set the formula's beta_c
(lambda_5 = 0.5 < lambda_max / 2), so the formula on the top-k equals the closed form on all."""
RTOL = 1e-8  # Lanczos tol 1e-6 on an 8 x 8 operator converges to rounding; 1e-8 is ample


@dataclass(frozen=True)
class QuadraticProblem:
    """L_tau(w) = 1/2 mean_n sum_i lambda_i (w_i - y_n,i)^2: Hessian diag(lambda) for every
    task and every w, third derivative 0. Tasks differ by their targets y (support and query
    drawn apart), so the task-mean MAML objective has a minimum away from the start w = 0."""

    eigs: tuple[float, ...] = EIGS
    points: int = 3
    name: str = "quadratic"

    def init_params(
        self, generator: torch.Generator, *, dtype: torch.dtype, device: torch.device | str
    ) -> Params:
        return {"w": torch.zeros(len(self.eigs), dtype=dtype, device=device)}

    def loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lam = torch.tensor(self.eigs, dtype=y.dtype, device=y.device)
        return 0.5 * (lam * (params["w"] - y) ** 2).sum(-1).mean()

    def sample_tasks(
        self,
        generator: torch.Generator,
        n_tasks: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> TaskBatch:
        d = len(self.eigs)
        centre = torch.randn(n_tasks, 1, d, generator=generator, dtype=torch.float64)
        ys = centre + 0.1 * torch.randn(
            n_tasks, self.points, d, generator=generator, dtype=torch.float64
        )
        yq = centre + 0.1 * torch.randn(
            n_tasks, self.points, d, generator=generator, dtype=torch.float64
        )
        x = torch.zeros(n_tasks, self.points, 1, dtype=torch.float64)  # unused by the loss
        return TaskBatch(x, ys, x, yq).to(device, dtype)


def quadratic_point(n_tasks: int = 3, seed: int = 0) -> tuple[QuadraticProblem, Params, TaskBatch]:
    problem = QuadraticProblem()
    gen = torch.Generator().manual_seed(seed)
    params = problem.init_params(gen, dtype=torch.float64, device="cpu")
    return problem, params, problem.sample_tasks(gen, n_tasks, dtype=torch.float64, device="cpu")


# ------------------------------------------------------------------------------ library


CASES = [("exact", 1), ("first_order", 1), ("surrogate", 1), ("exact", 2)]


@pytest.mark.parametrize(("variant", "steps"), CASES, ids=[f"{v}-K{k}" for v, k in CASES])
def test_quadratic_advice_equals_closed_forms(variant: str, steps: int) -> None:
    problem, params, tasks = quadratic_point()
    adv = advise(problem, params, tasks, variant=variant, steps=steps, k=5, safety=0.5)
    model = variant  # thresholds' model names are the variants'
    np.testing.assert_allclose(adv.hessian_top, EIGS[:5], rtol=RTOL)
    assert adv.formula_complete
    # Paper Eq. 11: alpha_c = 1/lambda_max
    assert adv.alpha_c_paper == pytest.approx(alpha_c(EIGS, model="surrogate"), rel=RTOL)
    assert adv.alpha_c_paper == pytest.approx(1 / max(EIGS), rel=RTOL)
    desired_variant = alpha_c(EIGS, model=model, steps=steps)
    assert adv.alpha_c_variant == pytest.approx(desired_variant, rel=RTOL)  # inf for exact
    alphas = np.array([c.alpha for c in adv.candidates])
    np.testing.assert_allclose(alphas, np.array(ALPHA_FRACTIONS) / max(EIGS), rtol=RTOL)
    for c in adv.candidates:
        desired = {
            "formula": beta_c(EIGS, c.alpha, model="surrogate"),  # paper Eq. 14
            "formula_variant": beta_c(EIGS, c.alpha, model=model, steps=steps),
            "surrogate": beta_c(EIGS, c.alpha, model="surrogate"),  # T = 0: H - alpha H^2
            "meta": beta_c(EIGS, c.alpha, model="exact", steps=steps),  # H (1 - alpha H)^(2K)
        }
        for name, want in desired.items():
            assert c.beta_c[name] == pytest.approx(float(want), rel=RTOL), (name, c.alpha)
    # the recommendation: the largest candidate (0.9 alpha_c), half the governing beta_c
    governing_model = "exact" if GOVERNING[variant] == "meta" else "surrogate"
    gov_steps = steps if governing_model == "exact" else 1
    assert adv.alpha_star == pytest.approx(0.9 / max(EIGS), rel=RTOL)
    want_bc = float(beta_c(EIGS, adv.alpha_star, model=governing_model, steps=gov_steps))
    assert adv.beta_c_star == pytest.approx(want_bc, rel=RTOL)
    assert adv.beta_star == pytest.approx(0.5 * want_bc, rel=RTOL)
    assert adv.beta_c_gd == pytest.approx(2 / max(EIGS), rel=RTOL)  # alpha = 0 is plain GD
    assert math.isinf(adv.alpha_divergence)  # no candidate below alpha_c has beta_c = 0
    assert adv.verification is None


@pytest.mark.parametrize("variant", ["exact", "first_order"])
def test_recommendation_trains_and_twice_beta_c_diverges(variant: str) -> None:
    problem, params, tasks = quadratic_point()
    adv = advise(problem, params, tasks, variant=variant, k=5, verify_iters=60)
    v = adv.verification
    assert v is not None and v.iters == 60
    rec, twice = v.runs
    assert rec["beta"] == pytest.approx(adv.beta_star) and not rec["diverged"]
    assert rec["final_loss"] < v.initial_loss  # it trains, not merely stays finite
    assert twice["beta"] == pytest.approx(2 * adv.beta_c_star) and twice["diverged"]
    assert v.passed


def test_explicit_alphas_and_divergence_alpha() -> None:
    """Beyond alpha_c the surrogate's top mode turns negative only in the smallest eigenvalue,
    so the top eigenvalue stays positive; past 1/lambda_min every mode is negative and the
    governing beta_c is 0: that candidate is the divergence alpha, alpha* lies below it."""
    problem, params, tasks = quadratic_point()
    alphas = [0.0, 0.2, 20.0, 30.0]  # 1/lambda_min = 10
    adv = advise(problem, params, tasks, variant="surrogate", alphas=alphas, k=5)
    assert [c.alpha for c in adv.candidates] == alphas
    assert adv.alpha_divergence == 20.0 and adv.candidates[2].beta_c["surrogate"] == 0.0
    assert adv.alpha_star == 0.2
    assert adv.candidates[1].fraction_of_alpha_c == pytest.approx(0.2 * max(EIGS), rel=RTOL)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"safety": 0.0}, "safety"),
        ({"safety": 1.5}, "safety"),
        ({"variant": "second_order"}, "variant"),
        ({"variant": "surrogate", "steps": 2}, "one-step"),
        ({"alphas": [-0.1]}, "alphas"),
        ({"alphas": []}, "alphas"),
        ({"k": 0}, "k must"),
        ({"verify_iters": -1}, "verify_iters"),
    ],
    ids=lambda x: str(x),
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    problem, params, tasks = quadratic_point()
    with pytest.raises(ValueError, match=match):
        advise(problem, params, tasks, **kwargs)


def test_as_dict_is_strict_json() -> None:
    problem, params, tasks = quadratic_point()
    adv = advise(problem, params, tasks, variant="exact", k=5, verify_iters=5)
    text = json.dumps(adv.as_dict(), allow_nan=False)  # inf -> null + "_status", NaN -> null
    obj = json.loads(text)
    # exact MAML has no alpha_c (docs/MATH.md Sec. 4)
    assert obj["alpha_c"]["variant"] is None and obj["alpha_c"]["variant_status"] == "inf"
    assert obj["recommendation"]["beta_c_source"] == "meta"
    assert set(obj["candidates"][0]["beta_c"]) == {
        "formula",
        "formula_variant",
        "surrogate",
        "meta",
    }
    assert any("local" in note for note in obj["notes"])
    assert obj["verification"]["iters"] == 5


# ------------------------------------------------------------------------------ command line


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sinusoid_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["advise", "sinusoid", "--tasks", "3", "--json", "--verify-iters", "3"], capsys
    )
    assert code == 0 and out.count("\n") == 1
    obj = json.loads(out)
    rec = obj["recommendation"]
    assert obj["config"]["pool_size"] == 3 and obj["n_params"] == 1761
    assert rec["beta_c_source"] == "meta"
    assert rec["alpha"] == pytest.approx(0.9 * obj["alpha_c"]["paper"], rel=1e-12)
    assert rec["beta"] == pytest.approx(0.5 * rec["beta_c"], rel=1e-12)
    assert obj["verification"]["iters"] == 3
    code, out, _ = _run(["advise", "sinusoid", "--tasks", "2", "--variant", "first_order"], capsys)
    assert code == 0 and "alpha*" in out and "surrogate" in out and "note: All predictions" in out


def test_cli_user_problem(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("advisor_user_problem")
    module.make = QuadraticProblem  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "advisor_user_problem", module)
    argv = ["advise", "--problem", "advisor_user_problem:make", "--tasks", "3", "--json"]
    code, out, _ = _run([*argv, "--verify-iters", "60"], capsys)
    assert code == 0
    obj = json.loads(out)
    assert obj["problem"] == "quadratic"
    alpha = obj["recommendation"]["alpha"]
    assert alpha == pytest.approx(0.9 / max(EIGS), rel=RTOL)
    want = float(beta_c(EIGS, alpha, model="exact"))
    assert obj["recommendation"]["beta_c"] == pytest.approx(want, rel=RTOL)
    assert obj["verification"]["passed"] is True


BAD = [
    (["advise"], "exactly one"),
    (["advise", "sinusoid", "--problem", "m:f"], "exactly one"),
    (["advise", "sinusoid", "--safety", "0"], "--safety"),
    (["advise", "sinusoid", "--safety", "1.5"], "--safety"),
    (["advise", "sinusoid", "--variant", "surrogate", "--steps", "2"], "one-step"),
    (["advise", "sinusoid", "--tasks", "0"], "--tasks"),
    (["advise", "sinusoid", "--device", "tpu"], "--device"),
    (["advise", "sinusoid", "--alphas", "0.1,x"], "--alphas"),
    (["advise", "sinusoid", "--tasks", "2", "--alphas=-0.1"], "alphas"),
    (["advise", "--problem", "nocolon"], "MODULE:FACTORY"),
    (["advise", "--problem", "no_such_module_for_advise:f"], "cannot import"),
    (["advise", "--problem", "math:no_such_factory"], "no callable"),
    (["advise", "--problem", "math:sqrt"], "factory raised"),
    (["advise", "nosuchproblem"], "invalid choice"),
]


@pytest.mark.parametrize(("argv", "match"), BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_cli_bad_input_is_one_line_exit_2(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and match in err, err
    assert out == ""
