"""Start-up: the light commands never import torch or matplotlib (issue 10, "Start-up").

Behavioural, not timed (timing lives in benchmarks/startup_bench.py): each command runs in a
fresh interpreter, which then reports which heavy modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_REPORT = """
import sys
from mamlconv.cli import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
print("HEAVY=" + ",".join(m for m in ("torch", "matplotlib") if m in sys.modules))
sys.exit(rc)
"""

LIGHT = [
    ["--help"],
    ["thresholds", "--eigs", "1,2,4", "--alpha", "0.1"],
    ["thresholds", "--eigs", "1,2,4", "--alpha", "0.1", "--model", "exact", "--steps", "40"],
    ["thresholds", "--eigs=-1,2", "--alpha", "0.1", "--json"],
    ["derive", "--help"],
    ["derive"],
]


@pytest.mark.parametrize("argv", LIGHT, ids=[" ".join(a[:1] + a[-1:]) for a in LIGHT])
def test_light_commands_import_neither_torch_nor_matplotlib(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT, *argv], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    heavy = proc.stdout.strip().splitlines()[-1]
    assert heavy == "HEAVY=", f"mamlconv {' '.join(argv)} imported {heavy[6:]}"
