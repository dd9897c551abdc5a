"""Every subcommand, driven with random bad arguments, answers with exit code 2 and one
line, never a traceback, and before any work (issue 10).

The subcommands and their options are read from the parser itself, so a subcommand added
later is fuzzed too. Each command line holds random options with random (mostly bad)
values plus one item that is certainly bad: an unknown flag, a value the option's type or
choices reject, or a path that cannot be used (a file where a folder is needed, a
truncated result). Commands run in-process through ``mamlconv.cli.main``; nothing here
needs the network or trains a model, and each example has a time limit.

``python tests/test_cli_fuzz.py draw N OUT.json`` writes N drawn command lines, and
``python tests/test_cli_fuzz.py run OUT.json PYTHON [CPU_SECONDS]`` runs them in subprocesses
of another interpreter (another version of the package) and prints the counts of
tracebacks, hangs and wrong exit codes (the issue's before/after counts).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mamlconv.cli import build_parser, main  # noqa: E402

WEIRD = [
    "",
    " ",
    "-1",
    "0",
    "1",
    "-0",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "1e-400",
    "abc",
    "1,2,,3",
    "1:2",
    "0:0:0",
    "1:0.1:3",
    "1e-3:1:0",
    "9" * 40,
    "0x10",
    "cuda:x",
    "tpu",
    "a\x00b",
    "é∞",
    "--",
    "-",
    "/",
    "/dev/null",
    "/proc/nope",
    "{workdir}/afile/x",
    "{workdir}/adir",
    "{workdir}/missing.npz",
    "{workdir}/trunc.npz",
    "{workdir}/bad.json",
    "no_such_module:factory",
    "os:getcwd",
]
"""Values for random options; most are bad for every option, the few valid ones (``1``)
combine with the certainly bad item of the command line."""

POST_PARSE_BAD: dict[str, list[list[str]]] = {
    "sweep": [
        ["sinusoid", "--out", "{workdir}/afile/x.npz"],
        ["sinusoid", "--out", "{workdir}/adir"],
        ["--config", "{workdir}/trunc.npz"],
        ["--config", "{workdir}/bad.json"],
    ],
    "compare": [["{workdir}/trunc.npz", "--out", "cmp"], ["{workdir}/bad.npz", "--out", "cmp"]],
    "figure": [["fig2", "--out", "{workdir}/afile"], ["fig1", "--out", "{workdir}/afile/sub"]],
    "linreg": [["--plot", "{workdir}/afile/m.png"], ["--data", "{workdir}/huge.json"]],
}
"""Bad items that only the command itself can see (after parsing), checked before any work.
Audit's --out is checked by the audit itself (issue 10, audit section)."""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    skip = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)
    return [a for a in parser._actions if not isinstance(a, skip)]


def _rejected(action: argparse.Action, value: str) -> bool:
    """Whether argparse refuses ``value`` for ``action`` (its type or its choices)."""
    try:
        converted = action.type(value) if callable(action.type) else value
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return True
    return action.choices is not None and converted not in action.choices


COMMANDS = _subparsers(build_parser())


@st.composite
def bad_argv(draw: st.DrawFn, workdir: str = "{workdir}") -> list[str]:
    """A command line of one subcommand that is certainly wrong somewhere."""
    name = draw(st.sampled_from(sorted(COMMANDS)))
    parser = COMMANDS[name]
    argv = [name]
    nested = _subparsers(parser)
    if nested:
        sub = draw(st.sampled_from(sorted(nested)))
        argv.append(sub)
        parser = nested[sub]
    actions = _options(parser)
    optional = [a for a in actions if a.option_strings]
    tokens: list[list[str]] = []
    for action in draw(st.lists(st.sampled_from(optional), max_size=4)) if optional else []:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            tokens.append([flag])
        else:
            tokens.append([flag, draw(st.sampled_from(WEIRD))])
    for action in actions:
        if not action.option_strings and action.choices is not None and draw(st.booleans()):
            tokens.insert(0, [draw(st.sampled_from(sorted(action.choices)))])
    typed = [
        (a, v)
        for a in optional
        if a.nargs != 0
        for v in WEIRD
        if "{workdir}" not in v and "\x00" not in v and _rejected(a, v)
    ]
    kinds = ["unknown"] + (["typed"] if typed else [])
    if not nested and name in POST_PARSE_BAD:
        kinds.append("post")
    kind = draw(st.sampled_from(kinds))
    if kind == "unknown":
        bad = [draw(st.sampled_from(["--no-such-option", "--outt", "-Z"]))]
    elif kind == "typed":
        action, value = draw(st.sampled_from(typed))
        bad = [action.option_strings[0], value]
    else:
        bad = draw(st.sampled_from(POST_PARSE_BAD[name]))
        tokens = [t for t in tokens if t[0] not in bad]  # the bad item decides those options
    position = draw(st.integers(0, len(tokens)))
    tokens.insert(position, bad)
    flat = [t for group in tokens for t in group]
    return argv + [t.replace("{workdir}", workdir) for t in flat]


def make_workdir(root: Path) -> Path:
    """Files the bad paths point at: a file, a folder, a truncated and a foreign result."""
    (root / "afile").write_text("not a folder\n")
    (root / "adir").mkdir(exist_ok=True)
    (root / "trunc.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 60)
    (root / "bad.npz").write_text("not an npz\n")
    (root / "bad.json").write_text("{not json\n")
    (root / "huge.json").write_text(json.dumps({"x": [1e200, 2e200, 3e200], "y": [1, 2, 3]}))
    return root


WORKDIR = make_workdir(Path(tempfile.mkdtemp(prefix="mamlconv-fuzz-")))


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` in ``WORKDIR`` with stdout and stderr captured: (exit code, output)."""
    out, err = io.StringIO(), io.StringIO()
    cwd, data = os.getcwd(), os.environ.get("MAMLCONV_DATA")
    os.environ["MAMLCONV_DATA"] = str(WORKDIR / "no-data")  # no real data is ever read
    os.chdir(WORKDIR)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(cwd)
        if data is None:
            os.environ.pop("MAMLCONV_DATA", None)
        else:
            os.environ["MAMLCONV_DATA"] = data
    return code, out.getvalue() + err.getvalue()


@settings(
    max_examples=int(os.environ.get("MAMLCONV_FUZZ_EXAMPLES", "100")),
    deadline=30_000,  # ms per example: rejecting bad input needs no work
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(argv=bad_argv(workdir=str(WORKDIR)))
def test_bad_arguments_exit_2_without_a_traceback(argv):
    code, output = run_in_process(argv)
    assert "Traceback" not in output, (argv, output)
    assert code == 2, (argv, code, output[-2000:])
    errors = [ln for ln in output.splitlines() if "error" in ln]
    assert len(errors) >= 1, (argv, output)


def count_in_subprocesses(
    inputs: list[list[str]], *, python: str, cpu_seconds: int, env: dict[str, str]
) -> dict[str, int]:
    """Run each command line in its own process: how many printed a traceback, hung (used
    more than ``cpu_seconds`` of CPU: work started on a bad input; CPU time, not wall time,
    so that a busy machine does not count as a hang), exited 0 (a bad input accepted), or
    exited with another code than 2."""
    import resource
    import signal
    import subprocess

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))

    counts = {"inputs": 0, "traceback": 0, "hang": 0, "exit_0": 0, "exit_not_2": 0}
    code = "import sys; from mamlconv.cli import main; sys.exit(main(sys.argv[1:]))"
    for argv in inputs:
        argv = [t.replace("{workdir}", str(WORKDIR)) for t in argv]
        if any("\x00" in t for t in argv):
            continue  # a command line cannot carry NUL
        counts["inputs"] += 1
        done = subprocess.run(
            [python, "-c", code, *argv],
            cwd=WORKDIR,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=limit,
        )
        if done.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            counts["hang"] += 1
            print("HANG", argv, flush=True)
            continue
        out = done.stdout + done.stderr
        if "Traceback" in out:
            counts["traceback"] += 1
            print("TRACEBACK", argv, out.strip().splitlines()[-1], flush=True)
        if done.returncode == 0:
            counts["exit_0"] += 1
            print("EXIT 0", argv, flush=True)
        elif done.returncode != 2:
            counts["exit_not_2"] += 1
            print(f"EXIT {done.returncode}", argv, flush=True)
    return counts


if __name__ == "__main__":
    # python tests/test_cli_fuzz.py draw N OUT.json: N drawn command lines
    # python tests/test_cli_fuzz.py run IN.json PYTHON [CPU_SECONDS]: run them, print the counts
    if sys.argv[1] == "draw":
        n, target = int(sys.argv[2]), Path(sys.argv[3])
        drawn: list[list[str]] = []

        @settings(max_examples=n, database=None, derandomize=True)
        @given(argv=bad_argv())
        def collect(argv: list[str]) -> None:
            drawn.append(argv)

        collect()
        target.write_text(json.dumps(drawn, indent=1) + "\n")
    else:
        inputs = json.loads(Path(sys.argv[2]).read_text())
        env = {**os.environ, "MAMLCONV_DATA": str(WORKDIR / "no-data"), "OMP_NUM_THREADS": "1"}
        cpu = int(sys.argv[4]) if len(sys.argv) > 4 else 30
        counts = count_in_subprocesses(inputs, python=sys.argv[3], cpu_seconds=cpu, env=env)
        print(json.dumps(counts))
