"""pytest plugin of the package: the test tiers (--slow, --gpu).

Registered for the whole repository through ``-p mamlconv.paper_checks.plugin`` in
pyproject's addopts, and passed explicitly by ``mamlconv audit`` so that an installed copy of
the audit has the same options.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mamlconv tiers")
    group.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="also run tests marked slow (or set MAMLCONV_SLOW=1)",
    )
    group.addoption(
        "--gpu",
        action="store_true",
        default=False,
        help="also run tests marked gpu (needs a CUDA device)",
    )


def slow_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--slow")) or os.environ.get("MAMLCONV_SLOW", "") == "1"


def gpu_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--gpu"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow tier: run with --slow or MAMLCONV_SLOW=1")
    skip_gpu = pytest.mark.skip(reason="gpu tier: run with --gpu on a CUDA machine")
    for item in items:
        if "slow" in item.keywords and not slow_enabled(config):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not gpu_enabled(config):
            item.add_marker(skip_gpu)
