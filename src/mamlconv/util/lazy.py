"""Package attributes imported on first use (PEP 562), so that importing a package does not
import every heavy dependency of its modules: ``from mamlconv.experiments.sweep import
load_result`` must not import torch because ``run_sweep`` beside it needs it.

A package ``__init__`` names where each of its public names lives and hands the two module
hooks back::

    __getattr__, __dir__ = lazy_exports(__name__, {"run_sweep": ".run", ...})

The first access of a name imports its module and caches the value in the package.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each public name to the
    module it is defined in (``.run`` relative to the package, or absolute)."""

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(where, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
