"""Small helpers shared by the claim tests: set-ups through the package's own functions,
flattening, and log-log slopes. Nothing here computes a claim; it only prepares inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mamlconv.experiments.problems import sinusoid
from mamlconv.experiments.sweep.results import SweepResult
from mamlconv.numerics.linreg import linreg_study, torch_generator
from mamlconv.numerics.losses import sample_linreg
from mamlconv.paper_checks.verdicts import ClaimAudit


def sinusoid_setup(
    audit: ClaimAudit, *, seed: int, n_tasks: int = 3, hidden: tuple[int, int] = (40, 40)
) -> tuple[Any, dict, Any]:
    """The package's sinusoid problem (MLP 1-h-h-1, ReLU) in float64 with tasks from ``seed``.

    Returns ``(problem, params, tasks)``; ``tasks`` has a leading task axis.
    """
    import torch

    problem = sinusoid.SinusoidProblem(hidden=hidden)
    gen = torch.Generator().manual_seed(seed)
    params = problem.init_params(gen, dtype=torch.float64, device="cpu")
    tasks = problem.sample_tasks(gen, n_tasks, dtype=torch.float64, device="cpu")
    return problem, params, tasks


def one_task(tasks: Any, i: int) -> Any:
    """Task ``i`` of a batch WITHOUT the task axis (what ``task_meta_gradient`` takes)."""
    return type(tasks)(*(t[i] for t in tasks))


def flat(tree: dict) -> Any:
    """A parameter dict as one vector (insertion order)."""
    import torch

    return torch.cat([t.reshape(-1) for t in tree.values()])


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: the order p of y = O(x^p)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    return float(np.polyfit(lx, ly, 1)[0])


def identities_hold(
    builders: Sequence[Callable[[int], Any]], ns: Sequence[int] = (2, 3)
) -> dict[str, bool]:
    """``{'<label> (n=<n>)': holds}`` for theory Identity builders (exact SymPy simplification)."""
    out = {}
    for build in builders:
        for n in ns:
            ident = build(n)
            out[f"{ident.label} (n={n})"] = bool(ident.holds())
    return out


# --------------------------------------------------------------------------- committed results
# The audit reaches committed result files only through experiments/results/MANIFEST.json
# (mamlconv.paper_checks.manifest): every file is verified against its sha256 before it is
# read, a changed, missing or unreadable file is an error naming it, and a file the manifest
# does not list is never read (the report lists it as ignored).
def _no_manifest(audit: ClaimAudit, what: str, make: str) -> None:
    from mamlconv.paper_checks.manifest import COMMAND, MANIFEST_NAME

    audit.not_run(
        f"result file missing: {what} (no {MANIFEST_NAME} in {audit.results_dir}; {make}, "
        f"and register it with `{COMMAND} add FILE`)"
    )


def committed_entries(
    audit: ClaimAudit,
    *,
    kind: str,
    what: str,
    make: str,
    claim: str | None = None,
    required: bool = True,
    **config: Any,
) -> list[Any]:
    """The manifest's entries of ``kind`` (serving ``claim``, when given) whose configuration
    matches ``config`` (e.g. ``problem="sinusoid"``); when there are none, NOT-RUN naming the
    missing file and how to make it (``required``) or an empty list."""
    from mamlconv.paper_checks import manifest

    found = manifest.entries(audit.results_dir, kind=kind, claim=claim, **config)
    if found is None:
        if required:
            _no_manifest(audit, what, make)
        return []
    if not found and required:
        audit.not_run(
            f"result file missing: no {what} in {manifest.MANIFEST_NAME} ({make}; register "
            f"a new file with `{manifest.COMMAND} add FILE`)"
        )
    return found


def find_sweeps(
    audit: ClaimAudit, *, problem: str, variant: str, required: bool = True
) -> list[tuple[Path, SweepResult]]:
    """The committed sweep results (``experiments.results`` format) for problem / variant that
    MANIFEST.json lists, each verified; NOT-RUN naming the missing file (``required``) or an
    empty list when there are none."""
    from mamlconv.paper_checks.manifest import load_sweep

    found = committed_entries(
        audit,
        kind="sweep",
        what=f"{problem} / {variant} sweep",
        make=f"make one with `mamlconv sweep {problem} --variant {variant} --preset paper "
        f"--out experiments/results/{problem}-{variant}.npz`, or run the audit with --gpu",
        required=required,
        problem=problem,
        variant=variant,
    )
    out = []
    for entry in found:
        result = load_sweep(audit.results_dir, entry)
        if (result.config.problem, result.config.variant) != (problem, variant):
            raise AssertionError(
                f"{_cited_name(audit, audit.results_dir / entry.path)}: MANIFEST.json says "
                f"{problem} / {variant}, "
                f"the file holds {result.config.problem} / {result.config.variant}"
            )
        out.append((audit.results_dir / entry.path, result))
    return out


def committed_glob(audit: ClaimAudit, pattern: str, *, what: str, make: str) -> list[Path]:
    """The verified files MANIFEST.json lists whose path matches ``pattern`` (a glob relative
    to the results folder, e.g. ``readings/sinusoid_*_seed*.json``), sorted; NOT-RUN naming
    ``what`` and how to ``make`` it when none is listed. Files in the folder that the manifest
    does not list are not returned (the report lists them as ignored)."""
    from fnmatch import fnmatchcase

    from mamlconv.paper_checks import manifest

    listed = manifest.load_manifest(audit.results_dir)
    if listed is None:
        _no_manifest(audit, what, make)
    assert listed is not None
    paths = sorted(p for p in listed.files if fnmatchcase(p, pattern))
    if not paths:
        audit.not_run(
            f"result file missing: no {what} ({pattern}) in {manifest.MANIFEST_NAME} ({make}; "
            f"register the files with `{manifest.COMMAND} add FILE...`)"
        )
    return [manifest.verify(audit.results_dir, listed.files[p]) for p in paths]


def committed_folder(audit: ClaimAudit, pattern: str, *, what: str, make: str) -> list[Path]:
    """:func:`committed_glob` for code that then reads a whole folder: also an error naming
    every file that matches ``pattern`` on disk but is not listed in MANIFEST.json (such a
    file would be read unverified)."""
    from mamlconv.paper_checks.manifest import COMMAND, MANIFEST_NAME, ResultFileError

    listed = committed_glob(audit, pattern, what=what, make=make)
    on_disk = sorted(audit.results_dir.glob(pattern))
    extra = [p.relative_to(audit.results_dir).as_posix() for p in on_disk if p not in listed]
    if extra:
        raise ResultFileError(
            f"{', '.join(extra)}: not in {MANIFEST_NAME} but in the folder the audit reads; "
            f"register with `{COMMAND} add FILE --kind data --claims {audit.claim_id}` or "
            "remove"
        )
    return listed


def committed_json(audit: ClaimAudit, *, kind: str, what: str, make: str) -> list[tuple[Path, Any]]:
    """The verified, parsed JSON files of ``kind`` listed in MANIFEST.json (NOT-RUN if none)."""
    from mamlconv.paper_checks.manifest import load_json

    entries = committed_entries(audit, kind=kind, what=what, make=make)
    return [(audit.results_dir / e.path, load_json(audit.results_dir, e)) for e in entries]


def attach_committed_figures(audit: ClaimAudit, path: Path, caption: str) -> None:
    """Attach the figures MANIFEST.json lists for the data file ``path`` (verified)."""
    from mamlconv.paper_checks import manifest

    listed = manifest.load_manifest(audit.results_dir)
    if listed is None:
        return
    rel = Path(path).relative_to(audit.results_dir).as_posix()
    entry = listed.files.get(rel)
    for fig in entry.figures if entry else ():
        audit.attach(manifest.verify(audit.results_dir, listed.files[fig]), caption)


def committed_figure_record(audit: ClaimAudit, name: str, *, caption: str) -> dict:
    """The committed ``<name>.json`` of ``mamlconv figure <name>`` listed in MANIFEST.json,
    cited with its settings and commit, its PNG attached; NOT-RUN when none is listed."""
    from mamlconv.paper_checks.manifest import load_json

    found = committed_entries(
        audit,
        kind="figure-record",
        what=f"experiments/results/{name}.json",
        make=f"make it with `mamlconv figure {name}`; the audit's --slow tier reruns 5000 "
        "iterations",
        figure=name,
    )
    if len(found) > 1:  # e.g. per-seed records under readings/: the one at the top is Fig. N's
        found = [e for e in found if e.path == f"{name}.json"] or found
    if len(found) > 1:
        raise AssertionError(
            f"MANIFEST.json lists {len(found)} records of {name} "
            f"({', '.join(e.path for e in found)}); keep one"
        )
    entry = found[0]
    record = load_json(audit.results_dir, entry)
    if not isinstance(record, dict) or record.get("figure") != name:
        raise AssertionError(
            f"{_cited_name(audit, audit.results_dir / entry.path)} is not a {name} record"
        )
    audit.cite(
        _cited_name(audit, audit.results_dir / entry.path),
        sha256=entry.sha256[:12],
        iters=record.get("iters"),
        config=record.get("config"),
        commit=record.get("provenance", {}).get("git_commit"),
    )
    attach_committed_figures(audit, audit.results_dir / entry.path, caption)
    return record


def _cited_name(audit: ClaimAudit, path: Path) -> str:
    """experiments/results/<rel> for a committed file, else the path (a rerun's file)."""
    from mamlconv.paper_checks.manifest import shown

    try:
        return shown(audit.results_dir, Path(path).relative_to(audit.results_dir).as_posix())
    except ValueError:
        return str(path)


def cite_sweep(audit: ClaimAudit, path: Path, result: Any) -> None:
    """Cite a sweep file with its configuration and the commit that produced it."""
    cfg = result.config
    audit.cite(
        _cited_name(audit, path),
        problem=cfg.problem,
        variant=cfg.variant,
        grid=f"{len(cfg.alphas)} alphas [{cfg.alphas[0]:.3g}, {cfg.alphas[-1]:.3g}] x "
        f"{len(cfg.betas)} betas [{cfg.betas[0]:.3g}, {cfg.betas[-1]:.3g}]",
        iters=cfg.iters,
        tasks_per_batch=cfg.tasks_per_batch,
        task_source=cfg.task_source,
        outer=cfg.outer,
        dtype=cfg.dtype,
        seed=cfg.seed,
        divergence_level=cfg.divergence_level,
        commit=result.provenance.get("git_commit"),
        device=result.provenance.get("device"),
    )


@lru_cache(maxsize=2)
def linreg_data_paper(seed: int = 0) -> Any:
    """The App. C data set at the paper's settings (100 points) for ``seed``."""
    return sample_linreg(torch_generator(seed), n_points=100)


def linreg_study_paper(seed: int = 0) -> Any:
    """The App. C study at the paper's settings (shared by S3-8 and X-5 within a session)."""
    return linreg_study(linreg_data_paper(seed))
