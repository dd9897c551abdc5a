"""Whole-process start-up time of the light ``mamlconv`` commands against ``python -c pass``.

Each command runs as a fresh process (the interpreter of this venv, ``-m mamlconv``) ``--repeat``
times; the median wall time is printed with its ratio to the baseline ``python -c pass`` measured
in the same run, and whether the process imported torch, matplotlib or SymPy (read from
``python -X importtime``). The light commands (``--help``, ``thresholds``, ``derive --help``)
must stay under 1 s and import neither torch nor matplotlib (issue 10, "Start-up");
``derive`` itself is listed for reference: its time is SymPy work, not start-up.

Usage: ``python benchmarks/startup_bench.py [--repeat 5] [--full-derive]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS: list[tuple[str, list[str]]] = [
    ("python -c pass", ["-c", "pass"]),
    ("mamlconv --help", ["-m", "mamlconv", "--help"]),
    (
        "mamlconv thresholds (K=1)",
        ["-m", "mamlconv", "thresholds", "--eigs", "1,2", "--alpha", "0.1"],
    ),
    (
        "mamlconv thresholds (K=10000)",
        [
            "-m",
            "mamlconv",
            "thresholds",
            "--eigs",
            "0.5,1,2,30",
            "--alpha",
            "0.1",
            "--model",
            "exact",
            "--steps",
            "10000",
        ],
    ),
    ("mamlconv derive --help", ["-m", "mamlconv", "derive", "--help"]),
]
HEAVY = ("torch", "matplotlib", "sympy")


def _run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _heavy_imports(args: list[str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    return [m for m in HEAVY if m in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median)")
    parser.add_argument(
        "--full-derive", action="store_true", help="also time `mamlconv derive` (SymPy work)"
    )
    args = parser.parse_args()
    commands = list(COMMANDS)
    if args.full_derive:
        commands.append(("mamlconv derive (SymPy work)", ["-m", "mamlconv", "derive"]))
    env_threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"python {sys.version.split()[0]}, OMP_NUM_THREADS={env_threads}, repeat {args.repeat}")
    baseline = None
    for label, argv in commands:
        _run(argv)  # warm the file cache
        median = statistics.median(_run(argv) for _ in range(args.repeat))
        baseline = baseline if baseline is not None else median
        heavy = _heavy_imports(argv)
        print(
            f"{label:<32} {median:7.3f} s  {median / baseline:6.1f} x pass  "
            f"imports: {', '.join(heavy) if heavy else 'none of ' + '/'.join(HEAVY)}"
        )


if __name__ == "__main__":
    main()
