"""Shared test set-up."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One torch thread for the unit tests: their tensors are small, and on a 2-core machine
    thread synchronisation costs more than it gains (measured up to 100x on tiny HVPs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
