"""The package's own error types: every layer raises one of these for a problem the user can
fix, and the command line prints it as one line (exit 2, or 1 for a run that failed).

``MamlconvError`` is the base; ``exit_code`` says what the command line returns. Errors that
come from outside the package (``OSError`` on an output path, a truncated zip) are turned
into one of these where they are caught, with the file's name and the fix in the message.

Subclasses defined beside the code that raises them (each keeps the builtin base its callers
catch): ``experiments.data.DataError`` (a ``RuntimeError``; exit 2),
``experiments.problems.ProblemSpecError`` and ``experiments.module_problem.ModuleProblemError``
(:class:`ProblemError`, ``ValueError``; exit 2), ``experiments.ray_backend.RayMissing`` (an
``ImportError``; exit 2), ``RayUnreachable`` (a ``RuntimeError``; exit 2) and ``ChunkFailed``
(:class:`RunFailed`, ``RuntimeError``; exit 1). ``paper_checks.manifest`` raises
:class:`ResultFileError` for a committed file the audit cannot trust.
"""

from __future__ import annotations


class MamlconvError(Exception):
    """A problem the user can fix; its message is one line naming the bad value and the fix."""

    exit_code: int = 2


class UsageError(MamlconvError, ValueError):
    """Bad input found after parsing (a flag's value, a combination of flags)."""


class OutputError(MamlconvError):
    """An output path cannot be written, or would replace a result without ``--force``."""


class ResultFileError(MamlconvError, ValueError):
    """A result or chunk file is missing, truncated, foreign or of another configuration."""


class ResumeMismatch(ResultFileError):
    """A resumed sweep's finished chunks were made with another configuration or layout."""


class SweepLocked(OutputError):
    """Another live process is writing the same sweep."""


class TooLarge(UsageError):
    """The estimated time or memory of a command is above its limit (pass ``--yes``)."""


class RunFailed(MamlconvError):
    """The computation itself failed (not the user's input): exit code 1."""

    exit_code = 1


class ProblemError(MamlconvError):
    """A user-supplied problem cannot be used: its ``MODULE:FACTORY`` spec does not resolve, it
    does not follow the ``Problem`` protocol (a method's signature), or its model, loss or
    sampler cannot be adapted."""
