"""Progress with ETA (src/mamlconv/util/progress.py) and its use by compare, advise, figure, linreg.

The reporter is driven by a fake clock; the commands' hooks are checked by the records they
send to the ``mamlconv.util.progress`` logger at the smallest sizes (interval 0: every unit
reports).
"""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from mamlconv.util import progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def records(monkeypatch: pytest.MonkeyPatch):
    """Collect every progress report (interval 0), whatever the CLI attached before."""
    handler = Records()
    logger = logging.getLogger(progress.LOGGER_NAME)
    monkeypatch.setattr(progress, "_interval_s", 0.0)
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logger, "level", logging.INFO)
    return handler.messages


# ------------------------------------------------------------------------------ the reporter


def test_eta_is_throttled_and_extrapolates_the_mean_unit_time(records, monkeypatch):
    clock = FakeClock()
    eta = progress.Eta("job", 10, unit="cells", interval=10.0, clock=clock)
    for _ in range(3):  # 3 units in 6 s: within the first interval, nothing is said
        clock.now += 2.0
        eta.advance()
    assert records == []
    clock.now += 6.0  # 4 units in 12 s: 3 s per unit, 6 left
    eta.advance()
    # The rate is taken from the first unit on (3 more units in 10 s), not from the start.
    assert records == ["job: 4/10 cells (40%), 12 s elapsed, about 20 s left"]
    clock.now += 1.0
    eta.advance(note="x")  # 1 s after the last report: throttled
    assert len(records) == 1
    clock.now += 9.0
    eta.advance(2, note="cell 7")
    assert records[-1] == "job: 7/10 cells (70%), 22 s elapsed, about 10 s left (cell 7)"
    eta.finish()
    assert records[-1] == "job: 7/10 cells (70%), 22 s elapsed (done)"
    eta.finish()
    assert len(records) == 3  # one final line


def test_short_work_prints_nothing(records):
    clock = FakeClock()
    with progress.Eta("quick", 3, interval=10.0, clock=clock) as eta:
        for _ in range(3):
            clock.now += 1.0
            eta.advance()
    assert records == []


def test_disabled_eta_is_silent(records):
    eta = progress.Eta("off", 2, enabled=False)
    eta.advance()
    eta.finish()
    assert records == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0 s"),
        (59.4, "59 s"),
        (65, "1 min 05 s"),
        (7260, "2 h 01 min"),
        (3 * 86400 + 4 * 3600, "3 days 04 h"),
        (float("inf"), "forever"),
        (float("nan"), "?"),
        (-1.0, "?"),
    ],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert progress.format_seconds(seconds) == text


def test_chunk_progress_counts_running_chunks_by_iteration(records):
    """A single running chunk has an ETA from its iterations; finished chunks count whole."""
    clock = FakeClock()
    bar = progress.ChunkProgress("sweep s/e", total_cells=8, done_cells=2, iters=10, clock=clock)
    bar.update(0, 1, 4)  # chunk 0 holds 4 cells: 2.4 of 8 cells' work done
    assert records[-1] == (
        "sweep s/e: 2/8 cells (25%), 0 s elapsed, time left not yet known "
        "(0 diverged; chunk 0 at iteration 1/10, 4 active)"
    )
    clock.now += 9.0
    bar.update(0, 4, 3)  # 3.6 cells done; 1.2 more in 9 s: 7.5 s per cell, 4.4 left
    assert records[-1] == (
        "sweep s/e: 2/8 cells (25%), 9 s elapsed, about 33 s left "
        "(0 diverged; chunk 0 at iteration 4/10, 3 active)"
    )
    clock.now += 15.0
    bar.chunk_done(0, 4, 1)  # 6 cells done, 3.6 more in 24 s: 2 left in about 13 s
    assert records[-1] == "sweep s/e: 6/8 cells (75%), 24 s elapsed, about 13 s left (1 diverged)"
    bar.close()
    assert records[-1] == "sweep s/e: 6/8 cells (75%), 24 s elapsed (1 diverged)"


def test_chunk_progress_counts_a_planned_chunk_whole(records):
    """With the plan's chunk sizes, cells that diverged before the first report still count."""
    clock = FakeClock()
    bar = progress.ChunkProgress("s", total_cells=4, iters=10, chunk_cells={0: 4}, clock=clock)
    bar.update(0, 1, 1)  # 3 of 4 cells diverged at once: 0.4 cells' work done
    clock.now += 10.0
    bar.update(0, 6, 1)  # 2.4 cells: 2 more in 10 s, 1.6 left
    assert records[-1].startswith("s: 0/4 cells (0%), 10 s elapsed, about 8 s left")


def test_chunk_progress_of_a_short_sweep_prints_nothing(records):
    clock = FakeClock()
    bar = progress.ChunkProgress("quick", total_cells=2, iters=3, interval=10.0, clock=clock)
    for it in (1, 2, 3):
        clock.now += 1.0
        bar.update(0, it, 2)
    bar.chunk_done(0, 2, 0)
    bar.close()
    assert records == []


def test_show_on_stderr_writes_lines_without_a_terminal(monkeypatch):
    logger = logging.getLogger(progress.LOGGER_NAME)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(progress, "_interval_s", progress._interval_s)
    stream = io.StringIO()
    progress.show_on_stderr(stream)
    progress.show_on_stderr(stream)  # idempotent: one handler
    assert progress._interval_s == progress.LOG_INTERVAL_S  # not a terminal: every ~10 s
    clock = FakeClock()
    eta = progress.Eta("job", 4, unit="steps", clock=clock)
    clock.now += 11.0
    eta.advance()
    eta.finish()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "job: 1/4 steps (25%), 11 s elapsed, time left not yet known",
        "job: 1/4 steps (25%), 11 s elapsed (done)",
    ]


# ------------------------------------------------------------------------------ the commands


def test_compare_reports_its_spectra(records, tmp_path):
    from mamlconv.experiments.analysis.comparison import compare
    from mamlconv.experiments.problems.registry import get_preset
    from mamlconv.experiments.sweep.run import run_sweep

    cfg = get_preset("sinusoid", "smoke").replace(
        alphas=(1e-3, 0.03),
        betas=(0.1, 1.0),
        iters=3,
        tasks_per_batch=3,
        pool_size=3,
        dtype="float64",
        device="cpu",
        problem_options={"k_support": 3, "k_query": 3, "hidden": [4, 4]},
    )
    result = run_sweep(cfg, tmp_path / "s.npz", progress=False)
    compare(result, points=("init",), k=3, tol=1e-3, progress=True)
    n = len(result.alphas)
    assert records[0].startswith(f"compare: 1/{1 + n} spectra")
    assert any("about" in r and "left" in r for r in records)
    assert records[-1].endswith("(done)")
    compare(result, points=("init",), k=3, tol=1e-3, progress=False)
    assert len(records) == n + 2  # quiet when asked


def test_advise_reports_its_steps(records):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_advisor import quadratic_point

    from mamlconv.experiments.analysis.advisor import advise

    problem, params, tasks = quadratic_point()
    advise(problem, params, tasks, variant="exact", k=3, alphas=[0.0, 0.01], progress=True)
    assert [r.split(",")[0] for r in records] == [
        "advise: 1/3 steps (33%)",
        "advise: 2/3 steps (67%)",
        "advise: 3/3 steps (100%)",
        "advise: 3/3 steps (100%)",
    ]


def test_figure_fig5_and_fig1_report_iterations(records):
    from mamlconv.experiments import figures

    figures.fig5_data(iters=2, device="cpu", n_checkpoints=2, n_probes=2, tasks=2)
    assert records[0].startswith("figure fig5: 1/3 iterations")
    assert records[-1].startswith("figure fig5: 3/3 iterations") and records[-1].endswith("(done)")
    records.clear()
    figures.fig1_data(iters=3, device="cpu", tasks=2)
    assert [r.split(" (")[0] for r in records] == [
        "figure fig1: 1/3 iterations",
        "figure fig1: 2/3 iterations",
        "figure fig1: 3/3 iterations",
        "figure fig1: 3/3 iterations",
    ]


def test_linreg_reports_its_models(records):
    import torch

    from mamlconv.numerics.linreg import linreg_study
    from mamlconv.numerics.losses import sample_linreg

    data = sample_linreg(torch.Generator().manual_seed(0), n_points=5)
    linreg_study(data, alphas=np.array([1e-3, 1e-2]), betas=np.array([1e-2, 1.0]), iters=3)
    # 3 models x 4 cells x 3 iterations; a report after every outer step of the 4 cells.
    done = [r.split(" (")[0] for r in records]
    assert done[:3] == [f"linreg: {k}/36 cell-iterations" for k in (4, 8, 12)]
    assert "linreg: 36/36 cell-iterations" in done[-1]
    assert records[2].endswith("(surrogate)") and records[-1].endswith("(done)")


def test_cli_progress_goes_to_stderr_not_stdout(monkeypatch, capsys):
    from mamlconv.cli import main

    logger = logging.getLogger(progress.LOGGER_NAME)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "propagate", logger.propagate)
    monkeypatch.setattr(progress, "_interval_s", progress._interval_s)
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.0)  # report every model
    argv = ["linreg", "--alphas", "1e-3:9e-2:2", "--betas", "5e-3:9:2", "--iters", "3", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("{")
    assert "linreg: 4/36 cell-iterations" in captured.err
    assert captured.err.rstrip().endswith("(done)")
    assert "\r" not in captured.err  # not a terminal: plain lines
