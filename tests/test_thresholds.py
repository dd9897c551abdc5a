"""Numeric thresholds alpha_c / beta_c (theory/thresholds.py) against independent computations.

Independent twins: the closed forms of MATH.md Sec. 4-5 written out in NumPy; the symbolic
conditions of theory/conditions.py (Eq. 15 per mode); and gradient descent simulated in float64 on
a quadratic whose meta-direction is computed by running each MAML algorithm numerically.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamlconv.theory import conditions
from mamlconv.theory.symbols import alpha as ALPHA
from mamlconv.theory.symbols import beta as BETA
from mamlconv.theory.symbols import lam_pos
from mamlconv.theory.thresholds import (
    MODELS,
    alpha_c,
    beta_c,
    binding_eigenvalue,
    effective_curvatures,
)

MODEL_STEPS = [
    ("surrogate", 1),
    ("first_order", 1),
    ("first_order", 2),
    ("first_order", 3),
    ("exact", 1),
    ("exact", 2),
]
IDS = [f"{m}-k{k}" for m, k in MODEL_STEPS]


def closed_form_curvature(model: str, steps: int, lam: np.ndarray, a: float) -> np.ndarray:
    """MATH.md Sec. 4, typed in: the 'desired' side."""
    if model == "exact":
        return lam * (1 - a * lam) ** (2 * steps)
    return lam * (1 - a * lam) ** steps


# ---------------------------------------------------------------- closed forms, tables of cases


@pytest.mark.parametrize(("model", "steps"), MODEL_STEPS, ids=IDS)
def test_effective_curvatures_match_closed_forms(model: str, steps: int) -> None:
    lam = np.array([-0.7, 0.0, 0.3, 1.0, 2.5, 10.0])
    alphas = np.linspace(0.0, 0.9, 19)
    got = effective_curvatures(lam, alphas, model=model, steps=steps)
    desired = np.stack([closed_form_curvature(model, steps, lam, a) for a in alphas])
    assert got.shape == (19, 6)
    np.testing.assert_allclose(got, desired, rtol=1e-12, atol=1e-12)


SPECTRUM = [0.5, 1.0, 2.0, 4.0]
# (model, steps, alpha, desired alpha_c, desired beta_c formula, desired binding eigenvalue)
CASES = [
    # alpha = 0: gradient descent, 2/lambda_max (paper Sec. 3.2)
    ("surrogate", 1, 0.0, 0.25, 2 / 4.0, 4.0),
    ("exact", 1, 0.0, math.inf, 2 / 4.0, 4.0),
    # alpha <= 1/(2 lambda_max): lambda_max still binds
    ("surrogate", 1, 0.1, 0.25, 2 / (4 - 0.1 * 16), 4.0),
    # alpha = 0.2 > 1/(2 lambda_max): the middle eigenvalue 2 binds (MATH.md fact 5)
    ("surrogate", 1, 0.2, 0.25, 2 / (2 - 0.2 * 4), 2.0),
    ("first_order", 1, 0.2, 0.25, 2 / (2 - 0.2 * 4), 2.0),
    ("exact", 1, 0.2, math.inf, 2 / max(x * (1 - 0.2 * x) ** 2 for x in SPECTRUM), 2.0),
    # alpha = alpha_c: the top mode is flat, lambda = 2 = lambda_max/2 gives exactly 8/lambda_max
    ("surrogate", 1, 0.25, 0.25, 8 / 4.0, 2.0),
    # alpha > alpha_c: negative curvature, no beta converges
    ("surrogate", 1, 0.3, 0.25, 0.0, 4.0),
    ("first_order", 3, 0.3, 0.25, 0.0, 4.0),
    # even k for first-order: never negative
    ("first_order", 2, 0.3, math.inf, 2 / max(x * (1 - 0.3 * x) ** 2 for x in SPECTRUM), 1.0),
    ("exact", 2, 0.1, math.inf, 2 / max(x * (1 - 0.1 * x) ** 4 for x in SPECTRUM), 2.0),
]


@pytest.mark.parametrize(
    ("model", "steps", "a", "ac", "bc", "bind"),
    CASES,
    ids=[f"{c[0]}-k{c[1]}-a{c[2]}" for c in CASES],
)
def test_thresholds_table(
    model: str, steps: int, a: float, ac: float, bc: float, bind: float
) -> None:
    assert alpha_c(SPECTRUM, model=model, steps=steps) == pytest.approx(ac, rel=1e-12)
    assert float(beta_c(SPECTRUM, a, model=model, steps=steps)) == pytest.approx(bc, rel=1e-12)
    assert float(binding_eigenvalue(SPECTRUM, a, model=model, steps=steps)) == bind
    # the binding eigenvalue is the argmax (argmin when negative) of the closed-form curvature
    c = closed_form_curvature(model, steps, np.array(SPECTRUM), a)
    assert SPECTRUM[int(np.argmin(c) if (c < 0).any() else np.argmax(c))] == bind


@pytest.mark.parametrize(
    ("eigs", "model", "a", "ac", "bc"),
    [
        ([0.0, 0.0], "surrogate", 0.3, math.inf, math.inf),  # no positive curvature
        ([0.0, 2.0], "surrogate", 0.1, 0.5, 2 / (2 - 0.4)),  # zero eigenvalue is neutral
        ([-1.0, 2.0], "surrogate", 0.1, 0.0, 0.0),  # a saddle: no alpha, no beta
        ([-1.0, 2.0], "exact", 0.1, 0.0, 0.0),
        ([3.0], "surrogate", 1 / 3, 1 / 3, math.inf),  # only a flat mode left at alpha = 1/lambda
        ([3.0], "exact", 1 / 3, math.inf, math.inf),
    ],
    ids=["all-zero", "zero-neutral", "saddle-surrogate", "saddle-exact", "flat-s", "flat-e"],
)
def test_edge_spectra(eigs: list[float], model: str, a: float, ac: float, bc: float) -> None:
    assert alpha_c(eigs, model=model) == ac
    assert float(beta_c(eigs, a, model=model)) == pytest.approx(bc, rel=1e-12)


def test_binding_eigenvalue_is_nan_without_positive_curvature() -> None:
    assert math.isnan(float(binding_eigenvalue([0.0, 0.0], 0.1, model="exact")))


def test_rounding_at_alpha_equal_one_over_lambda_is_flat_not_negative() -> None:
    # 1/lambda in floating point need not give 1 - alpha lambda == 0 exactly.
    lam = np.array([0.1, 0.7, 3.0, 49.0, 1e3])
    for x in lam:
        c = effective_curvatures([x], 1 / x, model="surrogate")
        assert c[0] == 0.0, (x, c)
        assert float(beta_c([x], 1 / x, model="surrogate")) == math.inf


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (1, 1, 4)], ids=["scalar", "1d", "2d", "3d"])
@pytest.mark.parametrize("model", MODELS)
def test_output_shapes_follow_alpha(shape: tuple[int, ...], model: str) -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 0.2, size=shape)
    eigs = [0.5, 1.0, 2.0, 4.0, 5.0]
    assert np.shape(beta_c(eigs, a, model=model)) == shape
    assert np.shape(binding_eigenvalue(eigs, a, model=model)) == shape
    assert effective_curvatures(eigs, a, model=model).shape == (*shape, 5)
    # element-wise equal to scalar calls
    flat_b = np.ravel(beta_c(eigs, a, model=model))
    for x, b in zip(np.ravel(a), flat_b, strict=True):
        assert float(beta_c(eigs, float(x), model=model)) == b


def test_scalar_alpha_gives_a_float() -> None:
    out = beta_c([1.0, 2.0], 0.1, model="surrogate")
    assert isinstance(out, float) and np.ndim(out) == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"eigs": [1.0, float("nan")]}, "nan"),
        ({"eigs": [float("inf")]}, "inf"),
        ({"eigs": []}, "non-empty"),
        ({"eigs": [[1.0, 2.0]]}, "1-D"),
        ({"eigs": ["a", "b"]}, "'a'"),
        ({"alpha": -0.1}, "-0.1"),
        ({"alpha": [0.1, float("nan")]}, "nan"),
        ({"model": "second_order"}, "second_order"),
        ({"steps": 0}, "0"),
        ({"steps": True}, "True"),
        ({"steps": 1.5}, "1.5"),
        ({"model": "surrogate", "steps": 2}, "steps=2"),
    ],
    ids=[
        "nan-eig",
        "inf-eig",
        "empty",
        "2d-eigs",
        "text-eigs",
        "neg-alpha",
        "nan-alpha",
        "model",
        "steps0",
        "steps-bool",
        "steps-float",
        "surrogate-k2",
    ],
)
def test_bad_input_names_the_value(kwargs: dict, fragment: str) -> None:
    args = {"eigs": [1.0, 2.0], "alpha": 0.1, "model": "exact", "steps": 1} | kwargs
    with pytest.raises(ValueError, match=None) as info:
        beta_c(args["eigs"], args["alpha"], model=args["model"], steps=args["steps"])
    assert fragment in str(info.value)
    if "alpha" not in kwargs:
        with pytest.raises(ValueError):
            alpha_c(args["eigs"], model=args["model"], steps=args["steps"])


SMALL_K = [("surrogate", 1)] + [(m, k) for m in ("first_order", "exact") for k in range(1, 7)]


@pytest.mark.parametrize(("model", "steps"), SMALL_K, ids=[f"{m}-k{k}" for m, k in SMALL_K])
def test_product_form_equals_the_sympy_derivation(model: str, steps: int) -> None:
    """The numeric product form is the derived curvature: exactly in rationals, and in float64
    against the lambdified derivation; its turning point is the derived one (Eq. 10-11)."""
    from fractions import Fraction

    from mamlconv.theory import quadratic, thresholds
    from mamlconv.theory.symbols import alpha, lam

    derived = quadratic.mode_curvature(model, steps=steps)
    for x, a in [(Fraction(3, 7), Fraction(5, 11)), (Fraction(-2), Fraction(1, 3)), (2, 1)]:
        desired = derived.subs({lam: sp.Rational(x), alpha: sp.Rational(a)})
        got = thresholds.mode_curvature_value(x, a, model=model, steps=steps)
        assert sp.Rational(got) == desired, (x, a)
    f = sp.lambdify((lam, alpha), derived, "numpy")
    lam_v = np.array([-0.7, 0.3, 1.0, 2.5, 10.0])
    for a in (0.0, 0.13, 0.37, 0.9):
        np.testing.assert_allclose(
            effective_curvatures(lam_v, a, model=model, steps=steps),
            f(lam_v, a),
            rtol=1e-12,
            err_msg=f"alpha={a}",
        )
    turning = conditions.alpha_turning_point(model, steps=steps)
    positive = np.array([0.3, 1.0, 2.5])
    desired_t = [float(turning.subs(lam, sp.Float(x))) for x in positive]
    np.testing.assert_array_equal(
        thresholds.turning_point(positive, model=model, steps=steps), desired_t
    )


LARGE_K = [("first_order", 9_999), ("first_order", 10_000), ("exact", 10_000), ("exact", 777)]


@pytest.mark.parametrize(("model", "steps"), LARGE_K, ids=[f"{m}-k{k}" for m, k in LARGE_K])
def test_large_k_matches_exact_rationals(model: str, steps: int) -> None:
    """K up to 10,000: beta_c, the binding eigenvalue and the sign agree with exact rational
    arithmetic (Python Fractions), also where lambda~ lies outside float64's range."""
    from fractions import Fraction

    from mamlconv.theory.thresholds import mode_curvature_value

    eigs = [Fraction(1, 2), Fraction(1), Fraction(2), Fraction(3, 2)]
    for a in (Fraction(0), Fraction(1, 1000), Fraction(1, 10), Fraction(3, 4), Fraction(1, 2)):
        exact = [mode_curvature_value(x, a, model=model, steps=steps) for x in eigs]
        floats = [float(x) for x in eigs]
        got_b = float(beta_c(floats, float(a), model=model, steps=steps))
        got_bind = float(binding_eigenvalue(floats, float(a), model=model, steps=steps))
        if any(c < 0 for c in exact):
            most_negative = min(range(len(eigs)), key=lambda i: exact[i])
            assert (got_b, got_bind) == (0.0, floats[most_negative]), a
            continue
        top = max(range(len(eigs)), key=lambda i: exact[i])
        assert got_bind == floats[top], a
        desired = 2 / exact[top]  # an exact rational; float() rounds it (0.0 or inf at range)
        try:
            desired_f = float(desired)
        except OverflowError:
            desired_f = math.inf
        if desired_f == 0.0 or math.isinf(desired_f):
            assert got_b == desired_f, (a, got_b)
        else:
            assert got_b == pytest.approx(desired_f, rel=1e-9), a


def test_thresholds_cli_at_k_10000_needs_no_sympy() -> None:
    """Old code expanded the K-step derivation symbolically (time doubling per step: K = 18
    took 27 s, K = 20 did not finish); now no SymPy is imported at all."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mamlconv.cli import main\n"
        "rc = main(['thresholds', '--eigs', '0.5,1,2', '--alpha', '0.1', '--model', 'exact',"
        " '--steps', '10000', '--json'])\n"
        "print('sympy' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record_line, sympy_line = proc.stdout.strip().splitlines()
    assert sympy_line == "False"
    assert '"binding_eigenvalue": 0.5' in record_line


# ---------------------------------------------------------------- hypothesis: symbolic agreement

eig_lists = st.lists(
    st.floats(min_value=1e-2, max_value=1e2, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=6,
)


_EQ15 = {}


def _eq15_holds(model: str, steps: int, eigs: list[float], a: float, b: float) -> bool:
    """Evaluate the derived SymPy Eq. 15 (lambdified, exact same relational) for every mode."""
    if (model, steps) not in _EQ15:
        cond = conditions.eq15(model, steps=steps)
        _EQ15[(model, steps)] = sp.lambdify((lam_pos, ALPHA, BETA), cond, "math")
    check = _EQ15[(model, steps)]
    return all(bool(check(x, a, b)) for x in eigs)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(eigs=eig_lists, u=st.floats(min_value=0.0, max_value=0.98), data=st.data())
@pytest.mark.parametrize(("model", "steps"), MODEL_STEPS, ids=IDS)
def test_thresholds_agree_with_symbolic_eq15(
    model: str, steps: int, eigs: list[float], u: float, data: st.DataObject
) -> None:
    """Numeric beta_c is the edge of the symbolic Eq. 15 region (per mode, all modes)."""
    ac = alpha_c(eigs, model=model, steps=steps)
    a = u * ac if math.isfinite(ac) else u * 3 / max(eigs)
    # keep clear of alpha = 1/lambda for exact/even k, where a mode is flat (lambda~ = 0)
    if any(abs(1 - a * x) < 1e-6 for x in eigs):
        return
    bc = float(beta_c(eigs, a, model=model, steps=steps))
    assert 0 < bc < math.inf
    assert _eq15_holds(model, steps, eigs, a, bc * (1 - 1e-9))
    assert not _eq15_holds(model, steps, eigs, a, bc * (1 + 1e-9))
    # alpha_c: the alpha-part of Eq. 15 (alpha <= 1/lambda) flips at alpha_c
    if math.isfinite(ac):
        assert _eq15_holds(model, steps, eigs, ac * (1 - 1e-9), 1e-12)
        assert not _eq15_holds(model, steps, eigs, ac * (1 + 1e-9), 1e-12)


# ---------------------------------------------------------------- hypothesis: simulated dynamics


def meta_direction(model: str, A: np.ndarray, v: np.ndarray, a: float, steps: int) -> np.ndarray:
    """The model's MAML direction on L = v^T A v / 2, by running the algorithm (not the formula).

    surrogate: g - alpha H g (Eq. 4); first_order: g(v_k); exact: the chain rule through the k
    inner steps, J^T g(v_k) with J = prod (I - alpha H) accumulated step by step (Eq. 3).
    """
    grad = A @ v
    if model == "surrogate":
        return grad - a * (A @ grad)
    w, J = v.copy(), np.eye(len(v))
    for _ in range(steps):
        w = w - a * (A @ w)
        J = (np.eye(len(v)) - a * A) @ J
    return A @ w if model == "first_order" else J.T @ (A @ w)


def simulate(
    model: str, steps: int, eigs: list[float], a: float, b: float, seed: int
) -> np.ndarray:
    """|coefficient_T / coefficient_0| of each eigen-mode after T gradient steps, float64.

    A = Q diag(eigs) Q^T with a random rotation Q; every mode is excited; inf once diverged.
    """
    rng = np.random.default_rng(seed)
    n = len(eigs)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(eigs) @ Q.T
    c0 = rng.uniform(0.5, 1.0, size=n)
    v = Q @ c0
    for _ in range(1500):
        v = v - b * meta_direction(model, A, v, a, steps)
        if not np.all(np.isfinite(v)) or np.linalg.norm(v) > 1e12:
            return np.full(n, np.inf)
    return np.abs(Q.T @ v) / c0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    eigs=eig_lists,
    u=st.floats(min_value=0.0, max_value=0.95),
    seed=st.integers(min_value=0, max_value=2**31),
)
@pytest.mark.parametrize(("model", "steps"), MODEL_STEPS, ids=IDS)
def test_gradient_descent_converges_below_and_diverges_above_beta_c(
    model: str, steps: int, eigs: list[float], u: float, seed: int
) -> None:
    ac = alpha_c(eigs, model=model, steps=steps)
    a = u * ac if math.isfinite(ac) else u * 3 / max(eigs)
    bc = float(beta_c(eigs, a, model=model, steps=steps))
    if not (0 < bc < math.inf):
        return
    below = simulate(model, steps, eigs, a, 0.99 * bc, seed)
    above = simulate(model, steps, eigs, a, 1.01 * bc, seed)
    # below: no mode grows (|1 - beta c| < 1 for all modes); above: the binding mode grows
    # as 1.02^t, so by far more than 1e6 in 1500 steps.
    assert below.max() <= 1.0 + 1e-9, (below, bc)
    assert above.max() > 1e6, (above, bc)


@pytest.mark.parametrize(("model", "steps"), [("surrogate", 1), ("first_order", 3)])
def test_beyond_alpha_c_every_beta_diverges(model: str, steps: int) -> None:
    eigs = [0.5, 1.0, 4.0]
    a = 1.2 * alpha_c(eigs, model=model, steps=steps)
    assert float(beta_c(eigs, a, model=model, steps=steps)) == 0.0
    c = effective_curvatures(eigs, a, model=model, steps=steps)
    assert c[-1] < 0  # the top mode turned negative
    for b in (1e-2, 1e-1, 0.4):
        ratios = simulate(model, steps, eigs, a, b, seed=1)
        assert ratios[-1] > 1.0, ratios  # ... and grows for every beta


# ---------------------------------------------------------------- hypothesis: the item-3 bound


@settings(max_examples=60, deadline=None)
@given(eigs=eig_lists, u=st.floats(min_value=0.0, max_value=1.0))
def test_surrogate_beta_c_lower_bound_8_alpha(eigs: list[float], u: float) -> None:
    """beta_c(alpha) >= 8 alpha for alpha <= alpha_c, hence >= 8/lambda_max = 4 x GD at alpha_c."""
    ac = alpha_c(eigs, model="surrogate")
    a = u * ac
    bc = float(beta_c(eigs, a, model="surrogate"))
    assert bc >= 8 * a * (1 - 1e-12)
    gd = float(beta_c(eigs, 0.0, model="surrogate"))
    assert gd == pytest.approx(2 / max(eigs), rel=1e-15)
    at_ac = float(beta_c(eigs, ac, model="surrogate"))
    assert at_ac >= 4 * gd * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(eigs=eig_lists, u=st.floats(min_value=0.0, max_value=1.0))
def test_exact_beta_c_lower_bound_27_alpha_over_2(eigs: list[float], u: float) -> None:
    """Exact-MAML counterpart: beta_c >= 27 alpha / 2 for alpha <= 1/lambda_max (6.75 x GD there),
    and exact's beta_c is never below the surrogate's on that range."""
    a = u / max(eigs)
    bc = float(beta_c(eigs, a, model="exact"))
    assert bc >= 13.5 * a * (1 - 1e-12)
    assert bc >= float(beta_c(eigs, a, model="surrogate")) * (1 - 1e-12)


def test_bound_at_alpha_c_is_attained() -> None:
    """Equality in the 4x bound when an eigenvalue sits at lambda_max/2 (and 27/4 at /3)."""
    lam_max = 3.0
    assert float(beta_c([lam_max / 2, lam_max], 1 / lam_max, model="surrogate")) == pytest.approx(
        4 * 2 / lam_max, rel=1e-13
    )
    assert float(beta_c([lam_max / 3, lam_max], 1 / lam_max, model="exact")) == pytest.approx(
        6.75 * 2 / lam_max, rel=1e-13
    )
