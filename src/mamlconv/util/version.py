"""The installed version of mamlconv (``0+unknown`` in a source tree that was never installed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mamlconv")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
