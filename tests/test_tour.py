"""examples/tour.py, the example a researcher opens first, runs end to end at its small size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
STEPS = (
    "step1_claim_fig4_paper_size.png",
    "step2_derivation_curvatures.png",
    "step3_thresholds.png",
    "step4_sweep_fig4.png",
    "step5_comparison.png",
)


def test_tour_runs_and_every_step_draws_a_figure(tmp_path: Path) -> None:
    out = tmp_path / "tour"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "tour.py"), "--small", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for name in STEPS:
        with Image.open(out / name) as img:
            assert img.width > 400 and img.height > 300, name
            levels = img.convert("L").histogram()
            assert sum(n > 0 for n in levels) > 20, f"{name} is blank"
    text = proc.stdout
    assert "1. The paper's claim S4-1" in text
    assert "exact MAML (derived with SymPy): lambda*(alpha*lambda - 1)**2" in text
    assert "3. surrogate: alpha_c = 0.25, beta_c(0) = 0.5" in text
    assert "predicted beta_c (meta)" in text and "5 figures in" in text
    assert (out / "sweep.npz").is_file()
