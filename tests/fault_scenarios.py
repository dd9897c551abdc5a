"""The faults of issue 10 (sweep safety, errors, bounded work) as scenarios run against any
interpreter that imports mamlconv, each in fresh processes in a temporary folder:

    python tests/fault_scenarios.py PYTHON [CPU_SECONDS]

prints one line per scenario (ok, traceback, hang, silent-wrong, data-lost) and the counts
as JSON. Each process may use at most 8 GiB of address space. A hang is a process that used
more than CPU_SECONDS (default 60) of CPU time on something that should be refused at once
(CPU time rather than wall time, so that a busy machine does not count as a hang), or was
killed. Not a pytest module: the item tests are
tests/test_sweep_safety.py and tests/test_cli_errors.py; this script produced the
before/after counts of the closing note.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEMORY_CAP = 8 << 30
"""Address-space limit of each scenario process (bytes)."""
CODE = "import sys; from mamlconv.cli import main; sys.exit(main(sys.argv[1:]))"
SMOKE = ["sweep", "sinusoid", "--preset", "smoke", "--no-progress", "--device", "cpu"]


class Runner:
    def __init__(self, python: str, cpu: int, root: Path) -> None:
        self.python, self.cpu, self.root = python, cpu, root
        self.env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def __call__(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu, self.cpu + 5))
            # a runaway allocation (--tasks 100000000 on old code) must not take the machine
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))

        done = subprocess.run(
            [self.python, "-c", CODE, *argv],
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            preexec_fn=limit,
        )
        return done.returncode, done.stdout + done.stderr

    def popen(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen(
            [self.python, "-c", CODE, *argv],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def classify(rc: int, out: str, *, want: int = 2) -> str:
    if rc in (-signal.SIGXCPU, -signal.SIGKILL):
        return "hang"
    if "Traceback" in out:
        return "traceback"
    if rc != want:
        return "silent-wrong" if rc == 0 else f"exit-{rc}"
    return "ok"


def scenarios(run: Runner, root: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    r = root

    # --out with the sidecar's suffix: the sidecar overwrote the arrays
    rc, text = run(*SMOKE, "--iters", "2", "--out", str(r / "a.json"))
    arrays_gone = (r / "a.json").exists() and not (r / "a.npz").exists()
    out["grid --out .json"] = "data-lost" if rc == 0 and arrays_gone else classify(rc, text)

    # a finished result silently replaced by another run
    run(*SMOKE, "--iters", "3", "--out", str(r / "b.npz"))
    before = (r / "b.npz").read_bytes()
    rc, text = run(*SMOKE, "--iters", "2", "--out", str(r / "b.npz"))
    replaced = (r / "b.npz").read_bytes() != before
    out["finished result overwritten"] = "data-lost" if replaced else classify(rc, text)

    # --resume on a finished result retrains and replaces it
    before = (r / "b.npz").read_bytes()
    rc, text = run(*SMOKE, "--iters", "3", "--out", str(r / "b.npz"), "--resume")
    if (r / "b.npz").read_bytes() != before:
        out["resume of a finished result"] = "data-lost"
    else:
        out["resume of a finished result"] = classify(rc, text, want=0)

    # --out where a folder is needed / a folder where a file is
    (r / "afile").write_text("")
    (r / "adir.npz").mkdir()
    for label, target in (
        ("--out under a file", r / "afile" / "x.npz"),
        ("--out a folder", r / "adir.npz"),
    ):
        rc, text = run(*SMOKE, "--iters", "2", "--out", str(target))
        out[f"sweep {label}"] = classify(rc, text)

    # an empty chunk folder blocks the next run
    (r / "c.npz.chunks").mkdir()
    rc, text = run(*SMOKE, "--iters", "2", "--out", str(r / "c.npz"))
    out["empty chunk folder"] = classify(rc, text, want=0)

    # resume with another chunk size is accepted (float32 numbers change)
    slow = [*SMOKE, "--iters", "1500"]
    proc = run.popen(*slow, "--chunk-size", "4", "--out", str(r / "d.npz"))
    _wait(lambda: any((r / "d.npz.chunks").glob("chunk_*.npz")), 600)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rc, text = run(*slow, "--chunk-size", "5", "--resume", "--out", str(r / "d.npz"))
    out["resume with another chunk size"] = "silent-wrong" if rc == 0 else classify(rc, text)

    # two sweeps on one --out at once
    first = run.popen(*slow, "--out", str(r / "e.npz"))
    _wait(lambda: (r / "e.npz.chunks").is_dir(), 600)
    rc, text = run(*slow, "--out", str(r / "e.npz"), "--resume")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    out["second sweep on the same --out"] = "silent-wrong" if rc == 0 else classify(rc, text)
    if "PID" not in text and out["second sweep on the same --out"] == "ok":
        out["second sweep on the same --out"] = "unclear-message"

    # damaged result files in compare
    good = r / "b.npz"
    (r / "trunc.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (r / "text.npz").write_text("hello\n")
    for name in ("trunc.npz", "text.npz"):
        rc, text = run("compare", str(r / name), "--out", str(r / "cmp"))
        verdict = classify(rc, text)
        if verdict == "ok" and ("allow_pickle" in text or name not in text):
            verdict = "unclear-message"
        out[f"compare {name}"] = verdict

    # data, cache, overflow, user problems
    data = r / "data" / "omniglot"
    data.mkdir(parents=True)
    (data / "omniglot.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    argv = ["sweep", "omniglot", "--preset", "smoke", "--no-progress", "--device", "cpu"]
    env = {"MAMLCONV_DATA": str(r / "data"), "MAMLCONV_CACHE": str(r / "cache")}
    rc, text = run(*argv, "--out", str(r / "o.npz"), env=env)
    out["sweep on a truncated Omniglot file"] = classify(rc, text)
    rc, text = run("data", "check", env={"MAMLCONV_CACHE": str(r / "afile" / "sub")})
    out["MAMLCONV_CACHE under a file"] = classify(rc, text)
    (r / "huge.json").write_text(json.dumps({"x": [1e200, 2e200, 3e200], "y": [1, 2, 3]}))
    rc, text = run("linreg", "--data", str(r / "huge.json"), "--iters", "2")
    out["linreg on overflowing data"] = classify(rc, text)
    (r / "userprob.py").write_text(USER_PROBLEM)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(r), os.environ.get("PYTHONPATH")]))}
    rc, text = run("advise", "--problem", "userprob:make", "--verify-iters", "0", env=env)
    out["user problem without keyword arguments"] = classify(rc, text)

    # bounded work
    rc, text = run(
        *SMOKE, "--alphas", "1e-4:0.5:1000", "--betas", "1e-2:9:1000", "--out", str(r / "big.npz")
    )
    out["1,001,000-cell sweep"] = classify(rc, text)
    rc, text = run(*SMOKE, "--tasks", "100000000", "--out", str(r / "tasks.npz"))
    out["--tasks 100000000"] = classify(rc, text)
    return out


def _wait(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


USER_PROBLEM = """
import torch
from mamlconv.experiments.problems.sinusoid import SinusoidProblem

class Bad:
    name = "bad"
    def __init__(self):
        self.base = SinusoidProblem()
    def init_params(self, generator):
        return self.base.init_params(generator, dtype=torch.float32, device="cpu")
    def loss(self, p, x, y):
        return self.base.loss(p, x, y)
    def sample_tasks(self, generator, n, *, dtype, device):
        return self.base.sample_tasks(generator, n, dtype=dtype, device=device)

def make():
    return Bad()
"""


if __name__ == "__main__":
    python = sys.argv[1]
    cpu = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    with tempfile.TemporaryDirectory(prefix="mamlconv-faults-") as tmp:
        results = scenarios(Runner(python, cpu, Path(tmp)), Path(tmp))
    for name, verdict in results.items():
        print(f"{verdict:16} {name}")
    counts: dict[str, int] = {"scenarios": len(results)}
    for verdict in results.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    print(json.dumps(counts))
