"""The Python API against the command line on the same work: ``advise`` and ``compare``.

Each side is a whole fresh process (start-up included, so both pay the same imports), run
interleaved, best of ``--repeat``, on the problem of ``examples/own_model.py`` (a CNN with
BatchNorm through ``problem_from_module``):

- ``mamlconv advise --problem examples/own_model.py:make_problem --tasks 4 --k 2`` against
  ``mamlconv.advise(make_problem(), n_tasks=4, k=2)``;
- ``mamlconv compare SWEEP --problem SPEC --points init --k 5 --out DIR`` against
  ``mamlconv.compare(mamlconv.load(SWEEP), problem=SPEC, points=('init',), k=5, out=DIR)``
  on one small sweep made first (not timed).

The API processes leave torch's threads as torch sets them (the point: the package's thread
rule, ``mamlconv.util.threads``, applies inside the call). ``--keep`` also times the API with
``MAMLCONV_THREADS=keep`` (the rule off: torch's default threads, what the API did before).
Target (issue 22): API / CLI <= 1.2. The load average is printed beside the numbers (the
machine may be shared).

    python benchmarks/api_threads_bench.py [--repeat 2] [--keep] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own_model.py"
SPEC = f"{EXAMPLE}:make_problem"


def _run(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark: {' '.join(argv[:4])} failed: {proc.stderr.strip()[-400:]}")
    return wall


def _api(code: str) -> list[str]:
    prelude = f"import sys; sys.path.insert(0, {str(EXAMPLE.parent)!r}); import mamlconv; "
    return [sys.executable, "-c", prelude + code]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per side (best)")
    ap.add_argument("--keep", action="store_true", help="also time the API with the rule off")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--only", nargs="+", choices=("advise", "compare"), default=None)
    args = ap.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k != "MAMLCONV_THREADS"}
    cli = [sys.executable, "-m", "mamlconv"]
    record: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "rows": {}}
    with tempfile.TemporaryDirectory(prefix="api_threads_") as tmp:
        sweep = Path(tmp) / "sweep.npz"
        subprocess.run(
            [*cli, "sweep", "--problem", SPEC, "--preset", "smoke", "--out", str(sweep)],
            check=True,
            capture_output=True,
            cwd=REPO,
            env=env,
        )
        work = {
            "advise": {
                "cli": [
                    *cli,
                    "advise",
                    "--problem",
                    SPEC,
                    "--tasks",
                    "4",
                    "--k",
                    "2",
                    "--quiet",
                    "--json",
                ],
                "api": _api(
                    "from own_model import make_problem; "
                    "print(mamlconv.advise(make_problem(), n_tasks=4, k=2).alpha_star)"
                ),
            },
            "compare": {
                "cli": [
                    *cli,
                    *("compare", str(sweep), "--problem", SPEC, "--points", "init", "--k", "5"),
                    *("--out", str(Path(tmp) / "c1"), "--quiet"),
                ],
                "api": _api(
                    f"mamlconv.compare(mamlconv.load({str(sweep)!r}), problem={SPEC!r}, "
                    "points=('init',), k=5, "
                    f"out={str(Path(tmp) / 'c2')!r})"
                ),
            },
        }
        for name, sides in work.items():
            if args.only and name not in args.only:
                continue
            best: dict[str, float] = {}
            order = [("cli", sides["cli"], env), ("api", sides["api"], env)]
            if args.keep:
                order.append(("api_keep", sides["api"], {**env, "MAMLCONV_THREADS": "keep"}))
            for _ in range(args.repeat):  # interleaved: cli, api, (api_keep), cli, api, ...
                for side, command, side_env in order:
                    best[side] = min(best.get(side, float("inf")), _run(command, side_env))
            ratio = best["api"] / best["cli"]
            text = (
                f"{name}: CLI {best['cli']:.1f} s, API {best['api']:.1f} s (whole processes, "
                f"best of {args.repeat}); API / CLI = {ratio:.2f} (target <= 1.2)"
            )
            if "api_keep" in best:
                text += f"; API with the rule off {best['api_keep']:.1f} s"
            print(text, flush=True)
            record["rows"][name] = {"seconds": best, "api_over_cli": ratio}
    record["load_after"] = os.getloadavg()
    print(f"load average before {record['load_before']}, after {record['load_after']}")
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
