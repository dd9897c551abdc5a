"""Every error of the command line is one line with exit code 2 (1 for a run that failed),
never a traceback (issue 10): damaged result files, data errors, unusable output and cache
folders, overflowing data, user problems with the wrong signature, oversized grids."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shipped_data import needs_shipped, use_shipped_root

from mamlconv.cli import describe_error, main
from mamlconv.cli._args import check_output_dir, check_output_file, describe_os_error
from mamlconv.errors import OutputError, ProblemError, ResultFileError
from mamlconv.experiments.problems.registry import get_preset
from mamlconv.experiments.sweep.results import load_result
from mamlconv.experiments.sweep.run import run_sweep


def one_line(capsys, rc, code=2):
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("mamlconv")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def result_file(tmp_path_factory) -> Path:
    cfg = get_preset("sinusoid", "smoke").replace(
        alphas=(1e-3, 0.3), betas=(0.05, 0.5), iters=2, record_every=1, device="cpu"
    )
    out = tmp_path_factory.mktemp("res") / "r.npz"
    run_sweep(cfg, out, progress=False)
    return out


def _damaged(kind: str, good: Path, folder: Path) -> Path:
    path = folder / f"{kind}.npz"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello\n")
    elif kind == "pickled":
        np.savez(path, a=np.array([{"x": 1}], dtype=object))
    elif kind == "foreign":
        np.savez(path, a=np.zeros(3))
    elif kind == "shape":
        with np.load(good) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["final_loss"] = arrays["final_loss"][:1]
        np.savez(path, **arrays)
    return path


KINDS = ("truncated", "empty", "text", "pickled", "foreign", "shape")


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_result_is_one_line_naming_it(tmp_path, capsys, result_file, kind):
    bad = _damaged(kind, result_file, tmp_path)
    with pytest.raises(ResultFileError, match=bad.name):
        load_result(bad)
    line = one_line(capsys, main(["compare", str(bad), "--out", str(tmp_path / "c"), "--quiet"]))
    assert bad.name in line and "allow_pickle" not in line


def test_a_data_error_in_sweep_is_one_line(tmp_path, capsys, monkeypatch):
    """Old: DataError traceback from `sweep omniglot` on a truncated Omniglot file."""
    root = tmp_path / "data"
    (root / "omniglot").mkdir(parents=True)
    (root / "omniglot" / "omniglot.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    monkeypatch.setenv("MAMLCONV_DATA", str(root))
    monkeypatch.setenv("MAMLCONV_CACHE", str(tmp_path / "cache"))
    argv = ["sweep", "omniglot", "--preset", "smoke", "--no-progress", "--device", "cpu"]
    line = one_line(capsys, main([*argv, "--out", str(tmp_path / "o.npz")]))
    assert "omniglot.npz" in line


@needs_shipped
def test_an_unusable_cache_folder_is_one_line_naming_the_setting(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    monkeypatch.setenv("MAMLCONV_CACHE", str(blocker / "sub"))
    use_shipped_root(monkeypatch)  # the shipped files are found, then the cache is needed
    line = one_line(capsys, main(["data", "check"]))
    assert "MAMLCONV_CACHE" in line and str(blocker) in line


def test_linreg_on_overflowing_data_is_one_line(tmp_path, capsys):
    data = tmp_path / "huge.json"
    data.write_text(json.dumps({"x": [1e200, 2e200, 3e200], "y": [1.0, 2.0, 3.0]}))
    argv = ["linreg", "--data", str(data), "--iters", "2", "--alphas", "1e-3:1e-2:2"]
    line = one_line(capsys, main([*argv, "--betas", "1e-3:1e-2:2"]))
    assert "rescale" in line and "--data" in line


def test_a_huge_linreg_grid_prints_its_estimate_and_needs_yes(capsys, monkeypatch):
    """Old: a 1000 x 1000 grid grew to 5.7 GB with no output. Here the estimate is printed
    first; on a machine with 4 GB free it is refused without --yes."""
    import mamlconv.experiments.sweep.estimate as estimate

    monkeypatch.setattr(estimate, "available_memory", lambda: 4e9)
    argv = ["linreg", "--model", "surrogate", "--alphas", "1e-5:9e-2:1000"]
    rc = main([*argv, "--betas", "5e-3:9:1000"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "1000000 cells (1000 x 1000) x 500 iterations" in err and "--yes" in err


class _NoKeywords:
    """A user problem whose init_params lacks the keyword arguments of the protocol."""

    name = "no-keywords"

    def __init__(self) -> None:
        from mamlconv.experiments.problems.sinusoid import SinusoidProblem

        self.base = SinusoidProblem()

    def init_params(self, generator):
        return self.base.init_params(generator, dtype=torch.float32, device="cpu")

    def loss(self, params, x, y):
        return self.base.loss(params, x, y)

    def sample_tasks(self, generator, n_tasks, *, dtype, device):
        return self.base.sample_tasks(generator, n_tasks, dtype=dtype, device=device)


def make_no_keywords() -> _NoKeywords:
    return _NoKeywords()


def test_a_user_problem_without_keyword_arguments_is_one_line(capsys):
    from mamlconv.experiments.engine.loop import train_cells

    cfg = get_preset("sinusoid", "smoke").replace(iters=1, device="cpu")
    with pytest.raises(ProblemError, match="init_params"):
        train_cells(_NoKeywords(), cfg, np.array([0.01]), np.array([0.1]))
    rc = main(["advise", "--problem", f"{__name__}:make_no_keywords", "--verify-iters", "0"])
    line = one_line(capsys, rc)
    assert "_NoKeywords.init_params" in line and "dtype" in line


# ---- the handler and the output checks -----------------------------------------------------


def test_an_unexpected_error_is_one_line_exit_1_and_debuggable(capsys, monkeypatch):
    import mamlconv.cli.derive as derive

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(derive, "run", broken)
    line = one_line(capsys, main(["derive"]), code=1)
    assert "RuntimeError: boom" in line and "MAMLCONV_DEBUG" in line
    monkeypatch.setenv("MAMLCONV_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["derive"])


@pytest.mark.parametrize(
    ("exc", "fragments"),
    [
        pytest.param(
            PermissionError(errno.EACCES, "Permission denied", "/x/r.npz"),
            ("/x/r.npz", "Permission denied", "choose a folder you can write"),
            id="permission",
        ),
        pytest.param(
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/f/r.npz"),
            ("/x/f/r.npz", "a file stands where a folder is needed"),
            id="not-a-directory",
        ),
        pytest.param(
            FileExistsError(errno.EEXIST, "File exists", "/x/c"),
            ("/x/c", "remove it or choose another path"),
            id="exists",
        ),
    ],
)
def test_os_errors_become_one_line_with_the_file_and_a_fix(exc, fragments):
    code, message = describe_error(exc)
    assert code == 2 and "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert describe_os_error(exc) == message


def test_output_checks(tmp_path):
    (tmp_path / "f").write_text("")
    (tmp_path / "d").mkdir()
    assert check_output_file(tmp_path / "new" / "deeper" / "r.npz") == tmp_path / "new/deeper/r.npz"
    assert not (tmp_path / "new").exists()  # the check creates nothing
    assert check_output_dir(tmp_path / "d") == tmp_path / "d"
    for bad, fn in [
        (tmp_path / "d", check_output_file),
        (tmp_path / "f" / "r.npz", check_output_file),
        (tmp_path / "f", check_output_dir),
        (tmp_path / "f" / "sub", check_output_dir),
        (Path("/proc/mamlconv-test/x"), check_output_dir),
    ]:
        with pytest.raises(OutputError, match="--out"):
            fn(bad)
    with pytest.raises(OutputError, match=r"\.png"):
        check_output_file(tmp_path / "m.txt", flag="--plot", suffixes=(".png",))
    assert not list(tmp_path.glob(".mamlconv-probe-*"))


# ---- every error class of the package is a MamlconvError ---------------------------------


def _package_errors() -> list:
    from mamlconv.errors import RunFailed
    from mamlconv.experiments.data.store import DataError
    from mamlconv.experiments.problems.module_problem import ModuleProblemError
    from mamlconv.experiments.problems.registry import ProblemSpecError
    from mamlconv.experiments.sweep.ray_backend import ChunkFailed, RayMissing, RayUnreachable
    from mamlconv.paper_checks import manifest

    # (class, the builtin base its callers catch, exit code)
    return [
        (DataError, RuntimeError, 2),
        (ProblemSpecError, ValueError, 2),
        (ModuleProblemError, ValueError, 2),
        (RayMissing, ImportError, 2),
        (RayUnreachable, RuntimeError, 2),
        (ChunkFailed, RuntimeError, 1),  # `mamlconv sweep` has always exited 1 on it
        (manifest.ResultFileError, ValueError, 2),
        (RunFailed, Exception, 1),
    ]


@pytest.mark.parametrize(
    ("cls", "builtin", "code"),
    _package_errors(),
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_every_package_error_is_a_mamlconv_error_with_its_exit_code(cls, builtin, code):
    from mamlconv.errors import MamlconvError

    assert issubclass(cls, MamlconvError) and issubclass(cls, builtin)
    assert describe_error(cls("bad value\n  the fix")) == (code, "bad value the fix")


def test_the_manifest_raises_the_package_result_file_error():
    from mamlconv.paper_checks import manifest

    assert manifest.ResultFileError is ResultFileError


def test_a_data_error_is_exit_2_even_when_the_data_module_is_not_loaded(monkeypatch):
    """Old: describe_error found DataError through sys.modules; a DataError whose module
    was not (or no longer) in sys.modules under that name was reported as a bug (exit 1)."""
    import sys

    from mamlconv.experiments.data.store import DataError

    exc = DataError("/data/omniglot/omniglot.npz is truncated: restore it")
    monkeypatch.delitem(sys.modules, "mamlconv.experiments.data")
    assert describe_error(exc) == (2, "/data/omniglot/omniglot.npz is truncated: restore it")


def test_a_data_error_inside_a_subcommand_is_one_line_exit_2(capsys, monkeypatch):
    import sys

    import mamlconv.cli.derive as derive
    from mamlconv.experiments.data.store import DataError

    def broken(args):
        raise DataError("omniglot.npz is truncated")

    monkeypatch.setattr(derive, "run", broken)
    monkeypatch.delitem(sys.modules, "mamlconv.experiments.data")
    line = one_line(capsys, main(["derive"]))
    assert line == "mamlconv derive: error: omniglot.npz is truncated"


def test_every_subcommand_module_is_in_the_parser():
    """No subcommand is skipped: build_parser registers each module of SUBCOMMANDS (derive.py
    also registers thresholds, compare.py also local), in the order of ``mamlconv --help``."""
    from mamlconv.cli import SUBCOMMANDS, build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    modules = [m.__name__.rpartition(".")[2] for m in SUBCOMMANDS]
    expected = [
        *modules[: modules.index("derive") + 1],
        "thresholds",
        *modules[modules.index("derive") + 1 :],
    ]
    expected.insert(expected.index("compare") + 1, "local")
    assert list(sub.choices) == expected
