"""Problem registry and sweep presets: the one place a problem name becomes code.

``get_problem(name, **options)`` returns an object with the ``Problem`` protocol of
:mod:`mamlconv.numerics.tasks`; ``get_preset(problem, preset)`` returns the
:class:`~mamlconv.experiments.config.SweepConfig` of a named preset, the one lookup of presets;
each problem's presets live beside it (``sinusoid_preset`` in
:mod:`mamlconv.experiments.problems.sinusoid`, ``FEWSHOT_PRESETS`` in
:mod:`mamlconv.experiments.problems.fewshot`).

Contract with :mod:`mamlconv.experiments.problems.fewshot` (Omniglot and MiniImagenet, imported
only when asked for, so the sinusoid path never imports the data loaders):

- ``omniglot_problem(**options) -> Problem`` and ``miniimagenet_problem(**options) -> Problem``
  build the 5-way classification problems with Finn et al.'s CNN;
- ``FEWSHOT_PRESETS: dict[tuple[str, str], SweepConfig]`` maps ``(name, preset)``, e.g.
  ``("omniglot", "paper")``, to the preset's configuration (its ``problem`` field equal to
  ``name``).

A user's problem is named by a *spec* ``module:factory`` (a module on ``sys.path`` or in the
current directory, as ``python -m`` finds it) or ``path/to/file.py:factory``; ``factory(**options)``
returns a ``Problem`` (e.g. from
:func:`mamlconv.experiments.problems.module_problem.problem_from_module`).
The spec is what a sweep's configuration records as its ``problem``. A problem object
built in a Python session is registered under ``memory:<name>`` (:func:`register_problem`) and
lives only as long as that process.

Trust. A spec names code, and a file (a result, a sidecar, a chunk folder's layout) is not the
user's word: :func:`get_problem` builds a spec only when this process (or the process that
started it) was told the same spec by the user, with :func:`trust_spec`, which the command
line's ``--problem`` and the Python API's ``problem=`` call. A result file of a user's problem
is therefore compared or resumed with ``--problem SPEC`` repeated; a file alone names only
built-in problems (docs/security.md). The trusted specs travel to worker processes in the
environment variable ``MAMLCONV_TRUSTED_PROBLEMS`` (a JSON list), which the Ray backend passes
on to its tasks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mamlconv.errors import ProblemError
from mamlconv.experiments.config import SweepConfig
from mamlconv.experiments.problems.sinusoid import SinusoidProblem, sinusoid_preset
from mamlconv.numerics.tasks import Problem

PROBLEMS: tuple[str, ...] = ("sinusoid", "omniglot", "miniimagenet")
_FEWSHOT = {"omniglot": "omniglot_problem", "miniimagenet": "miniimagenet_problem"}


MEMORY_PREFIX = "memory:"
_LIVE: dict[str, Problem] = {}
_BUILT: dict[tuple[str, str], Problem] = {}


class ProblemSpecError(ProblemError, ValueError):
    """A ``module:factory`` spec that does not resolve; the message is one line."""


class UntrustedSpec(ProblemSpecError):
    """A spec read from a file that the user has not named: its code is not run."""


TRUST_ENV = "MAMLCONV_TRUSTED_PROBLEMS"
"""Environment variable holding the JSON list of the specs the user named (see Trust)."""


def trusted_specs() -> list[str]:
    """The specs the user named in this process or in the one that started it."""
    try:
        named = json.loads(os.environ.get(TRUST_ENV, "[]"))
    except ValueError:
        return []
    return [s for s in named if isinstance(s, str)] if isinstance(named, list) else []


def trust_spec(spec: str) -> str:
    """Record that the user named ``spec`` (its code may run); returns the normalised spec."""
    name = normalize_spec(spec)
    named = trusted_specs()
    if name not in named:
        os.environ[TRUST_ENV] = json.dumps([*named, name])
    return name


def check_trusted(spec: str) -> None:
    """:class:`UntrustedSpec` unless the user named ``spec`` (:func:`trust_spec`)."""
    name = normalize_spec(spec)
    if name not in trusted_specs():
        raise UntrustedSpec(
            f"problem {name!r} is code named by a file, not by you, and a file never runs code: "
            f"repeat it yourself to run it (--problem {name}; in Python problem={name!r}), or "
            "use a result of a built-in problem"
        )


def is_spec(name: str) -> bool:
    """True for ``module:factory`` / ``file.py:factory`` (not a built-in or in-memory name)."""
    return ":" in name and not name.startswith(MEMORY_PREFIX)


def normalize_spec(spec: str) -> str:
    """The spec as recorded in a result: a file path made absolute, a module name kept."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ProblemSpecError(f"expected MODULE:FACTORY or FILE.py:FACTORY, got {spec!r}")
    if _is_file(target):
        return f"{Path(target).expanduser().resolve()}:{attr}"
    return spec


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


@contextlib.contextmanager
def _own_argv(spec: str) -> Iterator[None]:
    """``sys.argv`` as if the user's file ran alone (``[file]``) while its code runs, so a
    module that parses its command line when imported sees none of mamlconv's arguments."""
    saved = sys.argv
    sys.argv = [spec.rpartition(":")[0]]
    try:
        yield
    finally:
        sys.argv = saved


def _import_target(spec: str) -> Any:
    with _own_argv(spec):
        return _import_target_here(spec)


def _import_target_here(spec: str) -> Any:
    target, _, _ = spec.rpartition(":")
    if _is_file(target):
        path = Path(target).expanduser().resolve()
        if not path.is_file():
            raise ProblemSpecError(f"problem {spec}: no file {path} (cwd {Path.cwd()})")
        module_name = "mamlconv_user_" + path.stem
        loaded = sys.modules.get(module_name)
        if loaded is not None and getattr(loaded, "__file__", None) == str(path):
            return loaded
        # like `python path/to/file.py`: the file's folder comes first, for its own imports
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        file_spec = importlib.util.spec_from_file_location(module_name, path)
        assert file_spec is not None and file_spec.loader is not None
        module = importlib.util.module_from_spec(file_spec)
        sys.modules[module_name] = module
        try:
            file_spec.loader.exec_module(module)
        except SystemExit as exc:
            del sys.modules[module_name]
            raise ProblemSpecError(_exit_message(spec, exc, f"importing {path}")) from None
        except Exception as exc:
            del sys.modules[module_name]
            raise ProblemSpecError(
                f"problem {spec}: importing {path} failed: {type(exc).__name__}: {exc}"
            ) from None
        return module
    # like `python -m`: the current directory is searched first
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(target)
    except SystemExit as exc:
        raise ProblemSpecError(_exit_message(spec, exc, f"importing {target!r}")) from None
    except ModuleNotFoundError as exc:
        if exc.name is not None and (target == exc.name or target.startswith(exc.name + ".")):
            searched = [p or cwd for p in sys.path][:3]
            raise ProblemSpecError(
                f"problem {spec}: cannot import {target!r}: no module {exc.name!r} in the "
                f"current directory {cwd} or on "
                f"sys.path ({len(sys.path)} entries, first {searched}); run from the folder "
                "that holds it, or give path/to/file.py:FACTORY"
            ) from None
        raise ProblemSpecError(
            f"problem {spec}: importing {target!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise ProblemSpecError(
            f"problem {spec}: importing {target!r} failed: {type(exc).__name__}: {exc}"
        ) from None


def _exit_message(spec: str, exc: SystemExit, doing: str) -> str:
    return (
        f"problem {spec}: {doing} called sys.exit({exc.code!r}) (e.g. a script that parses "
        "its command line when imported); put that code under if __name__ == '__main__':"
    )


def load_spec(spec: str, **options: Any) -> Problem:
    """``factory(**options)`` of ``module:factory`` or ``file.py:factory``, checked for the
    ``Problem`` protocol. Built once per process and options; the factory runs with torch's
    global RNG seeded 0 (restored afterwards), so a model it constructs has the same initial
    weights in every process (sweep workers, a later ``compare``)."""
    spec = normalize_spec(spec)
    key = (spec, repr(sorted(options.items())))
    if key in _BUILT:
        return _BUILT[key]
    module = _import_target(spec)
    attr = spec.rpartition(":")[2]
    factory = getattr(module, attr, None)
    if not callable(factory):
        where = getattr(module, "__file__", None) or module.__name__
        raise ProblemSpecError(f"problem {spec}: {where} has no callable {attr!r}")
    import torch

    try:
        with torch.random.fork_rng(devices=[]), _own_argv(spec):
            torch.manual_seed(0)
            problem = factory(**options)
    except ValueError as exc:  # e.g. ModuleProblemError: already one line with the fix
        raise ProblemSpecError(f"problem {spec}: {exc}") from None
    except SystemExit as exc:
        raise ProblemSpecError(_exit_message(spec, exc, f"{attr}()")) from None
    except Exception as exc:  # the user's code: report it in one line
        raise ProblemSpecError(
            f"problem {spec}: the factory raised {type(exc).__name__}: {exc}"
        ) from None
    missing = [m for m in ("init_params", "loss", "sample_tasks") if not hasattr(problem, m)]
    if missing:
        raise ProblemSpecError(
            f"problem {spec}: {attr}() returned a {type(problem).__name__} without "
            f"{', '.join(missing)} (the Problem protocol of mamlconv.numerics.tasks; build it "
            "with mamlconv.problem_from_module)"
        )
    _BUILT[key] = problem
    return problem


def register_problem(problem: Problem) -> str:
    """Register an in-memory problem for this process; returns its key ``memory:<name>``."""
    for m in ("init_params", "loss", "sample_tasks"):
        if not hasattr(problem, m):
            raise ValueError(
                f"{type(problem).__name__} has no {m}: not a Problem (mamlconv.numerics.tasks)"
            )
    base = MEMORY_PREFIX + str(getattr(problem, "name", type(problem).__name__))
    key, n = base, 1
    while key in _LIVE and _LIVE[key] is not problem:  # another object of the same name
        n += 1
        key = f"{base}-{n}"
    _LIVE[key] = problem
    return key


SINUSOID_LIMIT = 100_000
"""The largest task size (k_support, k_query) and hidden width a sinusoid option may ask for."""


def check_sinusoid_options(options: dict[str, Any]) -> None:
    """Types and ranges of the sinusoid's options (they may come from a file): a ValueError
    naming the option, never an allocation error or a shape error inside torch later."""

    def whole(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"sinusoid option {key} must be an integer, got {value!r}")
        if not 1 <= value <= SINUSOID_LIMIT:
            raise ValueError(f"sinusoid option {key} must be in [1, {SINUSOID_LIMIT}], got {value}")

    for key, value in options.items():
        if key in ("k_support", "k_query"):
            whole(key, value)
        elif key == "hidden":
            if not isinstance(value, list | tuple) or not 1 <= len(value) <= 16:
                raise ValueError(f"sinusoid option hidden must be 1 to 16 widths, got {value!r}")
            for width in value:
                whole("hidden", width)
        elif key in ("amplitude", "phase", "x_range"):
            ok = isinstance(value, list | tuple) and len(value) == 2
            ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            if not ok or not all(math.isfinite(v) for v in value) or value[0] > value[1]:
                raise ValueError(
                    f"sinusoid option {key} must be two finite numbers lo <= hi, got {value!r}"
                )
        elif key in ("init", "name") and not isinstance(value, str):
            raise ValueError(f"sinusoid option {key} must be a string, got {value!r}")


def get_problem(name: str, **options: Any) -> Problem:
    """The problem called ``name`` built with ``options`` (ValueError naming a bad name):
    a built-in name, a ``module:factory`` spec or a registered ``memory:<name>``."""
    if name.startswith(MEMORY_PREFIX):
        if name in _LIVE:
            return _LIVE[name]
        raise ProblemSpecError(
            f"problem {name!r} was built in another Python session; pass the object "
            "(mamlconv.compare(result, problem=...)) or give --problem MODULE:FACTORY"
        )
    if is_spec(name):
        check_trusted(name)
        return load_spec(name, **options)
    if name == "sinusoid":
        check_sinusoid_options(options)
        try:
            return SinusoidProblem(**options)
        except TypeError as exc:  # an unknown option
            raise ValueError(f"bad sinusoid option: {exc}") from None
    if name in _FEWSHOT:
        from mamlconv.experiments.problems import fewshot

        return getattr(fewshot, _FEWSHOT[name])(**options)
    raise ValueError(f"unknown problem {name!r}; choose one of {PROBLEMS} or give MODULE:FACTORY")


def get_preset(problem: str, preset: str) -> SweepConfig:
    """The ``preset`` configuration of ``problem`` (ValueError naming a bad name).

    A user's problem (``module:factory`` spec or ``memory:<name>``) gets the sinusoid protocol
    of Section 4.1 (``paper``) or its seconds-long version (``smoke``), without options."""
    if is_spec(problem) or problem.startswith(MEMORY_PREFIX):
        name = normalize_spec(problem) if is_spec(problem) else problem
        return sinusoid_preset(preset).replace(problem=name, problem_options={})
    if problem == "sinusoid":
        return sinusoid_preset(preset)
    if problem in _FEWSHOT:
        from mamlconv.experiments.problems import fewshot

        try:
            return fewshot.FEWSHOT_PRESETS[(problem, preset)]
        except KeyError:
            known = sorted(p for (n, p) in fewshot.FEWSHOT_PRESETS if n == problem)
            raise ValueError(
                f"unknown preset {preset!r} for {problem}; choose one of {known}"
            ) from None
    raise ValueError(f"unknown problem {problem!r}; choose one of {PROBLEMS}")
