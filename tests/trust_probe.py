"""The probe of issue 21 (trust, round two): hostile, damaged, foreign and extreme inputs on the
surfaces a user or a shared file reaches (result files, --config, user problems, reading runs,
the manifest, the Ray backend), each run in a fresh process of any interpreter and package:

    python tests/trust_probe.py PYTHON [PACKAGE_PATH] [--json OUT.json]

PACKAGE_PATH, when given, goes first on PYTHONPATH (another version of the package, e.g. a
copy of an older commit laid out as ``mamlconv/`` with its subpackages). Each outcome is one of

- ``clear-error``: exit 2 with one ``mamlconv`` line, no traceback (what a bad input must give);
- ``correct``: the expected result (exit 0 and what the scenario checks);
- ``traceback`` (a Python traceback, or the CLI's "internal error (...)" line that stands for
  one), ``hang`` (past the time limit), ``silent-wrong`` (exit 0, or a number or a
  verdict, that is wrong), ``data-lost``, ``security`` (a file made code run);
- ``unclear`` (an error, but not one line from mamlconv: e.g. a foreign program's usage text).

The counts print as JSON at the end (the closing note's before/after). Every process runs niced,
single-threaded, with a CPU-time limit. Not a pytest module: the item tests are
tests/test_trust.py.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CODE = "import sys; from mamlconv.cli import main; sys.exit(main(sys.argv[1:]))"
SMOKE = ["sweep", "sinusoid", "--preset", "smoke", "--no-progress", "--device", "cpu"]
HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "experiments" / "results"


class Probe:
    def __init__(self, python: str, package: str | None, root: Path) -> None:
        self.python, self.root = python, root
        path = [package] if package else []
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([*path, str(root)]),
            "MAMLCONV_TRUSTED_PROBLEMS": "[]",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.outcomes: dict[str, str] = {}

    def run(self, argv, *, code=None, timeout=90, cpu=120, env=None, cwd=None, memory=None):
        def limit() -> None:
            os.nice(10)
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
            if memory:  # address space: a runaway allocation must not take the shared machine
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

        cmd = [self.python, "-c", code or CODE, *argv]
        try:
            done = subprocess.run(
                cmd,
                cwd=cwd or self.root,
                env={**self.env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
                preexec_fn=limit,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"") + (exc.stderr or b"")
            text = out.decode(errors="replace") if isinstance(out, bytes) else out
            return None, text
        return done.returncode, done.stdout + done.stderr

    def error(self, name, argv, **kw):
        """A bad input: a clear error is exit 2 and one mamlconv line."""
        rc, out = self.run(argv, **kw)
        self.outcomes[name] = classify_error(rc, out)
        return rc, out

    def note(self, name, outcome):
        self.outcomes[name] = outcome


def classify_error(rc, out) -> str:
    if rc is None or rc in (-signal.SIGXCPU, -signal.SIGKILL):
        return "hang"
    if "Traceback" in out:
        return "traceback"
    if rc == 0:
        return "silent-wrong"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if any("internal error (" in ln for ln in lines):
        return "traceback"  # the CLI's one-line form of an unexpected exception
    errors = [ln for ln in lines if ln.startswith("mamlconv") and "error:" in ln]
    foreign = [ln for ln in lines if ln.startswith(("usage:", "-c: error"))]
    if rc == 2 and len(errors) == 1 and "internal error" not in errors[0] and not foreign:
        return "clear-error"  # (an estimate line or Ray's own log lines may come with it)
    return "unclear"


def write_npz_with_config(src: Path, dst: Path, edit) -> None:
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data["meta_json"]))
    edit(meta, data)
    data["meta_json"] = np.array(json.dumps(meta))
    np.savez(dst, **data)
    if dst.suffix != ".npz":
        Path(str(dst) + ".npz").rename(dst)


USER = """
import sys, torch, torch.nn.functional as F
from torch import nn
import mamlconv
{prelude}
def task(g):
{body}
def make():
    torch.manual_seed(0)
    net = {net}
    return mamlconv.problem_from_module(net, F.mse_loss, task)
"""
GOOD_BODY = "    x = torch.rand(8, 1, generator=g)\n    return x, 2 * x, x, 2 * x"


def user_file(root: Path, name: str, *, prelude="", body=GOOD_BODY, net=None) -> str:
    net = net or "nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))"
    (root / f"{name}.py").write_text(USER.format(prelude=prelude, body=body, net=net))
    return f"{root / name}.py:make"


def scenarios(p: Probe, root: Path) -> None:
    r = root
    # ---- a tiny result of a built-in problem, and copies of it made hostile ------------------
    rc, out = p.run(
        [
            *SMOKE,
            "--iters",
            "3",
            "--alphas",
            "0.01:0.1:2",
            "--betas",
            "0.01:1:2",
            "--out",
            str(r / "base.npz"),
        ]
    )
    if rc != 0:
        raise SystemExit(f"cannot make the base sweep: {out}")
    marker = r / "PWNED"
    hostile = r / "hostile.npz"

    def os_system(meta, data):
        meta["config"]["problem"] = "os:system"
        meta["config"]["problem_options"] = {"command": f"touch {marker}"}

    write_npz_with_config(r / "base.npz", hostile, os_system)
    for name, argv in (
        ("compare: a result naming os:system", ["compare", str(hostile), "--out", str(r / "c1")]),
        (
            "sweep --config: a result naming os:system",
            ["sweep", "--config", str(hostile), "--out", str(r / "c2.npz"), "--no-progress"],
        ),
        (
            "figure 4: a result naming os:system",
            ["figure", "4", str(hostile), "--out", str(r / "f")],
        ),
    ):
        marker.unlink(missing_ok=True)
        rc, out = p.run(argv)
        p.note(
            name,
            "security" if marker.exists() else classify_error(rc, out) if rc != 0 else "correct",
        )
    for problem, label in (("memory:gone", "memory: problem"), ("nosuch", "unknown problem")):
        bad = r / f"prob_{label[:3]}.npz"
        write_npz_with_config(
            r / "base.npz", bad, lambda m, d, pr=problem: m["config"].update(problem=pr)
        )
        p.error(f"compare: a result of a {label}", ["compare", str(bad), "--out", str(r / "c3")])
    pickled = r / "pickled.npz"
    np.savez(pickled, meta_json=np.array([{"a": 1}], dtype=object))
    rc, out = p.error(
        "sweep --config: an .npz of object arrays",
        ["sweep", "--config", str(pickled), "--out", str(r / "c4.npz")],
    )
    if "allow_pickle" in out:
        p.note("sweep --config: an .npz of object arrays", "unclear")
    rc, out = p.error(
        "compare: an .npz of object arrays", ["compare", str(pickled), "--out", str(r / "c5")]
    )
    if "allow_pickle" in out:
        p.note("compare: an .npz of object arrays", "unclear")

    # ---- sweep --config with records that are not sweeps ------------------------------------
    for label, src in (
        ("a Fig. 1 record", RESULTS / "fig1.json"),
        ("a comparison record", RESULTS / "sinusoid_exact_paper_compare.json"),
        ("a reading run", RESULTS / "readings" / "sinusoid_finn_pool_exact_seed0.json"),
        ("a benchmark record", RESULTS / "omniglot_bench_cpu.json"),
    ):
        p.error(
            f"sweep --config: {label}",
            [
                "sweep",
                "--config",
                str(src),
                "--out",
                str(r / "x.npz"),
                "--no-progress",
                "--iters",
                "2",
            ],
            timeout=60,
        )
    side = json.loads((r / "base.json").read_text())
    for label, edit in (
        ("a bisection with rtol 'abc'", lambda d: d.update(bisection={"rtol": "abc"}, boundary=[])),
        ("a sidecar whose config is a list", lambda d: d.update(config=[1, 2])),
        ("a sidecar with iters -5", lambda d: d["config"].update(iters=-5)),
        ("a sidecar with alphas [nan]", lambda d: d["config"].update(alphas=[float("nan")])),
    ):
        rec = json.loads(json.dumps(side))
        edit(rec)
        path = r / f"cfg_{len(p.outcomes)}.json"
        path.write_text(json.dumps(rec))
        p.error(
            f"sweep --config: {label}",
            ["sweep", "--config", str(path), "--out", str(r / "y.npz"), "--no-progress"],
            timeout=60,
        )
    folder = r / "z.npz.chunks"
    folder.mkdir()
    (folder / "layout.json").write_text(
        json.dumps({"config": side["config"], "layout": {"chunk_size": -3}})
    )
    p.error(
        "sweep --config: a chunk folder with chunk_size -3",
        ["sweep", "--config", str(folder), "--no-progress"],
        timeout=60,
    )

    marker.unlink(missing_ok=True)
    hostile_dir = r / "hostile_dir.npz.chunks"
    hostile_dir.mkdir()
    bad_config = {**side["config"], "problem": "os:system",
                  "problem_options": {"command": f"touch {marker}"}}  # fmt: skip
    (hostile_dir / "layout.json").write_text(json.dumps({"config": bad_config, "layout": {}}))
    rc, out = p.run(["sweep", "--config", str(hostile_dir), "--no-progress"], timeout=60)
    p.note("sweep --config: a chunk folder naming os:system",
           "security" if marker.exists() else classify_error(rc, out))  # fmt: skip
    for label, change in (
        ("seed 2**70", {"seed": 2**70}),
        ("iters 10**12", {"iters": 10**12}),
        ("steps 10**6", {"steps": 10**6}),
        ("sinusoid hidden [-5]", {"problem_options": {"hidden": [-5]}}),
        ("sinusoid k_support 10**9", {"problem_options": {"k_support": 10**9}}),
        ("sinusoid amplitude [nan, 1]", {"problem_options": {"amplitude": [float("nan"), 1]}}),
    ):
        rec = json.loads(json.dumps(side))
        rec["config"].update(change)
        path = r / f"extreme_{len(p.outcomes)}.json"
        path.write_text(json.dumps(rec))
        p.error(f"sweep --config: a sidecar with {label}",
                ["sweep", "--config", str(path), "--out", str(r / f"e{len(p.outcomes)}.npz"),
                 "--no-progress"], timeout=60, memory=6 << 30)  # fmt: skip
    for label, extra in (("--seed 2**70", ["--seed", str(2**70)]),
                         ("--iters 10**12", ["--iters", str(10**12)])):  # fmt: skip
        p.error(f"sweep: {label}", [*SMOKE, *extra, "--out", str(r / "ext.npz")], timeout=60,
                memory=6 << 30)  # fmt: skip
    # a lock naming a PID that now belongs to another process (PID 1, another start time)
    host = os.uname().nodename
    (r / "relock.npz.lock").write_text(f"1 {host} 999999999 2026-01-01T00:00:00Z\n")
    rc, out = p.run([*SMOKE, "--iters", "2", "--out", str(r / "relock.npz")], timeout=90)
    p.note("sweep: a lock whose PID was reused", "correct" if rc == 0 else
           "silent-wrong" if rc == 2 else classify_error(rc, out))  # fmt: skip

    # ---- user problems ----------------------------------------------------------------------
    cases = {
        "sampler on torch's global RNG": dict(
            body="    x = torch.rand(8, 1)\n    return x, 2 * x, x, 2 * x"
        ),
        "sampler on a module-level generator": dict(
            prelude="G = torch.Generator().manual_seed(1)",
            body="    x = torch.rand(8, 1, generator=G)\n    return x, 2 * x, x, 2 * x",
        ),
        "NaN in one task's targets": dict(
            body="    x = torch.rand(8, 1, generator=g)\n    y = 2 * x\n"
            "    if x[0, 0] > 0.5: y[3, 0] = float('nan')\n    return x, y, x, y"
        ),
        "inf in the inputs": dict(
            body="    x = torch.rand(8, 1, generator=g)\n    x[0, 0] = float('inf')\n"
            "    return x, 2 * x, x, 2 * x"
        ),
        "targets (8,) against outputs (8, 1)": dict(
            body="    x = torch.rand(8, 1, generator=g)\n    return x, 2 * x[:, 0], x, 2 * x[:, 0]"
        ),
        "sys.exit(0) at import": dict(prelude="sys.exit(0)"),
        "argparse at import": dict(
            prelude="import argparse\nargparse.ArgumentParser().parse_args()"
        ),
        "a forward pass that keeps state": dict(
            prelude="class Drift(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.lin = nn.Linear(1, 1)\n        self.calls = 0\n"
            "    def forward(self, x):\n        self.calls += 1\n"
            "        return self.lin(x) * self.calls",
            net="Drift()",
        ),
        "a non-finite initial loss": dict(
            prelude="class Huge(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.lin = nn.Linear(1, 1)\n"
            "    def forward(self, x):\n        return torch.log(0 * self.lin(x))",
            net="Huge()",
        ),
    }
    for label, kw in cases.items():
        spec = user_file(r, "u_" + "".join(c for c in label if c.isalnum())[:20], **kw)
        out_file = r / f"u{len(p.outcomes)}.npz"
        if label == "argparse at import":  # a script's own command line: it must just work
            argv = ["sweep", "--problem", spec, "--preset", "smoke", "--iters", "3"]
            rc, out = p.run([*argv, "--no-progress", "--out", str(out_file)], timeout=90)
            fine = rc == 0 and out_file.is_file() and "usage:" not in out
            verdict = "correct" if fine else classify_error(rc, out) if rc else "silent-wrong"
            p.note(f"sweep --problem: {label}", verdict)
            continue
        p.error(
            f"sweep --problem: {label}",
            [
                "sweep",
                "--problem",
                spec,
                "--preset",
                "smoke",
                "--iters",
                "3",
                "--alphas",
                "0.01:0.1:2",
                "--betas",
                "0.01:1:2",
                "--no-progress",
                "--out",
                str(out_file),
            ],
            timeout=90,
        )
    spec = user_file(r, "u_exitfactory", prelude="def make():\n    sys.exit(3)\n")
    (r / "u_exitfactory.py").write_text("import sys\ndef make():\n    sys.exit(3)\n")
    p.error(
        "advise --problem: a factory that calls sys.exit(3)",
        ["advise", "--problem", spec, "--verify-iters", "0"],
        timeout=60,
    )
    spec = user_file(r, "u_nanadvise", **cases["NaN in one task's targets"])
    p.error(
        "advise --problem: NaN in one task's targets",
        ["advise", "--problem", spec, "--verify-iters", "0"],
        timeout=90,
    )

    # ---- reading runs ------------------------------------------------------------------------
    readings = r / "readings"
    shutil.copytree(RESULTS / "readings", readings)
    rc, out = p.run(["readings", "list"], cwd=r, timeout=60)
    p.note(
        "readings list: from another working directory",
        "correct"
        if rc == 0 and " 24 of 24 " in out and str(RESULTS) in out
        else "silent-wrong"
        if rc == 0
        else classify_error(rc, out),
    )
    rc, out = p.run(["readings", "list", "--out", str(readings)], timeout=60)
    p.note(
        "readings list: a current copy of the committed runs",
        "correct"
        if rc == 0 and " 24 of 24 " in out
        else "silent-wrong"
        if rc == 0
        else classify_error(rc, out),
    )
    shutil.copy(
        readings / "sinusoid_finn_pool_exact_seed0.json", readings / "sinusoid_x_seed9.json"
    )
    stale = json.loads((readings / "sinusoid_finn_pool_exact_seed1.json").read_text())
    stale["config"]["iters"] = 400
    (readings / "sinusoid_finn_pool_exact_seed1.json").write_text(json.dumps(stale))
    rc_l, out_l = p.run(["readings", "list", "--json", "--out", str(readings)], timeout=60)
    rc_j, out_j = p.run(["readings", "judge", "--json", "--out", str(readings)], timeout=120)
    try:
        listed = sum(x["done"] for x in json.loads(out_l)["sinusoid"]["runs"])
        text = json.JSONDecoder().raw_decode(out_j[out_j.index("{") :])[0]["text"]
        judged = int(re.search(r"(\d+) runs in", text).group(1))
        p.note(
            "readings judge: a copied file and a stale run",
            "correct" if listed == judged == 23 else "silent-wrong",
        )
    except (ValueError, KeyError, IndexError):
        p.note("readings judge: a copied file and a stale run", classify_error(rc_j, out_j))
    (readings / "sinusoid_junk_seed0.json").write_text("[1, 2")
    rc, out = p.run(["readings", "judge", "--out", str(readings)], timeout=120)
    p.note(
        "readings judge: a truncated JSON among the runs",
        "correct" if rc == 0 else classify_error(rc, out),
    )
    (readings / "sinusoid_junk_seed0.json").write_text("[1, 2]")
    rc, out = p.run(["readings", "judge", "--out", str(readings)], timeout=120)
    p.note(
        "readings judge: a JSON list among the runs",
        "correct" if rc == 0 else classify_error(rc, out),
    )
    (r / "afile").write_text("")
    p.error("readings list: --out is a file", ["readings", "list", "--out", str(r / "afile")])
    p.error(
        "readings run: --seeds -1",
        [
            "readings",
            "run",
            "S4-1",
            "--seeds",
            "-1",
            "--out",
            str(r / "rr"),
            "--reading",
            "init=finn,tasks=pool,variant=exact",
        ],
    )
    # a lock left by a killed run (the old empty file, and one naming a dead PID)
    work = r / "runs"
    work.mkdir()
    lock = work / "sinusoid_finn_pool_exact_seed0.json.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    rc, out = p.run(
        [
            "readings",
            "run",
            "S4-1",
            "--seeds",
            "0",
            "--reading",
            "init=finn,tasks=pool,variant=exact",
            "--out",
            str(work),
        ],
        timeout=25,
        cpu=40,
    )
    p.note(
        "readings run: a killed run's lock file",
        "silent-wrong"
        if rc == 0 and "skip" in out
        else "correct"
        if rc is None
        else classify_error(rc, out),
    )
    partial = list(work.glob("*.partial.json"))
    p.note("readings run: progress written as it goes", "correct" if partial else "data-lost")

    # ---- the audit's files --------------------------------------------------------------------
    check = (
        "import sys, shutil, json, numpy as np\nfrom pathlib import Path\n"
        "from mamlconv.paper_checks import manifest\n"
        "src, dst, what = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]\n"
        "dst.mkdir()\nname = 'omniglot_paper_7x7_h200.npz'\n"
        "shutil.copy(src / name, dst / name)\n"
        "shutil.copy(src / name.replace('.npz', '.json'), dst / name.replace('.npz', '.json'))\n"
        "if what == 'arrays':\n"
        "    z = dict(np.load(dst / name)); d = z['diverged_at'].copy()\n"
        "    f = z['final_loss'].copy()\n"
        "    f[d >= 0] = 0.01; d[:] = -1; z['diverged_at'] = d; z['final_loss'] = f\n"
        "    np.savez(dst / name, **z)\n"
        "else:\n"
        "    s = json.loads((dst / name.replace('.npz', '.json')).read_text())\n"
        "    s['n_diverged'] = 0\n"
        "    (dst / name.replace('.npz', '.json')).write_text(json.dumps(s))\n"
        "manifest.add(dst, [name])\n"
        "entry = manifest.load_manifest(dst).files[name]\n"
        "try:\n    manifest.load_sweep(dst, entry)\nexcept manifest.ResultFileError as e:\n"
        "    print('mamlconv: error:', e); sys.exit(2)\n"
    )
    for what in ("arrays", "sidecar"):
        p.error(
            f"audit: a registered result with edited {what}",
            [str(RESULTS), str(r / f"audit_{what}"), what],
            code=check,
            timeout=60,
        )
    (r / "m").mkdir()
    (r / "m" / "MANIFEST.json").write_text("{not json")
    p.error(
        "manifest check: a MANIFEST.json that is not JSON",
        ["manifest", "check", "--results", str(r / "m")],
    )
    p.error(
        "manifest add: a truncated .npz",
        ["manifest", "--results", str(r / "m2"), "add", str(r / "m2" / "t.npz")],
        code="import sys, pathlib; d = pathlib.Path(sys.argv[-1]).parent; d.mkdir(); "
        "(d / 't.npz').write_bytes(b'PK\\x03\\x04' + bytes(50)); "
        "from mamlconv.cli import main; sys.exit(main(sys.argv[1:]))",
    )

    # ---- extreme numbers: the estimate must refuse, not allocate -------------------------
    p.error(
        "sweep: a 90,300-cell chunk (--chunk-size 90000)",
        [
            *SMOKE,
            "--alphas",
            "1e-4:0.5:300",
            "--betas",
            "1e-2:9:300",
            "--chunk-size",
            "90000",
            "--out",
            str(r / "big.npz"),
        ],
        timeout=120,
        memory=6 << 30,
    )

    # ---- Ray ------------------------------------------------------------------------------
    p.error(
        "sweep --backend ray: a refused --ray-address",
        [
            *SMOKE,
            "--iters",
            "2",
            "--backend",
            "ray",
            "--ray-address",
            "127.0.0.1:1",
            "--out",
            str(r / "ray1.npz"),
        ],
        timeout=60,
        cpu=60,
    )
    p.error(
        "sweep --backend ray: --ray-address not HOST:PORT",
        [
            *SMOKE,
            "--iters",
            "2",
            "--backend",
            "ray",
            "--ray-address",
            "nohost",
            "--out",
            str(r / "ray2.npz"),
        ],
        timeout=60,
        cpu=60,
    )
    p.error(
        "sweep --backend ray: --gpus-per-task 1 on a cluster without GPUs",
        [
            *SMOKE,
            "--iters",
            "2",
            "--backend",
            "ray",
            "--ray-address",
            "local",
            "--gpus-per-task",
            "1",
            "--out",
            str(r / "ray3.npz"),
        ],
        timeout=180,
        cpu=120,
    )


def main() -> None:
    args = sys.argv[1:]
    out_json = None
    if "--json" in args:
        i = args.index("--json")
        out_json = args[i + 1]
        del args[i : i + 2]
    python = args[0]
    package = args[1] if len(args) > 1 else None
    with tempfile.TemporaryDirectory(prefix="mamlconv-trust-") as tmp:
        probe = Probe(python, package, Path(tmp))
        scenarios(probe, Path(tmp))
    for name, outcome in probe.outcomes.items():
        print(f"{outcome:14} {name}")
    counts = {"inputs": len(probe.outcomes)}
    for outcome in probe.outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print(json.dumps(counts))
    if out_json:
        Path(out_json).write_text(
            json.dumps({"outcomes": probe.outcomes, "counts": counts}, indent=1)
        )


if __name__ == "__main__":
    main()
