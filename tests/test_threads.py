"""The one thread rule (mamlconv.util.threads): the API's heavy calls run on the rule's threads
and give the caller's setting back; MAMLCONV_THREADS changes or switches off the rule."""

from __future__ import annotations

import pytest
import torch

import mamlconv
from mamlconv.errors import UsageError
from mamlconv.numerics.tasks import TaskBatch
from mamlconv.util import threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


class _Recorder:
    """A tiny least-squares problem whose loss records the torch threads it runs on."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def init_params(self, generator, *, dtype, device):
        return {"w": torch.randn(3, generator=generator, dtype=dtype).to(device)}

    def loss(self, params, x, y):
        self.seen.add(torch.get_num_threads())
        return ((x @ params["w"] - y) ** 2).mean()

    def sample_tasks(self, generator, n_tasks, *, dtype, device):
        x = torch.randn(n_tasks, 4, 3, generator=generator, dtype=dtype)
        y = torch.randn(n_tasks, 4, generator=generator, dtype=dtype)
        return TaskBatch(x, y, x.clone(), y.clone()).to(device)


def test_api_heavy_call_runs_on_one_thread_and_restores(two_threads, monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    problem = _Recorder()
    mamlconv.spectrum(problem, k=1, n_tasks=2, tol=1e-3)
    assert problem.seen == {threads.DEFAULT_THREADS}
    assert torch.get_num_threads() == 2  # the caller's setting is back


def test_environment_changes_or_keeps_the_setting(two_threads, monkeypatch):
    problem = _Recorder()
    monkeypatch.setenv(threads.THREADS_ENV, "keep")
    mamlconv.spectrum(problem, k=1, n_tasks=2, tol=1e-3)
    assert problem.seen == {2}
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    with threads.torch_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_restored_after_an_error(two_threads, monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    with pytest.raises(RuntimeError, match="boom"), threads.torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("bad", ["0", "two", "-3"])
def test_bad_environment_value_is_one_line(bad, monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, bad)
    with pytest.raises(UsageError, match=threads.THREADS_ENV):
        threads.policy_threads()


def test_explicit_request_wins_and_is_checked(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "keep")
    assert threads.policy_threads(3) == 3
    with pytest.raises(UsageError, match="threads must be an integer >= 1"):
        threads.policy_threads(0)
