"""Fuzz of the surfaces added since the first hardening round (issue 21): reading-run files,
problem specs, saved sweep configurations (``--config``), the results manifest and the Ray
options. Each property: a damaged, foreign or extreme input gives the surface's own one-line
error type (or a correct answer), never another exception, and a spec that the user did not
name is never imported."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mamlconv.errors import ResultFileError  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "experiments" / "results"
RUN = RESULTS / "readings" / "sinusoid_finn_pool_exact_seed0.json"
SIDECAR = RESULTS / "miniimagenet_smoke.json"
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(record, prefix=()):
    """Every (path) to a value inside a JSON record, up to depth 3 (lists: the first item)."""
    out = [prefix] if prefix else []
    if len(prefix) >= 3:
        return out
    if isinstance(record, dict):
        for k, v in record.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(record, list) and record:
        out += _paths(record[0], (*prefix, 0))
    return out


def _mutate(record, path, value, drop):
    target = record
    for key in path[:-1]:
        target = target[key]
    if drop and isinstance(target, dict):
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return record


def _record_mutations(source: Path):
    base = json.loads(source.read_text())
    paths = _paths(base)
    return st.tuples(st.sampled_from(paths), JUNK, st.booleans()).map(
        lambda t: _mutate(json.loads(source.read_text()), *t)
    )


# ---- reading runs: scan_runs and `readings judge` -------------------------------------------


@FUZZ
@given(record=_record_mutations(RUN))
def test_a_damaged_reading_run_is_left_out_or_judged_never_a_crash(record, tmp_path_factory):
    from mamlconv.experiments.readings.run import scan_runs

    folder = tmp_path_factory.mktemp("runs")
    (folder / RUN.name).write_text(json.dumps(record, allow_nan=True))
    runs, left_out = scan_runs(folder)
    assert len(runs) + len(left_out) == 1
    for _path, why in left_out:
        assert why and "\n" not in why


@FUZZ
@given(text=st.text(max_size=60))
def test_a_reading_file_of_any_text_is_left_out(text, tmp_path_factory):
    from mamlconv.experiments.readings.run import scan_runs

    folder = tmp_path_factory.mktemp("text")
    (folder / "sinusoid_x_seed0.json").write_text(text)
    runs, left_out = scan_runs(folder)
    assert not runs and len(left_out) == 1


# ---- problem specs: never imported without the user's word ----------------------------------


@FUZZ
@given(
    module=st.from_regex(r"[a-z_][a-z0-9_.]{0,12}", fullmatch=True),
    attr=st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
)
def test_a_spec_nobody_named_is_never_imported(module, attr, monkeypatch):
    from mamlconv.experiments.problems.registry import UntrustedSpec, get_problem

    monkeypatch.setenv("MAMLCONV_TRUSTED_PROBLEMS", "[]")
    before = set(sys.modules)
    with pytest.raises(UntrustedSpec, match="never runs code"):
        get_problem(f"{module}:{attr}", command="touch /tmp/never")
    assert set(sys.modules) == before


@FUZZ
@given(value=st.text(max_size=40).filter(lambda t: "\x00" not in t))
def test_a_damaged_trust_variable_trusts_nothing(value, monkeypatch):
    from mamlconv.experiments.problems.registry import UntrustedSpec, get_problem

    if value.strip().startswith("["):
        value = "[1, 2"  # a list that names a spec is the user's word; keep it broken
    monkeypatch.setenv("MAMLCONV_TRUSTED_PROBLEMS", value)
    with pytest.raises(UntrustedSpec):
        get_problem("os:system", command="touch /tmp/never")


# ---- saved configurations: sweep --config ---------------------------------------------------


@FUZZ
@given(record=_record_mutations(SIDECAR))
def test_a_damaged_sweep_record_is_read_or_refused_in_one_line(record, tmp_path_factory):
    from mamlconv.experiments.sweep.storage import read_saved_sweep

    path = tmp_path_factory.mktemp("cfg") / "saved.json"
    path.write_text(json.dumps(record, allow_nan=True))
    try:
        saved = read_saved_sweep(path)
    except ResultFileError as exc:
        assert "\n" not in str(exc)
        return
    assert saved.out.suffix in (".npz", ".json")
    assert saved.config.iters >= 1


@FUZZ
@given(record=st.dictionaries(st.sampled_from(["config", "format", "bisection", "boundary",
                                               "figure", "schema"]), JUNK, max_size=5))  # fmt: skip
def test_a_foreign_record_is_not_a_sweep(record, tmp_path_factory):
    from mamlconv.experiments.sweep.storage import read_saved_sweep

    path = tmp_path_factory.mktemp("foreign") / "x.json"
    path.write_text(json.dumps(record, allow_nan=True))
    with pytest.raises(ResultFileError):
        read_saved_sweep(path)


# ---- the manifest ---------------------------------------------------------------------------


@FUZZ
@given(record=_record_mutations(RESULTS / "MANIFEST.json"))
def test_a_damaged_manifest_loads_or_is_one_result_file_error(record, tmp_path_factory):
    from mamlconv.paper_checks import manifest

    folder = tmp_path_factory.mktemp("manifest")
    (folder / "MANIFEST.json").write_text(json.dumps(record, allow_nan=True))
    try:
        loaded = manifest.load_manifest(folder)
    except ResultFileError as exc:
        assert "\n" not in str(exc)
        return
    assert loaded is not None
    problems = manifest.check(folder)  # every listed file is missing here
    assert all(isinstance(p, str) for p in problems)


# ---- Ray: options and addresses -------------------------------------------------------------


@FUZZ
@given(
    cpus=st.floats(allow_nan=True, allow_infinity=True),
    gpus=st.floats(allow_nan=True, allow_infinity=True),
)
def test_ray_options_take_or_refuse_any_number(cpus, gpus):
    from mamlconv.experiments.sweep.ray_backend import RayOptions

    try:
        options = RayOptions(cpus_per_task=cpus, gpus_per_task=gpus)
    except ValueError:
        return
    assert options.cpus_per_task > 0 and options.gpus_per_task >= 0


@FUZZ
@given(
    address=st.one_of(
        st.text(max_size=20).filter(lambda t: "." not in t and t.strip() == t),
        st.integers(min_value=-5, max_value=70000).map(lambda p: f"127.0.0.1:{p}"),
        st.integers(min_value=1, max_value=1023).map(lambda p: f"ray://127.0.0.1:{p}"),
    )
)
def test_an_unreachable_ray_address_is_one_line_at_once(address):
    """A refused or malformed address fails in the driver's own check (a TCP connection with
    a timeout of seconds), before Ray's minutes of retries."""
    from mamlconv.experiments.sweep.ray_backend import RayUnreachable, check_reachable

    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("a cluster is named by RAY_ADDRESS")
    try:
        check_reachable(address, timeout=1.0)
    except RayUnreachable as exc:
        assert "\n" not in str(exc)
